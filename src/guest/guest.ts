import { EpochDirtyLog } from "../dirty/epoch-log.js";
import { DirtyBitmap, type PageShift } from "../memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../memory/dirty-bitmap-pair.js";
import { DirtyRing, KVM_RING_MIN_ENTRIES } from "../memory/dirty-ring.js";
import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import type { KernelPool } from "../pool/pool.js";
import { formatBytes } from "../util/units.js";
import { DirtyKernel } from "../wasm/dirty.js";
import { DESCRIPTOR_BYTES, type VcpuTarget, WorkloadKernel } from "../wasm/workload.js";
import {
  encodeDescriptor,
  type ResolvedWorkload,
  resolveWorkload,
  type WorkloadSpec,
} from "../workload/spec.js";
import type { RunWorkloadTask } from "./task-types.js";

/**
 * Largest guest whose bytes are really held (content mode). wasm32 caps one
 * memory at 4 GiB; this leaves room for bitmaps, rings and scratch.
 */
export const MAX_CONTENT_GUEST_BYTES = 3 * 1024 ** 3;
/** Largest guest in metadata mode: 2^32 pages of 4 KiB. */
export const MAX_GUEST_BYTES = 16 * 1024 ** 4;

/** How dirty pages are logged. */
export type DirtyTracking = "bitmap" | "ring";

/** Options for a {@link Guest}. */
export interface GuestOptions {
  /** Guest memory size in bytes: a whole number of pages, 1 MiB to 16 TiB. */
  readonly bytes: number;
  /** log2 of the guest page size: 12 (4 KiB) or 21 (2 MiB). */
  readonly pageShift?: PageShift;
  /** Hold the guest's bytes and write them (content mode), or only track pages (metadata mode). */
  readonly content: boolean;
  /** vCPUs, each with its own workload stream (and ring). */
  readonly vcpus: number;
  /** The write pattern. */
  readonly workload: WorkloadSpec;
  /** Dirty bitmap (default) or per-vCPU dirty rings that fall back to the bitmap. */
  readonly tracking?: DirtyTracking;
  /**
   * Bitmap tracking only: an epoch-swapped pair of bitmaps (one writer slot
   * per vCPU), so that a harvest with the vCPUs running takes no locked
   * instruction per word (see {@link Guest.harvest}). Default false: one
   * bitmap, harvested by atomic get-and-clear.
   */
  readonly doubleBuffered?: boolean;
  /** Ring entries per vCPU (a power of two; default 4096, KVM's minimum). */
  readonly ringEntries?: number;
  /** Seed of every vCPU's generator. */
  readonly seed: number;
  /** Name prefix of the guest's regions. */
  readonly name?: string;
}

/** Thrown for a guest that cannot be built as asked. */
export class GuestConfigError extends RangeError {
  override name = "GuestConfigError";
}

/**
 * A guest: its RAM (content mode), dirty bitmap, per-vCPU workload
 * descriptors and rings, all regions of one engine's shared memory. Its vCPUs
 * write on this thread or on pool workers.
 */
export class Guest {
  readonly pages: number;
  readonly pageShift: PageShift;
  /** The dirty bitmap; with {@link GuestOptions.doubleBuffered}, bitmap 0 of {@link Guest.pair}. */
  readonly bitmap: DirtyBitmap;
  /** The epoch-swapped bitmap pair, with {@link GuestOptions.doubleBuffered}. */
  readonly pair: DirtyBitmapPair | undefined;
  /** The harvester's side of {@link Guest.pair}. */
  readonly log: EpochDirtyLog | undefined;
  readonly ram: Region | undefined;
  readonly workload: ResolvedWorkload;
  readonly tracking: DirtyTracking;
  readonly vcpuTargets: readonly VcpuTarget[];
  readonly dirty: DirtyKernel;
  private readonly writer: WorkloadKernel;

  constructor(
    readonly layout: MemoryLayout,
    readonly options: GuestOptions,
  ) {
    const pageShift = options.pageShift ?? 12;
    const pageBytes = 2 ** pageShift;
    const name = options.name ?? "guest";
    if (!Number.isSafeInteger(options.bytes) || options.bytes < 1024 ** 2) {
      throw new GuestConfigError(`guest size must be at least 1 MiB, not ${options.bytes} bytes`);
    }
    if (options.bytes > MAX_GUEST_BYTES) {
      throw new GuestConfigError(
        `guest size ${formatBytes(options.bytes)} is over the 16 TiB limit`,
      );
    }
    if (options.bytes % pageBytes !== 0) {
      throw new GuestConfigError(
        `guest size ${options.bytes} bytes is not a whole number of ${formatBytes(pageBytes)} pages`,
      );
    }
    if (options.content && options.bytes > MAX_CONTENT_GUEST_BYTES) {
      throw new GuestConfigError(
        `a guest of ${formatBytes(options.bytes)} cannot be held in content mode (at most ${formatBytes(MAX_CONTENT_GUEST_BYTES)} under wasm32's 4 GiB): use metadata mode`,
      );
    }
    if (!Number.isSafeInteger(options.vcpus) || options.vcpus < 1 || options.vcpus > 256) {
      throw new GuestConfigError(`vCPUs must be from 1 to 256, not ${options.vcpus}`);
    }
    this.pages = options.bytes / pageBytes;
    this.pageShift = pageShift;
    this.tracking = options.tracking ?? "bitmap";
    this.workload = resolveWorkload(options.workload, this.pages, pageShift);
    if (options.doubleBuffered && this.tracking !== "bitmap") {
      throw new GuestConfigError("a double-buffered dirty log needs bitmap tracking, not rings");
    }
    this.pair = options.doubleBuffered
      ? DirtyBitmapPair.allocate(
          layout,
          `${name}-dirty-bitmaps`,
          this.pages,
          options.vcpus,
          pageShift,
        )
      : undefined;
    this.bitmap =
      this.pair?.bitmaps[0] ??
      DirtyBitmap.allocate(layout, `${name}-dirty-bitmap`, this.pages, pageShift);
    this.ram = options.content ? layout.allocate(`${name}-ram`, options.bytes, 4096) : undefined;
    this.dirty = DirtyKernel.on(layout.memory);
    this.log = this.pair ? new EpochDirtyLog(layout.memory, this.pair, this.dirty) : undefined;
    this.writer = WorkloadKernel.on(layout.memory);
    const targets: VcpuTarget[] = [];
    for (let vcpu = 0; vcpu < options.vcpus; vcpu++) {
      const descriptor = layout.allocate(`${name}-vcpu${vcpu}-workload`, DESCRIPTOR_BYTES);
      encodeDescriptor(new DataView(layout.memory.buffer), descriptor.offset, this.workload, {
        seed: options.seed,
        vcpu,
        content: options.content,
        ring: this.tracking === "ring",
      });
      let ring: DirtyRing | undefined;
      if (this.tracking === "ring") {
        ring = DirtyRing.allocate(
          layout,
          `${name}-vcpu${vcpu}-dirty-ring`,
          options.ringEntries ?? KVM_RING_MIN_ENTRIES,
        );
        this.dirty.ringInit(ring, 0);
      }
      targets.push({
        descriptor,
        bitmap: this.bitmap,
        ...(this.ram ? { ram: this.ram } : {}),
        ...(ring ? { ring } : {}),
        ...(this.pair ? { pair: { pair: this.pair, slot: vcpu } } : {}),
      });
    }
    this.vcpuTargets = targets;
  }

  /** Size in bytes. */
  get bytes(): number {
    return this.options.bytes;
  }

  /**
   * Runs `writes` guest writes in total, split evenly over the vCPUs, on the
   * pool's workers (in parallel) or on this thread. Returns the writes that
   * found their page clean (bitmap) or were logged in a ring.
   */
  async write(writes: number, pool?: KernelPool): Promise<number> {
    const shares = this.vcpuTargets.map(
      (_, vcpu) =>
        Math.floor(writes / this.vcpuTargets.length) +
        (vcpu < writes % this.vcpuTargets.length ? 1 : 0),
    );
    if (!pool) {
      let newly = 0;
      this.vcpuTargets.forEach((target, vcpu) => {
        newly += this.writer.run(target, shares[vcpu] ?? 0);
      });
      return newly;
    }
    const results = await Promise.all(
      this.vcpuTargets.map((target, vcpu) => {
        const task: RunWorkloadTask = {
          type: "workload.run",
          descriptor: target.descriptor.toDescriptor(),
          bitmap: target.bitmap.toDescriptor(),
          count: shares[vcpu] ?? 0,
          ...(target.ram ? { ram: target.ram.toDescriptor() } : {}),
          ...(target.ring ? { ring: target.ring.toDescriptor() } : {}),
          ...(target.pair
            ? { pair: { pair: target.pair.pair.toDescriptor(), slot: target.pair.slot } }
            : {}),
        };
        return pool.run(task);
      }),
    );
    return results.reduce((sum, r) => sum + r.newlyDirty, 0);
  }

  /**
   * Takes the pages dirtied since the last harvest into `snapshot` (a bitmap
   * of the guest's pages) and clears them, while the vCPUs may be running.
   * One bitmap: KVM's get-and-clear, an atomic exchange per dirty word.
   * Double-buffered: a flip of the pair (waiting for each running vCPU to
   * finish its batch of writes), then a plain move of the retired bitmap.
   * Returns the pages harvested.
   */
  harvest(snapshot: DirtyBitmap): number {
    return this.log ? this.log.harvestInto(snapshot) : this.dirty.harvest(this.bitmap, snapshot);
  }

  /** Moves every vCPU ring's entries into the bitmap. Returns entries drained. */
  drainRings(): number {
    let drained = 0;
    for (const target of this.vcpuTargets) {
      if (target.ring) drained += this.dirty.ringDrain(target.ring, this.bitmap);
    }
    return drained;
  }

  /** Ring pushes that overflowed to the bitmap, over all vCPUs. */
  ringOverflow(): number {
    let overflow = 0;
    for (const target of this.vcpuTargets) {
      if (target.ring) overflow += this.dirty.ringOverflow(target.ring);
    }
    return overflow;
  }
}
