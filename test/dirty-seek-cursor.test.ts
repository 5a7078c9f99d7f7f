import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DirtyBitmap, MAX_BITMAP_PAGES } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * A harvest cursor set to a page (QEMU's iteration resumes its scan at the
 * page where a pass stopped): the next batch starts at the 64-page word
 * that holds it, whatever the cursor held before, and a page past the
 * bitmap leaves nothing to harvest.
 */

const layout = new MemoryLayout();
const kernel = DirtyKernel.on(layout.memory);
const PAGES = 1000;
const bitmap = DirtyBitmap.allocate(layout, "bitmap", PAGES, 12);
const cursor = layout.allocate("cursor", 8);
const out = layout.allocate("out", PAGES * 4);

/** Every page the quiet harvest lists from the cursor on. */
function harvestAll(): number[] {
  const pages: number[] = [];
  for (;;) {
    const n = kernel.harvestPagesQuiet(bitmap, cursor, out);
    if (n === 0) return pages;
    pages.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
  }
}

function mark(pages: readonly number[]): void {
  bitmap.region.bytes(layout.memory).fill(0);
  for (const page of pages) kernel.markPage(bitmap, page);
}

describe("a harvest cursor set to a page", () => {
  it("starts the next batch at the word that holds the page", () => {
    mark([3, 70, 130, 200, 999]);
    kernel.seekCursor(cursor, 130);
    expect(harvestAll()).toEqual([130, 200, 999]);
    // Page 69 is in the word of pages 64 to 127: page 70 comes first.
    mark([3, 70, 130]);
    kernel.seekCursor(cursor, 69);
    expect(harvestAll()).toEqual([70, 130]);
    // A cursor at the end (a harvest done) set back to page 0.
    kernel.seekCursor(cursor, 0);
    mark([3, 999]);
    expect(harvestAll()).toEqual([3, 999]);
  });

  it("lists the pages from that word on, for any page and any marks", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: PAGES - 1 }), { maxLength: 80 }),
        fc.integer({ min: 0, max: PAGES + 200 }),
        (pages, at) => {
          mark(pages);
          kernel.seekCursor(cursor, at);
          const from = at - (at % 64);
          expect(harvestAll()).toEqual(pages.filter((p) => p >= from).sort((a, b) => a - b));
        },
      ),
    );
  });

  it("past the bitmap's chunk leaves nothing to harvest", () => {
    mark([5]);
    kernel.seekCursor(cursor, 2 ** 30 + 5);
    expect(harvestAll()).toEqual([]);
  });

  it("refuses a page that is not a whole number from 0 to 2^32 - 1, naming it", () => {
    for (const page of [-1, 1.5, Number.NaN, MAX_BITMAP_PAGES]) {
      expect(() => kernel.seekCursor(cursor, page)).toThrow(
        new RangeError(`cursor page ${page} is outside 0 to ${MAX_BITMAP_PAGES - 1}`),
      );
    }
    expect(() => kernel.seekCursor(cursor, MAX_BITMAP_PAGES - 1)).not.toThrow();
  });
});
