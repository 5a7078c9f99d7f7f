import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { formatIp, formatMac } from "../src/net/address.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import { generateTraffic, type TrafficSpec } from "../src/net/traffic.js";
import { onesAdd, onesSumOracle } from "../src/oracle/checksum.js";

/*
 * The received traffic the VMQ and RSS experiments feed the receive path:
 * TCP flows into each VM, segmented by a real LSO at the link's MTU (MSS =
 * MTU - 40 for IPv4, - 60 for IPv6, RFC 879 / RFC 8200), each flow's
 * segments in sequence order, VMs chosen by weight, broadcasts at a set
 * rate, and a chosen share of frames with a corrupted TCP checksum.
 * Everything is checked on the frames themselves.
 */

const segmenter = new Segmenter(new MemoryLayout(), 128 * 1024);

const base: TrafficSpec = {
  vms: [
    { name: "vm0", mac: "00:15:5d:00:00:10", weight: 3 },
    { name: "vm1", mac: "00:15:5d:00:00:11", weight: 1, vlan: 7 },
  ],
  flowsPerVm: 3,
  frames: 4000,
  mtu: 1500,
  ipVersion: 4,
  sendBytes: 20_000,
  burst: 4,
  broadcastEvery: 0,
  corruptFraction: 0,
  seed: 11,
};

function checksumGood(f: Uint8Array): boolean {
  const p = parseFrame(f);
  const n = p.ipVersion === 4 ? 4 : 16;
  const len = p.ipEnd - p.l4;
  const pseudo = onesAdd(
    onesSumOracle(f, p.dstAddress, n, onesSumOracle(f, p.srcAddress, n, p.protocol)),
    len,
  );
  return onesSumOracle(f, p.l4, len, pseudo) === 0xffff;
}

function be32(b: Uint8Array, at: number): number {
  return (
    (((b[at] ?? 0) << 24) |
      ((b[at + 1] ?? 0) << 16) |
      ((b[at + 2] ?? 0) << 8) |
      (b[at + 3] ?? 0)) >>>
    0
  );
}

describe("generated receive traffic", () => {
  it("gives exactly the frames asked, TCP segments of MSS MTU - 40 into each VM's MAC, VLAN and address", () => {
    const frames = generateTraffic(segmenter, base);
    expect(frames).toHaveLength(4000);
    const perVm = [0, 0];
    for (const f of frames) {
      const p = parseFrame(f);
      expect(p.protocol).toBe(6);
      expect(p.ipVersion).toBe(4);
      expect(checksumGood(f)).toBe(true);
      // 20,000 bytes cut at 1,460: full segments, then one of 1,020.
      expect([1460, 20_000 % 1460]).toContain(p.payloadLength);
      const vm = formatMac(f) === "00:15:5d:00:00:10" ? 0 : 1;
      expect(formatMac(f)).toBe(vm === 0 ? "00:15:5d:00:00:10" : "00:15:5d:00:00:11");
      expect(p.vlan).toBe(vm === 0 ? null : 7);
      expect(formatIp(f.subarray(p.dstAddress, p.dstAddress + 4))).toBe(`10.0.${vm}.1`);
      expect([f[p.srcAddress], f[p.srcAddress + 1]]).toEqual([10, 0]);
      expect(f[p.srcAddress + 2]).toBe(vm);
      expect([100, 101, 102]).toContain(f[p.srcAddress + 3]);
      expect(f.length).toBeLessThanOrEqual(1514 + (vm === 0 ? 0 : 4));
      perVm[vm] = (perVm[vm] ?? 0) + 1;
    }
    // Weights 3 : 1, chosen a burst of 4 at a time: 3,000 and 1,000 expected.
    expect(perVm[0]).toBeGreaterThan(2800);
    expect(perVm[0]).toBeLessThan(3200);
  });

  it("sends each flow's segments in sequence order, one send after another, in bursts", () => {
    const frames = generateTraffic(segmenter, base);
    const next = new Map<string, number>();
    let runs = 0;
    let last = "";
    for (const f of frames) {
      const p = parseFrame(f);
      const flow = `${formatMac(f)} ${f[p.srcAddress + 3]} ${((f[p.l4] ?? 0) << 8) | (f[p.l4 + 1] ?? 0)}`;
      const seq = be32(f, p.l4 + 4);
      const expected = next.get(flow);
      if (expected === undefined) expect(seq % 1000).toBe(0);
      else expect(seq, flow).toBe(expected);
      next.set(flow, (seq + p.payloadLength) >>> 0);
      if (flow !== last) runs++;
      last = flow;
      // ACK on every segment, PSH only on each send's last (LSO rules).
      expect((f[p.l4 + 13] ?? 0) & TCP_FLAGS.ACK).toBe(TCP_FLAGS.ACK);
      const lastOfSend = p.payloadLength === 20_000 % 1460;
      expect((f[p.l4 + 13] ?? 0) & TCP_FLAGS.PSH).toBe(lastOfSend ? TCP_FLAGS.PSH : 0);
    }
    expect(next.size).toBe(6);
    // Bursts of 4: at most one flow change per 4 frames, and some changes.
    expect(runs).toBeLessThanOrEqual(1000 + 1);
    expect(runs).toBeGreaterThan(500);
  });

  it("puts a broadcast after every N frames, and corrupts the asked share of TCP checksums", () => {
    const frames = generateTraffic(segmenter, { ...base, broadcastEvery: 9, corruptFraction: 0.1 });
    expect(frames).toHaveLength(4000);
    let broadcasts = 0;
    let bad = 0;
    for (const [i, f] of frames.entries()) {
      if (formatMac(f) === "ff:ff:ff:ff:ff:ff") {
        broadcasts++;
        // Every tenth frame: nine frames, then the broadcast.
        expect(i % 10).toBe(9);
        expect(parseFrame(f).protocol).toBe(17);
        expect(checksumGood(f)).toBe(true);
      } else if (!checksumGood(f)) bad++;
    }
    expect(broadcasts).toBe(400);
    // 3,600 TCP frames, 10 % corrupted: 360 expected.
    expect(bad).toBeGreaterThan(300);
    expect(bad).toBeLessThan(420);
  });

  it("segments IPv6 flows at MSS MTU - 60, and jumbo frames at 9000", () => {
    const frames = generateTraffic(segmenter, {
      ...base,
      ipVersion: 6,
      mtu: 9000,
      frames: 200,
      sendBytes: 3 * 8940,
    });
    expect(frames).toHaveLength(200);
    for (const f of frames) {
      const p = parseFrame(f);
      expect(p.ipVersion).toBe(6);
      expect(p.payloadLength).toBe(8940);
      expect(checksumGood(f)).toBe(true);
      expect(formatIp(f.subarray(p.srcAddress, p.srcAddress + 16))).toMatch(
        /^fd00:[01]:0:0:0:0:0:6[4-6]$/,
      );
    }
  });

  it("is the same traffic for the same seed, and other traffic for another", () => {
    const a = generateTraffic(segmenter, { ...base, frames: 300 });
    const b = generateTraffic(segmenter, { ...base, frames: 300 });
    const c = generateTraffic(segmenter, { ...base, frames: 300, seed: 12 });
    expect(a.map((f) => Buffer.from(f).toString("hex"))).toEqual(
      b.map((f) => Buffer.from(f).toString("hex")),
    );
    expect(a.map((f) => Buffer.from(f).toString("hex"))).not.toEqual(
      c.map((f) => Buffer.from(f).toString("hex")),
    );
  });
});
