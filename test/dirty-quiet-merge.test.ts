import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { harvestQuietMergeOneByOne } from "../src/oracle/dirty.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * The one-pass quiet harvest and merge (what the dirty profile and the
 * paused sync at stop-and-copy run) against the page-at-a-time oracle:
 * random bitmaps and distinct sets of any density, page counts that are not
 * a multiple of 64 (odd word counts take the kernel's scalar tail), and
 * regions at any byte offset (the kernel's 16-byte loads are unaligned).
 */

const layout = new MemoryLayout();
const kernel = DirtyKernel.on(layout.memory);
const MAX_PAGES = 5000;
// 16 bytes of room before each bitmap so it can start at any offset from 0 to 15.
const room = DirtyBitmap.bytesFor(MAX_PAGES) + 16;
const areas = {
  bitmap: layout.allocate("bitmap-area", room),
  snapshot: layout.allocate("snapshot-area", room),
  distinct: layout.allocate("distinct-area", room),
};

/** A bitmap of `pages` pages `shift` bytes into an area. */
function at(area: Region, shift: number, pages: number): DirtyBitmap {
  const region = new Region({
    name: `${area.name}+${shift}`,
    offset: area.offset + shift,
    byteLength: DirtyBitmap.bytesFor(pages),
  });
  return new DirtyBitmap(region, pages);
}

/** Random bytes for pages 0 to pages - 1; the bits past the last page stay clear, as markers leave them. */
function bitsOf(pages: number) {
  return fc
    .uint8Array({ minLength: Math.ceil(pages / 8), maxLength: Math.ceil(pages / 8) })
    .map((bytes) => {
      const full = new Uint8Array(DirtyBitmap.bytesFor(pages));
      full.set(bytes);
      for (let bit = pages; bit < full.length * 8; bit++) {
        full[bit >>> 3] = (full[bit >>> 3] ?? 0) & ~(1 << (bit & 7));
      }
      return full;
    });
}

/** Bytes ANDed with a repeating random mask, so bitmaps come sparse as well as half full. */
function thin(bytes: Uint8Array, keep: Uint8Array): Uint8Array {
  return bytes.map((b, i) => b & (keep[i % keep.length] ?? 0xff));
}

const scenario = fc
  .record({
    pages: fc.oneof(
      fc.integer({ min: 1, max: 200 }),
      fc.integer({ min: 200, max: MAX_PAGES }),
      fc.constantFrom(63, 64, 65, 127, 128, 129, 191, 192),
    ),
    shifts: fc.tuple(
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 0, max: 15 }),
      fc.integer({ min: 0, max: 15 }),
    ),
    masks: fc.tuple(
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
    ),
  })
  .chain((s) =>
    fc.record({ s: fc.constant(s), bitmap: bitsOf(s.pages), distinct: bitsOf(s.pages) }),
  );

describe("one-pass quiet harvest and merge against the oracle", () => {
  it("moves the bitmap into the snapshot, clears it, ORs it into the distinct set and counts both", () => {
    fc.assert(
      fc.property(scenario, ({ s, bitmap: bitmapBits, distinct: distinctBits }) => {
        const { pages, shifts, masks } = s;
        const bitmap = at(areas.bitmap, shifts[0], pages);
        const snapshot = at(areas.snapshot, shifts[1], pages);
        const distinct = at(areas.distinct, shifts[2], pages);
        const input = thin(bitmapBits, masks[0]);
        const before = thin(distinctBits, masks[1]);
        bitmap.region.bytes(layout.memory).set(input);
        snapshot.region.bytes(layout.memory).fill(0xa5);
        distinct.region.bytes(layout.memory).set(before);

        const oracleBitmap = input.slice();
        const oracleSnapshot = new Uint8Array(input.length);
        const oracleDistinct = before.slice();
        const expected = harvestQuietMergeOneByOne(
          oracleBitmap,
          oracleSnapshot,
          oracleDistinct,
          pages,
        );

        expect(kernel.harvestQuietMerge(bitmap, snapshot, distinct)).toEqual(expected);
        expect(bitmap.region.bytes(layout.memory)).toEqual(oracleBitmap);
        expect(snapshot.region.bytes(layout.memory)).toEqual(oracleSnapshot);
        expect(distinct.region.bytes(layout.memory)).toEqual(oracleDistinct);
      }),
      { numRuns: 400 },
    );
  });

  it("counts what the three passes it replaces count (harvestQuiet, merge, count)", () => {
    const pages = 4099;
    const bitmap = at(areas.bitmap, 0, pages);
    const snapshot = at(areas.snapshot, 0, pages);
    const distinct = at(areas.distinct, 0, pages);
    // Known bits: pages 0, 63, 64 and the last page dirty; the distinct set already holds 63 and 1000.
    distinct.region.bytes(layout.memory).fill(0);
    bitmap.region.bytes(layout.memory).fill(0);
    for (const page of [0, 63, 64, pages - 1]) kernel.markPage(bitmap, page);
    for (const page of [63, 1000]) kernel.markPage(distinct, page);
    const counts = kernel.harvestQuietMerge(bitmap, snapshot, distinct);
    // 4 harvested; distinct {0, 63, 64, 1000, 4098}: 5.
    expect(counts).toEqual({ harvested: 4, distinct: 5 });
    expect(kernel.count(bitmap)).toBe(0);
    expect(kernel.count(snapshot)).toBe(4);
    expect(kernel.count(distinct)).toBe(5);
    // A second harvest of the now clean bitmap finds nothing and leaves the set as it is.
    expect(kernel.harvestQuietMerge(bitmap, snapshot, distinct)).toEqual({
      harvested: 0,
      distinct: 5,
    });
    expect(kernel.count(snapshot)).toBe(0);
  });

  it("refuses a snapshot or distinct set of another page count, naming the region", () => {
    const bitmap = at(areas.bitmap, 0, 1000);
    expect(() =>
      kernel.harvestQuietMerge(bitmap, at(areas.snapshot, 0, 999), at(areas.distinct, 0, 1000)),
    ).toThrow(RegionBoundsError);
    expect(() =>
      kernel.harvestQuietMerge(bitmap, at(areas.snapshot, 0, 1000), at(areas.distinct, 0, 1001)),
    ).toThrow(/distinct set.*tracks 1001 pages/);
  });
});
