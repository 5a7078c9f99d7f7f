import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { formatMac } from "../src/net/address.js";
import { Segmenter } from "../src/net/lso.js";
import { generateTraffic, type TrafficSpec } from "../src/net/traffic.js";

/*
 * How the generated traffic is corrupted and seeded: a corrupted frame is
 * the clean frame with its last byte flipped (XOR 0x5A), so every one of
 * them fails its TCP checksum; the seed chooses which VM each burst goes
 * to, so two seeds give two different mixes, and a seed of 0 mixes too.
 */

const segmenter = new Segmenter(new MemoryLayout(), 128 * 1024);

const base: TrafficSpec = {
  vms: [
    { name: "a", mac: "00:15:5d:00:00:10", weight: 1 },
    { name: "b", mac: "00:15:5d:00:00:11", weight: 1 },
  ],
  flowsPerVm: 2,
  frames: 3000,
  mtu: 1500,
  ipVersion: 4,
  sendBytes: 14_600,
  burst: 2,
  broadcastEvery: 0,
  corruptFraction: 0,
  seed: 5,
};

describe("generated traffic's corruption and seed", () => {
  it("corrupts a frame by flipping its last byte with 0x5A, nothing else", () => {
    const clean = generateTraffic(segmenter, base);
    const dirty = generateTraffic(segmenter, { ...base, corruptFraction: 0.2 });
    expect(dirty).toHaveLength(clean.length);
    let corrupted = 0;
    for (const [i, f] of dirty.entries()) {
      const c = clean[i] as Uint8Array;
      expect(f.length).toBe(c.length);
      const last = f.length - 1;
      if (Buffer.compare(f.subarray(0, last), c.subarray(0, last)) !== 0) {
        expect.fail(`frame ${i} differs before its last byte`);
      }
      if (f[last] !== c[last]) {
        corrupted++;
        expect(f[last], `frame ${i}`).toBe((c[last] ?? 0) ^ 0x5a);
      }
    }
    expect(corrupted).toBeGreaterThan(450);
    expect(corrupted).toBeLessThan(750);
  });

  it("mixes the VMs differently for another seed", () => {
    const order = (seed: number) =>
      generateTraffic(segmenter, { ...base, frames: 400, seed })
        .map((f) => formatMac(f).slice(-1))
        .join("");
    expect(order(5)).toBe(order(5));
    expect(order(5)).not.toBe(order(6));
    expect(order(0)).toMatch(/0/);
    expect(order(0)).toMatch(/1/);
  });
});
