import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import type { MigrationOptions } from "../src/migration/options.js";
import type { QueryMigrateSummary } from "../src/migration/query-migrate.js";
import { distinctPages, fitWorkingSet } from "../src/qemu/dirty-curve.js";
import { resolveGuestSpec } from "../src/qemu/guest-image.js";
import type { HostProbe } from "../src/qemu/host-probe.js";
import {
  calibrateFromRun,
  type FigureError,
  predictMigration,
  withProjection,
} from "../src/qemu/predict.js";
import type { MigrateSample } from "../src/qemu/rounds.js";
import { hvlabAsync, requireTool } from "./support/cli.js";

describe("the saturating dirty curve", () => {
  it("N (1 - exp(-w/N)): 1000 writes over 1000 pages touch 632.1 pages (1 - 1/e of them)", () => {
    expect(distinctPages(1000, 1000)).toBeCloseTo(632.12, 2);
    expect(distinctPages(1000, 0)).toBe(0);
    expect(distinctPages(1000, 1e9)).toBeCloseTo(1000, 6);
  });

  it("fitWorkingSet inverts it: the working set that made a point is found again", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 256, max: 1 << 20 }),
        fc.integer({ min: 100, max: 200_000 }),
        fc.integer({ min: 1, max: 10 }),
        (pages, rate, seconds) => {
          const dirty = distinctPages(pages, rate * seconds);
          // Within a few pages of writes the curve is flat in N: only fit where it bends.
          fc.pre(dirty < rate * seconds * 0.95);
          const point = { calcTimeS: seconds, dirtyRateMiBps: (dirty * 4096) / 2 ** 20 / seconds };
          const fitted = fitWorkingSet(point, rate);
          expect(fitted).not.toBeNull();
          expect(Math.abs((fitted ?? 0) - pages) / pages).toBeLessThan(0.01);
        },
      ),
      { numRuns: 300 },
    );
    // More distinct pages than writes: no working set explains it.
    expect(fitWorkingSet({ calcTimeS: 1, dirtyRateMiBps: 100 }, 10)).toBeNull();
  });
});

describe("the prediction at the run's own first-pass rate", () => {
  const MiB = 1024 ** 2;
  const probe: HostProbe = {
    hostRate: 220 * MiB,
    completionRate: 900 * MiB,
    completions: [{ bytes: 8 * MiB, downtimeMs: 9 }],
    fresh: null,
    startMs: 40,
    intervals: 10,
    zeroScanRate: null,
    writesPerSecondDuring: 5000,
  };
  const measured = { writesPerSecond: 5000, curve: [], fittedWorkingSetPages: null, probe };
  /** A first pass sending `rate` bytes/s of normal pages, sampled every 50 ms for 1 s. */
  const pass = (rate: number): MigrateSample[] =>
    Array.from({ length: 21 }, (_, i) => ({
      atMs: i * 50,
      info: {
        status: "active",
        ram: {
          transferred: (rate * i * 50) / 1000,
          "normal-bytes": (rate * i * 50) / 1000,
          "dirty-sync-count": 1,
        },
      },
    }));

  it("a pass max-bandwidth paced keeps the probe's rate with no limit, which sizes QEMU's iterations", () => {
    const paced = calibrateFromRun(measured, pass(30 * MiB), 30 * MiB);
    expect(paced?.measured.probe?.hostRate).toBeCloseTo(30 * MiB, 0);
    expect(paced?.measured.probe?.unthrottledRate).toBe(220 * MiB);
    // A pass the host's speed held (well below max-bandwidth) is that speed.
    const slow = calibrateFromRun(measured, pass(60 * MiB), 200 * MiB);
    expect(slow?.measured.probe?.unthrottledRate).toBeCloseTo(60 * MiB, 0);
    // Not probed: the paced rate is all there is.
    const alone = calibrateFromRun({ ...measured, probe: null }, pass(30 * MiB), 30 * MiB);
    expect(alone?.measured.probe?.unthrottledRate).toBeCloseTo(30 * MiB, 0);
  });

  it("the zero tail's scan rate is the probe's (tail and stalls), the run's tail start only without one", () => {
    const page = 4096;
    /** Zero pages below the working set at 400,000 a second, then normal pages at `rate`. */
    const lowZeroThenPass = (rate: number, tailAtMs: number | null): MigrateSample[] =>
      Array.from({ length: 21 }, (_, i) => {
        const at = i * 50;
        const zeroBelow = i === 0 ? 0 : 4000;
        const normal = i <= 1 ? 0 : (rate * (Math.min(at, tailAtMs ?? at) - 50)) / 1000 / page;
        // Past the working set: 1,024 zero pages every 50 ms (20,480 a second).
        const tail = tailAtMs !== null && at > tailAtMs ? ((at - tailAtMs) / 50) * 1024 : 0;
        return {
          atMs: at,
          info: {
            status: "active",
            ram: {
              transferred: normal * page + (zeroBelow + tail) * 9,
              normal,
              duplicate: zeroBelow + tail,
              "normal-bytes": normal * page,
              "dirty-sync-count": 1,
            },
          },
        };
      });
    const probed = { ...measured, probe: { ...probe, zeroScanRate: 30_000 } };
    // The working set outlasts the first second: the probe's tail rate, not the 80,000 a second below it.
    const long = calibrateFromRun(probed, lowZeroThenPass(100 * MiB, null), 200 * MiB);
    expect(long?.measured.probe?.zeroScanRate).toBe(30_000);
    // The tail reached at 500 ms: still the probe's, which saw the stalls after it.
    const short = calibrateFromRun(probed, lowZeroThenPass(100 * MiB, 500), 200 * MiB);
    expect(short?.measured.probe?.zeroScanRate).toBe(30_000);
    // The probe timed no tail: the tail's start in the run, not the pages below the working set.
    const untimed = { ...measured, probe: { ...probe, zeroScanRate: null } };
    const start = calibrateFromRun(untimed, lowZeroThenPass(100 * MiB, 500), 200 * MiB);
    expect(start?.measured.probe?.zeroScanRate).toBeCloseTo(20_480, 6);
    const none = calibrateFromRun(untimed, lowZeroThenPass(100 * MiB, null), 200 * MiB);
    expect(none?.measured.probe?.zeroScanRate).toBeNull();
  });

  it("keeps the probe's rate for pages a destination never held, and the model sends a completion's never-sent pages at it", async () => {
    const fresh = { normalBytes: 240 * MiB, rate: 1900 * MiB };
    const cal = calibrateFromRun(
      { ...measured, probe: { ...probe, fresh } },
      pass(150 * MiB),
      150 * MiB,
    );
    expect(cal?.measured.probe?.fresh).toEqual(fresh);
    // The fidelity suite's 256 MiB hot set at 10,000 writes/s, 150 MiB/s,
    // 200 ms: QEMU completes inside its first pass, with some 15 MB the
    // destination never held among its last 25.
    const guest = resolveGuestSpec({
      ramBytes: 256 * MiB,
      pattern: "hotset",
      writesPerSecond: 10_000,
      seed: 1,
    });
    const settings = {
      maxBandwidth: 150 * MiB,
      downtimeLimitMs: 200,
      multifdChannels: 0,
      xbzrle: false,
      autoConverge: false,
      postcopyAfter: 0,
    };
    const at = async (f: HostProbe["fresh"]) =>
      (
        await predictMigration(
          guest,
          {
            ...measured,
            writesPerSecond: 10_000,
            probe: { ...probe, fresh: f, completionRate: 1900 * MiB },
          },
          settings,
          60_000,
        )
      ).summary;
    const quick = await at(fresh);
    const slow = await at({ ...fresh, rate: 100 * MiB });
    const unmeasured = await at(null);
    expect(quick.status).toBe("completed");
    expect(slow["downtime-bytes"]).toBe(quick["downtime-bytes"]);
    // Some 15 MB at 100 MiB/s against 1,900: well over 100 ms more.
    expect(slow.downtime - quick.downtime).toBeGreaterThan(100);
    // Not measured: the probe's first pass with no rate limit (220 MiB/s) stands for it.
    expect(unmeasured.downtime).toBeGreaterThan(quick.downtime + 30);
    expect(unmeasured.downtime).toBeLessThan(slow.downtime);
  });
});

describe("a prediction that ran out of time says why, by the projection rule", () => {
  const MiB = 1024 ** 2;
  const model = (
    guestBytes: number,
    writesPerSecond: number,
    timeoutMs = 15_000,
  ): MigrationOptions => ({
    guestBytes,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    writesPerSecond,
    seed: 5,
    policy: "qemu",
    maxBandwidth: 100 * MiB,
    downtimeLimitMs: 30,
    giveUp: "never",
    timeoutMs,
  });

  it("dirtying faster than the link: pending does not shrink", async () => {
    // 1,000,000 writes/s over 64 MiB: every page dirty again at each sync.
    const r = withProjection(await runMigration(model(64 * MiB, 1_000_000)), 30, 15_000);
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary.reason).toMatch(/pending does not shrink \(shrink factor/);
  });

  it("shrinking, too slowly for the time given: converges later, past the limit, with the rounds and seconds", async () => {
    // 24,000 writes/s (94 MiB/s) over 128 MiB against 100 MiB/s, 5 s
    // given: pending shrinks by some 0.9 a pass, too slowly to fit 3 MiB.
    const r = withProjection(await runMigration(model(128 * MiB, 24_000, 5000)), 30, 5000);
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary.reason).toMatch(
      /pending shrinks \(shrink factor 0\.[89]\d* .*\) and would fit bandwidth x downtime-limit \d+ rounds and [\d.]+ s later, past the 5 s the run is given/,
    );
  });

  it("a completed prediction is left as it is", async () => {
    const done = await runMigration(model(64 * MiB, 0));
    expect(done.summary.status).toBe("completed");
    expect(withProjection(done, 30, 15_000)).toBe(done);
  });
});

const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu)("hvlab qemu predict --then-migrate", () => {
  it("measures the dirty curve with calc-dirty-rate, predicts, migrates for real and compares figure by figure", async () => {
    const run = await hvlabAsync([
      "qemu",
      "predict",
      "--guest",
      "64MiB",
      "--pattern",
      "hotset",
      "--rate",
      "10000",
      "--bandwidth",
      "100MiB",
      "--downtime-limit",
      "100",
      "--calc-times",
      "1",
      "--warmup",
      "500",
      "--then-migrate",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as {
      measured: { writesPerSecond: number; curve: { calcTimeS: number; dirtyRateMiBps: number }[] };
      predicted: QueryMigrateSummary;
      real: QueryMigrateSummary;
      comparison: FigureError[];
    };
    expect(out.measured.writesPerSecond).toBeGreaterThan(9000);
    expect(out.measured.curve).toHaveLength(1);
    expect(out.measured.curve[0]?.dirtyRateMiBps).toBeGreaterThan(0);
    expect(out.real.status).toBe("completed");
    const byFigure = new Map(out.comparison.map((c) => [c.figure, c]));
    expect(byFigure.get("transferred (bytes)")?.measured).toBe(out.real.ram.transferred);
    expect(byFigure.get("transferred (bytes)")?.predicted).toBe(out.predicted.ram.transferred);
    expect(byFigure.get("total-time (ms)")?.measured).toBe(out.real["total-time"]);
    const rounds = byFigure.get("rounds (dirty-sync-count)");
    expect(rounds?.measured).toBe(out.real.ram["dirty-sync-count"]);
    expect(rounds?.error).toBeCloseTo(
      ((rounds?.predicted ?? 0) - (rounds?.measured ?? 0)) / (rounds?.measured ?? 1),
      9,
    );
  }, 180_000);
});
