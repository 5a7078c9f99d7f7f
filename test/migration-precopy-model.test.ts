import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import type { MigrationOptions } from "../src/migration/options.js";
import { queryMigrateSummary } from "../src/migration/query-migrate.js";
import type { MigrationResult } from "../src/migration/stats.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const PAGE = 4096;
/** A page on the wire in metadata mode: the page and its 8-byte record header. */
const RECORD = PAGE + 8;
const LATENCY_MS = 0.25;

interface ModelRun {
  /** Pre-copy rounds until pending fits bandwidth x downtime-limit; null if never. */
  readonly rounds: number | null;
  /** Virtual time at the end of the last pre-copy round, ms. */
  readonly ms: number;
}

/**
 * The pre-copy model, independent of the engine: round i sends what round
 * i - 1 left, at the link's rate after a one-way latency; meanwhile w random
 * writes a second dirty N (1 - exp(-w t / N)) distinct pages of N (the
 * saturating curve of uniform writes). QEMU's rule stops once pending bytes
 * fit bandwidth x downtime-limit; a run that has not after an hour never does.
 */
function precopyModel(point: Point): ModelRun {
  const pages = point.guestBytes / PAGE;
  let pending = pages;
  let ms = 2 * LATENCY_MS;
  for (let round = 1; ms < 3_600_000; round++) {
    const duration = LATENCY_MS + ((pending * RECORD) / point.maxBandwidth) * 1000;
    ms += duration;
    pending = pages * (1 - Math.exp(-(point.writesPerSecond * duration) / 1000 / pages));
    if (pending * PAGE <= (point.maxBandwidth * point.downtimeLimitMs) / 1000) {
      return { rounds: round, ms };
    }
  }
  return { rounds: null, ms };
}

interface Point {
  readonly guestBytes: number;
  readonly writesPerSecond: number;
  readonly maxBandwidth: number;
  readonly downtimeLimitMs: number;
}

const Mbit = 1e6 / 8;

async function migrate(
  point: Point,
  extra: Partial<MigrationOptions> = {},
): Promise<MigrationResult> {
  return await runMigration({
    ...point,
    content: false,
    workload: { kind: "uniform" },
    latencyMs: LATENCY_MS,
    seed: 7,
    ...extra,
  });
}

function precopy(result: MigrationResult) {
  return result.rounds.filter((r) => r.phase === "precopy");
}

/** lambda: the guest's dirty rate on the wire over the link's rate. */
function lambda(point: Point): number {
  return (point.writesPerSecond * RECORD) / point.maxBandwidth;
}

describe("pre-copy against an independent model (uniform writes, QEMU's stop rule)", () => {
  const converging: Point[] = [
    // The two points that once gave up although pending still shrank.
    {
      guestBytes: 3 * GiB,
      writesPerSecond: 20_500,
      maxBandwidth: 700 * Mbit,
      downtimeLimitMs: 120,
    },
    { guestBytes: GiB, writesPerSecond: 9000, maxBandwidth: 300 * Mbit, downtimeLimitMs: 450 },
    { guestBytes: GiB, writesPerSecond: 5000, maxBandwidth: 1000 * Mbit, downtimeLimitMs: 300 },
    {
      guestBytes: 4 * GiB,
      writesPerSecond: 20_000,
      maxBandwidth: 1000 * Mbit,
      downtimeLimitMs: 300,
    },
    {
      guestBytes: 512 * MiB,
      writesPerSecond: 8000,
      maxBandwidth: 300 * Mbit,
      downtimeLimitMs: 300,
    },
    {
      guestBytes: 2 * GiB,
      writesPerSecond: 29_000,
      maxBandwidth: 1000 * Mbit,
      downtimeLimitMs: 300,
    },
    {
      guestBytes: 2 * GiB,
      writesPerSecond: 30_000,
      maxBandwidth: 1000 * Mbit,
      downtimeLimitMs: 200,
    },
  ];

  it("spans lambda in [0.95, 0.99]", () => {
    expect(
      converging.filter((p) => lambda(p) >= 0.95 && lambda(p) <= 0.99).length,
    ).toBeGreaterThanOrEqual(3);
  });

  for (const point of converging) {
    it(`completes in the model's rounds at lambda ${lambda(point).toFixed(3)} (${point.guestBytes / MiB} MiB, ${point.writesPerSecond} writes/s)`, async () => {
      const model = precopyModel(point);
      const result = await migrate(point);
      expect(model.rounds).not.toBeNull();
      expect(result.summary.status).toBe("completed");
      const rounds = precopy(result);
      // Random writes spread the dirtied counts by well under 1 %: a round either way.
      expect(Math.abs(rounds.length - (model.rounds ?? 0))).toBeLessThanOrEqual(1);
      const last = rounds.at(-1);
      const end = (last?.["start-ms"] ?? 0) + (last?.["duration-ms"] ?? 0);
      expect(Math.abs(end - model.ms) / model.ms).toBeLessThan(0.01);
    });
  }

  it("gives up where the model never converges, with the shrink factor, quickly", async () => {
    const point = {
      guestBytes: 256 * MiB,
      writesPerSecond: 12_000,
      maxBandwidth: 300 * Mbit,
      downtimeLimitMs: 100,
    };
    expect(precopyModel(point).rounds).toBeNull();
    const result = await migrate(point);
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(
      /^dirty rate .* is above bandwidth .*: pending .* does not shrink \(shrink factor [01]\.\d{4} ± \d\.\d{4} a round over the last 6 rounds\)$/,
    );
    // Six rounds to fit, a few more at most: not an hour of virtual time.
    expect(precopy(result).length).toBeLessThan(30);
  });

  it("gives up when the projected finish is past max-time, and only then", async () => {
    const point = converging[0] as Point;
    const model = precopyModel(point);
    // With an hour, or a fifth more than the model needs: it completes.
    const roomy = await migrate(point, { timeoutMs: model.ms * 1.2 });
    expect(roomy.summary.status).toBe("completed");
    // With four fifths of what the model needs, it sees it cannot make it.
    const maxTimeMs = model.ms * 0.8;
    const result = await migrate(point, { timeoutMs: maxTimeMs });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(
      /^pending .* would need (\d+) more rounds and ([\d.]+) s to fit .*: past max-time \d+ s$/,
    );
    const [, roundsLeft, secondsLeft] =
      /would need (\d+) more rounds and ([\d.]+) s/.exec(result.summary.reason ?? "") ?? [];
    const last = precopy(result).at(-1);
    const now = (last?.["start-ms"] ?? 0) + (last?.["duration-ms"] ?? 0);
    const projected = now + Number(secondsLeft) * 1000;
    // It gave up on a projection past max-time, before max-time, and the
    // projection was no gloomier than the model (which finishes later still).
    expect(projected).toBeGreaterThan(maxTimeMs);
    expect(now).toBeLessThan(maxTimeMs);
    expect(projected).toBeLessThanOrEqual(model.ms * 1.01);
    expect(precopy(result).length + Number(roundsLeft)).toBeLessThanOrEqual(
      (model.rounds ?? 0) + 1,
    );
  });

  it("--give-up never runs as QEMU does, until max-time", async () => {
    const point = {
      guestBytes: 256 * MiB,
      writesPerSecond: 12_000,
      maxBandwidth: 300 * Mbit,
      downtimeLimitMs: 100,
    };
    const result = await migrate(point, { giveUp: "never", timeoutMs: 60_000 });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(/^timeout/);
    // It runs to max-time and stops there, within one page batch (a 100 ms window of the link).
    expect(result.summary["total-time"]).toBeGreaterThanOrEqual(60_000);
    expect(result.summary["total-time"]).toBeLessThanOrEqual(60_000 + 100);
  });
});

describe("auto-converge", () => {
  it("gives the last throttle step its rounds: at 99 % the guest converges", async () => {
    // 150,000 writes/s over 60 Mbit/s; at 99 % the guest writes 1,500 pages/s,
    // lambda 1500 x 4104 / 7.5 MB/s = 0.82: the model converges there.
    const point = {
      guestBytes: 256 * MiB,
      writesPerSecond: 150_000,
      maxBandwidth: 60 * Mbit,
      downtimeLimitMs: 200,
    };
    expect(precopyModel({ ...point, writesPerSecond: 1500 }).rounds).not.toBeNull();
    const result = await migrate(point, { autoConverge: true });
    expect(result.summary.status).toBe("completed");
    expect(result.summary["cpu-throttle-percentage"]).toBe(99);
    expect(
      precopy(result).filter((r) => r["cpu-throttle-percentage"] === 99).length,
    ).toBeGreaterThan(1);
  });
});

describe("a downtime over the limit is said, the status stays completed", () => {
  it("Hyper-V's pass cap: the pages left when it suspended", async () => {
    const result = await runMigration({
      guestBytes: GiB,
      content: false,
      workload: { kind: "uniform" },
      writesPerSecond: 200_000,
      maxBandwidth: 100e6,
      policy: "hyperv",
      downtimeLimitMs: 120,
    });
    const summary = queryMigrateSummary(result, PAGE);
    expect(summary.status).toBe("completed");
    expect(summary.downtime).toBeGreaterThan(120);
    expect(summary.hvlab.downtimeOverLimit).toBe(true);
    expect(summary.hvlab.warning).toMatch(
      /^downtime [\d.]+ ms is over the downtime-limit 120 ms: the hyperv-2008r2 rule stopped pre-copy with .* still to send/,
    );
  });

  it("QEMU's rule: the switchover and device state, when the pages fit", async () => {
    const point = {
      guestBytes: GiB,
      writesPerSecond: 5000,
      maxBandwidth: 1000 * Mbit,
      downtimeLimitMs: 40,
    };
    const result = await migrate(point, { switchoverMs: 50 });
    const summary = queryMigrateSummary(result, PAGE);
    // The last pages fit 40 ms; the 50 ms switchover alone does not.
    const last = result.rounds.at(-1);
    expect(((last?.["bytes-sent"] ?? 0) / point.maxBandwidth) * 1000).toBeLessThan(40 + 10);
    expect(summary.status).toBe("completed");
    expect(summary.hvlab.downtimeOverLimit).toBe(true);
    expect(summary.hvlab.warning).toMatch(/the fixed part pushed it over: switchover 50 ms/);
    const within = queryMigrateSummary(
      await migrate(point, { switchoverMs: 0, deviceStateBytes: 0, downtimeLimitMs: 300 }),
      PAGE,
    );
    expect(within.hvlab.downtimeOverLimit).toBe(false);
    expect(within.hvlab.warning).toBeUndefined();
  });
});

describe("post-copy: a vCPU waiting on a page makes no progress", () => {
  it("no vCPU is blocked longer than the post-copy phase, and QEMU's counters say so", async () => {
    const result = await runMigration({
      guestBytes: 256 * MiB,
      content: true,
      workload: { kind: "hotset" },
      writesPerSecond: 80_000,
      maxBandwidth: 200 * Mbit,
      downtimeLimitMs: 100,
      postcopyAfterRounds: 2,
      latencyMs: 1,
      vcpus: 2,
    });
    expect(result.summary.status).toBe("completed");
    const phase = result.rounds.find((r) => r.phase === "postcopy")?.["duration-ms"] ?? 0;
    expect(phase).toBeGreaterThan(0);
    const summary = queryMigrateSummary(result, PAGE);
    const perVcpu = summary["postcopy-vcpu-blocktime"] ?? [];
    expect(perVcpu).toHaveLength(2);
    for (const blocked of perVcpu) {
      expect(blocked).toBeGreaterThan(0);
      expect(blocked).toBeLessThanOrEqual(phase);
    }
    // Blocked at once: never more than any one vCPU was.
    expect(summary["postcopy-blocktime"]).toBeLessThanOrEqual(Math.min(...perVcpu));
    expect(summary.ram["postcopy-requests"]).toBe(summary.hvlab["postcopy-remote-faults"]);
    expect(summary.ram["postcopy-requests"]).toBeGreaterThan(0);
  });
});
