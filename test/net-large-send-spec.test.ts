import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { formatIp, formatMac } from "../src/net/address.js";
import { SendError } from "../src/net/errors.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import {
  largeSendFrameSpec,
  payloadBytes,
  runLargeSend,
  USO_DESTINATION_PORT,
} from "../src/net/send.js";

/*
 * The large sends `hvlab net lso` and the tour make: between the
 * documentation addresses (RFC 5737's 192.0.2.0/24, RFC 3849's
 * 2001:db8::/32), TCP to port 445 (SMB, what live migration and storage
 * traffic use), UDP to 49153 (the dynamic range, RFC 6335 section 6), with
 * the options a user gives passed to the segmenter: MSS, IP ID mode, CWR on
 * all segments, the NIC's largest send.
 */

const segmenter = new Segmenter(new MemoryLayout(), 300_000);

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

describe("a large send's frames", () => {
  it("TCP over IPv4 between 192.0.2.1 and 192.0.2.2, port 49152 to 445, ACK and PSH, from sequence 1", () => {
    const r = runLargeSend(segmenter, {
      ipVersion: 4,
      transport: "tcp",
      offload: "lsov2",
      mtu: 1500,
      bytes: 3000,
      seed: 5,
    });
    expect(r.frames).toHaveLength(3);
    const seqs: number[] = [];
    for (const [i, f] of r.frames.entries()) {
      const p = parseFrame(f);
      expect(formatMac(f)).toBe("00:15:5d:00:00:02");
      expect(formatMac(f, 6)).toBe("00:15:5d:00:00:01");
      expect(p.vlan).toBeNull();
      expect(formatIp(f.subarray(p.srcAddress, p.srcAddress + 4))).toBe("192.0.2.1");
      expect(formatIp(f.subarray(p.dstAddress, p.dstAddress + 4))).toBe("192.0.2.2");
      expect([be16(f, p.l4), be16(f, p.l4 + 2)]).toEqual([49152, 445]);
      seqs.push(new DataView(f.buffer, f.byteOffset).getUint32(p.l4 + 4));
      expect(new DataView(f.buffer, f.byteOffset).getUint32(p.l4 + 8)).toBe(1);
      expect((f[p.l4 + 13] ?? 0) & TCP_FLAGS.PSH).toBe(i === 2 ? TCP_FLAGS.PSH : 0);
      expect(p.l4HeaderLength).toBe(20);
      // LSOv2 over IPv4 numbers IDs inside 15 bits from the template's 0x7FF0.
      expect(be16(f, p.l3 + 4)).toBe(0x7ff0 + i);
    }
    expect(seqs).toEqual([1, 1461, 2921]);
    expect(r.payload).toEqual(payloadBytes(3000, 5));
  });

  it("IPv6 between 2001:db8::1 and ::2, tagged, with timestamps and a first sequence number", () => {
    const spec = largeSendFrameSpec({
      ipVersion: 6,
      transport: "tcp",
      offload: "lsov2",
      mtu: 1500,
      bytes: 100,
      seed: 1,
      vlan: 42,
      timestamps: true,
      seq: 0xfffffff0,
      tcpFlags: TCP_FLAGS.ACK,
    });
    expect(spec.ethernet.vlan).toBe(42);
    expect(spec.ip).toEqual({ version: 6, src: "2001:db8::1", dst: "2001:db8::2" });
    const r = runLargeSend(segmenter, {
      ipVersion: 6,
      transport: "tcp",
      offload: "lsov2",
      mtu: 1500,
      bytes: 100,
      seed: 1,
      vlan: 42,
      timestamps: true,
      seq: 0xfffffff0,
      tcpFlags: TCP_FLAGS.ACK,
    });
    const f = r.frames[0] as Uint8Array;
    const p = parseFrame(f);
    expect(p.vlan).toBe(42);
    expect(formatIp(f.subarray(p.srcAddress, p.srcAddress + 16))).toBe("2001:db8:0:0:0:0:0:1");
    expect(formatIp(f.subarray(p.dstAddress, p.dstAddress + 16))).toBe("2001:db8:0:0:0:0:0:2");
    expect(p.l4HeaderLength).toBe(32);
    expect(new DataView(f.buffer, f.byteOffset).getUint32(p.l4 + 4)).toBe(0xfffffff0);
    expect((f[p.l4 + 13] ?? 0) & TCP_FLAGS.PSH).toBe(0);
  });

  it("UDP to port 49153", () => {
    const r = runLargeSend(segmenter, {
      ipVersion: 4,
      transport: "udp",
      offload: "uso",
      mtu: 1500,
      bytes: 2000,
      seed: 2,
    });
    expect(USO_DESTINATION_PORT).toBe(49153);
    for (const f of r.frames) {
      const p = parseFrame(f);
      expect(p.protocol).toBe(17);
      expect([be16(f, p.l4), be16(f, p.l4 + 2)]).toEqual([49152, 49153]);
    }
  });

  it("passes the MSS, the IP ID mode, CWR on all segments and the largest send to the segmenter", () => {
    const base = {
      ipVersion: 4 as const,
      transport: "tcp" as const,
      offload: "lsov2" as const,
      mtu: 1500,
      bytes: 4000,
      seed: 3,
    };
    const mss = runLargeSend(segmenter, { ...base, mss: 1000 });
    expect(mss.frames.map((f) => parseFrame(f).payloadLength)).toEqual([1000, 1000, 1000, 1000]);
    const fixed = runLargeSend(segmenter, { ...base, ipId: "fixed" });
    expect(fixed.frames.map((f) => be16(f, parseFrame(f).l3 + 4))).toEqual([
      0x7ff0, 0x7ff0, 0x7ff0,
    ]);
    const flags = TCP_FLAGS.ACK | TCP_FLAGS.CWR;
    const first = runLargeSend(segmenter, { ...base, tcpFlags: flags });
    const all = runLargeSend(segmenter, { ...base, tcpFlags: flags, cwr: "all" });
    const cwr = (fs: Uint8Array[]) =>
      fs.map((f) => ((f[parseFrame(f).l4 + 13] ?? 0) & TCP_FLAGS.CWR) !== 0);
    expect(cwr(first.frames)).toEqual([true, false, false]);
    expect(cwr(all.frames)).toEqual([true, true, true]);
    expect(() => runLargeSend(segmenter, { ...base, maxSend: 4000 })).toThrow(SendError);
    expect(runLargeSend(segmenter, { ...base, maxSend: 4040 }).frames).toHaveLength(3);
  });
});

describe("a large send's payload bytes", () => {
  it("are the top bytes of the LCG s' = 1664525 s + 1013904223 mod 2^32 from the seed (0 as 1)", () => {
    const expected = (seed: number, n: number) => {
      let s = BigInt(seed || 1);
      return Array.from({ length: n }, () => {
        s = (s * 1664525n + 1013904223n) % 2n ** 32n;
        return Number(s >> 24n);
      });
    };
    expect(Array.from(payloadBytes(5, 1))).toEqual([60, 94, 129, 180, 12]);
    expect(Array.from(payloadBytes(5, 1))).toEqual(expected(1, 5));
    expect(Array.from(payloadBytes(300, 0xdeadbeef))).toEqual(expected(0xdeadbeef, 300));
    expect(Array.from(payloadBytes(7, 0))).toEqual(expected(1, 7));
    expect(payloadBytes(0, 9)).toHaveLength(0);
  });
});
