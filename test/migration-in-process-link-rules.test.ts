import { afterEach, describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  InProcessLink,
  LIST_PAGES,
  type LinkCharge,
  MULTIFD_PACKET_PAGES,
  PACKET_BYTES,
  STREAM_THREADS_MIN_PAGES,
} from "../src/migration/in-process-link.js";
import { type MigrationOptions, resolveMigrationOptions } from "../src/migration/options.js";
import { STREAM_BATCH_PACKETS } from "../src/migration/stream-pipeline.js";
import { STREAM_SLOTS, StreamQueue, StreamState } from "../src/migration/stream-queue.js";
import { VirtualRunState } from "../src/migration/virtual-run-state.js";
import { multifdHeaderBytes } from "../src/wasm/multifd.js";
import { type EncodeCounts, emptyEncodeCounts } from "../src/wasm/page.js";

// The in-process link of content mode (src/migration/in-process-link.ts),
// driven directly: a guest, the round's page list, and a link clock of the
// test's own (`charge`), so each packet or wave the link puts on the wire
// is seen as it goes, and a deadline can cut it at a chosen share.

const MiB = 1024 ** 2;
const PAGE = 4096;
/** A whole page's record on the one stream: header and page (QEMU's RAM_SAVE_FLAG_PAGE). */
const RECORD = PAGE + 8;

/** Links whose pool (if one was started) is closed after each test. */
const open: InProcessLink[] = [];

afterEach(async () => {
  for (const link of open.splice(0)) await link.close();
});

/** A content-mode source guest and its link, ready for a run (as the engine builds them). */
function rig(options: Partial<MigrationOptions> & { guestBytes: number }) {
  const o = resolveMigrationOptions({
    content: true,
    workload: { kind: "uniform" },
    writesPerSecond: 0,
    deviceStateBytes: 4096,
    seed: 7,
    ...options,
  });
  const layout = new MemoryLayout();
  const guest = new Guest(layout, {
    bytes: o.guestBytes,
    pageShift: o.pageShift,
    content: true,
    vcpus: 1,
    workload: o.workload,
    seed: o.seed,
    name: "source",
  });
  const list = layout.allocate("migration-page-list", LIST_PAGES * 4);
  const link = new InProcessLink(o, layout, guest, list);
  link.startRun();
  const r = {
    o,
    layout,
    link,
    s: new VirtualRunState(o),
    /** Puts page numbers into the round's list; returns how many. */
    list(pages: readonly number[]): number {
      new Uint32Array(layout.memory.buffer, list.offset, pages.length).set(pages);
      return pages.length;
    },
    /** The source's RAM, as bytes. */
    ram(): Uint8Array {
      const ram = guest.ram;
      if (!ram) throw new Error("no guest RAM");
      return ram.bytes(layout.memory);
    },
  };
  open.push(link);
  return r;
}

/** Pages 0 .. n-1. */
function firstPages(n: number): number[] {
  return Array.from({ length: n }, (_, p) => p);
}

/** What the link put on the clock at one charge: its bytes, and the run's counts just then. */
interface Charged {
  readonly bytes: number;
  readonly counts: EncodeCounts;
}

/**
 * A link clock that records every charge and lets out the given share of
 * each in turn (1 for the rest). An empty charge is refused: a packet or
 * wave that moved no page would be charged again and again.
 */
function clock(s: VirtualRunState, shares: readonly number[] = []) {
  const charged: Charged[] = [];
  const charge: LinkCharge = async (bytes) => {
    if (bytes <= 0) throw new Error("the link was charged an empty packet");
    charged.push({ bytes, counts: { ...s.counts } });
    return shares[charged.length - 1] ?? 1;
  };
  return { charged, charge };
}

/** Pages each charge moved: its counts less the previous charge's (the first's less none). */
function pagesPer(charged: readonly Charged[]): number[] {
  let before = emptyEncodeCounts();
  return charged.map(({ counts }) => {
    const pages =
      counts.normal +
      counts.zero +
      counts.xbzrlePages -
      (before.normal + before.zero + before.xbzrlePages);
    before = counts;
    return pages;
  });
}

/** Flips one byte of a page. */
function flip(bytes: Uint8Array, page: number, at = 100): void {
  const i = page * PAGE + at;
  bytes[i] = (bytes[i] ?? 0) ^ 0x5a;
}

describe("the link lays out what its mode uses, and only that", () => {
  // QEMU sets up one send thread's packet per multifd channel
  // (multifd_send_setup), the XBZRLE cache only with the capability on
  // (xbzrle_init returns at once otherwise), and one stream has neither a
  // packet queue nor, on a guest under STREAM_THREADS_MIN_PAGES pages, the
  // ring of batches of a second thread.
  const names = (layout: MemoryLayout) => new Set(layout.list().map((r) => r.name));

  it("one stream on a small guest: channel 0's buffers, no queue, no ring, no XBZRLE cache", () => {
    const { layout } = rig({ guestBytes: 4 * MiB });
    const have = names(layout);
    expect(have.has("migration-stats-0")).toBe(true);
    expect(have.has("multifd-0-header")).toBe(true);
    expect(have.has("migration-stats-1")).toBe(false);
    expect(have.has("multifd-1-header")).toBe(false);
    expect(have.has("multifd-packet-queue")).toBe(false);
    expect(have.has("stream-queue")).toBe(false);
    expect(have.has("stream-0-headers")).toBe(false);
    expect(have.has("xbzrle-cache-tags")).toBe(false);
  });

  it("multifd: one packet and page list per channel, each of QEMU's 128 pages, and the wave's queue", () => {
    const { layout } = rig({ guestBytes: 4 * MiB, multifdChannels: 3 });
    const have = names(layout);
    for (let c = 0; c < 3; c++) {
      expect(layout.get(`multifd-${c}-header`).byteLength).toBe(
        multifdHeaderBytes(MULTIFD_PACKET_PAGES),
      );
      expect(layout.get(`multifd-${c}-pages`).byteLength).toBe(MULTIFD_PACKET_PAGES * 8);
    }
    expect(have.has("multifd-3-header")).toBe(false);
    expect(have.has("migration-stats-3")).toBe(false);
    expect(have.has("multifd-packet-queue")).toBe(true);
    expect(have.has("stream-queue")).toBe(false);
  });

  it("XBZRLE: a cache of xbzrle-cache-size bytes, a tag per page slot", () => {
    const { layout } = rig({ guestBytes: 4 * MiB, xbzrle: true, xbzrleCacheBytes: MiB });
    expect(layout.get("xbzrle-cache-data").byteLength).toBe(MiB);
    expect(layout.get("xbzrle-cache-tags").byteLength).toBe((MiB / PAGE) * 4);
  });

  it("a metadata-mode guest (no RAM) cannot back a content link", () => {
    const o = resolveMigrationOptions({
      guestBytes: 4 * MiB,
      content: false,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
    });
    const layout = new MemoryLayout();
    const guest = new Guest(layout, {
      bytes: o.guestBytes,
      content: false,
      vcpus: 1,
      workload: o.workload,
      seed: 1,
    });
    const list = layout.allocate("list", LIST_PAGES * 4);
    expect(() => new InProcessLink(o, layout, guest, list)).toThrow(
      "content mode without guest RAM",
    );
  });
});

describe("one stream's packets are QEMU's multifd packets", () => {
  // Without XBZRLE one stream moves pages as one multifd channel does:
  // packets of 128 pages of 4 KiB (MULTIFD_PACKET_SIZE 512 KiB /
  // qemu_target_page_size()), numbered across the run; larger pages go as
  // many as fit 512 KiB, and at least one (a 2 MiB page alone).
  it("4 KiB pages: 128 to a packet, and the stream counts them (multifd's counters stay at zero)", async () => {
    const r = rig({ guestBytes: 4 * MiB, maxBandwidth: Number.POSITIVE_INFINITY });
    const { charge } = clock(r.s);
    const first = await r.link.sendListed(r.s, charge, r.list(firstPages(128)), true, false);
    expect(first).toEqual({ pages: 128, bytes: r.s.counts.bytes, cut: false });
    expect(r.s.streamPackets).toBe(1);
    await r.link.sendListed(r.s, charge, r.list(firstPages(129)), true, false);
    expect(r.s.streamPackets).toBe(1 + 2);
    expect(r.s.multifdPackets).toBe(0);
    expect(r.s.multifdBytes).toBe(0);
    // The one stream's wire is QEMU's RAM records: a page and its header, a zero page in 9 bytes.
    expect(r.s.counts.bytes).toBe(r.s.counts.normal * RECORD + r.s.counts.zero * 9);
  });

  it("2 MiB pages: one page to a packet, and the destination equals the source", async () => {
    const r = rig({ guestBytes: 8 * MiB, pageShift: 21, zeroFraction: 0 });
    const { charge, charged } = clock(r.s);
    const sent = await r.link.sendListed(r.s, charge, r.list(firstPages(4)), true, false);
    expect(sent.pages).toBe(4);
    expect(r.s.streamPackets).toBe(4);
    expect(charged.reduce((sum, c) => sum + c.bytes, 0)).toBe(4 * (2 * MiB + 8));
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    expect(await r.link.verify(r.s)).toBeNull();
  });

  it("2 MiB pages on the record stream: its packet holds a whole record of the largest page", async () => {
    // The record stream's packet is 512 KiB or one page record, whichever is
    // larger; without an XBZRLE cache it carries plain page records.
    const r = rig({ guestBytes: 8 * MiB, pageShift: 21, zeroFraction: 0 });
    const { charge, charged } = clock(r.s);
    const sent = await r.link.sendListed(r.s, charge, r.list(firstPages(4)), true, true);
    expect(sent).toEqual({ pages: 4, bytes: 4 * (2 * MiB + 8), cut: false });
    expect(charged.map((c) => c.bytes)).toEqual(Array.from({ length: 4 }, () => 2 * MiB + 8));
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    expect(await r.link.verify(r.s)).toBeNull();
  });
});

describe("a wave moves at most one rate window of the link's bytes, in whole packets", () => {
  // 40 MiB/s and QEMU's 100 ms window: 4 MiB a window, 1022 page records of
  // 4104 bytes; whole packets of 128 pages per channel, at least one each.
  const bandwidth = 40 * MiB;
  const windowRecords = Math.floor((bandwidth * 100) / 1000 / RECORD);
  const wave = (channels: number) =>
    Math.max(1, Math.floor(windowRecords / channels / MULTIFD_PACKET_PAGES)) *
    MULTIFD_PACKET_PAGES *
    channels;

  it("one stream: waves of 7 packets, the last what is left; every listed page sent once", async () => {
    expect(wave(1)).toBe(896);
    const r = rig({ guestBytes: 16 * MiB, maxBandwidth: bandwidth });
    const { charge, charged } = clock(r.s);
    const count = r.list(firstPages(2000));
    const sent = await r.link.sendListed(r.s, charge, count, true, false);
    expect(pagesPer(charged)).toEqual([896, 896, 2000 - 2 * 896]);
    expect(sent.pages).toBe(2000);
    expect(r.s.counts.normal + r.s.counts.zero).toBe(2000);
    expect(r.s.streamPackets).toBe(7 + 7 + Math.ceil(208 / MULTIFD_PACKET_PAGES));
  });

  it("two multifd channels share a wave of 3 packets each; a deadline lets out a third of the second", async () => {
    expect(wave(2)).toBe(768);
    const r = rig({ guestBytes: 16 * MiB, maxBandwidth: bandwidth, multifdChannels: 2 });
    const { charge, charged } = clock(r.s, [1, 1 / 3]);
    const count = r.list(firstPages(2000));
    const sent = await r.link.sendListed(r.s, charge, count, true, false);
    expect(pagesPer(charged)).toEqual([768, 768]);
    const [first, second] = charged.map((c) => c.bytes) as [number, number];
    expect(sent).toEqual({
      pages: 768 + Math.floor(768 / 3),
      bytes: first + Math.floor(second / 3),
      cut: true,
    });
    // The multifd counters: every packet of both waves went out, and the bytes that got out.
    expect(r.s.multifdPackets).toBe(6 + 6);
    expect(r.s.multifdBytes).toBe(first + Math.floor(second / 3));
    expect(r.s.streamPackets).toBe(0);
    // multifd carries no XBZRLE (QEMU refuses the pair): a pass asked for it
    // still goes in the channels' packets.
    await r.link.sendListed(r.s, charge, r.list(firstPages(128)), true, true);
    expect(r.s.multifdPackets).toBe(6 + 6 + 1);
    expect(r.s.counts.xbzrlePages).toBe(0);
  });
});

describe("a deadline cuts a send: only the share that got out counts as sent", () => {
  // LinkCharge returns the share of a packet (or wave) that got out before
  // `untilMs`; the pass and the run's counts keep that share of the cut
  // packet (rounded down), on top of what went before it in full.
  function expectCut(
    counts: EncodeCounts,
    before: EncodeCounts,
    at: EncodeCounts,
    share: number,
    keys: readonly (keyof EncodeCounts)[],
  ): void {
    for (const key of keys) {
      expect(counts[key], key).toBe(before[key] + Math.floor((at[key] - before[key]) * share));
    }
  }

  it("the record stream (XBZRLE's): the second packet half out", async () => {
    const r = rig({ guestBytes: 4 * MiB, xbzrle: true, xbzrleCacheBytes: MiB });
    const { charge, charged } = clock(r.s, [1, 0.5]);
    const sent = await r.link.sendListed(r.s, charge, r.list(firstPages(300)), true, true);
    expect(charged).toHaveLength(2);
    const [p1, p2] = pagesPer(charged) as [number, number];
    const [c1, c2] = charged as [Charged, Charged];
    expect(c2.counts.normal - c1.counts.normal).toBeGreaterThan(0);
    expect(sent).toEqual({
      pages: p1 + Math.floor(p2 * 0.5),
      bytes: c1.bytes + Math.floor(c2.bytes * 0.5),
      cut: true,
    });
    expectCut(r.s.counts, c1.counts, c2.counts, 0.5, ["normal", "zero", "xbzrlePages", "bytes"]);
  });

  it("one stream without XBZRLE: the second wave a third out", async () => {
    const r = rig({ guestBytes: 16 * MiB, maxBandwidth: 40 * MiB });
    const { charge, charged } = clock(r.s, [1, 1 / 3]);
    const sent = await r.link.sendListed(r.s, charge, r.list(firstPages(2000)), true, false);
    expect(charged).toHaveLength(2);
    const [c1, c2] = charged as [Charged, Charged];
    expect(sent).toEqual({
      pages: 896 + Math.floor(896 / 3),
      bytes: c1.bytes + Math.floor(c2.bytes / 3),
      cut: true,
    });
    expectCut(r.s.counts, c1.counts, c2.counts, 1 / 3, ["normal", "zero", "bytes"]);
    expect(r.s.streamPackets).toBe(7 + 7);
    expect(r.s.multifdBytes).toBe(0);
  });
});

describe("XBZRLE's record stream", () => {
  // Records go in packets of 512 KiB (as many whole records as fit); an
  // unchanged page in the cache is skipped (QEMU's save_xbzrle_page returns
  // 0), a rewritten one goes as a delta; a pass counts each record once.
  it("fills 512 KiB packets with whole page records", async () => {
    const r = rig({ guestBytes: 4 * MiB, xbzrle: true, xbzrleCacheBytes: MiB, zeroFraction: 0 });
    const { charge, charged } = clock(r.s);
    const sent = await r.link.sendListed(r.s, charge, r.list(firstPages(300)), true, true);
    const perPacket = Math.floor(PACKET_BYTES / RECORD);
    expect(perPacket).toBe(127);
    expect(charged.map((c) => c.bytes)).toEqual([
      perPacket * RECORD,
      perPacket * RECORD,
      (300 - 2 * perPacket) * RECORD,
    ]);
    expect(sent).toEqual({ pages: 300, bytes: 300 * RECORD, cut: false });
  });

  it("a pass counts the records it sent, whatever the run sent before", async () => {
    const r = rig({ guestBytes: 4 * MiB, xbzrle: true, xbzrleCacheBytes: MiB, zeroFraction: 0 });
    const { charge } = clock(r.s);
    const count = r.list(firstPages(100));
    expect((await r.link.sendListed(r.s, charge, count, true, true)).pages).toBe(100);
    for (let round = 0; round < 2; round++) {
      for (let p = 0; p < 40; p++) flip(r.ram(), p, 8 * round);
      const before = { ...r.s.counts };
      const pass = await r.link.sendListed(r.s, charge, count, true, true);
      expect(r.s.counts.xbzrlePages - before.xbzrlePages).toBe(40);
      expect(r.s.counts.unchanged - before.unchanged).toBe(60);
      expect(pass.pages).toBe(40);
    }
  });

  it("each run starts with an empty cache: a run repeated sends the same records", async () => {
    const r = rig({ guestBytes: 4 * MiB, xbzrle: true, xbzrleCacheBytes: MiB });
    const { charge } = clock(r.s);
    const count = r.list(firstPages(200));
    await r.link.sendListed(r.s, charge, count, true, true);
    r.link.startRun();
    const again = new VirtualRunState(r.o);
    await r.link.sendListed(again, clock(again).charge, count, true, true);
    expect(again.counts).toEqual(r.s.counts);
    expect(again.counts.cacheMiss).toBeGreaterThan(0);
  });
});

describe("verification by hash", () => {
  // Both sides hash each page as it goes; with neither side written since
  // (no guest write flagged, the destination not handed out), the recorded
  // tables decide, and otherwise, or when they differ, both memories are
  // hashed afresh. Then the device state must be the one sent.
  async function sentAll() {
    const r = rig({ guestBytes: 4 * MiB, zeroFraction: 0 });
    await r.link.sendListed(r.s, clock(r.s).charge, r.list(firstPages(1024)), true, false);
    return r;
  }

  it("passes once every page and the device state arrived", async () => {
    const r = await sentAll();
    expect(await r.link.verify(r.s)).toBe(
      "verification failed: the destination's device state differs from the source's",
    );
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    expect(await r.link.verify(r.s)).toBeNull();
  });

  it("with no write flagged the recorded tables decide; a flagged guest write makes both sides hashed afresh", async () => {
    const r = await sentAll();
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    flip(r.ram(), 9);
    expect(await r.link.verify(r.s)).toBeNull();
    r.s.guestWrote = true;
    expect(await r.link.verify(r.s)).toMatch(/^verification failed: destination page 9 differs/);
  });

  it("a page never sent fails the run, named, though nothing was written", async () => {
    const r = rig({ guestBytes: 4 * MiB, zeroFraction: 0 });
    await r.link.sendListed(r.s, clock(r.s).charge, r.list(firstPages(100)), true, false);
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    expect(await r.link.verify(r.s)).toMatch(/^verification failed: destination page 100 differs/);
  });

  it("a new run does not pass a page by the last run's hashes", async () => {
    const r = await sentAll();
    r.link.destination.receiveDeviceState(r.link.deviceBlob);
    expect(await r.link.verify(r.s)).toBeNull();
    // The guest changes between runs; the next run sends nothing before verifying.
    flip(r.ram(), 5);
    r.link.startRun();
    expect(await r.link.verify(new VirtualRunState(r.o))).toMatch(
      /^verification failed: destination page 5 differs/,
    );
  });
});

describe("one stream on two threads, from STREAM_THREADS_MIN_PAGES pages", () => {
  // A guest of at least 65,536 pages runs its one stream's sender here and
  // its receiver on a pool worker, a ring of STREAM_SLOTS batches of
  // STREAM_BATCH_PACKETS packets between them; multifd has its own channels.
  const guestBytes = STREAM_THREADS_MIN_PAGES * PAGE;

  it("lays out the ring (a header every 8-byte-aligned header's length) and sends through it", async () => {
    const r = rig({ guestBytes, zeroFraction: 1 });
    const header = Math.ceil(multifdHeaderBytes(MULTIFD_PACKET_PAGES) / 8) * 8;
    for (let k = 0; k < STREAM_SLOTS; k++) {
      expect(r.layout.get(`stream-${k}-headers`).byteLength).toBe(STREAM_BATCH_PACKETS * header);
    }
    const queue = new StreamQueue(r.layout.memory, r.layout.get("stream-queue"));
    expect(queue.state()).toBe(StreamState.sending);
    const sent = await r.link.sendListed(
      r.s,
      clock(r.s).charge,
      r.list(firstPages(300)),
      true,
      false,
    );
    expect(sent.pages).toBe(300);
    expect(r.s.streamPackets).toBe(3);
    // The wave went through the ring, which its sender closed.
    expect(queue.state()).toBe(StreamState.sent);
  });

  it("multifd on so large a guest lays out no ring", () => {
    const r = rig({ guestBytes, multifdChannels: 1, zeroFraction: 1 });
    expect(r.layout.list().some((region) => region.name.startsWith("stream-"))).toBe(false);
  });
});
