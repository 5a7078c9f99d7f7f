import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyBitmapOracle } from "../src/oracle/dirty.js";
import { DirtyKernel, MIN_HARVEST_BATCH } from "../src/wasm/dirty.js";

/*
 * Every dirty-tracking kernel against its one-page-at-a-time oracle, on
 * random bitmaps, sizes (including sizes that are not a multiple of 64
 * pages) and positions.
 */

const layout = new MemoryLayout();
const kernel = DirtyKernel.on(layout.memory);
const MAX_PAGES = 5000;
// One pool of regions reused across runs; bitmaps are built over them.
const bitmapRegion = layout.allocate("bitmap", DirtyBitmap.bytesFor(MAX_PAGES));
const snapshotRegion = layout.allocate("snapshot", DirtyBitmap.bytesFor(MAX_PAGES));
const distinctRegion = layout.allocate("distinct", DirtyBitmap.bytesFor(MAX_PAGES));
const cursor = layout.allocate("cursor", 8);

function bitmapOver(region: typeof bitmapRegion, pages: number, initial: DirtyBitmapOracle) {
  const bytes = region.bytes(layout.memory);
  bytes.fill(0);
  bytes.set(initial.toBitmapBytes());
  return new DirtyBitmap(region, pages);
}

const scenario = fc.integer({ min: 1, max: MAX_PAGES }).chain((pages) =>
  fc.record({
    pages: fc.constant(pages),
    initial: fc.array(fc.integer({ min: 0, max: pages - 1 }), { maxLength: 300 }),
    marks: fc.array(fc.integer({ min: 0, max: pages - 1 }), { maxLength: 300 }),
    ranges: fc.array(
      fc
        .integer({ min: 0, max: pages - 1 })
        .chain((first) => fc.tuple(fc.constant(first), fc.integer({ min: 0, max: pages - first }))),
      { maxLength: 8 },
    ),
    batch: fc.integer({ min: 1, max: 70 }),
  }),
);

describe("dirty-tracking kernels against the oracle", () => {
  it("mark, mark range, test and count agree", () => {
    fc.assert(
      fc.property(scenario, ({ pages, initial, marks, ranges }) => {
        const oracle = new DirtyBitmapOracle(pages);
        for (const page of initial) oracle.markPage(page);
        const bitmap = bitmapOver(bitmapRegion, pages, oracle);
        for (const page of marks) expect(kernel.markPage(bitmap, page)).toBe(oracle.markPage(page));
        for (const [first, count] of ranges) {
          expect(kernel.markRange(bitmap, first, count)).toBe(oracle.markRange(first, count));
        }
        expect(kernel.count(bitmap)).toBe(oracle.count());
        expect([...bitmap.region.bytes(layout.memory).subarray(0, bitmap.words * 8)]).toEqual([
          ...oracle.toBitmapBytes(),
        ]);
        for (const page of marks) expect(kernel.testPage(bitmap, page)).toBe(oracle.testPage(page));
      }),
      { numRuns: 300 },
    );
  });

  it("harvest returns the count, copies the snapshot and clears the bitmap", () => {
    fc.assert(
      fc.property(scenario, ({ pages, initial }) => {
        const oracle = new DirtyBitmapOracle(pages);
        for (const page of initial) oracle.markPage(page);
        const bitmap = bitmapOver(bitmapRegion, pages, oracle);
        const snapshot = bitmapOver(snapshotRegion, pages, new DirtyBitmapOracle(pages));
        const expected = oracle.harvest();
        expect(kernel.harvest(bitmap, snapshot)).toBe(expected.count);
        expect(kernel.count(bitmap)).toBe(0);
        expect([...snapshot.region.bytes(layout.memory).subarray(0, snapshot.words * 8)]).toEqual([
          ...expected.snapshot.toBitmapBytes(),
        ]);
      }),
      { numRuns: 300 },
    );
  });

  it("iterate yields every dirty page in order, in batches of any size", () => {
    fc.assert(
      fc.property(scenario, ({ pages, initial, batch }) => {
        const oracle = new DirtyBitmapOracle(pages);
        for (const page of initial) oracle.markPage(page);
        const snapshot = bitmapOver(snapshotRegion, pages, oracle);
        const out = layout.allocate(`out-${Math.random()}`, batch * 4);
        kernel.resetCursor(cursor);
        const seen: number[] = [];
        for (let n = kernel.iterate(snapshot, cursor, out); n > 0; ) {
          expect(n).toBeLessThanOrEqual(batch);
          seen.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
          n = kernel.iterate(snapshot, cursor, out);
        }
        expect(seen).toEqual(oracle.dirtyPages());
      }),
      { numRuns: 200 },
    );
  });

  it("harvestPages and harvestPagesQuiet (one pass, atomic or quiet) equal harvest then iterate, in batches of any size", () => {
    fc.assert(
      fc.property(scenario, fc.boolean(), ({ pages, initial, batch }, paused) => {
        const oracle = new DirtyBitmapOracle(pages);
        for (const page of initial) oracle.markPage(page);
        const bitmap = bitmapOver(bitmapRegion, pages, oracle);
        // Bits past the last page are never set by markers; if present they are dropped.
        const lastWord = new DataView(
          layout.memory.buffer,
          bitmap.region.offset + (bitmap.words - 1) * 8,
          8,
        );
        if (pages % 64 !== 0)
          lastWord.setBigUint64(0, lastWord.getBigUint64(0, true) | (1n << 63n), true);
        const out = layout.allocate(`batch-${Math.random()}`, (MIN_HARVEST_BATCH + batch) * 4);
        kernel.resetCursor(cursor);
        const seen: number[] = [];
        const next = () =>
          paused
            ? kernel.harvestPagesQuiet(bitmap, cursor, out)
            : kernel.harvestPages(bitmap, cursor, out);
        for (let n = next(); n > 0; n = next()) {
          seen.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
        }
        expect(seen).toEqual(oracle.harvest().snapshot.dirtyPages());
        expect(kernel.count(bitmap)).toBe(0);
      }),
      { numRuns: 300 },
    );
  });

  it("refuses a harvest batch too small to hold one word's pages", () => {
    const bitmap = bitmapOver(bitmapRegion, 100, new DirtyBitmapOracle(100));
    const small = layout.allocate("small-batch", (MIN_HARVEST_BATCH - 1) * 4);
    expect(() => kernel.harvestPages(bitmap, cursor, small)).toThrow("needs at least 66");
  });

  it("merge ORs a snapshot in and counts pages newly set", () => {
    fc.assert(
      fc.property(scenario, ({ pages, initial, marks }) => {
        const a = new DirtyBitmapOracle(pages);
        const b = new DirtyBitmapOracle(pages);
        for (const page of initial) a.markPage(page);
        for (const page of marks) b.markPage(page);
        const target = bitmapOver(distinctRegion, pages, a);
        const source = bitmapOver(snapshotRegion, pages, b);
        expect(kernel.merge(target, source)).toBe(a.merge(b));
        expect([...target.region.bytes(layout.memory).subarray(0, target.words * 8)]).toEqual([
          ...a.toBitmapBytes(),
        ]);
      }),
      { numRuns: 200 },
    );
  });
});
