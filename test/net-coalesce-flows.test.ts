import { describe, expect, it } from "vitest";
import { buildFrame, buildHeaders, type FrameSpec } from "../src/net/build.js";
import { coalesce, coalescedBytes } from "../src/net/coalesce.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { expectSameBytes } from "./support/bytes.js";
import { ETH, frameSpec, set16, TCP, UDP, V4, V6 } from "./support/net-frames.js";

/*
 * Receive coalescing (Linux GRO, Windows RSC) by flow: segments group by
 * their flow, the VLAN (IEEE 802.1Q), the IP addresses (RFC 791, RFC 8200),
 * the protocol and the ports (RFC 9293, RFC 768), so two flows interleaved
 * on the wire still coalesce each into its own super-frame, and one flow
 * never joins another's group. UDP datagrams coalesce only when asked
 * (Linux UDP GRO): one flow's datagrams of one size, each UDP length
 * (RFC 768) summed into the super-datagram's. What is not TCP or UDP, or
 * does not parse, passes through untouched; a BIG TCP super-frame (IPv4
 * total length 0, over 64 KiB) is parsed as the TCP segment it is.
 */

const MSS = 1000;

function payloadAt(seq: number, n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = ((seq + i) * 13 + 5) & 0xff;
  return p;
}

/** Segment `i` of a flow: MSS bytes at sequence 1 + i * MSS, IPv4 ID 100 + i. */
function segOf(spec: Partial<FrameSpec>, i: number, len = MSS): Uint8Array {
  const base = frameSpec(spec);
  const ip = base.ip.version === 4 ? { ...base.ip, id: 100 + i } : base.ip;
  const seq = 1 + i * MSS;
  const l4 = base.l4.kind === "tcp" ? { ...base.l4, seq, flags: TCP_FLAGS.ACK } : base.l4;
  return buildFrame({ ethernet: base.ethernet, ip, l4 }, payloadAt(seq, len));
}

/** The large send a flow's first `total` bytes were cut from (headers as buildHeaders writes them). */
function sendOf(spec: Partial<FrameSpec>, total: number): Uint8Array {
  const base = frameSpec(spec);
  const ip = base.ip.version === 4 ? { ...base.ip, id: 100 } : base.ip;
  const l4 = base.l4.kind === "tcp" ? { ...base.l4, seq: 1, flags: TCP_FLAGS.ACK } : base.l4;
  const h = buildHeaders({ ethernet: base.ethernet, ip, l4 }, total).bytes;
  const out = new Uint8Array(h.length + total);
  out.set(h);
  out.set(payloadAt(1, total), h.length);
  return out;
}

function counts(frames: readonly Uint8Array[], udp = false): number[] {
  return coalesce(frames, { udp }).map((c) => c.segments);
}

/** a0 b0 a1 b1 a2 b2: each flow must come out whole. */
function interleaved(a: Partial<FrameSpec>, b: Partial<FrameSpec>): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) out.push(segOf(a, i), segOf(b, i));
  return out;
}

describe("coalescing: flows interleaved on the wire", () => {
  const pairs: [string, Partial<FrameSpec>, Partial<FrameSpec>][] = [
    ["VLAN 5 and VLAN 6", { ethernet: { ...ETH, vlan: 5 } }, { ethernet: { ...ETH, vlan: 6 } }],
    ["tagged and untagged", { ethernet: { ...ETH, vlan: 5 } }, {}],
    ["IPv4 sources", {}, { ip: { ...V4, src: "10.0.0.3" } }],
    ["IPv4 destinations", {}, { ip: { ...V4, dst: "10.0.0.4" } }],
    ["IPv6 sources, last byte", { ip: V6 }, { ip: { ...V6, src: "fd00::5" } }],
    ["IPv6 sources, first bytes", { ip: V6 }, { ip: { ...V6, src: "fd01::1" } }],
    ["IPv6 sources, middle bytes", { ip: V6 }, { ip: { ...V6, src: "fd00:0:0:0:1::1" } }],
    ["IPv6 destinations, last byte", { ip: V6 }, { ip: { ...V6, dst: "fd00::3" } }],
    ["IPv6 destinations, bytes 4 to 7", { ip: V6 }, { ip: { ...V6, dst: "fd00:0:1::2" } }],
    ["IPv6 destinations, bytes 8 to 11", { ip: V6 }, { ip: { ...V6, dst: "fd00::1:0:0:2" } }],
    ["source ports", {}, { l4: { ...TCP, srcPort: 1001 } }],
    ["destination ports", {}, { l4: { ...TCP, dstPort: 81 } }],
  ];
  for (const [what, a, b] of pairs) {
    it(`keeps flows apart that differ in ${what}`, () => {
      const frames = interleaved(a, b);
      const merged = coalesce(frames);
      expect(merged.map((m) => m.segments)).toEqual([3, 3]);
      for (const [k, m] of merged.entries()) {
        expectSameBytes(coalescedBytes(m), sendOf(k === 0 ? a : b, 3 * MSS), `flow ${k}`);
      }
    });
  }

  it("does not join one flow's segment into another's group, even in order", () => {
    for (const [what, a, b] of pairs) {
      expect(counts([segOf(a, 0), segOf(b, 1)]), what).toEqual([1, 1]);
    }
  });
});

describe("coalescing: UDP (RFC 768), only when asked", () => {
  const udp = (i: number, len = MSS, spec: Partial<FrameSpec> = {}) =>
    segOf({ l4: UDP, ...spec }, i, len);

  it("passes UDP datagrams through untouched by default", () => {
    const frames = [udp(0), udp(1)];
    const merged = coalesce(frames);
    expect(merged).toHaveLength(2);
    for (const [i, m] of merged.entries()) {
      expect(m.header).toBe(frames[i]);
      expect(m.pieces).toEqual([]);
      expect([m.segments, m.length]).toEqual([1, 8 + 20 + 14 + MSS]);
      expectSameBytes(coalescedBytes(m), frames[i] ?? new Uint8Array(0));
    }
  });

  it("joins one flow's datagrams of one size, a shorter last one too, into one datagram", () => {
    const frames = [udp(0), udp(1), udp(2, 300)];
    const merged = coalesce(frames, { udp: true });
    expect(merged.map((m) => m.segments)).toEqual([3]);
    const [m] = merged;
    if (!m) throw new Error("nothing coalesced");
    const expected = sendOf({ l4: UDP }, 2300);
    expectSameBytes(coalescedBytes(m), expected, "super-datagram");
    expect((m.header[38] ?? 0) * 256 + (m.header[39] ?? 0), "UDP length").toBe(8 + 2300);
  });

  it("does not join datagrams of other ports, sizes or IDs", () => {
    expect(counts([udp(0), udp(1, MSS, { l4: { ...UDP, dstPort: 5354 } })], true)).toEqual([1, 1]);
    expect(counts([udp(0), udp(1, MSS + 1)], true)).toEqual([1, 1]);
    expect(counts([udp(0), udp(1, 0)], true)).toEqual([1, 1]);
    const wrongId = set16(udp(1), 18, 0x0bad);
    expect(counts([udp(0), wrongId], true)).toEqual([1, 1]);
    expect(counts([udp(0), udp(1), udp(2)], true)).toEqual([3]);
  });

  it("keeps a UDP flow apart from a TCP flow on the same ports", () => {
    const tcpSame = segOf({ l4: { ...TCP, srcPort: UDP.srcPort, dstPort: UDP.dstPort } }, 0);
    const frames = [udp(0), tcpSame, udp(1), udp(2)];
    expect(counts(frames, true)).toEqual([3, 1]);
  });
});

describe("coalescing: what passes through", () => {
  it("passes a frame that does not parse through as it is", () => {
    const runt = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
    const merged = coalesce([runt]);
    expect(merged).toHaveLength(1);
    const [m] = merged;
    expect(m?.header).toBe(runt);
    expect(m?.pieces).toEqual([]);
    expect([m?.segments, m?.length]).toEqual([1, 10]);
    if (m) expectSameBytes(coalescedBytes(m), runt);
  });

  it("passes ARP, ICMP and IPv4 fragments through, and a flow's group goes on around them", () => {
    const arp = new Uint8Array(42);
    set16(arp, 12, 0x0806);
    const icmp = segOf({}, 9, 56);
    icmp[14 + 9] = 1;
    const fragment = set16(segOf({ l4: { ...TCP, srcPort: 7 } }, 0), 14 + 6, 0x2000);
    const others = [arp, icmp, fragment];
    const frames = [segOf({}, 0), arp, segOf({}, 1), icmp, fragment, segOf({}, 2)];
    const merged = coalesce(frames);
    expect(merged.map((m) => m.segments)).toEqual([3, 1, 1, 1]);
    for (const [i, other] of others.entries()) {
      expect(merged[i + 1]?.header).toBe(other);
      expect(merged[i + 1]?.pieces).toEqual([]);
    }
  });

  it("reads a BIG TCP super-frame (total length 0, over 64 KiB) as one TCP segment", () => {
    const n = 70_000;
    const spec = frameSpec({ ip: { ...V4, id: 3 } });
    const h = buildHeaders(spec, n).bytes;
    expect((h[16] ?? 0) * 256 + (h[17] ?? 0), "total length 0").toBe(0);
    const f = new Uint8Array(h.length + n);
    f.set(h);
    f.set(payloadAt(1, n), h.length);
    const merged = coalesce([f]);
    expect(merged).toHaveLength(1);
    const [m] = merged;
    if (!m) throw new Error("nothing");
    expect([m.header.length, m.pieces.length, m.segments, m.length]).toEqual([54, 1, 1, 54 + n]);
    expectSameBytes(coalescedBytes(m), f, "super-frame");
  });

  it("takes the parses it is given and comes to the same groups", () => {
    const frames = [segOf({}, 0), segOf({}, 1), segOf({ ip: V6 }, 0), segOf({ ip: V6 }, 1)];
    const parsed = frames.map((f) => parseFrame(f, 0, f.length, { superFrame: true }));
    const given = coalesce(frames, {}, parsed);
    expect(given.map((m) => m.segments)).toEqual([2, 2]);
    expect(given.map(coalescedBytes)).toEqual(coalesce(frames).map(coalescedBytes));
  });
});
