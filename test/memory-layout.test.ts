import { describe, expect, it } from "vitest";
import { RegionAllocationError, RegionBoundsError } from "../src/memory/errors.js";
import {
  MAX_MEMORY_BYTES,
  MemoryLayout,
  STATIC_AREA_BYTES,
  STATIC_SLOT_BYTES,
  STATIC_SLOTS,
} from "../src/memory/layout.js";
import { kernelManifest } from "../src/wasm/loader.js";

describe("MemoryLayout", () => {
  it("lays out aligned regions after the static area, never overlapping", () => {
    const layout = new MemoryLayout();
    const a = layout.allocate("a", 100);
    const b = layout.allocate("b", 1, 4096);
    const c = layout.allocate("c", 77, 8);
    expect(a.offset).toBe(STATIC_AREA_BYTES);
    expect(b.offset % 4096).toBe(0);
    expect(c.offset % 8).toBe(0);
    const regions = layout.list();
    for (let i = 1; i < regions.length; i++) {
      expect(regions[i]?.offset ?? 0).toBeGreaterThanOrEqual(regions[i - 1]?.end ?? Infinity);
    }
    expect(layout.memory.buffer.byteLength).toBeGreaterThanOrEqual(c.end);
    expect(layout.get("b")).toBe(b);
  });

  it("agrees with the kernel build on the static area (scripts/build-wasm.mjs)", () => {
    const manifest = kernelManifest();
    expect(manifest.slotBytes).toBe(STATIC_SLOT_BYTES);
    expect(manifest.slots).toBe(STATIC_SLOTS);
    for (const module of Object.values(manifest.modules)) {
      expect(module.base + STATIC_SLOT_BYTES).toBeLessThanOrEqual(STATIC_AREA_BYTES);
    }
  });

  it("refuses to pass the 4 GiB wasm32 limit, saying how much was asked and how much is left", () => {
    const layout = new MemoryLayout();
    layout.allocate("first", 1024);
    const left = MAX_MEMORY_BYTES - STATIC_AREA_BYTES - 1024;
    expect(() => layout.allocate("huge", 5 * 1024 ** 3)).toThrow(RegionAllocationError);
    expect(() => layout.allocate("huge", 5 * 1024 ** 3)).toThrow(
      new RegExp(`'huge' of 5\\.0 GiB \\(5368709120 bytes\\): only .* \\(${left} bytes\\) left`),
    );
    // The failed request changed nothing: a region that fits still goes right after.
    expect(layout.allocate("next", 64).offset).toBe(STATIC_AREA_BYTES + 1024);
  });

  it.each([
    [0, "positive whole number"],
    [-4, "positive whole number"],
    [1.5, "positive whole number"],
    [Number.NaN, "positive whole number"],
  ])("refuses size %s", (size, message) => {
    expect(() => new MemoryLayout().allocate("bad", size)).toThrow(message);
  });

  it("refuses bad alignments, empty and duplicate names, and unknown regions", () => {
    const layout = new MemoryLayout();
    expect(() => layout.allocate("x", 8, 3)).toThrow("power of two");
    expect(() => layout.allocate("", 8)).toThrow("needs a name");
    layout.allocate("x", 8);
    expect(() => layout.allocate("x", 8)).toThrow("already laid out");
    expect(() => layout.get("nope")).toThrow("no region named 'nope'");
  });

  it("checks accesses against a region and names it", () => {
    const region = new MemoryLayout().allocate("packets", 100);
    expect(region.check(10, 90)).toBe(region.offset + 10);
    expect(() => region.check(10, 91, "frame")).toThrow(RegionBoundsError);
    expect(() => region.check(10, 91, "frame")).toThrow(
      "region 'packets': frame at [10, 101) is past the end (100 bytes)",
    );
    expect(() => region.check(-1, 1)).toThrow("bad offset -1");
    expect(() => region.check(0, 0.5)).toThrow("bad length 0.5");
  });

  it("grows to nearly the whole 4 GiB when asked", () => {
    const layout = new MemoryLayout();
    const big = layout.allocate("guest-ram", 3 * 1024 ** 3);
    expect(layout.memory.buffer.byteLength).toBeGreaterThanOrEqual(big.end);
    expect(layout.bytesLeft).toBe(MAX_MEMORY_BYTES - big.end);
  });
});
