import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nextWave } from "../src/migration/multifd-waves.js";

describe("multifd waves", () => {
  it("cover the list in order, whole packets, numbered on, no channel idle while another carries two packets", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 5_000 }),
        fc.integer({ min: 1, max: 20_000 }),
        fc.nat(1_000),
        (channels, packetPages, groupPackets, start, length, packetNum) => {
          const groupPages = groupPackets * packetPages;
          const count = start + length;
          const slices = nextWave(start, count, channels, groupPages, packetPages, packetNum);
          expect(slices.length).toBeGreaterThan(0);
          expect(slices.length).toBeLessThanOrEqual(channels);
          let at = start;
          let num = packetNum;
          for (const [i, slice] of slices.entries()) {
            expect(slice.c).toBe(i);
            expect(slice.start).toBe(at);
            expect(slice.packetNum).toBe(num);
            expect(slice.count).toBeGreaterThan(0);
            expect(slice.count).toBeLessThanOrEqual(groupPages);
            // Every slice but the list's last is whole packets.
            if (slice.start + slice.count < count) expect(slice.count % packetPages).toBe(0);
            at += slice.count;
            num += Math.ceil(slice.count / packetPages);
          }
          const carried = at - start;
          // A wave carries what is left, up to every channel's full share.
          expect(carried).toBe(Math.min(length, groupPages * channels));
          // Balanced: the largest slice is at most one packet more than an
          // even share, so a short wave is not left to the first channel.
          const largest = Math.max(...slices.map((s) => s.count));
          const even = Math.ceil(carried / channels);
          expect(largest).toBeLessThanOrEqual(Math.max(packetPages, even + packetPages - 1));
        },
      ),
      { numRuns: 2_000 },
    );
  });

  it("splits a guest smaller than one batch over both channels (512 MiB, unthrottled)", () => {
    // 131,072 pages of 4 KiB, 128 pages a packet, a channel's share of a
    // 262,144-page batch: each of 2 channels takes half.
    const slices = nextWave(0, 131_072, 2, 131_072, 128, 0);
    expect(slices.map((s) => s.count)).toEqual([65_536, 65_536]);
    expect(slices.map((s) => s.packetNum)).toEqual([0, 512]);
  });
});
