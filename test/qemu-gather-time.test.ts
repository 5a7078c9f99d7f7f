import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { distinctPages } from "../src/qemu/dirty-curve.js";
import { GUEST_PAGE } from "../src/qemu/guest-image.js";
import { gatherTimeMs } from "../src/qemu/host-probe.js";

const MiB = 1024 ** 2;

describe("how long the probe lets the guest dirty the run's threshold", () => {
  it("every write a new page without a fitted working set: the threshold's pages over the write rate", () => {
    // 100 MiB/s x 100 ms = 10 MiB = 2,560 pages; at 10,000 writes/s, 256 ms.
    const run = { maxBandwidth: 100 * MiB, downtimeLimitMs: 100, workingSetPages: null };
    expect(gatherTimeMs(run, 10_000)).toBeCloseTo(256, 9);
  });

  it("on a working set of N pages: the time the saturating curve N (1 - exp(-w t / N)) reaches it", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 300 }),
        fc.integer({ min: 256, max: 1 << 20 }),
        fc.integer({ min: 100, max: 1_000_000 }),
        (mibPerSecond, limitMs, pages, writes) => {
          const run = {
            maxBandwidth: mibPerSecond * MiB,
            downtimeLimitMs: limitMs,
            workingSetPages: pages,
          };
          const target = (run.maxBandwidth * limitMs) / 1000 / GUEST_PAGE;
          const ms = gatherTimeMs(run, writes);
          if (target >= pages) {
            // The working set is smaller than the threshold: never.
            expect(ms).toBe(Number.POSITIVE_INFINITY);
            return;
          }
          expect(Number.isFinite(ms)).toBe(true);
          // The curve, written independently, reaches the target then.
          expect(distinctPages(pages, (writes * ms) / 1000)).toBeCloseTo(target, 3);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("a guest that writes nothing never gets there", () => {
    const run = { maxBandwidth: 100 * MiB, downtimeLimitMs: 100, workingSetPages: 1000 };
    expect(gatherTimeMs(run, 0)).toBe(Number.POSITIVE_INFINITY);
    expect(gatherTimeMs({ ...run, workingSetPages: null }, 0)).toBe(Number.POSITIVE_INFINITY);
  });
});
