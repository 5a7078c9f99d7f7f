import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { parseFrame } from "../src/net/frame.js";
import { checksumsGood } from "../src/net/receive-batch.js";
import { sumCounts } from "../src/net/receive-counts.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import type { ReceiveCounts } from "../src/wasm/receive.js";
import { SegmentKernel } from "../src/wasm/segment.js";

/*
 * Which checksums a received frame carries, and so which the receive path
 * validates: TCP and UDP over IPv4 and IPv6 their transport checksum with
 * the pseudo-header of their own IP version (RFC 793 section 3.1, RFC 768,
 * RFC 8200 section 8.1) and, over IPv4, the header checksum (RFC 791
 * section 3.1); IPv6 has no header checksum, so an IPv6 datagram whose
 * transport is not parsed (ICMPv6 here, or a fragment) has nothing to
 * check; a frame that is not IP (ARP) carries none.
 */

const layout = new MemoryLayout();
const area = layout.allocate("frames", 4096);
const kernels = {
  memory: layout.memory,
  segment: SegmentKernel.on(layout.memory),
  checksum: ChecksumKernel.on(layout.memory),
};

function spec(ip: 4 | 6, l4: "tcp" | "udp"): FrameSpec {
  return {
    ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
    ip:
      ip === 4
        ? { version: 4, src: "10.1.2.3", dst: "10.4.5.6", id: 9 }
        : { version: 6, src: "2001:db8::1:2:3", dst: "2001:db8::4:5:6" },
    l4:
      l4 === "tcp"
        ? { kind: "tcp", srcPort: 1234, dstPort: 80, seq: 77 }
        : { kind: "udp", srcPort: 1234, dstPort: 53 },
  };
}

/** Whether the receive path takes the frame's checksums, with the frame at `start`. */
function good(frame: Uint8Array, start = 5): boolean {
  area.bytes(layout.memory).fill(0xee);
  area.bytes(layout.memory).set(frame, start);
  return checksumsGood(kernels, area, start, parseFrame(frame));
}

describe("a received frame's checksums, frame by frame", () => {
  it("TCP and UDP over IPv4 and IPv6: good as built, bad when a payload byte or an address changes", () => {
    for (const ip of [4, 6] as const) {
      for (const l4 of ["tcp", "udp"] as const) {
        const what = `IPv${ip} ${l4}`;
        const f = buildFrame(
          spec(ip, l4),
          new Uint8Array(45).map((_, i) => i * 7),
        );
        expect(good(f), what).toBe(true);
        expect(good(f, 0), what).toBe(true);
        const payload = f.slice();
        payload[f.length - 1] = (payload[f.length - 1] ?? 0) ^ 0x10;
        expect(good(payload), `${what}: payload`).toBe(false);
        // The destination address is in the pseudo-header only.
        const p = parseFrame(f);
        const address = f.slice();
        address[p.dstAddress + (ip === 4 ? 3 : 15)] = 7;
        if (ip === 4) {
          // The IPv4 header's own checksum made right again (RFC 1071), so only the
          // pseudo-header is wrong.
          address[p.l3 + 10] = 0;
          address[p.l3 + 11] = 0;
          const h = address.subarray(p.l3, p.l3 + 20);
          let s = 0;
          for (let i = 0; i < 20; i += 2) s += ((h[i] ?? 0) << 8) | (h[i + 1] ?? 0);
          while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
          const c = ~s & 0xffff;
          h[10] = c >>> 8;
          h[11] = c & 0xff;
        }
        expect(good(address), `${what}: address`).toBe(false);
      }
    }
  });

  it("IPv6 without a parsed transport has no checksum to fail; IPv4 without one checks its header", () => {
    const icmp6 = new Uint8Array(14 + 40 + 8);
    icmp6.set([0x86, 0xdd], 12);
    icmp6[14] = 0x60;
    icmp6[14 + 5] = 8; // payload length
    icmp6[14 + 6] = 58; // ICMPv6
    icmp6[14 + 7] = 64;
    icmp6.fill(0xab, 14 + 8, 14 + 40); // addresses: any bytes sum to anything
    icmp6[14 + 40] = 128; // echo request, checksum left wrong
    const p = parseFrame(icmp6);
    expect(p.l4).toBe(-1);
    expect(good(icmp6)).toBe(true);

    const icmp4 = new Uint8Array(14 + 20 + 8);
    icmp4.set([0x08, 0x00], 12);
    icmp4.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
    expect(good(icmp4)).toBe(false);
  });

  it("a frame that is not IP carries no checksum", () => {
    const arp = new Uint8Array(60).fill(0x5a);
    arp.set([0x08, 0x06], 12);
    expect(parseFrame(arp).ipVersion).toBe(0);
    expect(good(arp)).toBe(true);
  });
});

describe("a processor's counts summed over rounds", () => {
  it("adds every count of every round", () => {
    const round = (k: number): ReceiveCounts => ({
      frames: 1000 * k + 1,
      delivered: 1000 * k + 2,
      coalescedSegments: 1000 * k + 3,
      badChecksum: 1000 * k + 4,
      malformed: 1000 * k + 5,
      unknownMac: 1000 * k + 6,
      lookups: 1000 * k + 7,
      ringFull: 1000 * k + 8,
      bytes: 1000 * k + 9,
    });
    const sum = sumCounts();
    expect(sum.counts).toEqual(zero());
    sum.add(round(1));
    sum.add(round(2));
    sum.add(round(3));
    expect(sum.counts).toEqual({
      frames: 6003,
      delivered: 6006,
      coalescedSegments: 6009,
      badChecksum: 6012,
      malformed: 6015,
      unknownMac: 6018,
      lookups: 6021,
      ringFull: 6024,
      bytes: 6027,
    });
  });
});

function zero(): ReceiveCounts {
  return {
    frames: 0,
    delivered: 0,
    coalescedSegments: 0,
    badChecksum: 0,
    malformed: 0,
    unknownMac: 0,
    lookups: 0,
    ringFull: 0,
    bytes: 0,
  };
}
