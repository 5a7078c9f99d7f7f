import type { DirtyBitmap } from "../memory/dirty-bitmap.js";
import type { DirtyBitmapPair } from "../memory/dirty-bitmap-pair.js";
import type { DirtyRing } from "../memory/dirty-ring.js";
import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/workload.ts. */
export interface WorkloadExports {
  runWrites(
    desc: number,
    count: number,
    bitmap: number,
    ram: number,
    ring: number,
    ringSize: number,
  ): number;
  runWritesInPair(
    desc: number,
    count: number,
    control: number,
    slot: number,
    bitmapA: number,
    bitmapB: number,
    ram: number,
  ): number;
}

/** Byte size of one vCPU's workload descriptor (drawn in assembly/workload.ts). */
export const DESCRIPTOR_BYTES = 96;

/** Byte offsets of the descriptor's fields. */
export const Descriptor = {
  rng: 0,
  kind: 8,
  flags: 12,
  lastPage: 16,
  hotBase: 20,
  hotPages: 24,
  pageShift: 28,
  hotThreshold: 32,
  cursor: 40,
  stride: 44,
  scatter: 48,
  zipfS: 56,
  zipfX1: 64,
  zipfN: 72,
  zipfSDiv: 80,
  writes: 88,
} as const;

/** Descriptor flag: write real bytes into guest RAM. */
export const FLAG_CONTENT = 1;
/** Descriptor flag: log to the vCPU's dirty ring instead of the bitmap. */
export const FLAG_RING = 2;

/** The kernel's code of each workload kind, in the descriptor's kind field. */
export const WorkloadKindCode = { uniform: 0, hotset: 1, sequential: 2, zipf: 3 } as const;

/** The layout assembly/workload.ts exports (as LAYOUT_ globals), checked at load. */
const WORKLOAD_LAYOUT = {
  DESCRIPTOR_BYTES,
  D_RNG: Descriptor.rng,
  D_KIND: Descriptor.kind,
  D_FLAGS: Descriptor.flags,
  D_LAST_PAGE: Descriptor.lastPage,
  D_HOT_BASE: Descriptor.hotBase,
  D_HOT_PAGES: Descriptor.hotPages,
  D_PAGE_SHIFT: Descriptor.pageShift,
  D_HOT_THRESHOLD: Descriptor.hotThreshold,
  D_CURSOR: Descriptor.cursor,
  D_STRIDE: Descriptor.stride,
  D_SCATTER: Descriptor.scatter,
  D_ZIPF_S: Descriptor.zipfS,
  D_ZIPF_X1: Descriptor.zipfX1,
  D_ZIPF_N: Descriptor.zipfN,
  D_ZIPF_SDIV: Descriptor.zipfSDiv,
  D_WRITES: Descriptor.writes,
  KIND_UNIFORM: WorkloadKindCode.uniform,
  KIND_HOT_SET: WorkloadKindCode.hotset,
  KIND_SEQUENTIAL: WorkloadKindCode.sequential,
  KIND_ZIPF: WorkloadKindCode.zipf,
  FLAG_CONTENT,
  FLAG_RING,
};

/** What one vCPU's writes touch: its descriptor, the bitmap, and optionally RAM and its ring. */
export interface VcpuTarget {
  /** The vCPU's workload descriptor ({@link DESCRIPTOR_BYTES} bytes). */
  readonly descriptor: Region;
  /** The dirty bitmap it marks (and falls back to from its ring). */
  readonly bitmap: DirtyBitmap;
  /** Guest RAM, in content mode. */
  readonly ram?: Region;
  /** Its dirty ring, in ring mode. */
  readonly ring?: DirtyRing;
  /**
   * An epoch-swapped bitmap pair to mark instead of `bitmap` (which is then
   * the pair's bitmap 0), and this vCPU's writer slot in it.
   */
  readonly pair?: { readonly pair: DirtyBitmapPair; readonly slot: number };
}

/** Largest write count passed to one kernel call (keeps counts in u32). */
const MAX_WRITES_PER_CALL = 2 ** 30;

/**
 * Typed, bounds-checked calls into the workload kernel. The descriptor lives
 * in shared memory, so its fields are checked against the regions before each
 * run: a corrupted descriptor is an error, never a write outside a region.
 */
export class WorkloadKernel {
  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: WorkloadExports,
  ) {
    checkKernelLayout("workload", k, WORKLOAD_LAYOUT);
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): WorkloadKernel {
    return new WorkloadKernel(
      memory,
      instantiateKernel<WorkloadExports>(compileKernel("workload"), memory),
    );
  }

  /**
   * Runs `count` guest writes of one vCPU. Returns how many found their page
   * clean (bitmap mode) or were logged in the ring (ring mode).
   */
  run(target: VcpuTarget, count: number): number {
    if (!Number.isSafeInteger(count) || count < 0) {
      throw new RangeError(`write count must be a whole number >= 0, not ${count}`);
    }
    this.check(target);
    const ram = target.ram?.offset ?? 0;
    const ring = target.ring?.region.offset ?? 0;
    const ringSize = target.ring?.entries ?? 0;
    let newly = 0;
    const pair = target.pair;
    for (let done = 0; done < count; done += MAX_WRITES_PER_CALL) {
      const take = Math.min(MAX_WRITES_PER_CALL, count - done);
      if (pair) {
        newly +=
          this.k.runWritesInPair(
            target.descriptor.offset,
            take,
            pair.pair.control.offset,
            pair.slot,
            pair.pair.bitmaps[0].region.offset,
            pair.pair.bitmaps[1].region.offset,
            ram,
          ) >>> 0;
        continue;
      }
      newly +=
        this.k.runWrites(
          target.descriptor.offset,
          take,
          target.bitmap.region.offset,
          ram,
          ring,
          ringSize,
        ) >>> 0;
    }
    return newly;
  }

  private check(target: VcpuTarget): void {
    const { descriptor, bitmap } = target;
    const at = descriptor.check(0, DESCRIPTOR_BYTES, "workload descriptor");
    const view = new DataView(this.memory.buffer, at, DESCRIPTOR_BYTES);
    const field = (offset: number) => view.getUint32(offset, true);
    const fail = (what: string) =>
      new RegionBoundsError(descriptor.name, "workload descriptor", what);
    const pages = field(Descriptor.lastPage) + 1;
    if (pages !== bitmap.pages) {
      throw fail(`covers ${pages} pages but bitmap '${bitmap.region.name}' has ${bitmap.pages}`);
    }
    if (field(Descriptor.pageShift) !== bitmap.pageShift) {
      throw fail(`has page shift ${field(Descriptor.pageShift)}, the bitmap ${bitmap.pageShift}`);
    }
    if (field(Descriptor.kind) > 3) throw fail(`has unknown kind ${field(Descriptor.kind)}`);
    const hotPages = field(Descriptor.hotPages);
    if (hotPages < 1 || field(Descriptor.hotBase) + hotPages > pages) {
      throw fail("has a hot set outside the guest");
    }
    if (field(Descriptor.cursor) >= pages) throw fail("has a cursor past the guest");
    const flags = field(Descriptor.flags);
    if (flags & ~(FLAG_CONTENT | FLAG_RING)) throw fail(`has unknown flags ${flags}`);
    if (flags & FLAG_CONTENT) {
      if (!target.ram) throw fail("asks for content mode but no guest RAM was given");
      target.ram.check(0, pages * 2 ** bitmap.pageShift, "guest RAM for every page");
    }
    if (flags & FLAG_RING && !target.ring) throw fail("asks for ring mode but no ring was given");
    if (target.pair) {
      const { pair, slot } = target.pair;
      if (pair.bitmaps[0] !== bitmap && pair.bitmaps[0].region.offset !== bitmap.region.offset) {
        throw fail(`marks a bitmap pair whose bitmap 0 is not '${bitmap.region.name}'`);
      }
      if (flags & FLAG_RING) throw fail("asks for ring mode, which a bitmap pair does not log");
      if (!Number.isSafeInteger(slot) || slot < 0 || slot >= pair.writers) {
        throw new RegionBoundsError(
          pair.control.name,
          `writer slot ${slot}`,
          `is not a slot of this pair (0 to ${pair.writers - 1})`,
        );
      }
    }
  }
}
