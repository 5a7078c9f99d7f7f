import { describe, expect, it } from "vitest";
import { parseIpv4, parseIpv6 } from "../src/net/address.js";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { auditChecksums, recomputeChecksums } from "../src/net/checksum-audit.js";
import { parseFrame } from "../src/net/frame.js";
import { internetChecksumOracle, onesSumOracle } from "../src/oracle/checksum.js";

/*
 * What a replay sees in a capture's checksums. A TCP or UDP checksum covers
 * a pseudo-header (RFC 793 section 3.1 and RFC 768 for IPv4: source,
 * destination, zero, protocol, transport length; RFC 8200 section 8.1 for
 * IPv6: source, final destination, a 32-bit length, three zero bytes, next
 * header) and the transport bytes. A capture taken where the NIC computes
 * checksums holds only the pseudo-header's folded sum in the field (Linux
 * CHECKSUM_PARTIAL), which is "partial", not wrong. The expected sums here
 * are computed from those definitions, byte by byte, not by the code under
 * test.
 */

const eth = { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" };

function spec(ip: 4 | 6, l4: "tcp" | "udp", vlan?: number): FrameSpec {
  return {
    ethernet: vlan === undefined ? eth : { ...eth, vlan },
    ip:
      ip === 4
        ? { version: 4, src: "192.168.0.1", dst: "192.168.0.199", id: 0x1c46 }
        : { version: 6, src: "fd00::1", dst: "fd00::c7" },
    l4:
      l4 === "tcp"
        ? { kind: "tcp", srcPort: 40000, dstPort: 5201, seq: 0x01020304, ack: 9 }
        : { kind: "udp", srcPort: 53, dstPort: 5353 },
  };
}

function payload(n: number, seed = 7): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

function set16(b: Uint8Array, at: number, v: number): void {
  b[at] = (v >>> 8) & 0xff;
  b[at + 1] = v & 0xff;
}

/** Where the transport checksum field is: TCP at 16, UDP at 6 (RFC 793, RFC 768). */
function checksumOffset(frame: Uint8Array): number {
  const p = parseFrame(frame);
  return p.l4 + (p.protocol === 17 ? 6 : 16);
}

/** The pseudo-header as bytes, from the RFCs' layouts. */
function pseudoHeader(ip: 4 | 6, protocol: number, length: number): Uint8Array {
  if (ip === 4) {
    return Uint8Array.from([
      ...parseIpv4("192.168.0.1"),
      ...parseIpv4("192.168.0.199"),
      0,
      protocol,
      length >>> 8,
      length & 0xff,
    ]);
  }
  return Uint8Array.from([
    ...parseIpv6("fd00::1"),
    ...parseIpv6("fd00::c7"),
    (length >>> 24) & 0xff,
    (length >>> 16) & 0xff,
    (length >>> 8) & 0xff,
    length & 0xff,
    0,
    0,
    0,
    protocol,
  ]);
}

/** The transport checksum from its definition: complement of the sum of pseudo-header and segment. */
function transportChecksum(frame: Uint8Array, ip: 4 | 6): number {
  const p = parseFrame(frame);
  const segment = frame.slice(p.l4, p.ipEnd);
  set16(segment, p.protocol === 17 ? 6 : 16, 0);
  const pseudo = pseudoHeader(ip, p.protocol, segment.length);
  const all = new Uint8Array(pseudo.length + segment.length);
  all.set(pseudo);
  all.set(segment, pseudo.length);
  return internetChecksumOracle(all);
}

/** The frame as a host with checksum offload hands it to its NIC (and a capture there shows it). */
function asOffloaded(frame: Uint8Array, ip: 4 | 6): Uint8Array {
  const p = parseFrame(frame);
  const out = frame.slice();
  set16(out, checksumOffset(out), onesSumOracle(pseudoHeader(ip, p.protocol, p.ipEnd - p.l4)));
  return out;
}

describe("checksum audit of captured frames (RFC 1071, RFC 768, RFC 793, RFC 8200 8.1)", () => {
  it("counts frames built with good checksums as valid, over IPv4 and IPv6, TCP and UDP, tagged or not", () => {
    const frames = [
      buildFrame(spec(4, "tcp"), payload(100)),
      buildFrame(spec(4, "udp"), payload(33)),
      buildFrame(spec(6, "tcp", 12), payload(1)),
      buildFrame(spec(6, "udp"), payload(0)),
    ];
    for (const [i, f] of frames.entries()) {
      // The builder's checksums are the ones the RFCs define.
      const ip = i < 2 ? 4 : 6;
      expect(be16(f, checksumOffset(f))).toBe(transportChecksum(f, ip));
    }
    expect(auditChecksums(frames)).toEqual({ valid: 4, notValid: 0, partial: 0 });
  });

  it("leaves out frames that are not IP or do not parse", () => {
    const arp = new Uint8Array(60);
    arp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    const cut = buildFrame(spec(4, "tcp"), payload(10)).subarray(0, 30);
    expect(auditChecksums([arp, cut])).toEqual({ valid: 0, notValid: 0, partial: 0 });
    expect(auditChecksums([])).toEqual({ valid: 0, notValid: 0, partial: 0 });
  });

  it("tells a checksum left to the NIC (the pseudo-header sum) from a wrong one", () => {
    for (const ip of [4, 6] as const) {
      for (const l4 of ["tcp", "udp"] as const) {
        const good = buildFrame(spec(ip, l4), payload(200 + ip));
        const offloaded = asOffloaded(good, ip);
        const wrong = good.slice();
        const at = checksumOffset(wrong);
        set16(wrong, at, (be16(good, at) + 1) & 0xffff);
        expect(auditChecksums([offloaded]), `IPv${ip} ${l4} offloaded`).toEqual({
          valid: 0,
          notValid: 1,
          partial: 1,
        });
        expect(auditChecksums([wrong]), `IPv${ip} ${l4} wrong`).toEqual({
          valid: 0,
          notValid: 1,
          partial: 0,
        });
        expect(auditChecksums([good, offloaded, wrong, good])).toEqual({
          valid: 2,
          notValid: 2,
          partial: 1,
        });
      }
    }
  });

  it("counts a bad IPv4 header checksum as not valid even when the transport checksum is good or partial", () => {
    const good = buildFrame(spec(4, "tcp"), payload(64));
    const p = parseFrame(good);
    const badHeader = good.slice();
    badHeader[p.l3 + 10] = (badHeader[p.l3 + 10] ?? 0) ^ 0x01;
    expect(auditChecksums([badHeader])).toEqual({ valid: 0, notValid: 1, partial: 0 });
    const both = asOffloaded(badHeader, 4);
    expect(auditChecksums([both])).toEqual({ valid: 0, notValid: 1, partial: 1 });
  });

  it("takes a UDP checksum of zero as not computed over IPv4 (RFC 768) but not over IPv6 (RFC 8200 8.1)", () => {
    const v4 = buildFrame(spec(4, "udp"), payload(20));
    set16(v4, checksumOffset(v4), 0);
    expect(auditChecksums([v4])).toEqual({ valid: 1, notValid: 0, partial: 0 });
    const v6 = buildFrame(spec(6, "udp"), payload(20));
    set16(v6, checksumOffset(v6), 0);
    expect(auditChecksums([v6])).toEqual({ valid: 0, notValid: 1, partial: 0 });
    // A TCP checksum of zero over IPv4 is just a wrong one.
    const tcp = buildFrame(spec(4, "tcp"), payload(20));
    set16(tcp, checksumOffset(tcp), 0);
    expect(auditChecksums([tcp])).toEqual({ valid: 0, notValid: 1, partial: 0 });
  });

  it("checks only the IPv4 header of a fragment, whose transport checksum covers the whole datagram", () => {
    const f = buildFrame(spec(4, "udp"), payload(40));
    const p = parseFrame(f);
    const fragment = f.slice();
    fragment[p.l3 + 6] = 0x20; // MF
    // The header checksum made good again after setting MF, by RFC 1624's rule.
    set16(fragment, p.l3 + 10, 0);
    set16(fragment, p.l3 + 10, internetChecksumOracle(fragment, p.l3, 20));
    set16(fragment, checksumOffset(f), 0x1234);
    expect(auditChecksums([fragment])).toEqual({ valid: 1, notValid: 0, partial: 0 });
    fragment[p.l3 + 8] = 1; // TTL changed, the header checksum no longer matches
    expect(auditChecksums([fragment])).toEqual({ valid: 0, notValid: 1, partial: 0 });
  });
});

describe("recomputing a captured frame's checksums", () => {
  it("gives the frame the RFCs' checksums back from an offloaded or wrong one, over IPv4 and IPv6", () => {
    for (const ip of [4, 6] as const) {
      for (const l4 of ["tcp", "udp"] as const) {
        // 8,900 bytes: a jumbo frame, its transport length past 12 bits.
        for (const n of [0, 1, 2, 301, 8900]) {
          const good = buildFrame(spec(ip, l4, 5), payload(n));
          const offloaded = asOffloaded(good, ip);
          const before = offloaded.slice();
          const fixed = recomputeChecksums(offloaded);
          expect(Buffer.compare(fixed, good), `IPv${ip} ${l4} ${n} bytes`).toBe(0);
          // A copy: the captured frame is left as it was.
          expect(Buffer.compare(offloaded, before)).toBe(0);
          expect(be16(fixed, checksumOffset(fixed))).toBe(transportChecksum(fixed, ip));
          expect(auditChecksums([fixed])).toEqual({ valid: 1, notValid: 0, partial: 0 });
        }
      }
    }
  });

  it("computes the IPv4 header checksum over the whole header: 0xB861 for the usual worked example", () => {
    // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7: total length 115, DF, TTL 64, UDP.
    const f = buildFrame(
      {
        ethernet: eth,
        ip: { version: 4, src: "192.168.0.1", dst: "192.168.0.199", id: 0, dontFragment: true },
        l4: { kind: "udp", srcPort: 53, dstPort: 5353 },
      },
      payload(115 - 28),
    );
    const p = parseFrame(f);
    expect(Array.from(f.subarray(p.l3, p.l3 + 12))).toEqual([
      0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61,
    ]);
    const zeroed = f.slice();
    set16(zeroed, p.l3 + 10, 0);
    set16(zeroed, checksumOffset(zeroed), 0x5555);
    const fixed = recomputeChecksums(zeroed);
    expect(be16(fixed, p.l3 + 10)).toBe(0xb861);
    expect(Buffer.compare(fixed, f)).toBe(0);
  });

  it("writes a UDP checksum that computes to zero as 0xFFFF (RFC 768)", () => {
    for (const ip of [4, 6] as const) {
      const s = spec(ip, "udp");
      const data = payload(64);
      data[62] = 0;
      data[63] = 0;
      const base = buildFrame(s, data);
      // With the last word zero the sum is S; a last word of 0xFFFF - S makes it 0xFFFF.
      const sum = ~transportChecksum(base, ip) & 0xffff;
      const word = 0xffff - sum;
      data[62] = word >>> 8;
      data[63] = word & 0xff;
      const f = buildFrame(s, data);
      set16(f, checksumOffset(f), 0x0bad);
      const fixed = recomputeChecksums(f);
      expect(be16(fixed, checksumOffset(fixed)), `IPv${ip}`).toBe(0xffff);
      expect(auditChecksums([fixed])).toEqual({ valid: 1, notValid: 0, partial: 0 });
    }
  });

  it("recomputes only the IPv4 header of a fragment, and leaves frames that are not IP as they are", () => {
    const f = buildFrame(spec(4, "tcp"), payload(40));
    const p = parseFrame(f);
    const fragment = f.slice();
    fragment[p.l3 + 6] = 0x20; // MF
    set16(fragment, checksumOffset(f), 0x1234);
    const fixed = recomputeChecksums(fragment);
    expect(be16(fixed, checksumOffset(f))).toBe(0x1234);
    const header = fixed.slice(p.l3, p.l3 + 20);
    expect(onesSumOracle(header)).toBe(0xffff);
    const arp = new Uint8Array(42);
    arp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    expect(recomputeChecksums(arp)).toBe(arp);
    const cut = f.subarray(0, 20);
    expect(recomputeChecksums(cut)).toBe(cut);
  });
});
