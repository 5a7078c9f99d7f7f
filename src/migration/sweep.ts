import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import {
  MigrationConfigError,
  type MigrationOptions,
  resolveMigrationOptions,
  type StopPolicyName,
} from "./options.js";
import type { MigrationSummary } from "./stats.js";

/** The axes of a sweep: every combination is one migration. */
export interface SweepGrid {
  /** Link bandwidths, bytes per second. */
  readonly bandwidths: readonly number[];
  /** Guest write rates, writes per second. */
  readonly writeRates: readonly number[];
  /** Downtime limits, ms. */
  readonly downtimeLimitsMs: readonly number[];
  readonly policies: readonly StopPolicyName[];
}

/** One point of a sweep and how its migration ended. */
export interface SweepPoint {
  readonly bandwidth: number;
  readonly writesPerSecond: number;
  readonly downtimeLimitMs: number;
  readonly policy: StopPolicyName;
  readonly summary: MigrationSummary;
}

/** A sweep's points, in grid order, and its wall time. */
export interface SweepResult {
  readonly points: readonly SweepPoint[];
  readonly workers: number;
  readonly wallMs: number;
}

/** Largest grid one sweep runs. */
export const MAX_SWEEP_POINTS = 10_000;

/** Options without what cannot cross to a worker; the grid's axes replace their fields. */
export type SweepBase = Omit<
  MigrationOptions,
  "onRound" | "beforeVerify" | "maxBandwidth" | "writesPerSecond" | "downtimeLimitMs" | "policy"
>;

/** The grid's points in order: bandwidth, then write rate, then downtime limit, then policy. */
export function sweepPoints(grid: SweepGrid): Omit<SweepPoint, "summary">[] {
  const points: Omit<SweepPoint, "summary">[] = [];
  for (const bandwidth of grid.bandwidths)
    for (const writesPerSecond of grid.writeRates)
      for (const downtimeLimitMs of grid.downtimeLimitsMs)
        for (const policy of grid.policies)
          points.push({ bandwidth, writesPerSecond, downtimeLimitMs, policy });
  return points;
}

/**
 * A point's expected cost, to start the longest first: pages dirtied per
 * page sent (rounds and their lengths grow with it) times the seconds one
 * pass over the guest takes on the link (the virtual time to simulate).
 */
export function expectedCost(p: Omit<SweepPoint, "summary">): number {
  return (1 + (p.writesPerSecond * 4096) / p.bandwidth) / p.bandwidth;
}

/**
 * Runs every point of the grid as a migration on the pool's workers, in
 * parallel (each worker migrates its own guest in its own memory). Points
 * are handed out longest first (by {@link expectedCost}), so no long point
 * starts last and leaves the other workers idle; results come back in grid
 * order. Every point's options are checked before any runs.
 *
 * @throws MigrationConfigError for an empty or oversized grid or a bad point.
 */
export async function runSweep(
  base: SweepBase,
  grid: SweepGrid,
  options: { workers: number; onPoint?: (done: number, total: number) => void },
): Promise<SweepResult> {
  const points = sweepPoints(grid);
  if (points.length === 0) throw new MigrationConfigError("the sweep grid has no points");
  if (points.length > MAX_SWEEP_POINTS) {
    throw new MigrationConfigError(
      `the sweep grid has ${points.length} points (at most ${MAX_SWEEP_POINTS})`,
    );
  }
  const optionsOf = (p: (typeof points)[number]): Omit<MigrationOptions, "onRound"> => ({
    ...base,
    maxBandwidth: p.bandwidth,
    writesPerSecond: p.writesPerSecond,
    downtimeLimitMs: p.downtimeLimitMs,
    policy: p.policy,
  });
  for (const p of points) resolveMigrationOptions(optionsOf(p));
  const pool = new KernelPool(new MemoryLayout(), {
    threads: options.workers,
    domains: ["migration"],
  });
  const started = performance.now();
  let done = 0;
  try {
    const order = points
      .map((p, index) => ({ index, cost: expectedCost(p) }))
      .sort((x, y) => y.cost - x.cost || x.index - y.index);
    const results: SweepPoint[] = new Array(points.length);
    await Promise.all(
      order.map(async ({ index }) => {
        const p = points[index];
        if (!p) throw new Error(`sweep point ${index} missing`);
        const result = await pool.run({ type: "migration.sweep-point", options: optionsOf(p) });
        options.onPoint?.(++done, points.length);
        results[index] = { ...p, summary: result.summary };
      }),
    );
    return { points: results, workers: options.workers, wallMs: performance.now() - started };
  } finally {
    await pool.close();
  }
}
