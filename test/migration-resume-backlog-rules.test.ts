/*
 * What a post-copy source keeps across a broken link (docs/migration-live.md,
 * "Post-copy recovery"): the backlog of src/migration/live/postcopy-backlog.ts
 * (requested pages first, then the pushed list in page order, each page once;
 * rebuilt after a reconnect as every page the destination's bitmap lacks,
 * QEMU's ram_dirty_bitmap_reload in migration/ram.c) and the status machine
 * of src/migration/live/postcopy-recovery.ts (QEMU's MigrationStatus in
 * qapi/migration.json, postcopy_pause in migration/migration.c) with its
 * counters.
 */
import { describe, expect, it } from "vitest";
import { FrameError } from "../src/migration/live/frame.js";
import { PostcopyBacklog } from "../src/migration/live/postcopy-backlog.js";
import { PostcopyRecovery, type PostcopyStatus } from "../src/migration/live/postcopy-recovery.js";

/** A received-page bitmap as decoded from a recv-bitmap frame: bit p of byte p >> 3. */
function receivedBits(pages: number, held: (page: number) => boolean): Uint8Array {
  const bits = new Uint8Array(Math.ceil(pages / 8));
  for (let page = 0; page < pages; page++) {
    if (held(page)) bits[page >> 3] = (bits[page >> 3] ?? 0) | (1 << (page & 7));
  }
  return bits;
}

/** The FrameError `call` throws. */
function frameRefusal(call: () => unknown): FrameError {
  try {
    call();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("not refused");
}

describe("the backlog's push order", () => {
  // The background push goes through the pending list in page order, at most a frame's pages at a time.
  it("pushes the pending pages in order, a frame's worth at a time, and counts them", () => {
    const backlog = new PostcopyBacklog(16, Uint32Array.from([1, 4, 5, 9, 15]));
    expect(backlog.listed).toBe(5);
    expect(backlog.missing).toBe(5);
    expect(backlog.take(8, 2)).toEqual([1, 4]);
    expect(backlog.missing).toBe(3);
    expect(backlog.take(8, 2)).toEqual([5, 9]);
    expect(backlog.take(8, 2)).toEqual([15]);
    expect(backlog.take(8, 2)).toEqual([]);
    expect(backlog.missing).toBe(0);
    expect(backlog.listed).toBe(5);
    expect(backlog.pushed).toBe(5);
  });

  // QEMU's ram_save_queue_pages: requested pages go ahead of the background, in the order asked.
  it("sends requested pages first, in the order asked, at most maxRequested of them a frame", () => {
    const backlog = new PostcopyBacklog(64, Uint32Array.from([0, 1, 2, 3, 10, 40, 41, 42]));
    backlog.request(10, 1);
    backlog.request(41, 2);
    // Three requests queued, two allowed in this frame, frame of four.
    expect(backlog.take(2, 4)).toEqual([10, 41, 0, 1]);
    // The third request leads the next frame; the background resumes where it stopped.
    expect(backlog.take(2, 4)).toEqual([42, 2, 3, 40]);
    // Pages 10, 41 and 42 went on request: the background does not send them again.
    expect(backlog.take(2, 4)).toEqual([]);
    expect(backlog.missing).toBe(0);
    expect(backlog.pushed).toBe(8);
  });

  // Requests are capped by maxRequested alone (the source allows 256, a pages frame's most, in a
  // frame of 64 background pages); the background only fills a frame up to framePages in all.
  it("sends up to maxRequested requested pages even past framePages, then no background page", () => {
    const backlog = new PostcopyBacklog(32, Uint32Array.from([0, 1, 2]));
    backlog.request(20, 3);
    expect(backlog.take(8, 2)).toEqual([20, 21, 22]);
    expect(backlog.take(8, 2)).toEqual([0, 1]);
  });

  // Sent again when asked (one may still be in flight), but counted once in what is missing.
  it("sends a requested page again even if it went, counting repeats in pushed only", () => {
    const backlog = new PostcopyBacklog(8, Uint32Array.from([2, 3]));
    expect(backlog.take(4, 1)).toEqual([2]);
    backlog.request(2, 1);
    backlog.request(2, 1);
    expect(backlog.take(4, 4)).toEqual([2, 2, 3]);
    expect(backlog.pushed).toBe(4);
    expect(backlog.missing).toBe(0);
  });

  // A page requested before its turn counts as sent: what is missing falls with it.
  it("counts a listed page sent on request as no longer missing", () => {
    const backlog = new PostcopyBacklog(8, Uint32Array.from([1, 6, 7]));
    backlog.request(7, 1);
    expect(backlog.take(1, 1)).toEqual([7]);
    expect(backlog.missing).toBe(2);
    expect(backlog.take(0, 8)).toEqual([1, 6]);
    expect(backlog.missing).toBe(0);
  });

  // A page requested in the frame that also reaches its background turn goes once in that frame:
  // the background sends only pages not yet sent, the ones requested a moment before included.
  it("does not put a page requested in a frame into the same frame again as background", () => {
    const backlog = new PostcopyBacklog(8, Uint32Array.from([3, 5]));
    backlog.request(3, 1);
    expect(backlog.take(4, 4)).toEqual([3, 5]);
    expect(backlog.pushed).toBe(2);
    expect(backlog.missing).toBe(0);
  });

  // What is missing counts pages of the list only: a requested page the destination already had
  // (outside the list) is sent, but neither lowers the count nor takes it below zero.
  it("leaves pages outside the list out of what is missing", () => {
    const backlog = new PostcopyBacklog(64, Uint32Array.from([0]));
    backlog.request(10, 1);
    expect(backlog.take(1, 1)).toEqual([10]);
    expect(backlog.missing).toBe(1);
    expect(backlog.take(1, 1)).toEqual([0]);
    expect(backlog.missing).toBe(0);
    // After a rebuild, the list is the bitmap's: page 0 held, 1 not; page 0 asked again does not count.
    expect(
      backlog.reload(
        64,
        receivedBits(64, (page) => page !== 1),
      ),
    ).toBe(1);
    backlog.request(0, 1);
    expect(backlog.take(1, 4)).toEqual([0, 1]);
    expect(backlog.missing).toBe(0);
    expect(backlog.listed).toBe(1);
  });
});

describe("the backlog's page requests", () => {
  // A range ending at the guest's last page is taken; one page further is refused, naming the range and the guest.
  it("takes a range up to the guest's last page and refuses one past it", () => {
    const backlog = new PostcopyBacklog(100, Uint32Array.from([]));
    backlog.request(99, 1);
    backlog.request(90, 10);
    expect(backlog.take(64, 64)).toEqual([99, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99]);
    const past = frameRefusal(() => backlog.request(95, 6));
    expect(past.kind).toBe("payload");
    expect(past.message).toBe(
      "page-request frame: pages 95 to 100 are outside the guest's 100 pages",
    );
    expect(() => backlog.request(100, 1)).toThrow(
      "page-request frame: pages 100 to 100 are outside the guest's 100 pages",
    );
    // A refused range queues nothing.
    expect(backlog.take(64, 64)).toEqual([]);
  });
});

describe("the backlog rebuilt from the destination's bitmap", () => {
  // dirty = ~received: every clear bit is a page left, in page order, whatever the source sent.
  it("lists every page whose bit is clear, forgets what went and drops queued requests", () => {
    const backlog = new PostcopyBacklog(20, Uint32Array.from([3, 5, 8, 13]));
    expect(backlog.take(0, 3)).toEqual([3, 5, 8]);
    backlog.request(19, 1);
    // Held: everything but 5 (in flight when the link broke), 13 and 19.
    const bits = receivedBits(20, (page) => page !== 5 && page !== 13 && page !== 19);
    expect(backlog.reload(20, bits)).toBe(3);
    expect(backlog.listed).toBe(3);
    expect(backlog.missing).toBe(3);
    // Page 5 went before the break and goes again; the queued request for 19 is gone.
    expect(backlog.take(4, 2)).toEqual([5, 13]);
    expect(backlog.missing).toBe(1);
    expect(backlog.take(4, 2)).toEqual([19]);
    expect(backlog.take(4, 2)).toEqual([]);
    expect(backlog.pushed).toBe(6);
  });

  // The last page of a guest whose size is not a multiple of 8 is read from the last byte's high bits.
  it("reads the bits of the last, partial byte and stops at the guest's last page", () => {
    const backlog = new PostcopyBacklog(11, Uint32Array.from([0]));
    // Byte 1 holds pages 8 to 10; its bits past page 10 are set and must not list pages 11 to 15.
    const bits = Uint8Array.of(0xff, 0b1111_1011);
    expect(backlog.reload(11, bits)).toBe(1);
    expect(backlog.take(0, 16)).toEqual([10]);
  });

  // A bitmap shorter than the guest reads as pages not received (nothing held there).
  it("takes pages past a short bitmap as not received", () => {
    const backlog = new PostcopyBacklog(12, Uint32Array.from([]));
    expect(backlog.reload(12, Uint8Array.of(0xff))).toBe(4);
    expect(backlog.take(0, 16)).toEqual([8, 9, 10, 11]);
  });

  // A bitmap that holds every page leaves nothing.
  it("leaves nothing when the destination holds every page", () => {
    const backlog = new PostcopyBacklog(9, Uint32Array.from([1, 2]));
    expect(
      backlog.reload(
        9,
        receivedBits(9, () => true),
      ),
    ).toBe(0);
    expect(backlog.listed).toBe(0);
    expect(backlog.missing).toBe(0);
    expect(backlog.take(8, 8)).toEqual([]);
  });

  // QEMU's size check in ram_dirty_bitmap_reload: a bitmap of another guest is refused, naming both sizes.
  it("refuses a bitmap one page short or over, naming both sizes, and keeps its list", () => {
    const backlog = new PostcopyBacklog(64, Uint32Array.from([7]));
    for (const pages of [63, 65]) {
      const error = frameRefusal(() =>
        backlog.reload(
          pages,
          receivedBits(pages, () => false),
        ),
      );
      expect(error.kind).toBe("payload");
      expect(error.message).toBe(
        `recv-bitmap frame: the destination's bitmap covers ${pages} pages, this guest has 64`,
      );
    }
    expect(backlog.take(0, 8)).toEqual([7]);
  });
});

/** A recovery machine on a clock the test moves, recording every status it reports. */
function machine() {
  const clock = { now: 1000 };
  const seen: PostcopyStatus[] = [];
  const recovery = new PostcopyRecovery(
    () => clock.now,
    (status) => seen.push(status),
  );
  return { clock, seen, recovery };
}

describe("the post-copy recovery status machine", () => {
  // Starts active and reports it; each transition is reported.
  it("starts postcopy-active and reports each status it enters", () => {
    const { clock, seen, recovery } = machine();
    expect(recovery.current).toBe("postcopy-active");
    expect(seen).toEqual(["postcopy-active"]);
    clock.now = 1100;
    recovery.pause(0);
    expect(recovery.current).toBe("postcopy-paused");
    recovery.recover();
    expect(recovery.current).toBe("postcopy-recover");
    recovery.resume(4, 0, 0);
    expect(recovery.current).toBe("postcopy-active");
    recovery.end("failed", 0);
    expect(recovery.current).toBe("failed");
    expect(seen).toEqual([
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-active",
      "failed",
    ]);
  });

  // The status callback is optional: a machine without one runs the same transitions.
  it("runs without a status callback", () => {
    const recovery = new PostcopyRecovery(() => 5);
    recovery.pause(10);
    recovery.recover();
    recovery.resume(1, 2, 10);
    recovery.end("completed", 30);
    expect(recovery.current).toBe("completed");
    expect(recovery.counts()).toEqual({
      pauses: 1,
      pausedMs: 0,
      rerequestedPages: 2,
      pagesLeft: [1],
      bytesAfterResume: 20,
    });
  });

  // A pause only from postcopy-active or postcopy-recover, a recovery only while paused, a resume only while recovering.
  it("refuses each transition from a status it does not leave, naming both", () => {
    const { recovery } = machine();
    expect(() => recovery.recover()).toThrow("post-copy cannot recover from postcopy-active");
    expect(() => recovery.resume(0, 0, 0)).toThrow("post-copy cannot resume from postcopy-active");
    recovery.pause(0);
    expect(() => recovery.pause(0)).toThrow("post-copy cannot pause from postcopy-paused");
    expect(() => recovery.resume(0, 0, 0)).toThrow("post-copy cannot resume from postcopy-paused");
    recovery.recover();
    expect(() => recovery.recover()).toThrow("post-copy cannot recover from postcopy-recover");
    recovery.end("completed", 0);
    expect(() => recovery.pause(0)).toThrow("post-copy cannot pause from completed");
    expect(recovery.current).toBe("completed");
  });
});

describe("the post-copy recovery counters", () => {
  // A break while recovering is the same pause going on: counted once, timed from its start.
  it("counts one pause across a break during the recovery, timed from the first break", () => {
    const { clock, recovery } = machine();
    clock.now = 1200;
    recovery.pause(0);
    clock.now = 1250;
    recovery.recover();
    clock.now = 1300;
    recovery.pause(0);
    clock.now = 1450;
    // Still paused: the open pause counts up to now.
    expect(recovery.counts().pauses).toBe(1);
    expect(recovery.counts().pausedMs).toBe(250);
    recovery.recover();
    clock.now = 1500;
    recovery.resume(30, 4, 0);
    clock.now = 1900;
    // Resumed: the pause is closed at 300 ms and no longer grows.
    expect(recovery.counts().pausedMs).toBe(300);
  });

  // Two separate breaks: two pauses, their times added, pages left recorded at each resume in order.
  it("adds up separate pauses and records pages left at each resume", () => {
    const { clock, recovery } = machine();
    clock.now = 2000;
    recovery.pause(100);
    recovery.recover();
    clock.now = 2070;
    recovery.resume(50, 3, 100);
    clock.now = 3000;
    recovery.pause(400);
    recovery.recover();
    clock.now = 3020;
    recovery.resume(12, 5, 450);
    const counts = recovery.counts();
    expect(counts).toEqual({
      pauses: 2,
      pausedMs: 90,
      rerequestedPages: 8,
      pagesLeft: [50, 12],
      // 300 bytes went between the first resume (at 100) and the second break (at 400).
      bytesAfterResume: 300,
    });
    // The counts are a copy: later resumes do not change an earlier answer.
    recovery.pause(450);
    recovery.recover();
    recovery.resume(1, 0, 450);
    expect(counts.pagesLeft).toEqual([50, 12]);
    expect(recovery.counts().pagesLeft).toEqual([50, 12, 1]);
  });

  // Bytes after a resume run from the resume's transferred figure to the next break or post-copy's end.
  it("counts the bytes after each resume up to the next break and up to the end", () => {
    const { clock, recovery } = machine();
    // Bytes before any resume are not counted.
    recovery.pause(5000);
    expect(recovery.counts().bytesAfterResume).toBe(0);
    recovery.recover();
    recovery.resume(10, 0, 5100);
    clock.now = 1010;
    recovery.pause(6100);
    recovery.recover();
    recovery.resume(2, 0, 6200);
    recovery.end("completed", 9200);
    expect(recovery.counts().bytesAfterResume).toBe(1000 + 3000);
  });

  // Ending while paused closes the pause at the end; nothing is counted after it.
  it("closes an open pause when post-copy ends while paused", () => {
    const { clock, recovery } = machine();
    clock.now = 1100;
    recovery.pause(0);
    clock.now = 1500;
    recovery.end("failed", 800);
    clock.now = 9000;
    expect(recovery.counts()).toEqual({
      pauses: 1,
      pausedMs: 400,
      rerequestedPages: 0,
      pagesLeft: [],
      bytesAfterResume: 0,
    });
  });

  // A run that never broke counts nothing, however long it ran.
  it("counts nothing for a post-copy that never broke", () => {
    const { clock, recovery } = machine();
    clock.now = 50_000;
    recovery.end("completed", 123_456);
    expect(recovery.counts()).toEqual({
      pauses: 0,
      pausedMs: 0,
      rerequestedPages: 0,
      pagesLeft: [],
      bytesAfterResume: 0,
    });
  });
});
