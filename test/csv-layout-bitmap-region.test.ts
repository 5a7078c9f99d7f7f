import { describe, expect, it } from "vitest";
import { computeLayout, metadataRegionOf } from "../src/csv/layout.js";

// A bitmap of several sectors: each of them is metadata a journal
// transaction may name, up to its last and not one past.

describe("the bitmap region of a larger volume", () => {
  it("spans every one of its sectors", () => {
    // 32,769 clusters of 4 KiB: 4,097 bitmap bytes, nine sectors.
    const l = computeLayout({
      volumeBytes: 32_769 * 4096,
      clusterBytes: 4096,
      fileSlots: 16,
      journalSectors: 64,
    });
    expect(l.bitmapSectors).toBe(9);
    const first = l.bitmapOffset / 512;
    for (let s = first; s < first + 9; s++)
      expect(metadataRegionOf(l, s), `sector ${s}`).toBe("bitmap");
    expect(metadataRegionOf(l, first + 9)).toBeUndefined();
    expect(metadataRegionOf(l, first - 1)).toBe("file table");
  });
});
