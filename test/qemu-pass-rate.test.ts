import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  cappedWindowRates,
  firstPassRate,
  MIN_ZERO_PAGES,
  WINDOW_MS,
  zeroScanRate,
} from "../src/qemu/pass-rate.js";
import type { MigrateSample } from "../src/qemu/rounds.js";

const MiB = 1024 ** 2;

/** A query-migrate sample of an active migration. */
function sample(atMs: number, transferred: number, normal: number, syncs: number): MigrateSample {
  return {
    atMs,
    info: {
      status: "active",
      ram: { transferred, "normal-bytes": normal, "dirty-sync-count": syncs },
    },
  };
}

describe("the first pass's sending rate from query-migrate samples", () => {
  it("skips the zero pages before the working set, spans the stalls, stops at the second sync", () => {
    const samples = [
      sample(0, 0, 0, 1),
      // Zero pages: bytes, but hardly any normal ones.
      sample(50, 100_000, 0, 1),
      // 5 MiB of normal pages every 50 ms, one 50 ms stall in between.
      sample(100, 100_000 + 5 * MiB, 5 * MiB, 1),
      sample(150, 100_000 + 10 * MiB, 10 * MiB, 1),
      sample(200, 100_000 + 10 * MiB, 10 * MiB, 1),
      sample(250, 100_000 + 15 * MiB, 15 * MiB, 1),
      // The second sync: what follows is not the first pass.
      sample(300, 100_000 + 40 * MiB, 40 * MiB, 2),
    ];
    const r = firstPassRate(samples);
    // From the sample at 50 ms to the one at 250 ms: 15 MiB in 200 ms, the stall included.
    expect(r?.rate).toBeCloseTo((15 * MiB * 1000) / 200, 6);
    expect(r?.fromMs).toBe(50);
    expect(r?.toMs).toBe(250);
    expect(r?.intervals).toBe(3);
    // 75 MiB/s back from 100,000 bytes at 50 ms: pages began to flow at 48.7 ms.
    expect(r?.startMs).toBeCloseTo(50 - (100_000 * 1000) / (75 * MiB), 6);
    // Windows of at least 100 ms: 50-150 ms (10 MiB), 150-250 ms (5 MiB).
    expect(r?.windowRates).toEqual([100 * MiB, 50 * MiB]);
    // Up to 150 ms only: the first two intervals.
    expect(firstPassRate(samples, 150)?.rate).toBeCloseTo(100 * MiB, 6);
  });

  it("a window in which nothing went joins the next: every window rate is above 0", () => {
    const samples = [
      sample(0, 0, 0, 1),
      sample(50, 5 * MiB, 5 * MiB, 1),
      sample(100, 10 * MiB, 10 * MiB, 1),
      // 100 ms of nothing, then 5 MiB.
      sample(150, 10 * MiB, 10 * MiB, 1),
      sample(200, 10 * MiB, 10 * MiB, 1),
      sample(250, 15 * MiB, 15 * MiB, 1),
    ];
    const r = firstPassRate(samples);
    // 15 MiB in 250 ms: 60 MiB/s. The windows, 100 and 33.3 MiB/s (100 ms
    // of nothing joined to the 50 ms that sent 5 MiB), scaled by 60 / 66.7
    // to mean the pass's rate.
    expect(r?.rate).toBeCloseTo(60 * MiB, 6);
    const windows = r?.windowRates ?? [];
    expect(windows).toHaveLength(2);
    expect(windows[0]).toBeCloseTo(90 * MiB, 3);
    expect(windows[1]).toBeCloseTo(30 * MiB, 3);
  });

  it("no interval of normal pages, or only one sample: no rate", () => {
    expect(firstPassRate([])).toBeNull();
    expect(firstPassRate([sample(0, 0, 0, 1)])).toBeNull();
    expect(firstPassRate([sample(0, 0, 0, 1), sample(50, MiB, 0, 1)])).toBeNull();
    expect(firstPassRate([sample(0, 0, 0, 2), sample(50, MiB, MiB, 2)])).toBeNull();
  });

  it("any samples at all: never throws, and a rate it gives is finite and above 0 with windows of at least 100 ms", () => {
    const arbSample = fc.record({
      atMs: fc.double({ min: -1e6, max: 1e6, noNaN: true }),
      status: fc.constantFrom("active", "setup", "completed", "device"),
      transferred: fc.oneof(fc.double({ min: -1e12, max: 1e12, noNaN: true }), fc.constant(0)),
      normal: fc.double({ min: -1e12, max: 1e12, noNaN: true }),
      syncs: fc.integer({ min: 0, max: 5 }),
      hasRam: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(arbSample, { maxLength: 40 }), (raw) => {
        const samples: MigrateSample[] = raw
          .sort((a, b) => a.atMs - b.atMs)
          .map((x) => ({
            atMs: x.atMs,
            info: x.hasRam
              ? {
                  status: x.status,
                  ram: {
                    transferred: x.transferred,
                    "normal-bytes": x.normal,
                    "dirty-sync-count": x.syncs,
                  },
                }
              : { status: x.status },
          }));
        const r = firstPassRate(samples);
        if (r === null) return;
        expect(Number.isFinite(r.rate) && r.rate > 0).toBe(true);
        expect(r.toMs).toBeGreaterThan(r.fromMs);
        expect(r.startMs).toBeGreaterThanOrEqual(0);
        expect(r.windowRates.length).toBeLessThanOrEqual(samples.length);
        // What the model's link runs at: every window above 0 and finite.
        for (const w of r.windowRates) expect(Number.isFinite(w) && w > 0).toBe(true);
      }),
      { numRuns: 2000 },
    );
    expect(WINDOW_MS).toBe(100);
  });
});

/** A sample with page counts: `normal` pages sent, `zero` pages found zero. */
function pageSample(atMs: number, normal: number, zero: number, syncs: number): MigrateSample {
  return {
    atMs,
    info: {
      status: "active",
      ram: {
        transferred: normal * 4104 + zero * 9,
        normal,
        duplicate: zero,
        "normal-bytes": normal * 4096,
        "dirty-sync-count": syncs,
      },
    },
  };
}

describe("the first pass's zero-page scan rate from query-migrate samples", () => {
  it("times only the intervals of mostly zero pages in the first pass", () => {
    const samples = [
      pageSample(0, 0, 0, 1),
      // The working set: normal pages only.
      pageSample(50, 2000, 0, 1),
      pageSample(100, 4000, 0, 1),
      // Its end and the tail's start: half and half, not timed.
      pageSample(150, 5000, 1000, 1),
      // The tail: 2,000 zero pages in each 50 ms, then 3,000 in 100 ms.
      pageSample(200, 5000, 3000, 1),
      pageSample(250, 5000, 5000, 1),
      pageSample(350, 5000, 8000, 1),
      // Past the second sync: not the first pass.
      pageSample(400, 5000, 50_000, 2),
    ];
    // 7,000 pages in 200 ms.
    expect(zeroScanRate(samples)).toBeCloseTo(35_000, 6);
    // Up to 250 ms: 4,000 pages in 100 ms.
    expect(zeroScanRate(samples, 250)).toBeCloseTo(40_000, 6);
    // Up to 200 ms: 2,000 pages in one interval, enough.
    expect(zeroScanRate(samples, 200)).toBeCloseTo(40_000, 6);
    // Fewer than MIN_ZERO_PAGES are too few to time.
    const few = [pageSample(0, 0, 0, 1), pageSample(50, 0, MIN_ZERO_PAGES - 1, 1)];
    expect(zeroScanRate(few)).toBeNull();
    expect(zeroScanRate([...few, pageSample(60, 0, MIN_ZERO_PAGES, 1)])).toBeCloseTo(
      (MIN_ZERO_PAGES * 1000) / 60,
      6,
    );
  });

  it("past the working set: times the tail alone, not the faster zero pages below the working set", () => {
    const samples = [
      pageSample(0, 0, 0, 1),
      // Below the working set: 4,000 zero pages in 10 ms (400,000 a second).
      pageSample(10, 0, 4000, 1),
      // The working set.
      pageSample(60, 3000, 4000, 1),
      // The tail: 512 pages (one 2 MiB huge page of the destination's) every 20 ms.
      ...Array.from({ length: 8 }, (_, i) =>
        pageSample(80 + 20 * i, 3000, 4000 + 512 * (i + 1), 1),
      ),
    ];
    // The tail: 4,096 pages in 160 ms.
    expect(zeroScanRate(samples, Number.POSITIVE_INFINITY, true)).toBeCloseTo(25_600, 6);
    // Every zero interval: 8,096 pages in 170 ms, the low pages' speed in it.
    expect(zeroScanRate(samples)).toBeCloseTo((8096 * 1000) / 170, 6);
    // Before the tail was reached there is nothing of it to time.
    expect(zeroScanRate(samples, 60, true)).toBeNull();
    expect(zeroScanRate(samples, 60)).toBeCloseTo(400_000, 6);
  });

  it("past the working set: the stalls of the pass after the tail are the tail's time too", () => {
    const tail = [
      pageSample(0, 0, 0, 1),
      pageSample(50, 3000, 0, 1),
      // The tail: 5,000 zero pages in 100 ms, the source ahead of the destination.
      pageSample(100, 3000, 2500, 1),
      pageSample(150, 3000, 5000, 1),
      // The next sync, 100 pages into the socket's buffers, then nothing for 300 ms.
      pageSample(200, 3100, 5000, 2),
      ...[250, 300, 350, 400, 450, 500].map((at) => pageSample(at, 3100, 5000, 2)),
      // Flowing again: not a stall.
      pageSample(550, 3600, 5000, 2),
      // A stall in the pass after that is not the tail's.
      pageSample(600, 4000, 5000, 3),
      pageSample(650, 4000, 5000, 3),
    ];
    // 5,000 pages over 100 ms of scanning and 300 ms of stalls (250 to 500 ms).
    expect(zeroScanRate(tail, Number.POSITIVE_INFINITY, true)).toBeCloseTo(12_500, 6);
    // Without pastWorkingSet the first pass alone: 5,000 pages in 100 ms.
    expect(zeroScanRate(tail)).toBeCloseTo(50_000, 6);
    // No tail: a stall after the working set is no zero page's.
    const none = [
      pageSample(0, 0, 0, 1),
      pageSample(50, 3000, 0, 1),
      pageSample(100, 3000, 0, 2),
      pageSample(150, 3000, 0, 2),
    ];
    expect(zeroScanRate(none, Number.POSITIVE_INFINITY, true)).toBeNull();
  });

  it("never a rate from garbage: absent counters, counters going back, no time passing", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.double({ min: -1e6, max: 1e6, noNaN: true }),
            normal: fc.integer({ min: -1e6, max: 1e6 }),
            zero: fc.integer({ min: -1e6, max: 1e6 }),
            syncs: fc.integer({ min: 0, max: 3 }),
          }),
          { maxLength: 30 },
        ),
        (raw) => {
          const r = zeroScanRate(raw.map((x) => pageSample(x.at, x.normal, x.zero, x.syncs)));
          expect(r === null || (Number.isFinite(r) && r > 0)).toBe(true);
        },
      ),
    );
  });
});

describe("window rates under max-bandwidth", () => {
  it("capped at the budget's rate, spread kept below it, mean kept", () => {
    // Mean 46 with a cap of 50: windows above the cap are the sampling's.
    const r = cappedWindowRates([60, 30, 55, 39], 50, 46);
    expect(Math.max(...r)).toBeCloseTo(50, 9);
    expect(r.reduce((a, b) => a + b, 0) / r.length).toBeCloseTo(46, 6);
    // The slow windows stay slower than the fast ones, in the same order.
    expect(r[1]).toBeLessThan(r[3] ?? 0);
    expect(r[3]).toBeLessThan(50);
    // A mean at the cap or above: every window sends its budget.
    expect(cappedWindowRates([10, 90], 50, 50)).toEqual([50, 50]);
    expect(cappedWindowRates([], 50, 40)).toEqual([]);
  });

  it("any windows: every rate in (0, cap], their mean the asked one when below the cap", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 1, max: 1e9, noNaN: true }), { minLength: 1, maxLength: 50 }),
        fc.double({ min: 1, max: 1e9, noNaN: true }),
        fc.double({ min: 0.01, max: 0.99, noNaN: true }),
        (windows, cap, share) => {
          const mean = cap * share;
          const r = cappedWindowRates(windows, cap, mean);
          expect(r.length).toBe(windows.length);
          for (const w of r) {
            expect(w).toBeGreaterThan(0);
            expect(w).toBeLessThanOrEqual(cap);
          }
          expect(r.reduce((a, b) => a + b, 0) / r.length).toBeCloseTo(mean, 3);
        },
      ),
    );
  });
});
