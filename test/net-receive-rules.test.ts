import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { ReceiveRing, RX_CHECKSUM_GOOD, RX_COALESCED, type RxSlot } from "../src/net/ring.js";
import { type ReceiveCounts, ReceiveKernel } from "../src/wasm/receive.js";

/*
 * Rules of the receive kernel (assembly/receive.ts), each on frames written
 * and summed by hand in this file and sent straight to one VM's queue:
 *
 * - a TCP or UDP frame's IPv4 header checksum is checked, not only its
 *   transport checksum (RFC 791 section 3.1: the header checksum covers the
 *   header alone, so a changed TTL leaves the TCP checksum good);
 * - an IPv4 UDP checksum field of zero means none was computed, and the
 *   datagram is accepted (RFC 768);
 * - a frame whose fragment offset is not zero is a fragment, MF set or not
 *   (RFC 791 section 3.2: the last fragment has MF clear and a non-zero
 *   offset): its data is not a TCP or UDP header, and only the IPv4 header
 *   checksum is checked;
 * - coalescing (RSC; Linux net/ipv4/tcp_offload.c, tcp_gro_receive) joins
 *   a segment to a group only at the group's next sequence number, and a
 *   segment with PSH joins and then closes its group (tcp_gro_receive
 *   flushes on PSH).
 */

const MAX_FRAMES = 16;
const SLOTS = 16;
const SLOT_BYTES = 4096;

let layout: MemoryLayout;
let kernel: ReceiveKernel;
let frames: Region;
let table: Region;
let work: Region;
let scratch: Region;
let ring: ReceiveRing;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = ReceiveKernel.on(layout.memory);
  frames = layout.allocate("rx frames", 16 * 1024);
  table = layout.allocate("rx frame table", MAX_FRAMES * 8);
  work = layout.allocate("rx work list", MAX_FRAMES * 8);
  scratch = layout.allocate("rx scratch", ReceiveKernel.scratchBytes(MAX_FRAMES, 1, []));
  ring = ReceiveRing.allocate(layout, "vm ring", SLOTS, SLOT_BYTES);
});

/** RFC 1071's one's complement sum of `bytes` (an odd last byte padded with zero), from `sum`. */
function onesSum(bytes: Uint8Array, sum = 0): number {
  let s = sum;
  for (let i = 0; i < bytes.length; i += 2) s += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

const L3 = 14;
const L4 = L3 + 20;
const SRC = Uint8Array.of(192, 168, 1, 1);
const DST = Uint8Array.of(192, 168, 1, 2);
const TCP = 6;
const UDP = 17;
const ACK = 0x10;
const PSH = 0x08;

interface Ipv4 {
  readonly protocol: number;
  /** The transport header and data: everything after the IPv4 header. */
  readonly data: Uint8Array;
  readonly id?: number;
  /** Flags and fragment offset: DF by default. */
  readonly fragment?: number;
  readonly ttl?: number;
}

/** An Ethernet frame to the VM's MAC holding an IPv4 datagram, its header checksum right. */
function ipv4Frame(d: Ipv4): Uint8Array {
  const frame = new Uint8Array(L4 + d.data.length);
  const view = new DataView(frame.buffer);
  frame.set([0x00, 0x15, 0x5d, 0x00, 0x01, 0x00, 0x00, 0x15, 0x5d, 0x00, 0x02, 0x00]);
  view.setUint16(12, 0x0800);
  frame[L3] = 0x45;
  view.setUint16(L3 + 2, 20 + d.data.length);
  view.setUint16(L3 + 4, d.id ?? 7);
  view.setUint16(L3 + 6, d.fragment ?? 0x4000);
  frame[L3 + 8] = d.ttl ?? 64;
  frame[L3 + 9] = d.protocol;
  frame.set(SRC, L3 + 12);
  frame.set(DST, L3 + 16);
  view.setUint16(L3 + 10, ~onesSum(frame.subarray(L3, L4)) & 0xffff);
  frame.set(d.data, L4);
  return frame;
}

/** The transport checksum over the IPv4 pseudo-header (RFC 793 section 3.1, RFC 768), complemented. */
function transportChecksum(protocol: number, data: Uint8Array): number {
  const pseudo = new Uint8Array(12);
  pseudo.set(SRC);
  pseudo.set(DST, 4);
  pseudo[9] = protocol;
  new DataView(pseudo.buffer).setUint16(10, data.length);
  return ~onesSum(data, onesSum(pseudo)) & 0xffff;
}

/** A TCP segment (49152 -> 80, ACK 1, window 65535) with its checksum right. */
function tcpSegment(seq: number, flags: number, payload: Uint8Array, id = 7): Uint8Array {
  const data = new Uint8Array(20 + payload.length);
  const view = new DataView(data.buffer);
  view.setUint16(0, 49152);
  view.setUint16(2, 80);
  view.setUint32(4, seq);
  view.setUint32(8, 1);
  data[12] = 5 << 4;
  data[13] = flags;
  view.setUint16(14, 65535);
  data.set(payload, 20);
  view.setUint16(16, transportChecksum(TCP, data));
  return ipv4Frame({ protocol: TCP, data, id });
}

/** A UDP datagram (53 -> 5353); its checksum right, or `field` written as given. */
function udpDatagram(payload: Uint8Array, field?: number): Uint8Array {
  const data = new Uint8Array(8 + payload.length);
  const view = new DataView(data.buffer);
  view.setUint16(0, 53);
  view.setUint16(2, 5353);
  view.setUint16(4, data.length);
  data.set(payload, 8);
  view.setUint16(6, field ?? (transportChecksum(UDP, data) || 0xffff));
  return ipv4Frame({ protocol: UDP, data });
}

function bytes(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed * 17 + 5) & 0xff);
}

/** Receives `list` into the VM's ring (the queue's own, no switch lookup); returns the counts and the slots. */
function receive(
  list: readonly Uint8Array[],
  coalesce = false,
): { counts: ReceiveCounts; slots: RxSlot[] } {
  const memory = layout.memory;
  const buffer = frames.bytes(memory).fill(0);
  const entries = new Uint32Array(memory.buffer, table.offset, MAX_FRAMES * 2).fill(0);
  const workWords = new Uint32Array(memory.buffer, work.offset, MAX_FRAMES * 2);
  // Frames at odd offsets, as a NIC's buffer lays them.
  let at = 3;
  list.forEach((frame, i) => {
    buffer.set(frame, at);
    entries[i * 2] = at;
    entries[i * 2 + 1] = frame.length;
    workWords[i * 2] = i;
    workWords[i * 2 + 1] = 0;
    at += frame.length + 5;
  });
  ring.reset();
  const counts = kernel.receive({
    frames,
    table,
    work,
    first: 0,
    count: list.length,
    rings: [{ region: ring.region, slots: SLOTS, slotBytes: SLOT_BYTES }],
    switchTable: [],
    coalesce,
    maxCoalesce: 65_535,
    deliverBad: false,
    trustChecksums: false,
    scratch,
  });
  return { counts, slots: ring.drain() };
}

describe("the IPv4 header checksum of a TCP or UDP frame is checked", () => {
  it("delivers the frames as written, marked good", () => {
    const { counts, slots } = receive([
      tcpSegment(1000, ACK, bytes(100, 1)),
      udpDatagram(bytes(100, 2)),
    ]);
    expect(counts.delivered).toBe(2);
    expect(counts.badChecksum).toBe(0);
    expect(slots.map((s) => s.flags & RX_CHECKSUM_GOOD)).toEqual([1, 1]);
  });

  it("drops a TCP and a UDP frame whose TTL changed after the header checksum was taken", () => {
    const tcp = tcpSegment(1000, ACK, bytes(100, 1));
    const udp = udpDatagram(bytes(100, 2));
    for (const frame of [tcp, udp]) frame[L3 + 8] = 63;
    // The transport checksums do not cover the TTL: they are still right.
    expect(transportChecksum(TCP, tcp.subarray(L4))).toBe(0);
    expect(transportChecksum(UDP, udp.subarray(L4))).toBe(0);
    const { counts, slots } = receive([tcp, udp]);
    expect(counts.badChecksum).toBe(2);
    expect(counts.delivered).toBe(0);
    expect(slots).toEqual([]);
  });
});

describe("an IPv4 UDP checksum of zero means none was computed (RFC 768)", () => {
  it("accepts a datagram whose checksum field is zero, and only then a wrong one", () => {
    const payload = bytes(100, 3);
    const right = udpDatagram(payload);
    const rightField = ((right[L4 + 6] ?? 0) << 8) | (right[L4 + 7] ?? 0);
    // Zero is not this datagram's checksum: only the rule lets it through.
    expect(rightField).not.toBe(0);
    expect(rightField).not.toBe(0xffff);
    const zero = udpDatagram(payload, 0);
    const wrong = udpDatagram(payload, rightField ^ 0x0100);
    const { counts, slots } = receive([zero, wrong]);
    expect(counts.badChecksum).toBe(1);
    expect(counts.delivered).toBe(1);
    expect(slots.length).toBe(1);
    expect(slots[0]?.bytes).toEqual(zero);
    expect((slots[0]?.flags ?? 0) & RX_CHECKSUM_GOOD).toBe(RX_CHECKSUM_GOOD);
  });
});

describe("a frame with a fragment offset is a fragment, MF set or not", () => {
  // Fragment field: flags (reserved, DF, MF) and a 13-bit offset in 8-byte units.
  const MF = 0x2000;
  const offset = 1480 / 8;

  it("delivers the last fragment of a UDP and of a TCP datagram (MF clear, offset 185), good", () => {
    // The data is the middle of a datagram: read as a UDP header its length
    // field (0xABAB) is wrong, read as a TCP header its checksum is.
    const data = new Uint8Array(64).fill(0xab);
    const list = [
      ipv4Frame({ protocol: UDP, data, fragment: offset }),
      ipv4Frame({ protocol: TCP, data, fragment: offset }),
      ipv4Frame({ protocol: UDP, data, fragment: MF | offset }),
    ];
    const { counts, slots } = receive(list);
    expect(counts.malformed).toBe(0);
    expect(counts.badChecksum).toBe(0);
    expect(counts.delivered).toBe(3);
    expect(slots.map((s) => s.bytes)).toEqual(list);
    expect(slots.map((s) => s.flags & RX_CHECKSUM_GOOD)).toEqual([1, 1, 1]);
  });

  it("still checks a last fragment's IPv4 header checksum", () => {
    const frame = ipv4Frame({
      protocol: UDP,
      data: new Uint8Array(64).fill(0xab),
      fragment: offset,
    });
    frame[L3 + 8] = 1;
    const { counts } = receive([frame]);
    expect(counts.badChecksum).toBe(1);
    expect(counts.delivered).toBe(0);
  });
});

describe("coalescing: a segment joins its flow's group only at the next sequence number", () => {
  const MSS = 100;

  it("joins two full segments in order into one super-frame of both payloads", () => {
    const a = bytes(MSS, 4);
    const b = bytes(MSS, 5);
    const { counts, slots } = receive(
      [tcpSegment(1000, ACK, a, 7), tcpSegment(1000 + MSS, ACK, b, 8)],
      true,
    );
    expect(counts.coalescedSegments).toBe(2);
    expect(slots.length).toBe(1);
    expect(slots[0]?.segments).toBe(2);
    expect((slots[0]?.flags ?? 0) & RX_COALESCED).toBe(RX_COALESCED);
    expect(slots[0]?.bytes.subarray(L4 + 20)).toEqual(Uint8Array.from([...a, ...b]));
  });

  it("keeps apart a segment after a gap, and a retransmitted one", () => {
    for (const second of [1000 + 2 * MSS, 1000 + MSS - 1, 1000]) {
      const list = [
        tcpSegment(1000, ACK, bytes(MSS, 4), 7),
        tcpSegment(second, ACK, bytes(MSS, 5), 8),
      ];
      const { counts, slots } = receive(list, true);
      expect(counts.coalescedSegments).toBe(0);
      expect(slots.map((s) => s.segments)).toEqual([1, 1]);
      expect(slots.map((s) => s.bytes.subarray(L4 + 20))).toEqual(
        list.map((f) => f.subarray(L4 + 20)),
      );
    }
  });
});

describe("coalescing: a segment with PSH closes its group", () => {
  const MSS = 100;

  it("joins the PSH segment, then starts a new group with the next one", () => {
    const list = [
      tcpSegment(1000, ACK, bytes(MSS, 6), 7),
      tcpSegment(1000 + MSS, ACK | PSH, bytes(MSS, 7), 8),
      tcpSegment(1000 + 2 * MSS, ACK, bytes(MSS, 8), 9),
    ];
    const { counts, slots } = receive(list, true);
    expect(slots.map((s) => s.segments)).toEqual([2, 1]);
    expect(counts.coalescedSegments).toBe(2);
    // The super-frame carries the PSH of its last segment.
    expect(slots[0]?.bytes[L4 + 13]).toBe(ACK | PSH);
    expect(slots[1]?.bytes.subarray(L4 + 20)).toEqual(bytes(MSS, 8));
  });

  it("without PSH, the three in order make one group", () => {
    const list = [
      tcpSegment(1000, ACK, bytes(MSS, 6), 7),
      tcpSegment(1000 + MSS, ACK, bytes(MSS, 7), 8),
      tcpSegment(1000 + 2 * MSS, ACK, bytes(MSS, 8), 9),
    ];
    const { counts, slots } = receive(list, true);
    expect(slots.map((s) => s.segments)).toEqual([3]);
    expect(counts.coalescedSegments).toBe(3);
  });
});
