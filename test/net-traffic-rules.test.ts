import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { formatMac } from "../src/net/address.js";
import { parseFrame } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import { generateTraffic, type TrafficSpec } from "../src/net/traffic.js";

/*
 * The generated traffic's own rules, as the VMQ and RSS experiments state
 * them: VMs chosen by weight among any number of VMs, a flow's segments in
 * bursts of exactly `burst` frames (interrupt moderation batches), exactly
 * the frames asked whatever the burst, and a broadcast (NetBIOS name
 * service, UDP 137, the usual LAN chatter) after every N frames in the
 * traffic's IP version.
 */

const segmenter = new Segmenter(new MemoryLayout(), 128 * 1024);

const base: TrafficSpec = {
  vms: [
    { name: "a", mac: "00:15:5d:00:00:10", weight: 1 },
    { name: "b", mac: "00:15:5d:00:00:11", weight: 2 },
    { name: "c", mac: "00:15:5d:00:00:12", weight: 5 },
  ],
  flowsPerVm: 2,
  frames: 8001,
  mtu: 1500,
  ipVersion: 4,
  sendBytes: 14_600,
  burst: 4,
  broadcastEvery: 0,
  corruptFraction: 0,
  seed: 21,
};

const flowOf = (f: Uint8Array) => {
  const p = parseFrame(f);
  return `${formatMac(f)} ${((f[p.l4] ?? 0) << 8) | (f[p.l4 + 1] ?? 0)}`;
};

describe("generated traffic's rules", () => {
  it("shares frames among three VMs by weight 1 : 2 : 5", () => {
    const frames = generateTraffic(segmenter, base);
    expect(frames).toHaveLength(8001);
    const count = new Map<string, number>();
    for (const f of frames) count.set(formatMac(f), (count.get(formatMac(f)) ?? 0) + 1);
    const share = (mac: string) => (count.get(mac) ?? 0) / frames.length;
    expect(share("00:15:5d:00:00:10")).toBeCloseTo(1 / 8, 1);
    expect(share("00:15:5d:00:00:11")).toBeCloseTo(2 / 8, 1);
    expect(share("00:15:5d:00:00:12")).toBeCloseTo(5 / 8, 1);
  });

  it("sends a flow's segments in bursts of exactly the burst, across its sends", () => {
    for (const burst of [3, 4]) {
      const frames = generateTraffic(segmenter, { ...base, burst });
      expect(frames).toHaveLength(8001);
      // Runs of one flow: whole bursts (two bursts of the same flow in a row
      // join), the last run cut by the frame count.
      const runs: number[] = [];
      let last = "";
      for (const f of frames) {
        const flow = flowOf(f);
        if (flow === last) runs[runs.length - 1] = (runs.at(-1) ?? 0) + 1;
        else runs.push(1);
        last = flow;
      }
      for (const run of runs.slice(0, -1)) expect(run % burst, `burst ${burst}`).toBe(0);
      expect(runs.length).toBeGreaterThan(8001 / burst / 2);
    }
  });

  it("puts a broadcast after every N frames and none past the frames asked, over IPv4 and IPv6", () => {
    for (const ipVersion of [4, 6] as const) {
      const frames = generateTraffic(segmenter, {
        ...base,
        ipVersion,
        frames: 4009,
        broadcastEvery: 9,
      });
      expect(frames).toHaveLength(4009);
      const at: number[] = [];
      for (const [i, f] of frames.entries()) {
        if (formatMac(f) !== "ff:ff:ff:ff:ff:ff") continue;
        at.push(i);
        const p = parseFrame(f);
        expect(p.ipVersion).toBe(ipVersion);
        expect(p.protocol).toBe(17);
        expect([
          ((f[p.l4] ?? 0) << 8) | (f[p.l4 + 1] ?? 0),
          ((f[p.l4 + 2] ?? 0) << 8) | (f[p.l4 + 3] ?? 0),
        ]).toEqual([137, 137]);
      }
      expect(at).toHaveLength(400);
      expect(at.every((i) => i % 10 === 9)).toBe(true);
    }
  });
});
