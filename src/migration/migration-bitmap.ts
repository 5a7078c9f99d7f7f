import type { EpochDirtyLog } from "../dirty/epoch-log.js";
import type { Guest } from "../guest/guest.js";
import type { DirtyBitmap } from "../memory/dirty-bitmap.js";
import type { Region } from "../memory/region.js";
import type { DirtyKernel } from "../wasm/dirty.js";

/**
 * QEMU's migration bitmap (migration/ram.c, `RAMBlock::bmap`): the pages a
 * sync took from the guest's dirty log and that are not sent yet.
 *
 * It is the retired bitmap of the guest's epoch-swapped pair. A sync flips
 * the pair: the vCPUs go on marking the other bitmap, and the retired one,
 * which no writer touches until the next flip, holds the pages dirtied since
 * the last sync. Sending then takes its page numbers with the one-pass quiet
 * harvest ({@link DirtyKernel.harvestPagesQuiet}), which reads, clears and
 * lists each word once: no copy into a snapshot and no second walk over it.
 * A page not sent before the next flip stays marked and is synced again.
 */
export class MigrationBitmap {
  private readonly log: EpochDirtyLog;
  private readonly dirty: DirtyKernel;
  private readonly memory: WebAssembly.Memory;

  /** @param guest - a guest built with `doubleBuffered: true` */
  constructor(guest: Guest) {
    if (!guest.log) {
      throw new TypeError("a migration bitmap needs a guest with a double-buffered dirty log");
    }
    this.log = guest.log;
    this.dirty = guest.dirty;
    this.memory = guest.layout.memory;
  }

  /** Pages of the guest. */
  get pages(): number {
    return this.log.pair.bitmaps[0].pages;
  }

  /**
   * Clears both bitmaps of the pair and returns it to epoch 0. Only while no
   * vCPU runs (before a run): a plain fill, as nothing can mark meanwhile.
   */
  clear(): void {
    for (const bitmap of this.log.pair.bitmaps) bitmap.region.bytes(this.memory).fill(0);
    this.log.pair.reset(this.memory);
  }

  /**
   * The sync (QEMU's `migration_bitmap_sync`): flips the dirty log, waiting
   * for each running vCPU to finish its batch, and returns the pages pending.
   */
  sync(): number {
    return this.dirty.count(this.log.flip());
  }

  /** Marks every page pending (the first round sends all of memory). Returns pages pending. */
  markAll(): number {
    const retired = this.log.quietRetired();
    this.dirty.markRange(retired, 0, retired.pages);
    return retired.pages;
  }

  /**
   * Takes the next batch of pending page numbers into `list` (u32 each; at
   * least 66 slots) and clears them. Returns how many; 0 when none is left.
   * Reset `cursor` before the first batch of a pass.
   */
  next(cursor: Region, list: Region): number {
    return this.dirty.harvestPagesQuiet(this.log.quietRetired(), cursor, list);
  }

  /**
   * Marks pages of a batch taken by {@link next} pending again: the ones
   * listed at `from` to `to` (exclusive) of `list`, which a pass stopped
   * before sending (QEMU's iteration leaves them set in its bitmap). Only
   * between sends, with nothing else harvesting.
   */
  putBack(list: Region, from: number, to: number): void {
    const pages = new Uint32Array(this.memory.buffer, list.offset, to);
    const retired = this.log.quietRetired();
    for (let i = from; i < to; i++) this.dirty.markPage(retired, pages[i] ?? 0);
  }

  /**
   * Moves `cursor` back to the page listed at `at` of `list`, put back by
   * {@link putBack}: the next batch starts with it (and the pages after it
   * in its 64-page word, none of them sent since they were taken).
   */
  resumeAt(cursor: Region, list: Region, at: number): void {
    const page = new Uint32Array(this.memory.buffer, list.offset + 4 * at, 1)[0] ?? 0;
    this.dirty.seekCursor(cursor, page);
  }

  /** Sets `cursor` back to the first page, to start a pass. */
  resetCursor(cursor: Region): void {
    this.dirty.resetCursor(cursor);
  }

  /**
   * Moves every pending page into `target` (same page count) and clears the
   * pending set: what post-copy starts from. Returns the pages moved.
   */
  moveInto(target: DirtyBitmap): number {
    return this.dirty.harvestQuiet(this.log.quietRetired(), target);
  }

  /**
   * The last sync with the vCPUs paused: ORs what they dirtied since the last
   * sync into the pending set, as QEMU's bitmap sync at stop-and-copy ORs the
   * dirty log into pages not yet sent, so a page in both goes once. `scratch`
   * (same page count) receives the late pages on the way. One pass over the
   * words: harvested, merged and counted together. Returns the pages
   * pending. Only with every vCPU paused.
   */
  syncPaused(scratch: DirtyBitmap): number {
    return this.dirty.harvestQuietMerge(this.log.active, scratch, this.log.quietRetired()).distinct;
  }
}
