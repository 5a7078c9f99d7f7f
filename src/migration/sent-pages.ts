import type { Guest } from "../guest/guest.js";
import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import type { Region } from "../memory/region.js";

/**
 * The pages a run has sent at least once: the pages the destination holds.
 * A completion inside QEMU's first pass sends pages the destination never
 * held, which its first touch of each paces (a fault, the kernel zeroing
 * the page), so the model tells them apart from pages sent again
 * (qemu-iteration/iteration.ts, `firstTouchRate`). One bit a page, in the
 * guest's memory, cleared at the start of each run.
 */
export class SentPages {
  private readonly bitmap: DirtyBitmap;

  constructor(private readonly guest: Guest) {
    this.bitmap = DirtyBitmap.allocate(guest.layout, "sent-pages", guest.pages, guest.pageShift);
  }

  /** Forgets every page: a run starts with nothing on the destination. */
  clear(): void {
    this.bitmap.region.bytes(this.guest.layout.memory).fill(0);
  }

  /**
   * Records the pages listed at `from` to `to` (exclusive) of `list` (u32
   * page numbers) as sent. Returns how many of them were sent for the first
   * time.
   */
  record(list: Region, from: number, to: number): number {
    const pages = new Uint32Array(this.guest.layout.memory.buffer, list.offset, to);
    let fresh = 0;
    for (let i = from; i < to; i++) {
      if (this.guest.dirty.markPage(this.bitmap, pages[i] ?? 0)) fresh++;
    }
    return fresh;
  }
}
