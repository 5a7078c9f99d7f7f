import { FrameError } from "./frame.js";

/**
 * What a post-copy source still has to send, kept apart from any connection
 * so that it outlives a broken one (QEMU keeps it in RAMState, which
 * postcopy_pause in migration/migration.c leaves untouched): the pages
 * pushed in page order, the pages the destination requested, and which
 * pages went since the list was last built.
 *
 * After a reconnect the list is rebuilt from the destination's received-page
 * bitmap, never from the source's own record of what it sent: pages in
 * flight when the link broke were sent but never landed (QEMU's
 * ram_dirty_bitmap_reload in migration/ram.c: dirty = ~received).
 */
export class PostcopyBacklog {
  /** Pages to push, in page order. */
  private pages: Uint32Array;
  /** How far the push has gone in {@link PostcopyBacklog.pages}. */
  private next = 0;
  /** 1 where a page went since the list was built. */
  private readonly sent: Uint8Array;
  /** 1 where a page is in {@link PostcopyBacklog.pages}. */
  private readonly inList: Uint8Array;
  /** Pages the destination requested, not yet sent again. */
  private readonly urgent: number[] = [];
  /** Pages of the list sent at least once since it was built. */
  private unique = 0;
  /** Pages put in frames over the whole phase, repeats included. */
  pushed = 0;

  /**
   * @param guestPages - the guest's pages.
   * @param pending - the pages still on the source at the switch, in page order.
   */
  constructor(
    readonly guestPages: number,
    pending: Uint32Array,
  ) {
    this.pages = pending;
    this.sent = new Uint8Array(guestPages);
    this.inList = new Uint8Array(guestPages);
    for (const page of pending) this.inList[page] = 1;
  }

  /** Pages the list holds: what was left to send when it was last built. */
  get listed(): number {
    return this.pages.length;
  }

  /** Pages of the list never sent since it was built. */
  get missing(): number {
    return this.pages.length - this.unique;
  }

  /**
   * Queues pages a vCPU on the destination faulted on (QEMU's
   * ram_save_queue_pages): they go ahead of the background's.
   *
   * @throws FrameError when the range is outside the guest.
   */
  request(first: number, count: number): void {
    if (first + count > this.guestPages) {
      throw new FrameError(
        "payload",
        `page-request frame: pages ${first} to ${first + count - 1} are outside the guest's ${this.guestPages} pages`,
      );
    }
    for (let page = first; page < first + count; page++) this.urgent.push(page);
  }

  /**
   * The next frame's pages: up to `maxRequested` requested pages (sent again
   * even if they went, as QEMU does: one may be in flight), then background
   * pages not yet sent, up to `framePages` in all. Marks them sent, each as
   * it is taken, so that a page requested in this frame is not also the
   * background's in it. A requested page outside the list (one the
   * destination already had) is sent but never counted in
   * {@link PostcopyBacklog.missing}.
   */
  take(maxRequested: number, framePages: number): number[] {
    const list: number[] = [];
    while (list.length < maxRequested && this.urgent.length > 0) {
      const page = this.urgent.shift() as number;
      list.push(page);
      this.markSent(page);
    }
    while (list.length < framePages && this.next < this.pages.length) {
      const page = this.pages[this.next++] as number;
      if (this.sent[page] === 0) {
        list.push(page);
        this.markSent(page);
      }
    }
    this.pushed += list.length;
    return list;
  }

  private markSent(page: number): void {
    if (this.sent[page] === 1) return;
    this.sent[page] = 1;
    if (this.inList[page] === 1) this.unique++;
  }

  /**
   * Rebuilds the list from the destination's received-page bitmap: every
   * page whose bit is clear is sent again, in page order; queued requests are
   * dropped (the destination sends again what its vCPUs still wait on).
   * Returns the pages left.
   *
   * @throws FrameError when the bitmap does not cover exactly this guest.
   */
  reload(pages: number, bits: Uint8Array): number {
    if (pages !== this.guestPages) {
      throw new FrameError(
        "payload",
        `recv-bitmap frame: the destination's bitmap covers ${pages} pages, this guest has ${this.guestPages}`,
      );
    }
    const left: number[] = [];
    for (let page = 0; page < pages; page++) {
      if ((((bits[page >> 3] ?? 0) >> (page & 7)) & 1) === 0) left.push(page);
    }
    this.pages = Uint32Array.from(left);
    this.next = 0;
    this.sent.fill(0);
    this.inList.fill(0);
    for (const page of left) this.inList[page] = 1;
    this.unique = 0;
    this.urgent.length = 0;
    return left.length;
  }
}
