import { DirtyBitmap, type DirtyBitmapDescriptor, type PageShift } from "./dirty-bitmap.js";
import { RegionAllocationError, RegionBoundsError } from "./errors.js";
import type { MemoryLayout } from "./layout.js";
import { Region, type RegionDescriptor } from "./region.js";

/**
 * Byte offsets in a pair's epoch control block (drawn in assembly/dirty.ts):
 * the epoch (u32, modulo 2^31) on its own cache line, then one u32 ack per
 * writer.
 */
export const EpochControl = { epoch: 0, acks: 64 } as const;

/** A writer's ack while it marks nothing (u32; -1 read as an Int32). */
export const EPOCH_IDLE = 0xffffffff;

/** Epochs count modulo 2^31, so that no epoch reads as {@link EPOCH_IDLE}. */
export const EPOCH_MASK = 0x7fffffff;

/** Most writers (vCPUs or marking tasks) one pair takes. */
export const MAX_EPOCH_WRITERS = 256;

/** What crosses threads to name a bitmap pair in a task message. */
export interface DirtyBitmapPairDescriptor {
  readonly bitmaps: readonly [DirtyBitmapDescriptor, DirtyBitmapDescriptor];
  readonly control: RegionDescriptor;
  readonly writers: number;
}

/**
 * An epoch-swapped (double-buffered) dirty log: two bitmaps of the same pages
 * and an epoch control block. Writers mark the active bitmap (epoch & 1); a
 * harvest flips the epoch, waits until every writer has acknowledged it, and
 * then reads and clears the retired bitmap with plain loads and stores, since
 * no writer can touch it until the next flip. Each writer has its own slot
 * (0 to `writers` - 1), in which it publishes the epoch it marks in.
 */
export class DirtyBitmapPair {
  /** Guest pages tracked (by each bitmap). */
  readonly pages: number;

  /**
   * @param bitmaps - bitmap 0 (active in even epochs) and bitmap 1 (odd), of the same pages
   * @param control - the epoch control block, at least {@link DirtyBitmapPair.controlBytes} bytes, 4-aligned
   * @param writers - writer slots, 1 to {@link MAX_EPOCH_WRITERS}
   */
  constructor(
    readonly bitmaps: readonly [DirtyBitmap, DirtyBitmap],
    readonly control: Region,
    readonly writers: number,
  ) {
    const [a, b] = bitmaps;
    if (a.pages !== b.pages || a.pageShift !== b.pageShift) {
      throw new RegionBoundsError(
        b.region.name,
        "second bitmap of a pair",
        `tracks ${b.pages} pages of 2^${b.pageShift} bytes but '${a.region.name}' tracks ${a.pages} of 2^${a.pageShift}`,
      );
    }
    if (overlap(a.region, b.region) || overlap(a.region, control) || overlap(b.region, control)) {
      throw new RegionBoundsError(control.name, "bitmap pair", "has overlapping regions");
    }
    checkWriters(writers, control.name);
    if (control.offset % 4 !== 0) {
      throw new RegionBoundsError(control.name, "epoch control block", "is not 4-byte aligned");
    }
    control.check(0, DirtyBitmapPair.controlBytes(writers), "epoch control block");
    this.pages = a.pages;
  }

  /** Bytes of the control block for `writers` writer slots. */
  static controlBytes(writers: number): number {
    checkWriters(writers, "epoch control block");
    return EpochControl.acks + 4 * writers;
  }

  /**
   * Lays out a pair for `pages` pages and `writers` writer slots in `layout`:
   * both bitmaps zeroed, epoch 0 (bitmap 0 active), every writer idle.
   */
  static allocate(
    layout: MemoryLayout,
    name: string,
    pages: number,
    writers: number,
    pageShift: PageShift = 12,
  ): DirtyBitmapPair {
    const control = layout.allocate(`${name}-epoch`, DirtyBitmapPair.controlBytes(writers), 64);
    const pair = new DirtyBitmapPair(
      [
        DirtyBitmap.allocate(layout, `${name}-0`, pages, pageShift),
        DirtyBitmap.allocate(layout, `${name}-1`, pages, pageShift),
      ],
      control,
      writers,
    );
    pair.reset(layout.memory);
    return pair;
  }

  /** Rebuilds a pair from a task message's descriptor. */
  static fromDescriptor(descriptor: DirtyBitmapPairDescriptor): DirtyBitmapPair {
    const bitmap = (d: DirtyBitmapDescriptor) =>
      new DirtyBitmap(new Region(d.region), d.pages, d.pageShift);
    return new DirtyBitmapPair(
      [bitmap(descriptor.bitmaps[0]), bitmap(descriptor.bitmaps[1])],
      new Region(descriptor.control),
      descriptor.writers,
    );
  }

  /** Sets epoch 0 and every writer idle (no writer may be marking). */
  reset(memory: WebAssembly.Memory): void {
    const slots = this.slots(memory);
    Atomics.store(slots, EpochControl.epoch / 4, 0);
    for (let writer = 0; writer < this.writers; writer++) {
      Atomics.store(slots, EpochControl.acks / 4 + writer, EPOCH_IDLE | 0);
    }
  }

  /** The control block as Int32 slots (epoch at 0, ack of writer w at 16 + w). */
  slots(memory: WebAssembly.Memory): Int32Array {
    return new Int32Array(memory.buffer, this.control.offset, EpochControl.acks / 4 + this.writers);
  }

  /** The descriptor for task messages. */
  toDescriptor(): DirtyBitmapPairDescriptor {
    return {
      bitmaps: [this.bitmaps[0].toDescriptor(), this.bitmaps[1].toDescriptor()],
      control: this.control.toDescriptor(),
      writers: this.writers,
    };
  }
}

function checkWriters(writers: number, name: string): void {
  if (!Number.isSafeInteger(writers) || writers < 1 || writers > MAX_EPOCH_WRITERS) {
    throw new RegionAllocationError(
      `${name}: writers must be a whole number from 1 to ${MAX_EPOCH_WRITERS}, not ${writers}`,
    );
  }
}

function overlap(a: Region, b: Region): boolean {
  return a.offset < b.end && b.offset < a.end;
}
