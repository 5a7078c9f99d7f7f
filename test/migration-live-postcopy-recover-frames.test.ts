import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { FrameError, FrameType } from "../src/migration/live/frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "../src/migration/live/frame-codec.js";
import { Inbox } from "../src/migration/live/inbox.js";
import {
  decodePostcopyResume,
  decodeRecoverHello,
  decodeRecvBitmap,
  decodeResumeAck,
  encodePostcopyResume,
  encodeRecoverHello,
  encodeRecvBitmap,
  encodeResumeAck,
  MAX_RECV_BITMAP_PAGES,
  RECV_BITMAP_END_MARK,
  recvBitmapBytes,
} from "../src/migration/live/messages.js";
import { PostcopyBacklog } from "../src/migration/live/postcopy-backlog.js";
import { PostcopyRecovery, type PostcopyStatus } from "../src/migration/live/postcopy-recovery.js";
import { StreamKernel } from "../src/wasm/stream.js";

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A recv-bitmap payload for `pages` pages where `held` pages are set. */
function bitmap(pages: number, held: (page: number) => boolean): Uint8Array {
  const bytes = new Uint8Array(recvBitmapBytes(pages));
  encodeRecvBitmap(view(bytes), pages, held);
  return bytes;
}

describe("post-copy recovery frames", () => {
  it("a received-page bitmap is QEMU's layout: count, little-endian bits, end mark", () => {
    const bytes = bitmap(70, (page) => page === 0 || page === 9 || page === 69);
    // 70 pages: two 64-bit words between the 8-byte head and the end mark.
    expect(bytes.length).toBe(8 + 16 + 8);
    const v = view(bytes);
    expect(v.getUint32(0, true)).toBe(70);
    // Bit p is bit (p & 7) of byte p >> 3 after the head: page 0, page 9, page 69.
    expect(bytes[8]).toBe(0b1);
    expect(bytes[9]).toBe(0b10);
    expect(bytes[8 + (69 >> 3)]).toBe(1 << (69 & 7));
    expect(v.getBigUint64(bytes.length - 8, true)).toBe(0x0123456789abcdefn);
    const got = decodeRecvBitmap(v);
    expect(got.pages).toBe(70);
    const set: number[] = [];
    for (let page = 0; page < 70; page++) {
      if (((got.bits[page >> 3] ?? 0) >> (page & 7)) & 1) set.push(page);
    }
    expect(set).toEqual([0, 9, 69]);
  });

  it("refuses a bitmap with a wrong end mark, a wrong length, a bit past the guest or a bad count, saying what and where", () => {
    const good = bitmap(70, () => true);
    const badMark = good.slice();
    badMark[badMark.length - 1] = 0;
    expect(() => decodeRecvBitmap(view(badMark))).toThrow(
      /recv-bitmap frame: end mark at byte 24 is 0x23456789abcdef, not 0x123456789abcdef/,
    );
    // Cut short by a word: the length no longer matches the count.
    const short = good.slice(0, good.length - 8);
    expect(() => decodeRecvBitmap(view(short))).toThrow(
      /recv-bitmap frame: payload of 24 bytes, expected 32/,
    );
    // A bit for page 70 of a 70-page guest.
    const past = bitmap(70, () => false);
    past[8 + (70 >> 3)] = 1 << (70 & 7);
    expect(() => decodeRecvBitmap(view(past))).toThrow(
      /recv-bitmap frame: bit 70 is set past the guest's 70 pages/,
    );
    const zero = good.slice();
    view(zero).setUint32(0, 0, true);
    expect(() => decodeRecvBitmap(view(zero))).toThrow(/0 pages is not from 1 to 524288/);
    const huge = good.slice();
    view(huge).setUint32(0, MAX_RECV_BITMAP_PAGES + 1, true);
    expect(() => decodeRecvBitmap(view(huge))).toThrow(/524289 pages is not from 1 to 524288/);
    const reserved = good.slice();
    view(reserved).setUint32(4, 1, true);
    expect(() => decodeRecvBitmap(view(reserved))).toThrow(/reserved field is not zero/);
  });

  it("an oversized bitmap frame is refused by the source's reader before its payload is read", () => {
    const layout = new MemoryLayout();
    const kernel = StreamKernel.on(layout.memory, layout.allocate("scratch", 64));
    const max = recvBitmapBytes(MAX_RECV_BITMAP_PAGES);
    const big = max + 8;
    const send = layout.allocate("send", stagingBytes(big));
    const receive = layout.allocate("receive", stagingBytes(max));
    const writer = new FrameWriter(layout.memory, kernel, send, big);
    writer.payload(big);
    const frame = writer.seal(FrameType.recvBitmap, big);
    const inbox = new Inbox();
    const reader = new FrameReader(layout.memory, kernel, receive, (f) => inbox.take(f), max);
    expect(() => reader.push(frame.subarray(0, 24))).toThrow(FrameError);
  });

  it("the source's inbox decodes a bitmap and a resume ack, and refuses a bad ack", () => {
    const layout = new MemoryLayout();
    const kernel = StreamKernel.on(layout.memory, layout.allocate("scratch", 64));
    const max = recvBitmapBytes(MAX_RECV_BITMAP_PAGES);
    const send = layout.allocate("send", stagingBytes(max));
    const receive = layout.allocate("receive", stagingBytes(max));
    const writer = new FrameWriter(layout.memory, kernel, send, max);
    const inbox = new Inbox();
    const reader = new FrameReader(layout.memory, kernel, receive, (f) => inbox.take(f), max);
    const pages = 2 ** 19;
    const bits = writer.payload(recvBitmapBytes(pages));
    reader.push(
      writer.seal(
        FrameType.recvBitmap,
        encodeRecvBitmap(bits, pages, (page) => page % 3 === 0),
      ),
    );
    reader.push(writer.seal(FrameType.resumeAck, encodeResumeAck(writer.payload(8), 7)));
    return (async () => {
      const got = await inbox.next("recvBitmap", 1000, "send its bitmap");
      expect(got.pages).toBe(pages);
      expect(got.bits[0]).toBe(0b01001001);
      const ack = await inbox.next("resumeAck", 1000, "acknowledge");
      expect(ack.rerequested).toBe(7);
      const wrong = new Uint8Array(8);
      view(wrong).setUint32(0, 2, true);
      expect(() => decodeResumeAck(view(wrong))).toThrow(/resume-ack frame: value 2, not 1/);
    })();
  });

  it("fuzz: every recovery decoder takes any bytes and throws only FrameError", () => {
    const decoders = [
      (v: DataView) => decodeRecoverHello(v),
      (v: DataView) => decodeRecvBitmap(v),
      (v: DataView) => decodePostcopyResume(v),
      (v: DataView) => decodeResumeAck(v),
    ];
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.nat(decoders.length - 1),
        (bytes, which) => {
          try {
            decoders[which]?.(view(bytes));
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("fuzz: a bitmap with one bit flipped is refused, or decodes to bits within its count", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 600 }),
        fc.nat(2 ** 16),
        fc.integer({ min: 0, max: 2 ** 31 }),
        (pages, flip, seed) => {
          const bytes = bitmap(pages, (page) => ((page * 2654435761 + seed) >>> 7) % 2 === 0);
          const at = flip % bytes.length;
          bytes[at] = (bytes[at] ?? 0) ^ (1 << (flip % 8));
          let got: { pages: number; bits: Uint8Array } | undefined;
          try {
            got = decodeRecvBitmap(view(bytes));
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
            return;
          }
          // The end mark and the reserved field are never flipped unnoticed.
          expect(at < 4 || (at >= 8 && at < bytes.length - 8)).toBe(true);
          // A count that decodes implies this very length, and no bit lies past it.
          expect(recvBitmapBytes(got.pages)).toBe(bytes.length);
          for (let page = got.pages; page < got.bits.length * 8; page++) {
            expect(((got.bits[page >> 3] ?? 0) >> (page & 7)) & 1).toBe(0);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("round-trips the recover-hello, postcopy-resume and resume-ack", () => {
    const hello = new Uint8Array(8);
    encodeRecoverHello(view(hello), { sessionId: 0xdeadbeef, guestPages: 2048 });
    expect(decodeRecoverHello(view(hello))).toEqual({ sessionId: 0xdeadbeef, guestPages: 2048 });
    const resume = new Uint8Array(8);
    encodePostcopyResume(view(resume), 1234);
    expect(decodePostcopyResume(view(resume))).toBe(1234);
    view(resume).setUint32(4, 9, true);
    expect(() => decodePostcopyResume(view(resume))).toThrow(/reserved field is not zero/);
    expect(RECV_BITMAP_END_MARK).toBe(0x0123456789abcdefn);
  });
});

describe("the post-copy backlog", () => {
  it("rebuilds what is left as every page the destination has not received (dirty = ~received)", () => {
    const backlog = new PostcopyBacklog(100, Uint32Array.from([3, 10, 11, 50, 99]));
    // Two frames went: pages 3 and 10, then a request for 50 and page 11.
    expect(backlog.take(0, 2)).toEqual([3, 10]);
    backlog.request(50, 1);
    expect(backlog.take(256, 2)).toEqual([50, 11]);
    backlog.request(7, 1);
    // The link broke: page 11 never landed; the destination holds everything else but 11 and 99.
    const bits = decodeRecvBitmap(view(bitmap(100, (page) => page !== 11 && page !== 99))).bits;
    expect(backlog.reload(100, bits)).toBe(2);
    // The queued request is dropped: the destination asks again after the resume.
    expect(backlog.take(256, 64)).toEqual([11, 99]);
    expect(backlog.take(256, 64)).toEqual([]);
    expect(backlog.missing).toBe(0);
  });

  it("property: after a reload the pushes are exactly the pages not received, in page order, each once", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3000 }),
        fc.uint8Array({ minLength: 375, maxLength: 375 }),
        fc.integer({ min: 1, max: 64 }),
        (pages, noise, framePages) => {
          // Which pages arrived: any pattern, drawn from the noise bytes.
          const held = (page: number) => (((noise[page % 375] ?? 0) >> (page % 8)) & 1) === 1;
          const backlog = new PostcopyBacklog(
            pages,
            Uint32Array.from({ length: pages }, (_, i) => i),
          );
          backlog.take(0, Math.min(pages, 5));
          const { bits } = decodeRecvBitmap(view(bitmap(pages, held)));
          const oracle = Array.from({ length: pages }, (_, i) => i).filter((page) => !held(page));
          expect(backlog.reload(pages, bits)).toBe(oracle.length);
          const pushed: number[] = [];
          for (
            let list = backlog.take(0, framePages);
            list.length > 0;
            list = backlog.take(0, framePages)
          ) {
            pushed.push(...list);
          }
          expect(pushed).toEqual(oracle);
          expect(backlog.missing).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses a bitmap of another size, saying both sizes", () => {
    const backlog = new PostcopyBacklog(100, Uint32Array.from([1]));
    const { pages, bits } = decodeRecvBitmap(view(bitmap(64, () => true)));
    expect(() => backlog.reload(pages, bits)).toThrow(
      /recv-bitmap frame: the destination's bitmap covers 64 pages, this guest has 100/,
    );
  });
});

describe("the post-copy recovery status machine", () => {
  it("goes active, paused, recover, active, completed and counts the pause", () => {
    let now = 0;
    const seen: PostcopyStatus[] = [];
    const recovery = new PostcopyRecovery(
      () => now,
      (status) => seen.push(status),
    );
    now = 100;
    recovery.pause(5000);
    now = 150;
    recovery.recover();
    // A second break during the recovery: paused again, the same pause.
    recovery.pause(5000);
    now = 300;
    recovery.recover();
    now = 340;
    recovery.resume(12, 3, 5100);
    now = 400;
    recovery.end("completed", 9100);
    expect(seen).toEqual([
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-active",
      "completed",
    ]);
    expect(recovery.counts()).toEqual({
      pauses: 1,
      pausedMs: 240,
      rerequestedPages: 3,
      pagesLeft: [12],
      bytesAfterResume: 4000,
    });
    expect(() => recovery.resume(1, 0, 0)).toThrow(/cannot resume from completed/);
  });
});
