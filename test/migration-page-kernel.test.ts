import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import {
  decodeStreamOneByOne,
  encodePagesOneByOne,
  isZeroOneByOne,
  type OracleEncodeCounts,
  pageHashesOneByOne,
  writeStream,
  XbzrleCacheOracle,
  xbzrleDecodeOneByOne,
  xbzrleEncodeOneByOne,
  xxh64,
} from "../src/oracle/page.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import {
  ENCODE_STATS_BYTES,
  emptyEncodeCounts,
  PAGE_SCRATCH_BYTES,
  PageKernel,
  PageStreamError,
} from "../src/wasm/page.js";

const PAGE = 4096;
const BUF = 64 * 1024;

let layout: MemoryLayout;
let kernel: PageKernel;
let a: Region;
let b: Region;
let c: Region;
let ram: Region;
let dst: Region;
let list: Region;
let stats: Region;
let tags: Region;
let data: Region;
let scratch: Region;
const RAM_PAGES = 16;
const SLOTS = 4;

function bytes(region: Region): Uint8Array {
  return region.bytes(layout.memory);
}

/** Byte equality without vitest's slow deep diff of large arrays. */
function same(x: Uint8Array, y: Uint8Array): boolean {
  return Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(
    Buffer.from(y.buffer, y.byteOffset, y.byteLength),
  );
}

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = PageKernel.on(layout.memory, layout.allocate("page-kernel-scratch", PAGE_SCRATCH_BYTES));
  a = layout.allocate("a", BUF);
  b = layout.allocate("b", BUF);
  c = layout.allocate("c", BUF);
  ram = layout.allocate("ram", RAM_PAGES * PAGE, 4096);
  dst = layout.allocate("dst", RAM_PAGES * PAGE, 4096);
  list = layout.allocate("list", 4 * 64);
  stats = layout.allocate("stats", ENCODE_STATS_BYTES);
  tags = layout.allocate("tags", SLOTS * 4);
  data = layout.allocate("data", SLOTS * PAGE, 4096);
  scratch = layout.allocate("scratch", PAGE);
});

/** A pair of buffers that differ in a few random runs (what guest writes do to a page). */
const pagePair = (maxLength: number) =>
  fc
    .record({
      length: fc.integer({ min: 0, max: maxLength }),
      base: fc.uint8Array({ minLength: maxLength, maxLength }),
      edits: fc.array(
        fc.record({ at: fc.nat(), run: fc.integer({ min: 1, max: 64 }), value: fc.nat(255) }),
        { maxLength: 40 },
      ),
    })
    .map(({ length, base, edits }) => {
      const prev = base.slice(0, length);
      const next = prev.slice();
      for (const edit of edits) {
        if (length === 0) break;
        const start = edit.at % length;
        for (let i = start; i < Math.min(length, start + edit.run); i++) {
          next[i] = (edit.value + i) & 0xff;
        }
      }
      return { prev, next };
    });

describe("zero-page check", () => {
  it("agrees with the one-byte-at-a-time oracle at any length and offset", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 300 }),
        fc.integer({ min: 0, max: 63 }),
        fc.option(fc.nat(), { nil: undefined }),
        (length, offset, poke) => {
          const view = bytes(a);
          view.fill(0, 0, 512);
          if (poke !== undefined && length > 0) view[offset + (poke % length)] = 1 + (poke % 255);
          const expected = isZeroOneByOne(view.subarray(offset, offset + length));
          expect(kernel.isZero(a, offset, length)).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("reads no byte outside what it was given", () => {
    const view = bytes(a);
    view.fill(0, 0, 8192);
    view[4096] = 7;
    expect(kernel.isZero(a, 0, 4096)).toBe(true);
    expect(kernel.isZero(a, 1, 4096)).toBe(false);
  });
});

describe("XXH64", () => {
  it("matches the published vectors (xxHash's sanity tests, seed 0)", () => {
    // XXH64("") and XXH64("a"), XXH64("abc") with seed 0, from the xxHash
    // reference implementation's test vectors.
    const text = new TextEncoder();
    expect(xxh64(new Uint8Array(0))).toBe(0xef46db3751d8e999n);
    expect(xxh64(text.encode("a"))).toBe(0xd24ec4f1a98c6e5bn);
    expect(xxh64(text.encode("abc"))).toBe(0x44bc2cf5ad770999n);
    const view = bytes(a);
    view.set(text.encode("abc"), 5);
    expect(kernel.hash64(a, 5, 3)).toBe(0x44bc2cf5ad770999n);
    expect(kernel.hash64(a, 0, 0)).toBe(0xef46db3751d8e999n);
  });

  it("agrees with the BigInt oracle at every length 0..200 and random offsets", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 200 }),
        fc.integer({ min: 0, max: 31 }),
        (input, offset) => {
          bytes(a).set(input, offset);
          expect(kernel.hash64(a, offset, input.length)).toBe(xxh64(input));
        },
      ),
      { numRuns: 1500 },
    );
  });

  it("hashes pages into a table, one u64 per page (XXH3-64, the page hash)", () => {
    const view = bytes(ram);
    for (let i = 0; i < view.length; i++) view[i] = (i * 31 + (i >>> 12)) & 0xff;
    kernel.hashPages(ram, 12, 3, 5, b);
    const table = new BigUint64Array(layout.memory.buffer, b.offset, 5);
    for (let i = 0; i < 5; i++) {
      expect(table[i]).toBe(xxh3Long(view.subarray((3 + i) * PAGE, (4 + i) * PAGE)));
    }
    expect(() => kernel.hashPages(ram, 12, 12, 5, b)).toThrow(/ram/);
  });
});

describe("XBZRLE", () => {
  it("encodes as QEMU's xbzrle_encode_buffer does (oracle), at any length and offset", () => {
    fc.assert(
      fc.property(
        pagePair(600),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 0, max: 700 }),
        ({ prev, next }, offset, capExtra) => {
          const cap = Math.min(BUF - 16, Math.max(0, capExtra));
          bytes(a).set(prev, offset);
          bytes(b).set(next, offset + 1);
          const got = kernel.xbzrleEncode(a, offset, b, offset + 1, next.length, c, 3, cap);
          const expected = xbzrleEncodeOneByOne(prev, next, cap);
          if (typeof expected === "number") expect(got).toBe(expected);
          else {
            expect(got).toBe(expected.length);
            expect(bytes(c).slice(3, 3 + got)).toEqual(expected);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("decodes back to the new page (round trip through kernel encode and decode)", () => {
    fc.assert(
      fc.property(pagePair(PAGE), ({ prev, next }) => {
        bytes(a).set(prev, 0);
        bytes(b).set(next, 0);
        const n = kernel.xbzrleEncode(a, 0, b, 0, next.length, c, 0, next.length);
        if (n <= 0) return;
        const encoded = bytes(c).slice(0, n);
        expect(kernel.xbzrleDecode(c, 0, n, a, 0, prev.length)).toBeLessThanOrEqual(prev.length);
        expect(same(bytes(a).subarray(0, prev.length), next)).toBe(true);
        const page = prev.slice();
        expect(xbzrleDecodeOneByOne(encoded, page)).toBeGreaterThan(0);
        expect(same(page, next)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("knows the answer for a page with one 8-byte write", () => {
    const prev = new Uint8Array(PAGE);
    const next = prev.slice();
    next.set([1, 2, 3, 4, 5, 6, 7, 8], 1000);
    // uleb128(1000) = e8 07, uleb128(8) = 08, then the 8 bytes; trailing run left out.
    expect(xbzrleEncodeOneByOne(prev, next, PAGE)).toEqual(
      Uint8Array.from([0xe8, 0x07, 0x08, 1, 2, 3, 4, 5, 6, 7, 8]),
    );
    expect(xbzrleEncodeOneByOne(prev, prev, PAGE)).toBe(0);
  });

  it("refuses malformed encodings as the oracle does, never writing past the page (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.integer({ min: 1, max: 256 }),
        (src, dlen) => {
          bytes(c).fill(0xcc, 0, 1024);
          bytes(a).set(src, 0);
          const page = new Uint8Array(dlen).fill(0xcc);
          const expected = xbzrleDecodeOneByOne(src, page);
          expect(kernel.xbzrleDecode(a, 0, src.length, c, 0, dlen)).toBe(expected);
          expect(same(bytes(c).subarray(0, dlen), page)).toBe(true);
          expect(bytes(c)[dlen]).toBe(0xcc);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("page stream", () => {
  function fillRam(seed: number, zeroEvery: number): void {
    const view = bytes(ram);
    for (let p = 0; p < RAM_PAGES; p++) {
      const page = view.subarray(p * PAGE, (p + 1) * PAGE);
      if (p % zeroEvery === 0) page.fill(0);
      else for (let i = 0; i < PAGE; i++) page[i] = (i * 13 + p * 7 + seed) & 0xff;
    }
  }

  it("encodes as the oracle does, page for page, counts and bytes", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(RAM_PAGES - 1), { minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(RAM_PAGES - 1), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 1, max: 7 }),
        (first, second, zeroPages, xbzrle, zeroEvery) => {
          fillRam(1, zeroEvery);
          bytes(tags).fill(0);
          const cache = xbzrle ? new XbzrleCacheOracle(SLOTS) : undefined;
          const counts: OracleEncodeCounts = {
            normal: 0,
            zero: 0,
            xbzrlePages: 0,
            xbzrleBytes: 0,
            cacheMiss: 0,
            overflow: 0,
            unchanged: 0,
          };
          const totals = emptyEncodeCounts();
          for (const [round, pages] of [first, second].entries()) {
            if (round === 1) {
              // The guest writes a few bytes into some pages between rounds.
              const view = bytes(ram);
              for (const p of pages) view[p * PAGE + 100] = (view[p * PAGE + 100] ?? 0) ^ 0x5a;
            }
            new Uint32Array(layout.memory.buffer, list.offset, pages.length).set(pages);
            const consumed = kernel.encodePages({
              ram,
              pageShift: 12,
              list,
              listStart: 0,
              count: pages.length,
              out: a,
              zeroPages,
              ...(xbzrle ? { xbzrle: { cache: { tags, data, slots: SLOTS }, scratch } } : {}),
              stats,
            });
            expect(consumed).toBe(pages.length);
            const expected = encodePagesOneByOne(
              bytes(ram),
              12,
              pages,
              { zeroPages, ...(cache ? { cache } : {}) },
              counts,
            );
            const stream = writeStream(expected, 12);
            const before = totals.bytes;
            kernel.takeEncodeStats(stats, totals);
            expect(totals.bytes - before).toBe(stream.length);
            expect(same(bytes(a).subarray(0, stream.length), stream)).toBe(true);
          }
          expect({ ...totals, bytes: 0 }).toEqual({ ...counts, bytes: 0 });
        },
      ),
      { numRuns: 300 },
    );
  });

  it("XBZRLE: the destination, decoding round after round, holds the source's pages (a page sent as zero is cached as zero)", () => {
    const step = fc.record({
      pages: fc.array(fc.nat(7), { minLength: 1, maxLength: 8 }),
      // Before the round the guest zeroes a page (0), writes a byte into it
      // (1) or writes it back to its first content (2).
      writes: fc.array(fc.tuple(fc.nat(7), fc.nat(2)), { maxLength: 4 }),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 2, maxLength: 6 }), (rounds) => {
        fillRam(3, 1000);
        bytes(tags).fill(0);
        bytes(dst).fill(0);
        const source = bytes(ram);
        for (const [round, { pages, writes }] of rounds.entries()) {
          for (const [i, [p, action]] of writes.entries()) {
            const page = source.subarray(p * PAGE, (p + 1) * PAGE);
            if (action === 0) page.fill(0);
            else if (action === 1)
              page[(i * 37) % PAGE] = ((page[(i * 37) % PAGE] ?? 0) + 1) & 0xff;
            else for (let j = 0; j < PAGE; j++) page[j] = (j * 13 + p * 7 + 3) & 0xff;
          }
          const unique = [...new Set(pages)];
          new Uint32Array(layout.memory.buffer, list.offset, unique.length).set(unique);
          kernel.encodePages({
            ram,
            pageShift: 12,
            list,
            listStart: 0,
            count: unique.length,
            out: a,
            zeroPages: true,
            xbzrle: { cache: { tags, data, slots: SLOTS }, scratch },
            stats,
          });
          const { bytes: length } = kernel.takeEncodeStats(stats, emptyEncodeCounts());
          kernel.decodePages(a, length, dst, 12);
          for (const p of unique) {
            expect(
              same(
                bytes(dst).subarray(p * PAGE, (p + 1) * PAGE),
                source.subarray(p * PAGE, (p + 1) * PAGE),
              ),
              `page ${p} after round ${round}`,
            ).toBe(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  it("stops before a packet would overflow", () => {
    fillRam(2, 1000);
    new Uint32Array(layout.memory.buffer, list.offset, 4).set([1, 2, 3, 4]);
    const small = layout.allocate("small-packet", 2 * (PAGE + 8) + 100);
    const consumed = kernel.encodePages({
      ram,
      pageShift: 12,
      list,
      listStart: 0,
      count: 4,
      out: small,
      zeroPages: true,
      stats,
    });
    expect(consumed).toBe(2);
    expect(kernel.takeEncodeStats(stats, emptyEncodeCounts()).bytes).toBe(2 * (PAGE + 8));
  });

  it("refuses a page number past guest RAM before the kernel runs", () => {
    new Uint32Array(layout.memory.buffer, list.offset, 1).set([RAM_PAGES]);
    expect(() =>
      kernel.encodePages({
        ram,
        pageShift: 12,
        list,
        listStart: 0,
        count: 1,
        out: a,
        zeroPages: true,
        stats,
      }),
    ).toThrow(/past 16 pages/);
  });

  it("decodes a stream into destination RAM equal to the source pages", () => {
    fillRam(3, 3);
    const pages = [0, 1, 2, 5, 9, 15];
    new Uint32Array(layout.memory.buffer, list.offset, pages.length).set(pages);
    kernel.encodePages({
      ram,
      pageShift: 12,
      list,
      listStart: 0,
      count: pages.length,
      out: a,
      zeroPages: true,
      stats,
    });
    const length = kernel.takeEncodeStats(stats, emptyEncodeCounts()).bytes;
    bytes(dst).fill(0xee);
    expect(kernel.decodePages(a, length, dst, 12)).toBe(pages.length);
    for (const p of pages) {
      expect(bytes(dst).subarray(p * PAGE, (p + 1) * PAGE)).toEqual(
        bytes(ram).subarray(p * PAGE, (p + 1) * PAGE),
      );
    }
    expect(bytes(dst)[3 * PAGE]).toBe(0xee);
  });

  it("refuses corrupted streams as the oracle does and never writes outside RAM (fuzz)", () => {
    fillRam(4, 4);
    const pages = [0, 3, 7, 8];
    new Uint32Array(layout.memory.buffer, list.offset, pages.length).set(pages);
    kernel.encodePages({
      ram,
      pageShift: 12,
      list,
      listStart: 0,
      count: pages.length,
      out: b,
      zeroPages: true,
      stats,
    });
    const length = kernel.takeEncodeStats(stats, emptyEncodeCounts()).bytes;
    const good = bytes(b).slice(0, length);
    const guard = layout.allocate("guard-after-dst", 64);
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), value: fc.nat(255) }), { minLength: 1, maxLength: 4 }),
        fc.nat(),
        (mutations, cut) => {
          const stream = good.slice(0, good.length - (cut % 3 === 0 ? cut % 50 : 0));
          for (const m of mutations) {
            // Mostly hit headers, where a flip changes the meaning.
            const at = m.at % 2 === 0 ? m.at % 16 : m.at % stream.length;
            stream[at] = m.value;
          }
          bytes(a).set(stream, 0);
          bytes(guard).fill(0xab);
          const mirror = bytes(dst).slice();
          const expected = decodeStreamOneByOne(stream, mirror, 12);
          if (typeof expected === "number") {
            expect(kernel.decodePages(a, stream.length, dst, 12)).toBe(expected);
          } else {
            let error: unknown;
            try {
              kernel.decodePages(a, stream.length, dst, 12);
            } catch (e) {
              error = e;
            }
            expect(error).toBeInstanceOf(PageStreamError);
            expect((error as PageStreamError).code).toBe(expected.code);
            expect((error as PageStreamError).offset).toBe(expected.offset);
          }
          expect(same(bytes(dst), mirror)).toBe(true);
          expect(bytes(guard).every((x) => x === 0xab)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("seeds pages with about the asked fraction of zero pages", () => {
    const big = layout.allocate("seeded", 256 * PAGE, 4096);
    kernel.seedPages(big, 12, 0, 256, 9, 0.25);
    let zero = 0;
    for (let p = 0; p < 256; p++) if (kernel.isZero(big, p * PAGE, PAGE)) zero++;
    // Binomial(256, 0.25): mean 64, sd 6.9; 5 sd either side.
    expect(zero).toBeGreaterThan(64 - 35);
    expect(zero).toBeLessThan(64 + 35);
  });
});

describe("page hash tables recorded while encoding and decoding", () => {
  const SENTINEL = 0xa5a5_a5a5_a5a5_a5a5n;
  let tableSpace: Region;

  beforeAll(() => {
    // Room for a slot per page, plus 7 bytes of skew.
    tableSpace = layout.allocate("hash-table-space", RAM_PAGES * 8 + 8);
  });

  /** A table of `pages` slots starting `skew` bytes in (unaligned when skew > 0). */
  function table(pages: number, skew: number): { region: Region; view: DataView } {
    const region = new Region({
      name: "page-hashes",
      offset: tableSpace.offset + skew,
      byteLength: pages * 8,
    });
    for (let p = 0; p < pages; p++) {
      new DataView(layout.memory.buffer).setBigUint64(region.offset + p * 8, SENTINEL, true);
    }
    return { region, view: new DataView(layout.memory.buffer, region.offset, pages * 8) };
  }

  function slots(view: DataView, pages: number): bigint[] {
    return Array.from({ length: pages }, (_, p) => view.getBigUint64(p * 8, true));
  }

  it("encoder and decoder fill each touched slot with the page's XXH3-64 (oracle), at any skew", () => {
    fc.assert(
      fc.property(
        // The stream's header keeps flags in the low 12 bits: pages of 4 KiB and up.
        fc.constant(12),
        fc.array(fc.nat(), { minLength: 1, maxLength: 24 }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(255),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 7 }),
        (pageShift, picks, zeroEvery, seed, zeroPages, xbzrle, encodeSkew, decodeSkew) => {
          const pageBytes = 2 ** pageShift;
          const pages = (RAM_PAGES * PAGE) / pageBytes;
          const src = bytes(ram);
          for (let p = 0; p < pages; p++) {
            const page = src.subarray(p * pageBytes, (p + 1) * pageBytes);
            if (p % zeroEvery === 0) page.fill(0);
            else for (let i = 0; i < pageBytes; i++) page[i] = (i * 31 + p * 7 + seed) & 0xff;
          }
          const list1 = picks.map((x) => x % pages);
          new Uint32Array(layout.memory.buffer, list.offset, list1.length).set(list1);
          bytes(tags).fill(0);
          const encodeTable = table(pages, encodeSkew);
          // Twice with XBZRLE: the second pass meets cache hits, some unchanged.
          let length = 0;
          for (let pass = 0; pass < (xbzrle ? 2 : 1); pass++) {
            const consumed = kernel.encodePages({
              ram,
              pageShift,
              list,
              listStart: 0,
              count: list1.length,
              out: a,
              zeroPages,
              ...(xbzrle ? { xbzrle: { cache: { tags, data, slots: SLOTS }, scratch } } : {}),
              stats,
              hashes: encodeTable.region,
            });
            expect(consumed).toBe(list1.length);
            length = kernel.takeEncodeStats(stats, emptyEncodeCounts()).bytes;
          }
          const sentinels = new Array<bigint>(pages).fill(SENTINEL);
          expect(slots(encodeTable.view, pages)).toEqual(
            pageHashesOneByOne(src, pageShift, list1, sentinels),
          );
          // Decode the last packet into the destination with its own table.
          bytes(dst).fill(0x3c);
          const mirror = bytes(dst).slice();
          const decodedPages: number[] = [];
          const stream = bytes(a).slice(0, length);
          // The pages the stream names, in order (headers walked by the oracle's rules).
          expect(decodeStreamOneByOne(stream, mirror, pageShift)).toBeTypeOf("number");
          for (let at = 0; at < stream.length; ) {
            const header = new DataView(stream.buffer, at, 8).getBigUint64(0, false);
            const flag = Number(header & 0xfffn);
            decodedPages.push(Number(header >> BigInt(pageShift)));
            at += 8;
            if (flag === 0x02) at += 1;
            else if (flag === 0x08) at += pageBytes;
            else at += 3 + ((stream[at + 1] ?? 0) << 8) + (stream[at + 2] ?? 0);
          }
          bytes(c).set(stream, 0);
          const decodeTable = table(pages, decodeSkew);
          expect(kernel.decodePages(c, length, dst, pageShift, decodeTable.region)).toBe(
            decodedPages.length,
          );
          expect(same(bytes(dst), mirror)).toBe(true);
          expect(slots(decodeTable.view, pages)).toEqual(
            pageHashesOneByOne(bytes(dst), pageShift, decodedPages, sentinels),
          );
        },
      ),
      { numRuns: 150 },
    );
  });

  it("refuses a hash table shorter than a slot per page before the kernel runs", () => {
    const short = new Region({ name: "short-hashes", offset: tableSpace.offset, byteLength: 8 });
    new Uint32Array(layout.memory.buffer, list.offset, 1).set([0]);
    expect(() =>
      kernel.encodePages({
        ram,
        pageShift: 12,
        list,
        listStart: 0,
        count: 1,
        out: a,
        zeroPages: true,
        stats,
        hashes: short,
      }),
    ).toThrow(/short-hashes/);
    expect(() => kernel.decodePages(a, 9, dst, 12, short)).toThrow(/short-hashes/);
  });
});
