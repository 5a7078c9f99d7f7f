import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { DirtyKernel, MIN_HARVEST_BATCH } from "../src/wasm/dirty.js";

/*
 * The page lists the dirty kernels write (iterate, harvestPages and
 * harvestPagesQuiet: KVM_GET_DIRTY_LOG's bitmap turned into the page numbers
 * a migration sends, as QEMU's migration_bitmap_find_dirty walks it). Each
 * bitmap word of 64 pages is written as the page numbers of its set bits,
 * lowest first; the kernels write a word's lowest and highest page without
 * a branch and every page of a word with more bits. The bitmaps here are
 * written bit by bit by hand (bit p & 63 of little-endian u64 word p >>> 6),
 * so the expected list is the marked pages, sorted: in particular words of
 * exactly three pages, whose middle page is neither the lowest nor the
 * highest.
 */

const PAGES = 2000; // 31 whole words and a partial one: every path of the kernels.

/** Pages marked per word, by the count of bits in the word. */
const MARKED: readonly number[] = [
  // Word 0: three pages (one in the middle).
  3,
  17,
  40,
  // Word 1: three at the edges of the word.
  64,
  65,
  127,
  // Word 2: one page; word 3: two.
  130,
  192 + 9,
  192 + 50,
  // Word 4: four.
  256 + 1,
  256 + 2,
  256 + 30,
  256 + 62,
  // Word 9: three adjacent.
  576 + 20,
  576 + 21,
  576 + 22,
  // Word 15: three, the last word of the first 16-word step.
  960 + 0,
  960 + 32,
  960 + 63,
  // Word 16 (past the first step): three.
  1024 + 7,
  1024 + 8,
  1024 + 60,
  // Word 30: every page.
  ...Array.from({ length: 64 }, (_, i) => 1920 + i),
  // Word 31, the partial last word (pages 1984 to 1999): three, the last page among them.
  1984 + 1,
  1984 + 9,
  1999,
];

function setUp() {
  const layout = new MemoryLayout();
  const kernel = DirtyKernel.on(layout.memory);
  const bitmap = DirtyBitmap.allocate(layout, "page-list bitmap", PAGES);
  const cursor = layout.allocate("page-list cursor", 8);
  const big = layout.allocate("page-list out (a 16-word step fits)", 2048 * 4);
  const small = layout.allocate("page-list out (one word at a time)", MIN_HARVEST_BATCH * 4);
  /** Marks MARKED by hand in the bitmap's bytes. */
  const mark = () => {
    const bytes = new Uint8Array(layout.memory.buffer, bitmap.region.offset, bitmap.words * 8);
    bytes.fill(0);
    for (const p of MARKED) bytes[p >> 3] = (bytes[p >> 3] ?? 0) | (1 << (p & 7));
  };
  /** Every page number the batches of `next` write, each batch's slots first filled with 0xffffffff. */
  const collect = (out: Region, next: () => number) => {
    kernel.resetCursor(cursor);
    const slots = new Uint32Array(layout.memory.buffer, out.offset, out.byteLength / 4);
    const seen: number[] = [];
    for (;;) {
      slots.fill(0xffffffff);
      const n = next();
      if (n === 0) return seen;
      seen.push(...slots.subarray(0, n));
    }
  };
  return { kernel, bitmap, cursor, big, small, mark, collect };
}

const sorted = [...MARKED].sort((a, b) => a - b);

describe("page lists of dirty bitmap words: every set bit, lowest first", () => {
  it("the hand-made bitmap has words of one, two, three, four and 64 pages", () => {
    const perWord = new Map<number, number>();
    for (const p of MARKED) perWord.set(p >>> 6, (perWord.get(p >>> 6) ?? 0) + 1);
    expect([...perWord.values()].filter((n) => n === 3)).toHaveLength(6);
    expect(new Set(perWord.values())).toEqual(new Set([1, 2, 3, 4, 64]));
    expect(new Set(MARKED).size).toBe(MARKED.length);
  });

  it("iterate writes each page once, a batch of 16-word steps or one word at a time", () => {
    const { kernel, bitmap, cursor, big, small, mark, collect } = setUp();
    mark();
    for (const out of [big, small]) {
      expect(
        collect(out, () => kernel.iterate(bitmap, cursor, out)),
        out.name,
      ).toEqual(sorted);
    }
    // Iterating leaves the bitmap as it was.
    expect(kernel.count(bitmap)).toBe(MARKED.length);
  });

  it("harvestPages writes each page once and clears the bitmap", () => {
    const { kernel, bitmap, cursor, big, small, mark, collect } = setUp();
    for (const out of [big, small]) {
      mark();
      expect(
        collect(out, () => kernel.harvestPages(bitmap, cursor, out)),
        out.name,
      ).toEqual(sorted);
      expect(kernel.count(bitmap)).toBe(0);
    }
  });

  it("harvestPagesQuiet writes each page once and clears the bitmap", () => {
    const { kernel, bitmap, cursor, big, small, mark, collect } = setUp();
    for (const out of [big, small]) {
      mark();
      expect(
        collect(out, () => kernel.harvestPagesQuiet(bitmap, cursor, out)),
        out.name,
      ).toEqual(sorted);
      expect(kernel.count(bitmap)).toBe(0);
    }
  });

  it("a word of exactly three pages alone: all three, at any place in the word", () => {
    const { kernel, bitmap, cursor, big, collect } = setUp();
    // Word 0 is taken by the 16-word steps, word 16 one word at a time.
    for (const base of [0, 1024]) {
      for (const three of [
        [0, 1, 2],
        [0, 31, 63],
        [61, 62, 63],
        [5, 40, 41],
      ]) {
        const want = three.map((p) => base + p);
        for (const p of want) kernel.markPage(bitmap, p);
        expect(collect(big, () => kernel.iterate(bitmap, cursor, big))).toEqual(want);
        expect(collect(big, () => kernel.harvestPagesQuiet(bitmap, cursor, big))).toEqual(want);
        for (const p of want) kernel.markPage(bitmap, p);
        expect(collect(big, () => kernel.harvestPages(bitmap, cursor, big))).toEqual(want);
      }
    }
  });
});
