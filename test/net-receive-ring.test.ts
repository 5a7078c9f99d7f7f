import { describe, expect, it } from "vitest";
import { RegionAllocationError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  ReceiveRing,
  RX_RING_HEADER,
  RX_SLOT_HEADER,
  RxRingField,
  type SharedCopy,
} from "../src/net/ring.js";

/*
 * A VM's receive ring on its own, field by field of its documented layout
 * (src/net/ring.ts): the header's counters, each slot's length, flags and
 * segments, the bounds it refuses, and what a refused write leaves behind
 * (nothing the VM would read).
 */
function ringOf(slots: number, slotBytes = 64) {
  const layout = new MemoryLayout();
  const ring = ReceiveRing.allocate(layout, "vm ring", slots, slotBytes);
  const header = new Int32Array(layout.memory.buffer, ring.region.offset, RX_RING_HEADER / 4);
  return { layout, ring, header };
}

const bytes = (n: number, first = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (first + i) & 0xff);

describe("a VM's receive ring", () => {
  it("lays out its header: slots and slot bytes written, counters and indices zero", () => {
    const { ring, header, layout } = ringOf(5, 72);
    expect(ring.region.byteLength).toBe(ReceiveRing.bytesFor(5, 72));
    expect(ReceiveRing.bytesFor(5, 72)).toBe(RX_RING_HEADER + 5 * 72);
    expect(header[RxRingField.slots]).toBe(5);
    expect(header[RxRingField.slotBytes]).toBe(72);
    for (const f of ["head", "tail", "delivered", "ringFull", "bytes"] as const) {
      expect(header[RxRingField[f]], f).toBe(0);
    }
    expect(ring.maxFrame).toBe(72 - RX_SLOT_HEADER);
    expect(ring.counters).toEqual({ delivered: 0, ringFull: 0, bytes: 0, pending: 0 });
    // A worker opens the same ring from its descriptor.
    const opened = ReceiveRing.open(layout.memory, ring.toDescriptor());
    expect(ring.toDescriptor()).toEqual({
      region: ring.region.toDescriptor(),
      slots: 5,
      slotBytes: 72,
    });
    expect(opened.write(bytes(10), [], 10, 0, 1)).toBe(true);
    expect(ring.drain().map((s) => [...s.bytes])).toEqual([[...bytes(10)]]);
  });

  it("refuses slot counts and sizes outside its bounds, and a region too small", () => {
    const layout = new MemoryLayout();
    const region = layout.allocate("r", ReceiveRing.bytesFor(2, 64));
    const at = (slots: number, slotBytes: number) => () =>
      new ReceiveRing(layout.memory, region, slots, slotBytes);
    expect(at(0, 64)).toThrow("a receive ring has 1 to 2^20 slots, not 0");
    expect(at(2 ** 20 + 1, 64)).toThrow("1 to 2^20 slots, not 1048577");
    expect(at(1.5, 64)).toThrow("not 1.5");
    expect(at(1, 56)).toThrow("receive ring slots are a multiple of 8 bytes, at least 64, not 56");
    expect(at(1, 68)).toThrow("not 68");
    expect(at(1, 64.5)).toThrow("not 64.5");
    expect(at(2, 64)).not.toThrow();
    expect(at(1, 64)).not.toThrow();
    expect(at(3, 64)).toThrow(RegionAllocationError);
    expect(at(3, 64)).toThrow("region 'r' is too small for 3 slots of 64 bytes");
    expect(at(2, 72)).toThrow("too small for 2 slots of 72 bytes");
  });

  it("writes a slot as length, flags and segments, then the header and pieces in order", () => {
    const { ring, header } = ringOf(4, 96);
    const head = bytes(14, 100);
    const pieces = [bytes(20, 1), bytes(3, 50), bytes(0), bytes(7, 200)];
    expect(ring.write(head, pieces, 44, 3, 9)).toBe(true);
    expect(ring.write(bytes(5), [], 5, 1, 70_000)).toBe(true);
    expect(header[RxRingField.head]).toBe(2);
    expect(ring.counters).toEqual({ delivered: 2, ringFull: 0, bytes: 49, pending: 2 });
    const slots = ring.drain();
    expect(slots[0]).toEqual({
      bytes: Uint8Array.from([...head, ...pieces.flatMap((p) => [...p])]),
      flags: 3,
      segments: 9,
    });
    // A segment count past 16 bits is held at 0xffff.
    expect(slots[1]).toEqual({ bytes: bytes(5), flags: 1, segments: 0xffff });
    expect(header[RxRingField.tail]).toBe(2);
    expect(ring.counters.pending).toBe(0);
    expect(ring.drain()).toEqual([]);
  });

  it("takes a frame of exactly a slot's room and refuses one byte more, counting it", () => {
    const { ring } = ringOf(2, 64);
    expect(ring.write(bytes(57), [], 57, 0, 1)).toBe(false);
    expect(ring.counters).toEqual({ delivered: 0, ringFull: 1, bytes: 0, pending: 0 });
    expect(ring.write(bytes(56), [], 56, 0, 1)).toBe(true);
    expect(ring.drain()[0]?.bytes).toEqual(bytes(56));
  });

  it("refuses pieces that do not add up to the length before it claims a slot", () => {
    const { ring, header } = ringOf(2, 64);
    expect(ring.write(bytes(10), [bytes(10)], 30, 0, 1), "short").toBe(false);
    expect(ring.write(bytes(10), [bytes(10)], 15, 0, 1), "long").toBe(false);
    expect(ring.counters).toEqual({ delivered: 0, ringFull: 2, bytes: 0, pending: 0 });
    expect(header[RxRingField.head], "no slot claimed").toBe(0);
    expect(ring.drain()).toEqual([]);
    // The ring still takes both of its slots.
    expect(ring.write(bytes(8), [bytes(4)], 12, 0, 1)).toBe(true);
    expect(ring.write(bytes(9), [], 9, 0, 1)).toBe(true);
    expect(ring.drain().map((s) => s.bytes.length)).toEqual([12, 9]);
  });

  it("drops into ringFull when every slot is pending, and reuses slots round the ring", () => {
    const { ring } = ringOf(3, 64);
    for (let i = 0; i < 3; i++) expect(ring.write(bytes(8, i * 10), [], 8, 0, 1)).toBe(true);
    expect(ring.write(bytes(8), [], 8, 0, 1)).toBe(false);
    expect(ring.counters).toEqual({ delivered: 3, ringFull: 1, bytes: 24, pending: 3 });
    expect(ring.drain().map((s) => s.bytes[0])).toEqual([0, 10, 20]);
    // Seven more through three slots: indices go on, slots wrap (index mod slots).
    const seen: number[] = [];
    for (let i = 0; i < 7; i++) {
      expect(ring.write(bytes(8, 100 + i), [], 8, 0, 1)).toBe(true);
      seen.push(...ring.drain().map((s) => s.bytes[0] ?? -1));
    }
    expect(seen).toEqual([100, 101, 102, 103, 104, 105, 106]);
    expect(ring.counters).toEqual({ delivered: 10, ringFull: 1, bytes: 80, pending: 0 });
  });

  it("frees pending slots without reading them, and reset empties it", () => {
    const { ring, header } = ringOf(2, 64);
    ring.write(bytes(8), [], 8, 0, 1);
    ring.write(bytes(8), [], 8, 0, 1);
    ring.discard();
    expect(ring.counters.pending).toBe(0);
    expect(header[RxRingField.tail]).toBe(2);
    expect(ring.write(bytes(8), [], 8, 0, 1)).toBe(true);
    ring.reset();
    expect(ring.counters).toEqual({ delivered: 0, ringFull: 0, bytes: 0, pending: 0 });
    expect([header[RxRingField.slots], header[RxRingField.slotBytes]]).toEqual([2, 64]);
  });

  it("never reads past a slot, whatever length its header claims", () => {
    const { ring, layout } = ringOf(2, 64);
    ring.write(bytes(8), [], 8, 0, 1);
    new DataView(layout.memory.buffer).setUint32(
      ring.region.offset + RX_RING_HEADER,
      1 << 30,
      true,
    );
    expect(ring.drain()[0]?.bytes.length).toBe(ring.maxFrame);
  });

  it("moves shared bytes of 64 and more by the copy kernel, private or short ones by itself", () => {
    const { ring, layout } = ringOf(2, 256);
    const calls: { at: number; source: number; length: number }[] = [];
    const copy: SharedCopy = (target, at, source, length) => {
      calls.push({ at, source, length });
      const memory = new Uint8Array(layout.memory.buffer);
      memory.copyWithin(target.offset + at, source, source + length);
    };
    const shared = layout.allocate("frames", 512);
    const frames = new Uint8Array(layout.memory.buffer, shared.offset, 512);
    frames.set(bytes(512, 7));
    const passed = frames.subarray(0, 100);
    // A frame passed through is its own header, in the shared buffer: the kernel moves it.
    expect(ring.write(passed, [], 100, 0, 1, copy)).toBe(true);
    expect(calls).toEqual([
      { at: RX_RING_HEADER + RX_SLOT_HEADER, source: shared.offset, length: 100 },
    ]);
    // A coalesced frame: its header is private (written afresh), its pieces shared.
    calls.length = 0;
    const privateHeader = bytes(64, 9);
    const piece = frames.subarray(200, 300);
    const short = frames.subarray(300, 363);
    expect(ring.write(privateHeader, [piece, short], 227, 2, 2, copy)).toBe(true);
    const slot = RX_RING_HEADER + 256 + RX_SLOT_HEADER;
    expect(calls).toEqual([{ at: slot + 64, source: shared.offset + 200, length: 100 }]);
    const [first, second] = ring.drain();
    expect(first?.bytes).toEqual(passed.slice());
    expect(second?.bytes).toEqual(Uint8Array.from([...privateHeader, ...piece, ...short]));
  });
});
