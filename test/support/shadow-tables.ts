import { MemoryLayout } from "../../src/memory/layout.js";
import { ADDRESS_MASK, type PageSize, tableIndex, X86 } from "../../src/paging/entry.js";
import { emptyExitCounters } from "../../src/paging/exits.js";
import type { GuestProcess } from "../../src/paging/guest-os.js";
import { HostMemory } from "../../src/paging/host.js";
import { type Fault, MmuContext } from "../../src/paging/mmu.js";
import { HOST_BASE, PhysicalWindow } from "../../src/paging/physical.js";
import { cpuPreset } from "../../src/paging/presets.js";
import { ShadowMmu, type ShadowOptions } from "../../src/paging/shadow.js";
import { WalkKernel } from "../../src/wasm/walk.js";

// Shadow and agile paging on guest tables written by hand: a guest's tables,
// the shadow MMU over them, and the hardware (the walk kernel) walking the
// shadow tables, with no guest OS or machine in between, so that a test can
// say which shadow entry each step writes.

/** Where the guest's data pages lie (guest-physical): past the table zone. */
export const DATA = 0x8000_0000;

/** What a test builds the shadow MMU with, beside {@link ShadowOptions}. */
export interface ShadowSetUp {
  /** Agile paging: the host's EPT backs guest memory with pages of this size. */
  readonly hostBacking?: PageSize;
}

/**
 * A shadow MMU over hand-written guest tables: 4 levels, a Skylake-SP's
 * caches, KVM's flooding threshold of 3, tagged TLBs. With `agileSwitchWrites`
 * the hardware walks in agile mode and the host's EPT (4 KiB pages unless
 * `hostBacking` says otherwise) is the hypervisor's map of guest memory.
 */
export function setUpShadow(options: Partial<ShadowOptions> & ShadowSetUp = {}) {
  const { hostBacking, ...shadowOptions } = options;
  const agile = shadowOptions.agileSwitchWrites !== undefined;
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "tables", {
    hostTableBytes: 256 * 4096,
    guestTableBytes: 32 * 4096,
  });
  const caches = cpuPreset("skylake-sp").caches;
  const mmu = new MmuContext(
    layout.memory,
    WalkKernel.on(layout.memory),
    MmuContext.regions(layout, "mmu", caches),
    window,
    { mode: agile ? "agile" : "shadow", guestLevels: 4, hostLevels: 4, caches },
  );
  const host = agile
    ? new HostMemory(window, { levels: 4, backing: hostBacking ?? "4K", guestBytes: 2 ** 33 })
    : undefined;
  if (host) mmu.setEptRoot(host.root);
  const counters = emptyExitCounters();
  const shadow = new ShadowMmu(
    window,
    mmu,
    {
      levels: 4,
      unsync: false,
      floodThreshold: 3,
      tagged: true,
      ...(host ? { host } : {}),
      ...shadowOptions,
    },
    counters,
  );
  const guest = new GuestTables(window);
  const process: GuestProcess = { pid: 1, cr3: guest.root, pcid: 7, vmas: [], mapped: 0 };
  return { window, mmu, counters, shadow, guest, process, host };
}

/** What {@link setUpShadow} builds. */
export type ShadowRig = ReturnType<typeof setUpShadow>;

/** The guest's page tables, written as the guest kernel would. */
export class GuestTables {
  readonly root: number;
  constructor(private readonly window: PhysicalWindow) {
    this.root = window.allocateGuestTable();
  }

  /** Guest-physical address of the entry for `va` at `level`, making the tables above it. */
  entryAt(va: number, level: number, flags = X86.present | X86.writable | X86.user): number {
    let table = this.root;
    for (let l = 4; l > level; l--) {
      const at = table + tableIndex(va, l) * 8;
      let entry = this.read(at);
      if ((entry & X86.present) === 0n) {
        entry = BigInt(this.window.allocateGuestTable()) | flags;
        this.write(at, entry);
      }
      table = Number(entry & ADDRESS_MASK);
    }
    return table + tableIndex(va, level) * 8;
  }

  /** The guest table (guest-physical) that holds `va`'s entry at `level`. */
  tableOf(va: number, level: number): number {
    return this.entryAt(va, level) - tableIndex(va, level) * 8;
  }

  /** Maps `va` to `frame` with `flags` by a leaf at `level`; returns the leaf's guest-physical address. */
  map(va: number, frame: number, flags: bigint, level = 1): number {
    const at = this.entryAt(va, level);
    this.write(at, BigInt(frame) | flags | (level > 1 ? X86.pageSize : 0n));
    return at;
  }

  read(gpa: number): bigint {
    return this.window.read(HOST_BASE + gpa);
  }

  write(gpa: number, entry: bigint): void {
    this.window.write(HOST_BASE + gpa, entry);
  }
}

/**
 * The shadow entries the hardware walks for `va`, top level first, down to
 * the first entry that is not present, a leaf, or (agile) a link to a guest
 * table in nested mode.
 */
export function shadowPath(window: PhysicalWindow, mmu: MmuContext, va: number): bigint[] {
  const path: bigint[] = [];
  let table = mmu.root;
  for (let level = 4; level >= 1; level--) {
    const entry = window.read(table + tableIndex(va, level) * 8);
    path.push(entry);
    if ((entry & X86.present) === 0n || (entry & (X86.pageSize | (1n << 11n))) !== 0n) break;
    table = Number(entry & ADDRESS_MASK);
  }
  return path;
}

/**
 * Touches `va` as a vCPU does: translates, services EPT violations (agile's
 * nested part) and hands every other fault to the shadow MMU until the
 * access translates or the guest's own tables refuse it. Returns the
 * host-physical address, or the fault reflected to the guest.
 */
export function touch(
  rig: ShadowRig,
  va: number,
  kind: number,
): { hpa: number } | { fault: Fault } {
  for (let attempt = 0; attempt < 8; attempt++) {
    const outcome = rig.mmu.translate(va, kind);
    if ("hpa" in outcome) return outcome;
    if (outcome.fault.code === "ept-violation") {
      if (!rig.host) throw new Error("an EPT violation without an EPT");
      rig.host.service(outcome.fault.address);
      continue;
    }
    const reflected = rig.shadow.handleFault(rig.process, outcome.fault);
    if (reflected) return { fault: reflected };
  }
  throw new Error(`0x${va.toString(16)} keeps faulting`);
}
