import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { linkPages, receivePacket } from "../src/migration/multifd-channel.js";
import { hashListedOracle, multifdCheckOracle, multifdSendOracle } from "../src/oracle/multifd.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import {
  MULTIFD_HEADER_BYTES,
  MULTIFD_MAGIC,
  MULTIFD_SCRATCH_BYTES,
  MultifdField,
  MultifdKernel,
  MultifdPacketError,
  multifdHeaderBytes,
} from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES, emptyEncodeCounts, takeEncodeStats } from "../src/wasm/page.js";

// QEMU's multifd packet (migration/multifd.h, MultiFDPacket_t): the sender's
// header and the receiver's checks, against the oracle; the receiver never
// accepts a page outside guest RAM, whatever the header says.

const PAGE_SHIFT = 12;
const PAGE = 4096;
const RAM_PAGES = 64;
const ALLOC = 128;

let layout: MemoryLayout;
let kernel: MultifdKernel;
let ram: Region;
let list: Region;
let header: Region;
let sent: Region;
let place: Region;
let stats: Region;
let hashes: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = MultifdKernel.on(
    layout.memory,
    layout.allocate("multifd-scratch", MULTIFD_SCRATCH_BYTES),
  );
  ram = layout.allocate("guest-ram", RAM_PAGES * PAGE, 4096);
  list = layout.allocate("page-list", ALLOC * 4);
  header = layout.allocate("header", multifdHeaderBytes(ALLOC) + 64);
  sent = layout.allocate("sent", ALLOC * 8);
  place = layout.allocate("place", ALLOC * 4);
  stats = layout.allocate("stats", ENCODE_STATS_BYTES);
  hashes = layout.allocate("hashes", RAM_PAGES * 8, 8);
});

function fillRam(seed: number, zeroEvery: number): Uint8Array {
  const view = ram.bytes(layout.memory);
  for (let p = 0; p < RAM_PAGES; p++) {
    const page = view.subarray(p * PAGE, (p + 1) * PAGE);
    if (zeroEvery > 0 && p % zeroEvery === 0) page.fill(0);
    else for (let i = 0; i < PAGE; i++) page[i] = (p * 131 + i * 7 + seed) & 0xff;
  }
  return view;
}

function send(pages: number[], zeroPages = true, packetNum = 0) {
  new Uint32Array(layout.memory.buffer, list.offset, pages.length).set(pages);
  return kernel.send({
    ram,
    pageShift: PAGE_SHIFT,
    list,
    listStart: 0,
    count: pages.length,
    alloc: ALLOC,
    packet: header,
    sent,
    zeroPages,
    stats,
    hashes,
    packetNum,
  });
}

function headerBytes(length: number): Uint8Array {
  return header.bytes(layout.memory).slice(0, length);
}

describe("multifd sender", () => {
  it("writes QEMU's MultiFDPacket_t: magic, version, counts, ramblock, offsets", () => {
    fillRam(1, 4);
    const out = send([5, 4, 8, 9], true, 7);
    expect(out).toEqual({ consumed: 4, normal: 2, zero: 2, headerBytes: 320 + 4 * 8 });
    const view = new DataView(layout.memory.buffer, header.offset);
    expect(view.getUint32(MultifdField.magic)).toBe(MULTIFD_MAGIC);
    expect(view.getUint32(MultifdField.version)).toBe(1);
    expect(view.getUint32(MultifdField.flags)).toBe(0);
    expect(view.getUint32(MultifdField.pagesAlloc)).toBe(ALLOC);
    expect(view.getUint32(MultifdField.normalPages)).toBe(2);
    expect(view.getUint32(MultifdField.nextPacketSize)).toBe(2 * PAGE);
    expect(view.getBigUint64(MultifdField.packetNum)).toBe(7n);
    expect(view.getUint32(MultifdField.zeroPages)).toBe(2);
    expect(new TextDecoder().decode(headerBytes(64 + 7).subarray(64))).toBe("pc.ram\0");
    // Normal pages first (5, 9), then zero pages (4, 8), as byte offsets.
    const offsets = [0, 1, 2, 3].map((i) => view.getBigUint64(MULTIFD_HEADER_BYTES + 8 * i));
    expect(offsets).toEqual([5n * 4096n, 9n * 4096n, 4n * 4096n, 8n * 4096n]);
    expect([...new Uint32Array(layout.memory.buffer, sent.offset, 2)]).toEqual([5, 9]);
    // Statistics: bytes on the wire are the header and the normal pages.
    const counts = takeEncodeStats(layout.memory, stats, emptyEncodeCounts());
    expect(counts).toMatchObject({ bytes: 320 + 32 + 2 * PAGE, normal: 2, zero: 2 });
  });

  it("equals the oracle on random page lists, zero pages and packet numbers (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(RAM_PAGES - 1), { minLength: 1, maxLength: 160 }),
        fc.integer({ min: 0, max: 5 }),
        fc.boolean(),
        fc.nat(2 ** 40),
        fc.nat(255),
        (pages, zeroEvery, zeroPages, packetNum, seed) => {
          const view = fillRam(seed, zeroEvery);
          const out = send(pages, zeroPages, packetNum);
          const want = multifdSendOracle(view, PAGE_SHIFT, pages, ALLOC, zeroPages, packetNum);
          expect(out.consumed).toBe(Math.min(pages.length, ALLOC));
          expect(headerBytes(out.headerBytes)).toEqual(want.header);
          // Every page sent has its XXH3-64 in the source's table.
          const table = new BigUint64Array(layout.memory.buffer, hashes.offset, RAM_PAGES);
          for (const page of pages.slice(0, ALLOC)) {
            expect(table[page]).toBe(xxh3Long(view.subarray(page * PAGE, (page + 1) * PAGE)));
          }
          takeEncodeStats(layout.memory, stats, emptyEncodeCounts());
        },
      ),
      { numRuns: 150 },
    );
  });

  it("refuses a page number past guest RAM before reading it", () => {
    fillRam(3, 0);
    expect(() => send([1, RAM_PAGES, 2])).toThrow(RegionBoundsError);
    expect(() => send([1, RAM_PAGES, 2])).toThrow(/page 64/);
  });
});

describe("multifd receiver", () => {
  function check(bytes: Uint8Array) {
    header.bytes(layout.memory).set(bytes);
    return kernel.check(header, bytes.length, ram, PAGE_SHIFT, ALLOC, place);
  }

  it("accepts what the sender wrote and lists the pages, normal then zero", () => {
    const view = fillRam(5, 3);
    const want = multifdSendOracle(view, PAGE_SHIFT, [1, 3, 4, 6, 63], ALLOC, true, 1);
    const accepted = check(want.header);
    expect(accepted.normal).toBe(want.normal.length);
    expect(accepted.zero).toBe(want.zero.length);
    expect([...accepted.pages]).toEqual([...want.normal, ...want.zero]);
  });

  it("places pages, zeroes zero pages and hashes each page it received", () => {
    const source = new Uint8Array(RAM_PAGES * PAGE);
    for (let i = 0; i < source.length; i++) source[i] = (i * 13 + 1) & 0xff;
    source.fill(0, 7 * PAGE, 8 * PAGE);
    const want = multifdSendOracle(source, PAGE_SHIFT, [2, 3, 7, 40], ALLOC, true, 0);
    const dest = ram.bytes(layout.memory);
    dest.fill(0xee);
    const accepted = check(want.header);
    linkPages(source, Uint32Array.from(want.normal), dest, accepted.pages, accepted.normal, PAGE);
    // Hashes left by earlier tests would pass for ones this packet never wrote.
    const table = new BigUint64Array(layout.memory.buffer, hashes.offset, RAM_PAGES);
    table.fill(0n);
    kernel.finish(accepted, place, ram, PAGE_SHIFT, hashes);
    for (const page of [2, 3, 7, 40]) {
      const bytes = dest.subarray(page * PAGE, (page + 1) * PAGE);
      expect(bytes).toEqual(source.subarray(page * PAGE, (page + 1) * PAGE));
      expect(table[page]).toBe(xxh3Long(bytes));
    }
    // A page the packet did not list is untouched.
    expect(dest[5 * PAGE]).toBe(0xee);
  });

  it("copies runs of consecutive pages as one and scattered pages one by one", () => {
    const source = new Uint8Array(16 * PAGE);
    for (let i = 0; i < source.length; i++) source[i] = (i >> 12) + 1;
    const dest = new Uint8Array(16 * PAGE);
    linkPages(
      source,
      Uint32Array.from([1, 2, 3, 9]),
      dest,
      Uint32Array.from([4, 5, 6, 0]),
      4,
      PAGE,
    );
    expect([0, 4, 5, 6].map((p) => dest[p * PAGE])).toEqual([10, 2, 3, 4]);
    expect(dest[PAGE]).toBe(0);
  });

  it("the link refuses page lists shorter than the count instead of copying another page", () => {
    const source = new Uint8Array(4 * PAGE).fill(7);
    const dest = new Uint8Array(4 * PAGE);
    expect(() =>
      linkPages(source, Uint32Array.from([1]), dest, Uint32Array.from([1, 2]), 2, PAGE),
    ).toThrow(/2 pages to move, but 1 sent and 2 accepted/);
    expect(dest.every((b) => b === 0)).toBe(true);
  });

  it("refuses each field the way QEMU's receiver does, naming the byte", () => {
    const view = fillRam(9, 0);
    const good = multifdSendOracle(view, PAGE_SHIFT, [1, 2], ALLOC, true, 0).header;
    const cases: [string, (b: DataView) => void, RegExp][] = [
      ["magic", (b) => b.setUint32(0, 0x11223345), /bad magic \(header byte 0\)/],
      ["version", (b) => b.setUint32(4, 2), /unsupported version/],
      ["flags", (b) => b.setUint32(8, 1), /compression/],
      ["pages_alloc", (b) => b.setUint32(12, ALLOC + 1), /more pages than allocated/],
      ["normal_pages", (b) => b.setUint32(16, ALLOC + 1), /more pages than allocated/],
      ["next_packet_size", (b) => b.setUint32(20, PAGE), /next_packet_size/],
      ["ramblock", (b) => b.setUint8(64, 0x71), /unknown RAM block/],
      [
        "offset past RAM",
        (b) => b.setBigUint64(320, BigInt(RAM_PAGES * PAGE)),
        /outside guest memory \(header byte 320\)/,
      ],
      ["offset unaligned", (b) => b.setBigUint64(328, 4097n), /unaligned .* \(header byte 328\)/],
    ];
    for (const [, corrupt, message] of cases) {
      const bytes = good.slice();
      corrupt(new DataView(bytes.buffer));
      expect(() => check(bytes)).toThrow(message);
      expect(() => check(bytes)).toThrow(MultifdPacketError);
    }
    expect(() => check(good.slice(0, 200))).toThrow(/truncated/);
    expect(() => check(good.slice(0, 330))).toThrow(/truncated/);
  });

  it("fuzz: 20,000 mutated headers give the oracle's verdict, never a page past RAM", () => {
    const view = fillRam(11, 5);
    const base = multifdSendOracle(view, PAGE_SHIFT, [0, 1, 2, 5, 10, 33, 63], ALLOC, true, 3);
    const position = fc.oneof(
      { arbitrary: fc.nat(39), weight: 1 },
      { arbitrary: fc.integer({ min: 64, max: 71 }), weight: 1 },
      { arbitrary: fc.integer({ min: 320, max: base.header.length - 1 }), weight: 1 },
      { arbitrary: fc.nat(base.header.length - 1), weight: 1 },
      { arbitrary: fc.integer({ min: 24, max: 31 }), weight: 3 },
      { arbitrary: fc.integer({ min: 36, max: 63 }), weight: 3 },
      { arbitrary: fc.integer({ min: 71, max: 319 }), weight: 3 },
    );
    const verdicts = { accepted: 0, refused: 0 };
    fc.assert(
      fc.property(
        // Positions weighted toward the fields (counts, name, offsets) and the
        // bytes a receiver must ignore (packet number, reserved, after the name).
        fc.array(fc.tuple(position, fc.nat(255)), {
          minLength: 1,
          maxLength: 4,
        }),
        // Mostly whole headers; one in five cut short somewhere.
        fc.oneof(
          { arbitrary: fc.constant(0), weight: 4 },
          { arbitrary: fc.integer({ min: 1, max: base.header.length }), weight: 1 },
        ),
        (flips, cut) => {
          const bytes = base.header.slice(0, cut === 0 ? base.header.length : cut);
          for (const [at, value] of flips) if (at < bytes.length) bytes[at] = value;
          const want = multifdCheckOracle(bytes, PAGE_SHIFT, RAM_PAGES, ALLOC);
          verdicts[want.ok ? "accepted" : "refused"]++;
          try {
            const got = check(bytes);
            expect(want.ok).toBe(true);
            if (want.ok) {
              expect([...got.pages]).toEqual(want.pages);
              for (const page of got.pages) expect(page).toBeLessThan(RAM_PAGES);
            }
          } catch (error) {
            expect(error).toBeInstanceOf(MultifdPacketError);
            expect(want.ok).toBe(false);
            if (!want.ok && error instanceof MultifdPacketError) {
              expect(error.code).toBe(want.code);
              expect(error.offset).toBe(want.offset);
            }
          }
        },
      ),
      { numRuns: 20_000 },
    );
    // Both ways were exercised, not only refusals.
    expect(verdicts.accepted).toBeGreaterThan(1000);
    expect(verdicts.refused).toBeGreaterThan(5000);
  });
});

describe("page hashes around the link (hashListed)", () => {
  it("equals the oracle for any page size, list start and odd count, leaving other slots alone (property)", () => {
    // One table for the smallest page (256 bytes: 1024 pages of this RAM).
    const small = layout.allocate("hash-listed-table", 1024 * 8, 8);
    fc.assert(
      fc.property(
        fc.constantFrom(8, 9, 12),
        fc.nat(255),
        fc.integer({ min: 0, max: 37 }),
        fc.array(fc.nat(1023), { minLength: 0, maxLength: 77 }),
        (pageShift, seed, listStart, raw) => {
          const view = fillRam(seed, 7);
          const pages = (RAM_PAGES * PAGE) >> pageShift;
          // Page numbers within RAM for this page size.
          const numbers = raw.map((n) => n % pages);
          new Uint32Array(layout.memory.buffer, list.offset + listStart * 4, numbers.length).set(
            numbers,
          );
          const table = new BigUint64Array(layout.memory.buffer, hashes.offset, RAM_PAGES);
          table.fill(0x5an);
          const before = [...table];
          const smallTable = new BigUint64Array(layout.memory.buffer, small.offset, pages);
          smallTable.fill(0x5an);
          kernel.hashListed(ram, pageShift, list, listStart, numbers.length, small);
          const want = hashListedOracle(
            view,
            pageShift,
            numbers,
            [...smallTable].map(() => 0x5an),
          );
          expect(want.badIndex).toBeNull();
          expect([...smallTable]).toEqual(want.table);
          expect([...table]).toEqual(before);
        },
      ),
      { numRuns: 120 },
    );
  });

  it("refuses a page number past RAM, hashing none from it on", () => {
    fillRam(4, 0);
    new Uint32Array(layout.memory.buffer, list.offset, 3).set([2, RAM_PAGES + 5, 3]);
    const table = new BigUint64Array(layout.memory.buffer, hashes.offset, RAM_PAGES);
    table.fill(0n);
    expect(() => kernel.hashListed(ram, PAGE_SHIFT, list, 0, 3, hashes)).toThrow(
      /page 69.*is past 64 pages/,
    );
    const want = hashListedOracle(
      ram.bytes(layout.memory),
      PAGE_SHIFT,
      [2, RAM_PAGES + 5, 3],
      [...table].map(() => 0n),
    );
    expect(want.badIndex).toBe(1);
    expect(table[2]).not.toBe(0n);
    expect(table[3]).toBe(0n);
    expect(() => kernel.hashListed(ram, 7, list, 0, 1, hashes)).toThrow(
      /page shift must be 8 to 30/,
    );
  });
});

describe("a page corrupted in transit", () => {
  it("leaves the receiver's hash of that page unequal to the sender's, and only that page", () => {
    const source = fillRam(9, 5);
    const pages = [3, 4, 5, 6, 20, 21, 40, 63];
    const out = send(pages);
    const sourceTable = [...new BigUint64Array(layout.memory.buffer, hashes.offset, RAM_PAGES)];
    // The destination: its own memory, as a migration's is.
    const far = new MemoryLayout();
    const farKernel = MultifdKernel.on(
      far.memory,
      far.allocate("far-scratch", MULTIFD_SCRATCH_BYTES),
    );
    const regions = {
      receive: far.allocate("far-header", multifdHeaderBytes(ALLOC)),
      place: far.allocate("far-place", ALLOC * 4),
      ram: far.allocate("far-ram", RAM_PAGES * PAGE, 4096),
      hashes: far.allocate("far-hashes", RAM_PAGES * 8, 8),
    };
    const receiveWith = (wire: Uint8Array) => {
      new BigUint64Array(far.memory.buffer, regions.hashes.offset, RAM_PAGES).fill(0n);
      receivePacket(
        { memory: far.memory, kernel: farKernel },
        regions,
        wire,
        {
          header: headerBytes(out.headerBytes),
          from: new Uint32Array(layout.memory.buffer, sent.offset, out.normal).slice(),
          normal: out.normal,
          zero: out.zero,
          packetNum: 0,
        },
        PAGE_SHIFT,
        ALLOC,
      );
      return [...new BigUint64Array(far.memory.buffer, regions.hashes.offset, RAM_PAGES)];
    };
    const clean = receiveWith(source);
    for (const page of pages) expect(clean[page]).toBe(sourceTable[page]);
    // One bit flipped on the wire in page 21 (a normal page): the bytes the
    // receiver placed differ, and its hash, taken from what landed, says so.
    const wire = source.slice();
    wire[21 * PAGE + 1000] = (wire[21 * PAGE + 1000] ?? 0) ^ 0x10;
    const dirty = receiveWith(wire);
    const differing = pages.filter((page) => dirty[page] !== sourceTable[page]);
    expect(differing).toEqual([21]);
  });
});
