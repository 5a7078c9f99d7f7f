import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { harvestPagesOneByOne } from "../src/oracle/dirty.js";
import { DirtyKernel, MIN_HARVEST_BATCH } from "../src/wasm/dirty.js";

/*
 * The quiet harvest (plain loads and stores, for a bitmap no writer marks:
 * the retired bitmap of an epoch-swapped pair, or vCPUs paused) against the
 * one-page-at-a-time oracle: random bitmaps of any density, sizes that are
 * not a multiple of 64 pages, batches on both sides of the hot loop's 1,026
 * slots, resuming batch after batch, and slices with a first page.
 */

const layout = new MemoryLayout();
const kernel = DirtyKernel.on(layout.memory);
const MAX_PAGES = 9000;
// The hot loop takes 16 words and needs 16 * 64 + 2 slots of room.
const STEP_SLOTS = 1026;
const bitmapRegion = layout.allocate("bitmap", DirtyBitmap.bytesFor(MAX_PAGES));
const snapshotRegion = layout.allocate("snapshot", DirtyBitmap.bytesFor(MAX_PAGES));
const cursor = layout.allocate("cursor", 8);
const out = layout.allocate("out", 5000 * 4);

/** Fills the region's first `words` words with random bits at `density` (a seeded xorshift). */
function fillWords(
  region: typeof bitmapRegion,
  words: number,
  density: number,
  seed: number,
): void {
  const bytes = region.bytes(layout.memory);
  bytes.fill(0);
  let state = seed >>> 0 || 1;
  for (let bit = 0; bit < words * 64; bit++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    if ((state >>> 0) / 2 ** 32 < density)
      bytes[bit >>> 3] = (bytes[bit >>> 3] ?? 0) | (1 << (bit & 7));
  }
}

/** Runs the quiet harvest in batches of `capacity` until it returns 0; returns every page and the batch sizes. */
function harvestAll(bitmap: DirtyBitmap, capacity: number, firstPage = 0) {
  const region = new Region({ name: "batch", offset: out.offset, byteLength: capacity * 4 });
  kernel.resetCursor(cursor);
  const pages: number[] = [];
  const sizes: number[] = [];
  for (let n = kernel.harvestPagesQuiet(bitmap, cursor, region, firstPage); n > 0; ) {
    sizes.push(n);
    pages.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
    n = kernel.harvestPagesQuiet(bitmap, cursor, region, firstPage);
  }
  return { pages, sizes };
}

const scenario = fc.record({
  pages: fc.oneof(
    fc.integer({ min: 1, max: 200 }),
    fc.integer({ min: 1000, max: MAX_PAGES }),
    fc.constantFrom(64, 1024, 1025, 2047, 2048, 4096),
  ),
  density: fc.constantFrom(0, 0.01, 0.03, 0.1, 0.5, 0.99, 1),
  seed: fc.integer({ min: 1, max: 2 ** 31 }),
  capacity: fc.oneof(
    fc.integer({ min: MIN_HARVEST_BATCH, max: 200 }),
    fc.integer({ min: STEP_SLOTS - 3, max: STEP_SLOTS + 3 }),
    fc.integer({ min: STEP_SLOTS, max: 5000 }),
  ),
});

describe("quiet one-pass harvest against the oracle", () => {
  it("yields every dirty page once, in order, in batches of any size, and clears the bitmap", () => {
    fc.assert(
      fc.property(scenario, ({ pages, density, seed, capacity }) => {
        const words = Math.ceil(pages / 64);
        // Bits past the last page are set too: they are cleared, never reported.
        fillWords(bitmapRegion, words, density, seed);
        const copy = bitmapRegion.bytes(layout.memory).slice(0, words * 8);
        const expected = harvestPagesOneByOne(copy, pages);
        const bitmap = new DirtyBitmap(bitmapRegion, pages);
        const { pages: seen, sizes } = harvestAll(bitmap, capacity);
        expect(seen).toEqual(expected);
        for (const size of sizes) expect(size).toBeLessThanOrEqual(capacity);
        expect(
          [...bitmapRegion.bytes(layout.memory).subarray(0, words * 8)].every((b) => b === 0),
        ).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it("fills a batch to within one step before handing it over, then resumes where it stopped", () => {
    // Every page dirty: each word gives 64 pages, so batch sizes are exact.
    const pages = 64 * 16 * 8;
    fillWords(bitmapRegion, pages / 64, 1, 1);
    const bitmap = new DirtyBitmap(bitmapRegion, pages);
    const capacity = 3000;
    const { pages: seen, sizes } = harvestAll(bitmap, capacity);
    expect(seen).toEqual(Array.from({ length: pages }, (_, i) => i));
    // 2 steps (2048 pages) fit, a third would pass 3000 - 1026: each batch holds 2048.
    expect(sizes).toEqual([2048, 2048, 2048, 2048]);
  });

  it("harvestQuiet equals the atomic harvest on any words, and so does the quiet one-pass harvest", () => {
    fc.assert(
      fc.property(scenario, ({ pages, density, seed, capacity }) => {
        const words = Math.ceil(pages / 64);
        const bytes = () => bitmapRegion.bytes(layout.memory).subarray(0, words * 8);
        const snap = () => snapshotRegion.bytes(layout.memory).subarray(0, words * 8);
        const bitmap = new DirtyBitmap(bitmapRegion, pages);
        const snapshot = new DirtyBitmap(snapshotRegion, pages);
        fillWords(bitmapRegion, words, density, seed);
        const input = bytes().slice();
        snap().fill(0xa5);
        const atomic = kernel.harvest(bitmap, snapshot);
        const atomicSnapshot = snap().slice();
        bytes().set(input);
        snap().fill(0x5a);
        expect(kernel.harvestQuiet(bitmap, snapshot)).toBe(atomic);
        expect(snap()).toEqual(atomicSnapshot);
        expect(bytes().every((b) => b === 0)).toBe(true);
        // The quiet one-pass harvest reports the oracle's pages.
        bytes().set(input);
        const expected = harvestPagesOneByOne(input.slice(), pages);
        kernel.resetCursor(cursor);
        const batch = new Region({
          name: "paused-batch",
          offset: out.offset,
          byteLength: capacity * 4,
        });
        const seen: number[] = [];
        for (let n = kernel.harvestPagesQuiet(bitmap, cursor, batch); n > 0; ) {
          seen.push(...new Uint32Array(layout.memory.buffer, batch.offset, n));
          n = kernel.harvestPagesQuiet(bitmap, cursor, batch);
        }
        expect(seen).toEqual(expected);
        expect(bytes().every((b) => b === 0)).toBe(true);
      }),
      { numRuns: 150 },
    );
  });

  it("iterate (read and emit, no clear) takes the same steps and leaves the snapshot as it was", () => {
    fc.assert(
      fc.property(scenario, ({ pages, density, seed, capacity }) => {
        const words = Math.ceil(pages / 64);
        fillWords(snapshotRegion, words, density, seed);
        const before = snapshotRegion.bytes(layout.memory).slice(0, words * 8);
        const expected = harvestPagesOneByOne(before.slice(), pages);
        const snapshot = new DirtyBitmap(snapshotRegion, pages);
        const batch = new Region({
          name: "iterate-batch",
          offset: out.offset,
          byteLength: capacity * 4,
        });
        kernel.resetCursor(cursor);
        const seen: number[] = [];
        for (let n = kernel.iterate(snapshot, cursor, batch); n > 0; ) {
          expect(n).toBeLessThanOrEqual(capacity);
          seen.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
          n = kernel.iterate(snapshot, cursor, batch);
        }
        expect(seen).toEqual(expected);
        expect(snapshotRegion.bytes(layout.memory).subarray(0, words * 8)).toEqual(before);
      }),
      { numRuns: 200 },
    );
  });

  it("numbers the pages of a slice from its first page", () => {
    fc.assert(
      fc.property(
        scenario,
        fc.integer({ min: 0, max: 2 ** 20 }),
        ({ pages, density, seed, capacity }, firstWordSeed) => {
          const words = Math.ceil(pages / 64);
          fillWords(bitmapRegion, words, density, seed);
          const whole = new DirtyBitmap(bitmapRegion, pages);
          const first = firstWordSeed % words;
          const slice = whole.slice(first, words - first);
          const copy = bitmapRegion.bytes(layout.memory).slice(0, words * 8);
          const expected = harvestPagesOneByOne(copy, pages).filter((p) => p >= first * 64);
          expect(harvestAll(slice, capacity, first * 64).pages).toEqual(expected);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("refuses small batches, bad first pages and slices outside the bitmap", () => {
    const bitmap = new DirtyBitmap(bitmapRegion, 1000);
    const small = layout.allocate("small", (MIN_HARVEST_BATCH - 1) * 4);
    expect(() => kernel.harvestPagesQuiet(bitmap, cursor, small)).toThrow("needs at least 66");
    expect(() => kernel.harvestPagesQuiet(bitmap, cursor, out, -1)).toThrow(RegionBoundsError);
    expect(() => kernel.harvestPagesQuiet(bitmap, cursor, out, 2 ** 32 - 999)).toThrow(
      "past page 2^32",
    );
    const shortCursor = layout.allocate("short-cursor", 4);
    expect(() => kernel.harvestPagesQuiet(bitmap, shortCursor, out)).toThrow("harvest cursor");
    expect(() => bitmap.slice(10, 10)).toThrow("not inside the bitmap's 16 words");
    expect(() => bitmap.slice(-1, 2)).toThrow(RegionBoundsError);
    expect(() => bitmap.slice(0, 0)).toThrow(RegionBoundsError);
    expect(() => kernel.harvestQuiet(bitmap, new DirtyBitmap(snapshotRegion, 999))).toThrow(
      "tracks 999 pages",
    );
  });
});
