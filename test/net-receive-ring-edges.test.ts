import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ReceiveRing, RX_RING_HEADER, RX_SLOT_HEADER, type SharedCopy } from "../src/net/ring.js";

/*
 * The receive ring's edges: its largest slot count, the copy kernel's
 * threshold at exactly 64 bytes, and frames the VM drained staying its own
 * once the slot is written again.
 */
describe("receive ring edges", () => {
  it("takes 2^20 slots, and not one more", () => {
    const layout = new MemoryLayout();
    const ring = ReceiveRing.allocate(layout, "big ring", 2 ** 20, 64);
    expect(ring.region.byteLength).toBe(RX_RING_HEADER + 2 ** 26);
    expect(ring.write(new Uint8Array(8), [], 8, 0, 1)).toBe(true);
    expect(() => new ReceiveRing(layout.memory, ring.region, 2 ** 20 + 1, 64)).toThrow(
      "a receive ring has 1 to 2^20 slots, not 1048577",
    );
  });

  it("moves a shared frame of exactly 64 bytes by the copy kernel, and 63 by itself", () => {
    const layout = new MemoryLayout();
    const ring = ReceiveRing.allocate(layout, "ring", 2, 128);
    const shared = layout.allocate("frames", 256);
    const frames = new Uint8Array(layout.memory.buffer, shared.offset, 256);
    frames.set(Uint8Array.from({ length: 256 }, (_, i) => i));
    const lengths: number[] = [];
    const copy: SharedCopy = (target, at, source, length) => {
      lengths.push(length);
      new Uint8Array(layout.memory.buffer).copyWithin(target.offset + at, source, source + length);
    };
    expect(ring.write(frames.subarray(0, 64), [], 64, 0, 1, copy)).toBe(true);
    expect(ring.write(frames.subarray(100, 163), [], 63, 0, 1, copy)).toBe(true);
    expect(lengths).toEqual([64]);
    expect(ring.drain().map((s) => [...s.bytes])).toEqual([
      [...frames.subarray(0, 64)],
      [...frames.subarray(100, 163)],
    ]);
  });

  it("hands the VM copies: a slot written again leaves what was drained alone", () => {
    const layout = new MemoryLayout();
    const ring = ReceiveRing.allocate(layout, "ring", 1, 64);
    ring.write(Uint8Array.of(1, 2, 3), [], 3, 0, 1);
    const [first] = ring.drain();
    ring.write(Uint8Array.of(9, 9, 9), [], 3, 0, 1);
    expect(first?.bytes).toEqual(Uint8Array.of(1, 2, 3));
    const slot = new Uint8Array(layout.memory.buffer, ring.region.offset + RX_RING_HEADER, 11);
    expect([...slot.subarray(RX_SLOT_HEADER)]).toEqual([9, 9, 9]);
  });
});
