import { describe, expect, it } from "vitest";
import { DirtyBitmap, MAX_BITMAP_PAGES } from "../src/memory/dirty-bitmap.js";
import {
  DirtyRing,
  KVM_RING_MIN_ENTRIES,
  PML_ENTRIES,
  RING_ENTRY_BYTES,
} from "../src/memory/dirty-ring.js";
import { RegionAllocationError, RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

describe("dirty bitmap sizes (KVM_GET_DIRTY_LOG)", () => {
  it("takes one bit per 4 KiB page: 32 KiB of bitmap per GiB", () => {
    expect(DirtyBitmap.bytesFor(GiB / 4096)).toBe(32 * 1024);
  });

  it("takes 32 MiB for a 1 TiB guest and 512 MiB for 16 TiB", () => {
    expect(DirtyBitmap.bytesFor(TiB / 4096)).toBe(32 * 1024 ** 2);
    expect(DirtyBitmap.bytesFor((16 * TiB) / 4096)).toBe(512 * 1024 ** 2);
    expect((16 * TiB) / 4096).toBe(MAX_BITMAP_PAGES);
  });

  it("rounds up to whole u64 words", () => {
    expect(DirtyBitmap.bytesFor(1)).toBe(8);
    expect(DirtyBitmap.bytesFor(64)).toBe(8);
    expect(DirtyBitmap.bytesFor(65)).toBe(16);
  });

  it("refuses page counts that are not whole, positive, or over 2^32", () => {
    for (const bad of [0, -1, 1.5, 2 ** 32 + 1, Number.NaN]) {
      expect(() => DirtyBitmap.bytesFor(bad)).toThrow(RegionAllocationError);
    }
  });

  it("sizes rings as KVM's 16-byte kvm_dirty_gfn entries; PML logs 512", () => {
    expect(RING_ENTRY_BYTES).toBe(16);
    expect(KVM_RING_MIN_ENTRIES).toBe(4096);
    expect(PML_ENTRIES).toBe(512);
    expect(() => DirtyRing.bytesFor(1000)).toThrow("power-of-two");
  });
});

describe("dirty kernels, known answers", () => {
  const layout = new MemoryLayout();
  const kernel = DirtyKernel.on(layout.memory);

  it("marks bit p & 63 of little-endian word p >>> 6", () => {
    const bitmap = DirtyBitmap.allocate(layout, "layout-check", 130);
    kernel.markPage(bitmap, 0);
    kernel.markPage(bitmap, 9);
    kernel.markPage(bitmap, 64);
    kernel.markPage(bitmap, 129);
    const bytes = bitmap.region.bytes(layout.memory);
    expect([...bytes.subarray(0, 24)]).toEqual([
      0x01, 0x02, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0,
    ]);
    expect(kernel.count(bitmap)).toBe(4);
  });

  it("refuses page numbers outside the bitmap with an error naming its region", () => {
    const bitmap = DirtyBitmap.allocate(layout, "small-bitmap", 100);
    expect(() => kernel.markPage(bitmap, 100)).toThrow(RegionBoundsError);
    expect(() => kernel.markPage(bitmap, 100)).toThrow("region 'small-bitmap': page 100");
    expect(() => kernel.markPage(bitmap, -1)).toThrow(RegionBoundsError);
    expect(() => kernel.markPage(bitmap, 2.5)).toThrow(RegionBoundsError);
    expect(() => kernel.testPage(bitmap, 1e9)).toThrow(RegionBoundsError);
    expect(() => kernel.markRange(bitmap, 90, 11)).toThrow("passes the end (100 pages)");
    expect(() => kernel.markRange(bitmap, 90, -3)).toThrow(RegionBoundsError);
    const other = DirtyBitmap.allocate(layout, "other-size", 200);
    expect(() => kernel.harvest(bitmap, other)).toThrow("tracks 200 pages");
  });

  it("tracks a 16 TiB guest in metadata mode, across kernel chunks, to the last page", () => {
    const big = new MemoryLayout();
    const k = DirtyKernel.on(big.memory);
    const pages = MAX_BITMAP_PAGES;
    const bitmap = DirtyBitmap.allocate(big, "bitmap-16tib", pages);
    const snapshot = DirtyBitmap.allocate(big, "snapshot-16tib", pages);
    const marked = [0, 2 ** 30 - 1, 2 ** 30, 2 ** 31 + 5, pages - 1];
    for (const page of marked) expect(k.markPage(bitmap, page)).toBe(true);
    expect(k.markRange(bitmap, 2 ** 30 - 10, 20)).toBe(18);
    expect(k.testPage(bitmap, pages - 1)).toBe(true);
    expect(k.count(bitmap)).toBe(5 + 18);
    expect(k.harvest(bitmap, snapshot)).toBe(23);
    expect(k.count(bitmap)).toBe(0);
    const cursor = big.allocate("cursor", 8);
    const out = big.allocate("out", 7 * 4);
    k.resetCursor(cursor);
    const seen: number[] = [];
    for (let n = k.iterate(snapshot, cursor, out); n > 0; n = k.iterate(snapshot, cursor, out)) {
      seen.push(...new Uint32Array(big.memory.buffer, out.offset, n));
    }
    const expected = [
      ...new Set([...marked, ...Array.from({ length: 20 }, (_, i) => 2 ** 30 - 10 + i)]),
    ].sort((a, b) => a - b);
    expect(seen).toEqual(expected);
    // The quiet one-pass harvest crosses the same chunks.
    for (const page of expected) k.markPage(bitmap, page);
    const batch = big.allocate("batch", 1100 * 4);
    k.resetCursor(cursor);
    const harvested: number[] = [];
    for (let n = k.harvestPagesQuiet(bitmap, cursor, batch); n > 0; ) {
      harvested.push(...new Uint32Array(big.memory.buffer, batch.offset, n));
      n = k.harvestPagesQuiet(bitmap, cursor, batch);
    }
    expect(harvested).toEqual(expected);
    expect(k.count(bitmap)).toBe(0);
  });
});
