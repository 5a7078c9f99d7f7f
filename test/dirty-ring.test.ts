import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { DirtyRing, RING_HEADER_BYTES, RingHeader } from "../src/memory/dirty-ring.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

function setup(entries: number, pages = 1000) {
  const layout = new MemoryLayout();
  const kernel = DirtyKernel.on(layout.memory);
  const ring = DirtyRing.allocate(layout, "vcpu0-ring", entries);
  const bitmap = DirtyBitmap.allocate(layout, "bitmap", pages);
  const out = layout.allocate("out", 4 * entries * 2);
  kernel.ringInit(ring, 7);
  const pagesOut = (n: number) => [...new Uint32Array(layout.memory.buffer, out.offset, n)];
  return { layout, kernel, ring, bitmap, out, pagesOut };
}

describe("per-vCPU dirty ring (KVM's dirty ring / Intel PML)", () => {
  it("logs pages as kvm_dirty_gfn entries {flags DIRTY, slot, offset} in order", () => {
    const { layout, kernel, ring, bitmap } = setup(8);
    expect(kernel.ringPush(ring, 42, bitmap)).toBe(true);
    expect(kernel.ringPush(ring, 7, bitmap)).toBe(true);
    const view = new DataView(layout.memory.buffer, ring.region.offset);
    expect(view.getUint32(RingHeader.head, true)).toBe(2);
    expect(view.getUint32(RingHeader.size, true)).toBe(8);
    expect(view.getUint32(RING_HEADER_BYTES, true)).toBe(1); // KVM_DIRTY_GFN_F_DIRTY
    expect(view.getUint32(RING_HEADER_BYTES + 4, true)).toBe(7); // slot
    expect(view.getBigUint64(RING_HEADER_BYTES + 8, true)).toBe(42n);
    expect(kernel.count(bitmap)).toBe(0);
  });

  it("harvests entries in order, flags them reset and frees them", () => {
    const { layout, kernel, ring, bitmap, out, pagesOut } = setup(8);
    for (const page of [5, 9, 5, 100]) kernel.ringPush(ring, page, bitmap);
    expect(kernel.ringHarvest(ring, out)).toBe(4);
    expect(pagesOut(4)).toEqual([5, 9, 5, 100]);
    const view = new DataView(layout.memory.buffer, ring.region.offset);
    expect(view.getUint32(RING_HEADER_BYTES, true)).toBe(2); // KVM_DIRTY_GFN_F_RESET
    expect(view.getUint32(RingHeader.tail, true)).toBe(4);
    expect(kernel.ringHarvest(ring, out)).toBe(0);
  });

  it("falls back to the bitmap when full, and counts the overflow", () => {
    const { kernel, ring, bitmap, out, pagesOut } = setup(4);
    const logged = [1, 2, 3, 4, 5, 6].map((page) => kernel.ringPush(ring, page, bitmap));
    expect(logged).toEqual([true, true, true, true, false, false]);
    expect(kernel.ringOverflow(ring)).toBe(2);
    expect(kernel.testPage(bitmap, 5)).toBe(true);
    expect(kernel.testPage(bitmap, 6)).toBe(true);
    expect(kernel.count(bitmap)).toBe(2);
    expect(kernel.ringHarvest(ring, out)).toBe(4);
    expect(pagesOut(4)).toEqual([1, 2, 3, 4]);
    // Space again after the harvest: wraps around the ring.
    expect(kernel.ringPush(ring, 77, bitmap)).toBe(true);
    expect(kernel.ringHarvest(ring, out)).toBe(1);
    expect(pagesOut(1)).toEqual([77]);
  });

  it("drains into the bitmap, deduplicating, and drops entries past the bitmap", () => {
    const { layout, kernel, ring, bitmap } = setup(8, 100);
    for (const page of [3, 3, 50, 99]) kernel.ringPush(ring, page, bitmap);
    // A corrupted entry naming a page past the guest must not be written.
    const view = new DataView(layout.memory.buffer, ring.region.offset);
    view.setBigUint64(RING_HEADER_BYTES + 16 * 2 + 8, 1_000_000n, true);
    expect(kernel.ringDrain(ring, bitmap)).toBe(4);
    expect(kernel.count(bitmap)).toBe(2);
    expect(kernel.testPage(bitmap, 3)).toBe(true);
    expect(kernel.testPage(bitmap, 99)).toBe(true);
  });

  it("never leaves the ring's region even with a corrupted header", () => {
    const { layout, kernel, ring, bitmap, out } = setup(4);
    const after = layout.allocate("after-ring", 64);
    const view = new DataView(layout.memory.buffer, ring.region.offset);
    view.setUint32(RingHeader.size, 1 << 20, true); // corrupt: the kernel uses the caller's size
    view.setUint32(RingHeader.head, 0xfffffff0, true);
    view.setUint32(RingHeader.tail, 0xffffffee, true);
    for (let i = 0; i < 10; i++) kernel.ringPush(ring, i, bitmap);
    kernel.ringHarvest(ring, out);
    expect([...after.bytes(layout.memory)].every((b) => b === 0)).toBe(true);
  });
});
