import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { savingsPercent } from "./compare.js";
import { PowerConfigError } from "./errors.js";
import { checkParking, PARKING_PARAMETERS, type ParkingParameters } from "./parking.js";
import { namedPolicy } from "./policies.js";
import { checkSimulation, type SimulationResult, type SimulationSpec } from "./simulate.js";
import type { SimulateTask } from "./task-types.js";

/** One axis of a sweep: a parking parameter and its values. */
export interface SweepAxis {
  readonly parameter: keyof ParkingParameters;
  readonly values: readonly number[];
}

/** One point of a sweep against the no-parking baseline. */
export interface PowerSweepPoint {
  readonly x: number;
  readonly y: number;
  readonly savingsPercent: number;
  /** p99 added latency minus the baseline's, us. */
  readonly addedP99Us: number;
  readonly p99Us: number;
  readonly meanWatts: number;
  readonly meanUnparked: number;
}

/** A sweep's points (x-major), its baseline, and how it ran. */
export interface PowerSweepResult {
  readonly x: keyof ParkingParameters;
  readonly y: keyof ParkingParameters;
  readonly baseline: SimulationResult;
  readonly points: readonly PowerSweepPoint[];
  readonly workers: number;
  readonly wallMs: number;
}

/** Largest grid one sweep runs. */
export const MAX_SWEEP_POINTS = 10_000;

/** Reads an axis name, saying which names there are. */
export function sweepParameter(name: string): keyof ParkingParameters {
  const found = PARKING_PARAMETERS.find((p) => p.toLowerCase() === name.toLowerCase());
  if (!found) {
    throw new PowerConfigError(
      `unknown sweep parameter '${name}' (${PARKING_PARAMETERS.join(", ")})`,
    );
  }
  return found;
}

/** A sweep's simulations: the grid's points (x-major) and the baseline without parking. */
export interface PowerSweepPlan {
  readonly specs: readonly SimulationSpec[];
  readonly baseline: SimulationSpec;
}

/**
 * The simulations a sweep runs: one per point of the grid, with the base
 * spec's parking parameters and the two axes' values, and the baseline
 * without parking. Every point is checked.
 *
 * @throws PowerConfigError for a grid that is empty, too large, or has a point out of range.
 */
export function powerSweepPlan(base: SimulationSpec, x: SweepAxis, y: SweepAxis): PowerSweepPlan {
  if (x.parameter === y.parameter) {
    throw new PowerConfigError(`the sweep's two axes are both ${x.parameter}`);
  }
  const count = x.values.length * y.values.length;
  if (count === 0) throw new PowerConfigError("the sweep grid has no points");
  if (count > MAX_SWEEP_POINTS) {
    throw new PowerConfigError(`the sweep grid has ${count} points (at most ${MAX_SWEEP_POINTS})`);
  }
  const parking = base.policy.parking;
  if (!parking) {
    throw new PowerConfigError(
      `policy '${base.policy.name}' does not park: sweep a parking policy`,
    );
  }
  checkSimulation(base);
  const specs: SimulationSpec[] = [];
  for (const xv of x.values) {
    for (const yv of y.values) {
      const params = checkParking({ ...parking, [x.parameter]: xv, [y.parameter]: yv });
      specs.push({ ...base, policy: { ...base.policy, parking: params } });
    }
  }
  const baseline: SimulationSpec = {
    ...base,
    policy: namedPolicy("none", undefined, base.policy.pstate),
  };
  return { specs, baseline };
}

/**
 * A sweep's point `i` (x-major) from its simulation's result and the
 * baseline's; `null` results (points that failed elsewhere) are left out.
 */
export function powerSweepPoints(
  x: SweepAxis,
  y: SweepAxis,
  baseline: SimulationResult,
  results: readonly (SimulationResult | null)[],
): PowerSweepPoint[] {
  const points: PowerSweepPoint[] = [];
  for (const [i, result] of results.entries()) {
    if (!result) continue;
    points.push({
      x: x.values[Math.floor(i / y.values.length)] ?? 0,
      y: y.values[i % y.values.length] ?? 0,
      savingsPercent: savingsPercent(baseline, result),
      addedP99Us: result.latency.p99Us - baseline.latency.p99Us,
      p99Us: result.latency.p99Us,
      meanWatts: result.meanWatts,
      meanUnparked: result.meanUnparked,
    });
  }
  return points;
}

/**
 * Runs every point of the grid ({@link powerSweepPlan}) and the baseline
 * without parking, on `workers` pool workers. Every point is checked before
 * any runs.
 *
 * @throws PowerConfigError for a grid that is empty, too large, or has a point out of range.
 */
export async function runPowerSweep(
  base: SimulationSpec,
  x: SweepAxis,
  y: SweepAxis,
  options: {
    workers: number;
    onPoint?: (done: number, total: number) => void;
    /** A pool of the "power" domain to run on (kept open); else one of `workers` threads is made. */
    pool?: KernelPool;
  },
): Promise<PowerSweepResult> {
  const { specs, baseline: baselineSpec } = powerSweepPlan(base, x, y);
  const pool =
    options.pool ??
    new KernelPool(new MemoryLayout(), { threads: options.workers, domains: ["power"] });
  const started = performance.now();
  let done = 0;
  try {
    const [baseline, ...results] = await Promise.all(
      [baselineSpec, ...specs].map(async (spec) => {
        const task: SimulateTask = { type: "power.simulate", spec, timeline: false };
        const result = await pool.run(task);
        options.onPoint?.(++done, specs.length + 1);
        return result;
      }),
    );
    if (!baseline) throw new Error("the sweep's baseline did not run");
    return {
      x: x.parameter,
      y: y.parameter,
      baseline,
      points: powerSweepPoints(x, y, baseline, results),
      workers: pool.threads,
      wallMs: performance.now() - started,
    };
  } finally {
    if (!options.pool) await pool.close();
  }
}
