import { describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  FRAME_DIGEST_BYTES,
  FRAME_HEADER_BYTES,
  FrameHeader,
  FrameType,
} from "../src/migration/live/frame.js";
import { FrameWriter, stagingBytes } from "../src/migration/live/frame-codec.js";
import { Inbox } from "../src/migration/live/inbox.js";
import { type Link, LinkError } from "../src/migration/live/link.js";
import { MAX_PAGES_PER_FRAME, MAX_RECORDS_PAYLOAD } from "../src/migration/live/messages.js";
import {
  idle,
  type Lane,
  PageSender,
  type PassOptions,
  RECORD_LIST_PAGES,
} from "../src/migration/live/page-sender.js";
import { MigrationBitmap } from "../src/migration/migration-bitmap.js";
import {
  ENCODE_STATS_BYTES,
  PAGE_SCRATCH_BYTES,
  PageKernel,
  RECORD_HEADER_BYTES,
  ZERO_RECORD_BYTES,
} from "../src/wasm/page.js";
import { StreamKernel } from "../src/wasm/stream.js";
import { xorshiftBytes } from "./support/xorshift.js";

/*
 * The live source's pass sender (src/migration/live/page-sender.ts) driven
 * on this thread over scripted lanes: each lane's link keeps the frames it
 * is handed, so what a pass put on the wire is read back and checked
 * against the guest's RAM. QEMU's multifd hands each channel the next
 * packet in turn (migration/multifd.c, multifd_send); a pass is over when
 * no page is pending and every lane's last frame has left.
 */

const PAGE = 4096;
const MiB = 1024 ** 2;
/** Pages of the 1 MiB guest. */
const PAGES = MiB / PAGE;

/** A link that keeps a copy of each frame and lets it leave at once (or never, when stalled). */
function scriptedLink(opts: { stalled?: boolean; fails?: Error } = {}) {
  const frames: Buffer[] = [];
  const link = {
    send(wire: Buffer, sent?: () => void): Promise<void> {
      frames.push(Buffer.from(wire));
      if (opts.fails) return Promise.reject(opts.fails);
      if (opts.stalled) return new Promise<void>(() => {});
      sent?.();
      return Promise.resolve();
    },
  } as unknown as Link;
  return { link, frames };
}

/** A guest with every page pending, its RAM filled (the pages listed in `zero` left all zeros). */
function rig(zero: (page: number) => boolean = () => false) {
  const layout = new MemoryLayout();
  const guest = new Guest(layout, {
    bytes: MiB,
    content: true,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 5,
    doubleBuffered: true,
  });
  const ramRegion = guest.ram;
  if (!ramRegion) throw new Error("no guest RAM");
  const ram = ramRegion.bytes(layout.memory);
  ram.set(xorshiftBytes(9, ram.length));
  for (let page = 0; page < PAGES; page++) {
    if (zero(page)) ram.fill(0, page * PAGE, (page + 1) * PAGE);
  }
  const pending = new MigrationBitmap(guest);
  const stream = StreamKernel.on(layout.memory, layout.allocate("stream-scratch", 64));
  const source = {
    pending,
    cursor: layout.allocate("cursor", 8),
    ram: { region: ramRegion, pageShift: 12 },
    stream,
    page: PageKernel.on(layout.memory, layout.allocate("page-scratch", PAGE_SCRATCH_BYTES)),
    list: layout.allocate("record-list", RECORD_LIST_PAGES * 4),
    stats: layout.allocate("encode-stats", ENCODE_STATS_BYTES),
  };
  let lanes = 0;
  /** A lane with two staging slots over a scripted link. */
  const lane = (link: Link, name?: string): Lane => {
    const slots = [0, 1].map((i) =>
      layout.allocate(`lane-${lanes}-slot-${i}`, stagingBytes(MAX_RECORDS_PAYLOAD), 4096),
    );
    lanes++;
    const writer = new FrameWriter(layout.memory, stream, slots, MAX_RECORDS_PAYLOAD);
    return { ...(name ? { name } : {}), link, writer, frames: 0, bytes: 0 };
  };
  /** Marks just these pages pending. */
  const markPages = (pages: readonly number[]) => {
    new Uint32Array(layout.memory.buffer, source.list.offset, pages.length).set(pages);
    pending.putBack(source.list, 0, pages.length);
  };
  /** An XBZRLE cache of `slots` pages and a page of scratch, empty. */
  const xbzrleCache = (slots: number) => ({
    cache: {
      slots,
      tags: layout.allocate("xbzrle-tags", slots * 4),
      data: layout.allocate("xbzrle-data", slots * PAGE, 4096),
    },
    scratch: layout.allocate("xbzrle-scratch", PAGE),
  });
  return { pending, source, ram, lane, markPages, xbzrleCache };
}

/** Pass limits with no deadline, and an inbox nothing has failed. */
function unlimited(over: Partial<PassOptions> = {}): PassOptions {
  return {
    inbox: new Inbox(),
    clock: { kind: "virtual", now: () => 0 },
    untilMs: Number.POSITIVE_INFINITY,
    xbzrle: false,
    ...over,
  };
}

/** A frame's type, payload length, and payload. */
function parse(frame: Buffer) {
  const header = new DataView(frame.buffer, frame.byteOffset, FRAME_HEADER_BYTES);
  const length = header.getUint32(FrameHeader.length, true);
  expect(frame.length).toBe(FRAME_HEADER_BYTES + length + FRAME_DIGEST_BYTES);
  return {
    type: header.getUint8(FrameHeader.type),
    length,
    payload: frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length),
  };
}

/** The page numbers a pages frame lists. */
function pagesOf(frame: Buffer): number[] {
  const { payload } = parse(frame);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const count = view.getUint32(0, true);
  return Array.from({ length: count }, (_, i) => view.getUint32(8 + i * 4, true));
}

describe("plain pages frames", () => {
  // With no encoding on, a pass sends every pending page once, in pages
  // frames of at most MAX_PAGES_PER_FRAME: a count, a reserved word, the
  // page numbers, then the pages themselves (docs/migration.md, live
  // migration's wire format). Counters: normal pages and payload bytes.
  it("sends each pending page once with its RAM bytes, and counts what it sent", async () => {
    const r = rig();
    expect(r.pending.markAll()).toBe(PAGES);
    const sender = new PageSender(r.source, { zeroPages: false });
    expect(sender.records).toBe(false);
    const a = scriptedLink();
    const lane = r.lane(a.link);
    let progress = 0;
    const sent = await sender.sendPass([lane], unlimited({ onProgress: () => progress++ }));
    expect(sent).toEqual({ pages: PAGES, cut: false });
    const seen = new Set<number>();
    let payloadBytes = 0;
    for (const frame of a.frames) {
      const { type, length, payload } = parse(frame);
      expect(type).toBe(FrameType.pages);
      const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
      const count = view.getUint32(0, true);
      expect(count).toBeGreaterThan(0);
      expect(count).toBeLessThanOrEqual(MAX_PAGES_PER_FRAME);
      expect(view.getUint32(4, true)).toBe(0);
      expect(length).toBe(8 + count * (4 + PAGE));
      payloadBytes += length;
      for (let i = 0; i < count; i++) {
        const page = view.getUint32(8 + i * 4, true);
        expect(seen.has(page), `page ${page} sent twice`).toBe(false);
        seen.add(page);
        const at = 8 + count * 4 + i * PAGE;
        expect(
          payload.subarray(at, at + PAGE).equals(r.ram.subarray(page * PAGE, (page + 1) * PAGE)),
        ).toBe(true);
      }
    }
    expect(seen.size).toBe(PAGES);
    expect(a.frames.length).toBeGreaterThanOrEqual(Math.ceil(PAGES / MAX_PAGES_PER_FRAME));
    expect(lane.frames).toBe(a.frames.length);
    expect(lane.bytes).toBe(payloadBytes);
    expect(progress).toBe(a.frames.length);
    expect(sender.counts.normal).toBe(PAGES);
    expect(sender.counts.zero).toBe(0);
    expect(sender.counts.bytes).toBe(payloadBytes);
  });

  // Frames go to the lanes in turn, as QEMU's multifd_send picks the next
  // channel: the pass harvests pages in ascending order, so taking the
  // lanes' frames alternately (first lane first) gives ascending pages.
  it("deals frames to the lanes in turn, the first lane first", async () => {
    const r = rig();
    r.pending.markAll();
    const sender = new PageSender(r.source, { zeroPages: false });
    const a = scriptedLink();
    const b = scriptedLink();
    const lanes = [r.lane(a.link), r.lane(b.link)];
    const sent = await sender.sendPass(lanes, unlimited());
    expect(sent.pages).toBe(PAGES);
    expect(b.frames.length).toBeGreaterThan(0);
    expect(a.frames.length - b.frames.length).toBeGreaterThanOrEqual(0);
    expect(a.frames.length - b.frames.length).toBeLessThanOrEqual(1);
    expect(lanes.map((l) => l.frames)).toEqual([a.frames.length, b.frames.length]);
    const order: number[] = [];
    for (let i = 0; i < a.frames.length; i++) {
      for (const frame of [a.frames[i], b.frames[i]]) {
        if (frame) order.push(...pagesOf(frame));
      }
    }
    expect(order).toEqual(Array.from({ length: PAGES }, (_, i) => i));
  });

  // A second pass with nothing pending sends nothing and is not cut.
  it("a pass over no pending page sends nothing", async () => {
    const r = rig();
    const sender = new PageSender(r.source, { zeroPages: false });
    const a = scriptedLink();
    expect(await sender.sendPass([r.lane(a.link)], unlimited())).toEqual({ pages: 0, cut: false });
    expect(a.frames).toEqual([]);
    expect(sender.counts.bytes).toBe(0);
  });
});

describe("records frames", () => {
  // With zero pages on, pages go as page-stream records: a zero page as a
  // ZERO record (header and one byte, QEMU's RAM_SAVE_FLAG_ZERO in
  // migration/ram.c save_zero_page), any other as a whole page record.
  it("sends zero pages as ZERO records and counts them apart", async () => {
    const isZero = (page: number) => page % 4 === 1;
    const r = rig(isZero);
    r.pending.markAll();
    const sender = new PageSender(r.source, { zeroPages: true });
    expect(sender.records).toBe(true);
    const a = scriptedLink();
    const lane = r.lane(a.link);
    const sent = await sender.sendPass([lane], unlimited());
    expect(sent).toEqual({ pages: PAGES, cut: false });
    const zeros = PAGES / 4;
    expect(sender.counts.zero).toBe(zeros);
    expect(sender.counts.normal).toBe(PAGES - zeros);
    const expected = zeros * ZERO_RECORD_BYTES + (PAGES - zeros) * (PAGE + RECORD_HEADER_BYTES);
    expect(sender.counts.bytes).toBe(expected);
    let total = 0;
    for (const frame of a.frames) {
      const { type, length } = parse(frame);
      expect(type).toBe(FrameType.records);
      total += length;
    }
    expect(total).toBe(expected);
    expect(lane.bytes).toBe(expected);
    expect(lane.frames).toBe(a.frames.length);
  });
});

describe("XBZRLE passes", () => {
  // XBZRLE is used only in the passes the caller says (QEMU: not the first,
  // whose pages the cache has never seen; migration/ram.c save_xbzrle_page).
  // A page cached and unchanged since sends nothing (a frame of only those
  // is not sent) and is not counted as sent.
  it("sends nothing for cached unchanged pages, and whole pages when the pass does not use XBZRLE", async () => {
    const r = rig();
    const pages = [3, 4, 5, 40];
    const sender = new PageSender(r.source, { zeroPages: false, xbzrle: r.xbzrleCache(64) });
    expect(sender.records).toBe(true);
    const a = scriptedLink();
    const lane = r.lane(a.link);
    // Without XBZRLE: whole pages, and the cache is not consulted.
    r.markPages(pages);
    expect(await sender.sendPass([lane], unlimited())).toEqual({ pages: 4, cut: false });
    expect(sender.counts.normal).toBe(4);
    expect(sender.counts.xbzrlePages).toBe(0);
    expect(sender.counts.bytes).toBe(4 * (PAGE + RECORD_HEADER_BYTES));
    // With XBZRLE, first sight: pages go whole and enter the cache.
    r.markPages(pages);
    expect(await sender.sendPass([lane], unlimited({ xbzrle: true }))).toEqual({
      pages: 4,
      cut: false,
    });
    expect(sender.counts.normal).toBe(8);
    const framesBefore = a.frames.length;
    const bytesBefore = sender.counts.bytes;
    // Unchanged since: nothing on the wire, and (as QEMU's save_xbzrle_page
    // returning 0) not counted as pages sent.
    r.markPages(pages);
    expect(await sender.sendPass([lane], unlimited({ xbzrle: true }))).toEqual({
      pages: 0,
      cut: false,
    });
    expect(a.frames.length).toBe(framesBefore);
    expect(lane.frames).toBe(framesBefore);
    expect(sender.counts.bytes).toBe(bytesBefore);
    expect(sender.counts.normal).toBe(8);
  });
});

describe("what stops a pass", () => {
  // A pass needs somewhere to send.
  it("refuses a pass with no lane", async () => {
    const r = rig();
    const sender = new PageSender(r.source, { zeroPages: false });
    await expect(sender.sendPass([], unlimited())).rejects.toThrow(
      "a pass needs at least one lane",
    );
  });

  // A failure the destination reported (an error frame) ends the pass with
  // that error before another frame goes out.
  it("throws the inbox's failure before sending", async () => {
    const r = rig();
    r.pending.markAll();
    const inbox = new Inbox();
    const failure = new Error("destination: out of memory");
    inbox.fail(failure);
    const a = scriptedLink();
    const sender = new PageSender(r.source, { zeroPages: false });
    await expect(sender.sendPass([r.lane(a.link)], unlimited({ inbox }))).rejects.toBe(failure);
    expect(a.frames).toEqual([]);
  });

  // Once the clock reaches untilMs the pass stops and says it was cut
  // (while the guest runs, a pass must not overrun its time).
  it("is cut at once when the clock has reached untilMs", async () => {
    const r = rig();
    r.pending.markAll();
    const a = scriptedLink();
    const sender = new PageSender(r.source, { zeroPages: false });
    const sent = await sender.sendPass(
      [r.lane(a.link)],
      unlimited({ clock: { kind: "virtual", now: () => 50 }, untilMs: 50 }),
    );
    expect(sent.pages).toBe(0);
    expect(sent.cut).toBe(true);
    await expect(sent.inflight).resolves.toBeUndefined();
    expect(a.frames).toEqual([]);
  });

  // A stalled link does not hold the pass past its deadline: the pages
  // already framed count, and the sends still under way are handed back.
  it("is cut at the deadline when a lane's link stalls", async () => {
    const r = rig();
    r.pending.markAll();
    const a = scriptedLink({ stalled: true });
    const lane = r.lane(a.link);
    const sender = new PageSender(r.source, { zeroPages: false });
    const sent = await sender.sendPass([lane], unlimited({ untilMs: 20 }));
    expect(sent.cut).toBe(true);
    // The lane waits for its last send before the next frame: one frame went out.
    expect(a.frames.length).toBe(1);
    const only = a.frames[0];
    if (!only) throw new Error("no frame sent");
    expect(sent.pages).toBe(pagesOf(only).length);
    expect(sent.pages).toBeGreaterThan(0);
    expect(lane.frames).toBe(1);
    expect(sent.inflight).toBeInstanceOf(Promise);
  });
});

describe("the end of a pass", () => {
  // The pass is sent only once every lane's last frame has left: a last
  // frame stuck on a stalled link past the deadline leaves the pass cut,
  // its pages counted and the send handed back as still in flight.
  it("is cut when the last frame has not left by the deadline", async () => {
    const r = rig();
    r.markPages([7, 9]);
    const a = scriptedLink({ stalled: true });
    const sender = new PageSender(r.source, { zeroPages: false });
    const sent = await sender.sendPass([r.lane(a.link)], unlimited({ untilMs: 20 }));
    expect(sent.cut).toBe(true);
    expect(sent.pages).toBe(2);
    expect(a.frames.map(pagesOf)).toEqual([[7, 9]]);
    expect(sent.inflight).toBeInstanceOf(Promise);
  });

  // Without a deadline the pass waits for its frames and reports no cut.
  it("waits for the last frame to leave without a deadline", async () => {
    const r = rig();
    r.markPages([7, 9]);
    const a = scriptedLink();
    const sender = new PageSender(r.source, { zeroPages: false });
    const sent = await sender.sendPass([r.lane(a.link)], unlimited());
    expect(sent).toEqual({ pages: 2, cut: false });
    expect(a.frames.map(pagesOf)).toEqual([[7, 9]]);
  });
});

describe("a lane's failure names the lane", () => {
  // A multifd channel's link error says which channel failed; the main
  // connection (no name) reports the error as it is.
  it("prefixes a link error with the lane's name", async () => {
    const r = rig();
    const lane = r.lane(scriptedLink().link, "multifd channel 2");
    lane.sending = Promise.reject(new LinkError("the connection closed"));
    const error = await idle(lane).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LinkError);
    expect((error as Error).message).toBe("multifd channel 2: the connection closed");
  });

  it("passes the error on unchanged without a name, or when it is not a link error", async () => {
    const r = rig();
    const main = r.lane(scriptedLink().link);
    const closed = new LinkError("the connection closed");
    main.sending = Promise.reject(closed);
    await expect(idle(main)).rejects.toBe(closed);
    const named = r.lane(scriptedLink().link, "multifd channel 1");
    const other = new Error("boom");
    named.sending = Promise.reject(other);
    await expect(idle(named)).rejects.toBe(other);
  });

  // A pass awaits each lane before reusing it: a send that failed surfaces
  // there, named.
  it("a pass ends with the named failure of a lane's send", async () => {
    const r = rig();
    r.pending.markAll();
    const a = scriptedLink({ fails: new LinkError("write EPIPE") });
    const sender = new PageSender(r.source, { zeroPages: false });
    await expect(
      sender.sendPass([r.lane(a.link, "multifd channel 3")], unlimited()),
    ).rejects.toThrow("multifd channel 3: write EPIPE");
  });
});
