import { RegionAllocationError } from "./errors.js";
import type { MemoryLayout } from "./layout.js";
import type { Region, RegionDescriptor } from "./region.js";

/** Ring header bytes before the first entry (layout drawn in assembly/dirty.ts). */
export const RING_HEADER_BYTES = 64;
/** Bytes per entry: KVM's struct kvm_dirty_gfn {flags u32, slot u32, offset u64}. */
export const RING_ENTRY_BYTES = 16;
/** Intel PML's log: 512 guest-physical addresses in one 4 KiB page. */
export const PML_ENTRIES = 512;
/** KVM's recommended minimum dirty-ring size (Linux Documentation/virt/kvm/api.rst, KVM_CAP_DIRTY_LOG_RING). */
export const KVM_RING_MIN_ENTRIES = 4096;
/** Largest ring accepted (KVM caps the ring at 64 Ki entries). */
export const MAX_RING_ENTRIES = 65_536;

/** Byte offsets of the ring header's fields. */
export const RingHeader = {
  head: 0,
  tail: 4,
  size: 8,
  overflow: 12,
  slot: 16,
} as const;

/** What crosses threads to name a ring in a task message. */
export interface DirtyRingDescriptor {
  readonly region: RegionDescriptor;
  readonly entries: number;
}

/** A per-vCPU dirty ring in a region of the shared memory. */
export class DirtyRing {
  constructor(
    readonly region: Region,
    readonly entries: number,
  ) {
    checkEntries(entries);
    if (region.byteLength < DirtyRing.bytesFor(entries)) {
      throw new RegionAllocationError(
        `region '${region.name}' is too small for a ring of ${entries} entries`,
      );
    }
  }

  /** Bytes for a ring of `entries` entries. */
  static bytesFor(entries: number): number {
    checkEntries(entries);
    return RING_HEADER_BYTES + entries * RING_ENTRY_BYTES;
  }

  /** Lays out a ring (call the kernel's ringInit before use). */
  static allocate(layout: MemoryLayout, name: string, entries: number): DirtyRing {
    return new DirtyRing(layout.allocate(name, DirtyRing.bytesFor(entries)), entries);
  }

  /** The descriptor for task messages. */
  toDescriptor(): DirtyRingDescriptor {
    return { region: this.region.toDescriptor(), entries: this.entries };
  }
}

function checkEntries(entries: number): void {
  if (
    !Number.isSafeInteger(entries) ||
    entries < 1 ||
    entries > MAX_RING_ENTRIES ||
    (entries & (entries - 1)) !== 0
  ) {
    throw new RegionAllocationError(
      `a dirty ring needs a power-of-two entry count from 1 to ${MAX_RING_ENTRIES}, not ${entries}`,
    );
  }
}
