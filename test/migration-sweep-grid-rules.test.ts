/*
 * The migration sweep (src/migration/sweep.ts): every combination of the
 * grid's axes is one migration, in grid order (bandwidth, then write rate,
 * then downtime limit, then policy); every point's options are checked
 * before anything runs; the points are handed to the pool longest first
 * (docs/migration.md: "The sweep hands its points out longest first (by
 * dirty pages per page sent and the link time of one pass)"), and the
 * results come back in grid order.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { MigrationConfigError } from "../src/migration/options.js";
import type { MigrationSummary } from "../src/migration/stats.js";
import {
  expectedCost,
  MAX_SWEEP_POINTS,
  runSweep,
  type SweepBase,
  type SweepGrid,
  sweepPoints,
} from "../src/migration/sweep.js";
import { KernelPool } from "../src/pool/pool.js";
import type { PoolTask } from "../src/pool/registry.js";
import { EMPTY_SUMMARY } from "./support/migration-summary.js";

/** The smallest guest a migration takes, in metadata mode. */
const BASE: SweepBase = { guestBytes: 1024 ** 2, content: false, workload: { kind: "uniform" } };

const GRID: SweepGrid = {
  bandwidths: [500e6, 50e6],
  writeRates: [1000, 20_000],
  downtimeLimitsMs: [300],
  policies: ["xen", "hyperv", "qemu"],
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe("sweep grid", () => {
  // Grid order: bandwidth outermost, then write rate, downtime limit, policy.
  it("lists every combination, bandwidth outermost and policy innermost", () => {
    const points = sweepPoints({
      bandwidths: [1e6, 2e6],
      writeRates: [10, 20],
      downtimeLimitsMs: [100, 200],
      policies: ["hyperv", "qemu"],
    });
    expect(points).toHaveLength(16);
    expect(points.slice(0, 3)).toEqual([
      { bandwidth: 1e6, writesPerSecond: 10, downtimeLimitMs: 100, policy: "hyperv" },
      { bandwidth: 1e6, writesPerSecond: 10, downtimeLimitMs: 100, policy: "qemu" },
      { bandwidth: 1e6, writesPerSecond: 10, downtimeLimitMs: 200, policy: "hyperv" },
    ]);
    expect(points[4]).toEqual({
      bandwidth: 1e6,
      writesPerSecond: 20,
      downtimeLimitMs: 100,
      policy: "hyperv",
    });
    expect(points[15]).toEqual({
      bandwidth: 2e6,
      writesPerSecond: 20,
      downtimeLimitMs: 200,
      policy: "qemu",
    });
  });

  it("has no points when any axis is empty", () => {
    expect(sweepPoints({ ...GRID, policies: [] })).toEqual([]);
    expect(sweepPoints({ ...GRID, bandwidths: [] })).toEqual([]);
  });
});

describe("expected cost of a point", () => {
  // (1 + pages dirtied per page sent) x seconds per byte on the link: at
  // 100 MB/s and 10,000 writes/s, 40.96 MB dirtied per s against 100 MB/s
  // sent is 0.4096 dirtied per page sent, so (1.4096) / 1e8.
  it("is (1 + dirty bytes per byte sent) over the bandwidth", () => {
    const p = {
      bandwidth: 100e6,
      writesPerSecond: 10_000,
      downtimeLimitMs: 300,
      policy: "qemu" as const,
    };
    expect(expectedCost(p)).toBeCloseTo(1.4096e-8, 20);
    expect(expectedCost({ ...p, writesPerSecond: 0 })).toBeCloseTo(1e-8, 20);
    // An unlimited link costs nothing to wait on: it goes last.
    expect(expectedCost({ ...p, bandwidth: Number.POSITIVE_INFINITY })).toBe(0);
  });
});

describe("sweep checks before anything runs", () => {
  it("refuses a grid with no points", async () => {
    const run = vi.spyOn(KernelPool.prototype, "run");
    await expect(runSweep(BASE, { ...GRID, writeRates: [] }, { workers: 1 })).rejects.toThrow(
      new MigrationConfigError("the sweep grid has no points"),
    );
    expect(run).not.toHaveBeenCalled();
  });

  // At most MAX_SWEEP_POINTS (10,000): one more is refused by its count; at
  // the limit the grid passes and its points' own options are checked (here
  // a guest too small, refused before the pool starts).
  it("refuses a grid over 10,000 points and takes one at the limit", async () => {
    expect(MAX_SWEEP_POINTS).toBe(10_000);
    const rates = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
    const grid = (n: number): SweepGrid => ({
      ...GRID,
      bandwidths: [1e9],
      policies: ["qemu"],
      writeRates: rates(n),
    });
    const run = vi.spyOn(KernelPool.prototype, "run");
    await expect(runSweep(BASE, grid(10_001), { workers: 1 })).rejects.toThrow(
      new MigrationConfigError("the sweep grid has 10001 points (at most 10000)"),
    );
    const small = { ...BASE, guestBytes: 4096 };
    await expect(runSweep(small, grid(10_000), { workers: 1 })).rejects.toThrow(
      /^guest size must be at least 1 MiB, not 4096 bytes$/,
    );
    expect(run).not.toHaveBeenCalled();
  });

  // Each axis lands in its option: a bad value on any axis, even at the last
  // point of the grid, is refused by name before any point runs.
  it("checks every point's options, the last included, before running any", async () => {
    const run = vi.spyOn(KernelPool.prototype, "run");
    const refused = async (grid: SweepGrid, message: RegExp) => {
      const error = await runSweep(BASE, grid, { workers: 1 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MigrationConfigError);
      expect((error as Error).message).toMatch(message);
    };
    await refused(
      { ...GRID, bandwidths: [500e6, -1] },
      /^bandwidth must be more than 0 bytes\/s, not -1$/,
    );
    await refused(
      { ...GRID, writeRates: [1000, -5] },
      /^dirty rate must be from 0 to 1e11 writes\/s, not -5$/,
    );
    await refused(
      { ...GRID, downtimeLimitsMs: [300, 0] },
      /^downtime limit must be more than 0 ms, not 0$/,
    );
    await refused(
      // A policy name from the command line, not yet checked.
      { ...GRID, policies: ["qemu", "vmware" as "qemu"] },
      /^unknown stop policy 'vmware'/,
    );
    expect(run).not.toHaveBeenCalled();
  });
});

/** What a point's migration is asked to do, as the pool receives it. */
type PointOptions = Extract<PoolTask, { type: "migration.sweep-point" }>["options"];

/** A summary that names its point: bandwidth as transferred, write rate as total, limit as downtime. */
function taggedSummary(o: PointOptions): MigrationSummary {
  return {
    ...EMPTY_SUMMARY,
    policy: o.policy ?? "",
    transferred: o.maxBandwidth ?? 0,
    total: o.writesPerSecond,
    downtime: o.downtimeLimitMs ?? 0,
  };
}

describe("sweep hand-out and results", () => {
  // Longest first: the slowest link first, and on one link the fastest
  // writer first; points of equal cost (the two policies) in grid order.
  // Results land in grid order whatever order they finish in, and each
  // finished point is counted once.
  it("hands points out longest first and returns them in grid order", async () => {
    const handed: PointOptions[] = [];
    const settle: (() => void)[] = [];
    const fake = (task: PoolTask): Promise<{ summary: MigrationSummary }> => {
      if (task.type !== "migration.sweep-point") throw new Error(`unexpected task ${task.type}`);
      handed.push(task.options);
      return new Promise((resolve) =>
        settle.push(() => resolve({ summary: taggedSummary(task.options) })),
      );
    };
    vi.spyOn(KernelPool.prototype, "run").mockImplementation(fake as KernelPool["run"]);
    const close = vi.spyOn(KernelPool.prototype, "close");
    const progress: [number, number][] = [];
    const before = performance.now();
    const sweep = runSweep({ ...BASE, seed: 7 }, GRID, {
      workers: 2,
      onPoint: (done, total) => progress.push([done, total]),
    });
    // Every point was handed out at once, longest first.
    const longestFirst = [
      [50e6, 20_000],
      [50e6, 1000],
      [500e6, 20_000],
      [500e6, 1000],
    ].flatMap(([bandwidth, rate]) => GRID.policies.map((policy) => [bandwidth, rate, policy]));
    expect(handed.map((o) => [o.maxBandwidth, o.writesPerSecond, o.policy])).toEqual(longestFirst);
    // The base's options go with every point, the grid's axes over them.
    expect(handed.every((o) => o.seed === 7 && o.guestBytes === BASE.guestBytes)).toBe(true);
    expect(handed.every((o) => o.downtimeLimitMs === 300)).toBe(true);
    // They finish in the reverse order.
    for (const done of settle.reverse()) {
      done();
      await Promise.resolve();
    }
    const result = await sweep;
    const took = performance.now() - before;
    expect(progress).toEqual(Array.from({ length: 12 }, (_, i) => [i + 1, 12]));
    expect(result.workers).toBe(2);
    // The wall time is the sweep's own, within what the caller saw.
    expect(result.wallMs).toBeGreaterThanOrEqual(0);
    expect(result.wallMs).toBeLessThanOrEqual(took);
    expect(result.points).toEqual(
      sweepPoints(GRID).map((p) => ({
        ...p,
        summary: taggedSummary({
          ...BASE,
          maxBandwidth: p.bandwidth,
          writesPerSecond: p.writesPerSecond,
          downtimeLimitMs: p.downtimeLimitMs,
          policy: p.policy,
        }),
      })),
    );
    expect(close).toHaveBeenCalledTimes(1);
  });

  // A point that fails fails the sweep, and the pool still stops.
  it("stops the pool when a point fails", async () => {
    vi.spyOn(KernelPool.prototype, "run").mockRejectedValue(new Error("worker lost"));
    const close = vi.spyOn(KernelPool.prototype, "close");
    await expect(
      runSweep(BASE, { ...GRID, bandwidths: [50e6], writeRates: [1000] }, { workers: 1 }),
    ).rejects.toThrow(/^worker lost$/);
    expect(close).toHaveBeenCalledTimes(1);
  });

  // On the pool's workers for real: each point's summary is the one the
  // same migration gives run alone; no progress callback is needed.
  it("runs each point as the same migration run alone", async () => {
    const grid: SweepGrid = {
      bandwidths: [50e6],
      writeRates: [1000, 200_000],
      downtimeLimitsMs: [300],
      policies: ["qemu"],
    };
    const result = await runSweep(BASE, grid, { workers: 1 });
    expect(result.points.map((p) => p.writesPerSecond)).toEqual([1000, 200_000]);
    for (const p of result.points) {
      const alone = await runMigration({
        ...BASE,
        maxBandwidth: p.bandwidth,
        writesPerSecond: p.writesPerSecond,
        downtimeLimitMs: p.downtimeLimitMs,
        policy: p.policy,
      });
      expect(p.summary).toEqual(alone.summary);
    }
  });
});
