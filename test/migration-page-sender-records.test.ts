import { afterEach, describe, expect, it, vi } from "vitest";
import { FrameHeader, FrameType } from "../src/migration/live/frame.js";
import { MAX_RECORDS_PAYLOAD } from "../src/migration/live/messages.js";
import { PageSender, type PassSent } from "../src/migration/live/page-sender.js";
import { RecordFlag } from "../src/wasm/page.js";
import {
  framePayload,
  heldLink,
  passUntil,
  promptLink,
  SENDER_PAGE,
  senderSource,
} from "./support/page-sender-rig.js";

/*
 * The live source's pass sender (src/migration/live/page-sender.ts): what
 * its records frames carry when a pass needs several of them, how it counts
 * pages across passes, and what the end of a pass waits for.
 */

/**
 * The records of a frame's payload, decoded as QEMU's RAM stream has them
 * (migration/ram.c: a be64 of the page address ORed with the flag, then
 * RAM_SAVE_FLAG_ZERO's fill byte or RAM_SAVE_FLAG_PAGE's page bytes).
 */
function records(payload: Buffer): { page: number; flag: number; body: Buffer }[] {
  const out: { page: number; flag: number; body: Buffer }[] = [];
  let at = 0;
  while (at < payload.length) {
    const header = payload.readBigUInt64BE(at);
    const flag = Number(header & 0xffn);
    const page = Number(header >> 12n);
    at += 8;
    const size = flag === RecordFlag.zero ? 1 : flag === RecordFlag.page ? SENDER_PAGE : -1;
    if (size < 0) throw new Error(`unexpected record flag ${flag} at ${at - 8}`);
    out.push({ page, flag, body: payload.subarray(at, at + size) });
    at += size;
  }
  return out;
}

/** Lets pending promise callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("records frames over a long list of pending pages", () => {
  // A harvested list holds more pages than one records frame (at most
  // MAX_RECORDS_PAYLOAD bytes) carries: the next frame goes on from where
  // the last one stopped in the same list, so every pending page is sent
  // exactly once, each as a PAGE record with its own bytes (QEMU's
  // save_normal_page) or a ZERO record (save_zero_page).
  it("sends every page once with its bytes when the list spans several frames", async () => {
    const pages = 600;
    const r = senderSource(pages);
    const isZero = (page: number) => page % 50 === 7;
    for (let page = 0; page < pages; page++) if (isZero(page)) r.pageBytes(page).fill(0);
    r.source.pending.markAll();
    const a = promptLink();
    const sender = new PageSender(r.source, { zeroPages: true });
    const sent = await sender.sendPass([r.lane(a.link)], passUntil());
    expect(sent).toEqual({ pages, cut: false });
    // Non-zero pages alone need more than one frame.
    expect((pages - 12) * (8 + SENDER_PAGE)).toBeGreaterThan(MAX_RECORDS_PAYLOAD);
    expect(a.frames.length).toBeGreaterThan(1);
    const seen = new Map<number, number>();
    for (const frame of a.frames) {
      expect(frame.readUInt8(FrameHeader.type)).toBe(FrameType.records);
      for (const record of records(framePayload(frame))) {
        seen.set(record.page, (seen.get(record.page) ?? 0) + 1);
        if (isZero(record.page)) {
          expect(record.flag, `page ${record.page}`).toBe(RecordFlag.zero);
          expect(record.body).toEqual(Buffer.from([0]));
        } else {
          expect(record.flag, `page ${record.page}`).toBe(RecordFlag.page);
          expect(record.body.equals(r.pageBytes(record.page)), `page ${record.page}`).toBe(true);
        }
      }
    }
    expect(seen.size).toBe(pages);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(sender.counts.zero).toBe(12);
    expect(sender.counts.normal).toBe(pages - 12);
  });
});

describe("pages a pass reports as sent", () => {
  // The counts are the attempt's (they grow over passes); a pass reports
  // only the pages its own frames carried: normal, zero and XBZRLE pages
  // alike (QEMU counts each as a page transferred, ram_save_target_page).
  it("counts zero pages of an earlier pass apart from this pass's pages", async () => {
    const r = senderSource(256);
    for (const page of [2, 3, 5]) r.pageBytes(page).fill(0);
    const sender = new PageSender(r.source, { zeroPages: true });
    const lane = r.lane(promptLink().link);
    r.mark([1, 2, 3, 4, 5]);
    expect(await sender.sendPass([lane], passUntil())).toEqual({ pages: 5, cut: false });
    expect(sender.counts.zero).toBe(3);
    r.mark([8, 9]);
    expect(await sender.sendPass([lane], passUntil())).toEqual({ pages: 2, cut: false });
    expect(sender.counts.normal).toBe(4);
  });

  // Pages changed a little since the cache saw them go as XBZRLE deltas
  // (migration/ram.c save_xbzrle_page): each counts as a page sent, in the
  // pass that sent it and not again in the next.
  it("counts XBZRLE pages in the pass that sent them, and only there", async () => {
    const r = senderSource(256);
    const pages = [3, 4, 6, 9];
    const sender = new PageSender(r.source, { zeroPages: false, xbzrle: r.cache(16) });
    const lane = r.lane(promptLink().link);
    const touch = (by: number) => {
      for (const page of pages) r.pageBytes(page)[100] = by;
    };
    r.mark(pages);
    expect(await sender.sendPass([lane], passUntil(Number.POSITIVE_INFINITY, true))).toEqual({
      pages: 4,
      cut: false,
    });
    expect(sender.counts.xbzrlePages).toBe(0);
    for (const by of [1, 2]) {
      touch(by);
      r.mark(pages);
      expect(await sender.sendPass([lane], passUntil(Number.POSITIVE_INFINITY, true))).toEqual({
        pages: 4,
        cut: false,
      });
    }
    expect(sender.counts.xbzrlePages).toBe(8);
    expect(sender.counts.normal).toBe(4);
  });
});

describe("the end of a pass over several lanes", () => {
  /** Two lanes; the first carries the only frame (pages 7 and 9) and holds it. */
  function twoLanes() {
    const r = senderSource(256);
    r.mark([7, 9]);
    const a = heldLink();
    const b = heldLink();
    const lanes = [r.lane(a.link), r.lane(b.link)];
    return { r, a, b, lanes, sender: new PageSender(r.source, { zeroPages: false }) };
  }

  // The pass is sent once every lane's last frame has left, not only the
  // lane whose turn found nothing left to send (QEMU waits for each multifd
  // channel's packets, multifd_send_sync_main).
  it("waits for the other lane's last frame before it is sent", async () => {
    const t = twoLanes();
    let done: PassSent | undefined;
    const pass = t.sender.sendPass(t.lanes, passUntil()).then((sent) => {
      done = sent;
    });
    for (let i = 0; i < 5; i++) await settle();
    expect(t.a.frames.length).toBe(1);
    expect(t.b.frames.length).toBe(0);
    expect(done).toBeUndefined();
    t.a.release();
    await pass;
    expect(done).toEqual({ pages: 2, cut: false });
  });

  // A last frame still held at the deadline leaves the pass cut, with that
  // send handed back as in flight: it settles only once the frame has left.
  it("is cut at the deadline with the held frame in flight", async () => {
    const t = twoLanes();
    const sent = await t.sender.sendPass(t.lanes, passUntil(15));
    expect(sent.cut).toBe(true);
    expect(sent.pages).toBe(2);
    const inflight = sent.inflight;
    if (!inflight) throw new Error("no send in flight");
    let left = false;
    const leaving = inflight.then(() => {
      left = true;
    });
    for (let i = 0; i < 5; i++) await settle();
    expect(left).toBe(false);
    t.a.release();
    await leaving;
    expect(left).toBe(true);
  });
});

describe("a pass's deadline", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  // A pass that ends before its deadline disarms it: no timer is left to
  // keep the process alive until untilMs.
  it("leaves no timer armed once the pass is over", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const r = senderSource(256);
    r.mark([1, 2]);
    const sender = new PageSender(r.source, { zeroPages: false });
    const sent = await sender.sendPass([r.lane(promptLink().link)], passUntil(60_000));
    expect(sent).toEqual({ pages: 2, cut: false });
    expect(vi.getTimerCount()).toBe(0);
  });
});
