import {
  MigrationConfigError,
  type MigrationOptions,
  resolveMigrationOptions,
} from "../migration/options.js";
import type { MigrationSummary } from "../migration/stats.js";
import {
  MAX_SWEEP_POINTS,
  type SweepBase,
  type SweepGrid,
  type SweepPoint,
  type SweepResult,
  sweepPoints,
} from "../migration/sweep.js";
import type { CompareResult, CompareSpec } from "../paging/compare.js";
import { type PagingConfig, standardConfigs } from "../paging/machine.js";
import type { SimulationResult, SimulationSpec } from "../power/simulate.js";
import {
  type PowerSweepResult,
  powerSweepPlan,
  powerSweepPoints,
  type SweepAxis,
} from "../power/sweep.js";
import { toWire } from "./codec.js";
import { PAYLOAD_VERSION, type Payload, parsePayload } from "./payload.js";
import type { PointOutcome, Submission } from "./submitter.js";

/** A point that failed on every attempt, kept beside the results. */
export interface PointFailure {
  readonly index: number;
  /** The point's parameters, as the grid names them. */
  readonly point: Readonly<Record<string, unknown>>;
  readonly error: string;
  readonly attempts: number;
}

/** How a distributed study ran: its sweep id, the workers that took part, points resumed. */
export interface DistributedRun {
  readonly sweepId: string;
  readonly workers: readonly string[];
  readonly resumed: number;
  readonly failed: readonly PointFailure[];
}

/** Wraps a payload's body in the envelope and checks it as a worker will. */
function payload(sweepId: string, index: number, body: Record<string, unknown>): Payload {
  return parsePayload(
    toWire({ hvlab: PAYLOAD_VERSION, sweep: sweepId, index, ...body }),
    `point ${index}`,
  );
}

/**
 * The jobs of `hvlab migrate sweep`: one per grid point, in grid order,
 * each point's options checked as the local sweep checks them.
 *
 * @throws MigrationConfigError for an empty or oversized grid or a bad point.
 */
export function migrateSweepJobs(sweepId: string, base: SweepBase, grid: SweepGrid): Payload[] {
  const points = sweepPoints(grid);
  if (points.length === 0) throw new MigrationConfigError("the sweep grid has no points");
  if (points.length > MAX_SWEEP_POINTS) {
    throw new MigrationConfigError(
      `the sweep grid has ${points.length} points (at most ${MAX_SWEEP_POINTS})`,
    );
  }
  return points.map((p, index) => {
    const options: Omit<MigrationOptions, "onRound" | "beforeVerify"> = {
      ...base,
      maxBandwidth: p.bandwidth,
      writesPerSecond: p.writesPerSecond,
      downtimeLimitMs: p.downtimeLimitMs,
      policy: p.policy,
    };
    resolveMigrationOptions(options);
    return payload(sweepId, index, { kind: "migrate-point", options });
  });
}

/** A migrate sweep's result from its jobs' outcomes: the points that finished, in grid order. */
export function migrateSweepResult(
  grid: SweepGrid,
  submission: Submission,
): SweepResult & { distributed: Omit<DistributedRun, "sweepId"> } {
  const points = sweepPoints(grid);
  const done: SweepPoint[] = [];
  const failed: PointFailure[] = [];
  for (const [index, outcome] of submission.outcomes.entries()) {
    const p = points[index];
    if (!p) throw new Error(`sweep point ${index} missing`);
    if (outcome.ok) {
      done.push({ ...p, summary: (outcome.value as { summary: MigrationSummary }).summary });
    } else failed.push(failure(index, p, outcome));
  }
  return {
    points: done,
    workers: submission.workers.length,
    wallMs: submission.wallMs,
    distributed: { workers: submission.workers, resumed: submission.resumed, failed },
  };
}

function failure(
  index: number,
  point: Readonly<Record<string, unknown>>,
  outcome: Extract<PointOutcome, { ok: false }>,
): PointFailure {
  return { index, point, error: outcome.error, attempts: outcome.attempts };
}

/** A comparison over one trace as the paging jobs carry it: a path or file: URL. */
export type TraceComparison = Omit<CompareSpec, "onProgress" | "threads" | "source" | "configs"> & {
  readonly trace: { readonly location: string; readonly format: string; readonly lenient: boolean };
};

/** The configurations a comparison runs (the engine's default when none are given). */
export function comparisonConfigs(spec: { guestBytes: number }): PagingConfig[] {
  return standardConfigs(spec.guestBytes % 2 ** 30 === 0 ? "1G" : "2M");
}

/** The jobs of a multi-trace `hvlab paging compare`: trace-major, one per configuration. */
export function pagingCompareJobs(sweepId: string, traces: readonly TraceComparison[]): Payload[] {
  const jobs: Payload[] = [];
  for (const spec of traces) {
    const { trace, ...rest } = spec;
    for (const config of comparisonConfigs(spec)) {
      jobs.push(payload(sweepId, jobs.length, { kind: "paging-config", trace, config, ...rest }));
    }
  }
  return jobs;
}

/**
 * Each trace's comparison from its configurations' results, as the local
 * run would have put it together: rows in configuration order, each row's
 * ratio to the native row. A trace any of whose configurations failed has
 * no comparison; its failures are listed.
 */
export function pagingCompareResults(
  traces: readonly TraceComparison[],
  submission: Submission,
): { comparisons: CompareResult[]; failed: PointFailure[] } {
  const comparisons: CompareResult[] = [];
  const failed: PointFailure[] = [];
  let index = 0;
  for (const spec of traces) {
    const configs = comparisonConfigs(spec);
    const parts: CompareResult[] = [];
    for (const config of configs) {
      const outcome = submission.outcomes[index];
      if (!outcome) throw new Error(`paging job ${index} missing`);
      if (outcome.ok) parts.push(outcome.value as CompareResult);
      else
        failed.push(failure(index, { trace: spec.trace.location, config: config.label }, outcome));
      index++;
    }
    const [first] = parts;
    if (!first || parts.length !== configs.length) continue;
    const stats = parts.map((part) => {
      const row = part.rows[0];
      if (!row) throw new Error(`a paging job over ${spec.trace.location} returned no row`);
      return row;
    });
    const native = stats.find((s) => s.mode === "native");
    comparisons.push({
      ...first,
      source: spec.trace.location,
      rows: stats.map((s) => ({
        ...s,
        ratioToNative:
          native && native.cycles.total > 0 ? s.cycles.total / native.cycles.total : null,
      })),
    });
  }
  return { comparisons, failed };
}

/** The jobs of `hvlab power sweep`: the baseline (index 0), then the grid x-major. */
export function powerSweepJobs(
  sweepId: string,
  base: SimulationSpec,
  x: SweepAxis,
  y: SweepAxis,
): Payload[] {
  const { specs, baseline } = powerSweepPlan(base, x, y);
  return [baseline, ...specs].map((spec, index) =>
    payload(sweepId, index, { kind: "power-point", spec }),
  );
}

/** A power sweep's result from its jobs' outcomes; the baseline must have run. */
export function powerSweepResult(
  x: SweepAxis,
  y: SweepAxis,
  submission: Submission,
): PowerSweepResult & { distributed: Omit<DistributedRun, "sweepId"> } {
  const [first, ...rest] = submission.outcomes;
  if (!first?.ok) {
    throw new Error(
      `the sweep's baseline (no parking) failed: ${first && !first.ok ? first.error : "no result"}`,
    );
  }
  const baseline = first.value as SimulationResult;
  const failed: PointFailure[] = [];
  const results = rest.map((outcome, i) => {
    if (outcome.ok) return outcome.value as SimulationResult;
    const point = {
      [x.parameter]: x.values[Math.floor(i / y.values.length)],
      [y.parameter]: y.values[i % y.values.length],
    };
    failed.push(failure(i + 1, point, outcome));
    return null;
  });
  return {
    x: x.parameter,
    y: y.parameter,
    baseline,
    points: powerSweepPoints(x, y, baseline, results),
    workers: submission.workers.length,
    wallMs: submission.wallMs,
    distributed: { workers: submission.workers, resumed: submission.resumed, failed },
  };
}
