import {
  MigrationConfigError,
  type MigrationOptions,
  resolveMigrationOptions,
} from "../migration/options.js";
import type { MigrationSummary } from "../migration/stats.js";
import {
  expectedCost,
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
import type { BatchResult } from "./jobs.js";
import { MAX_POINTS_PER_JOB } from "./limits.js";
import { PAYLOAD_VERSION, type Payload, parsePayload, pointsIn } from "./payload.js";
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
 * Points per job when the user names none: one for a sweep of up to 255
 * points (each its own job, as a few long points want), then one more per
 * 128 points, up to 32. A 1,000-point sweep goes as 143 jobs of 7: the
 * queue's round trips are paid once for 7 points, and a worker's last job
 * is still short beside the sweep. It depends on the grid alone, so a
 * submitter run again with the same sweep id makes the same jobs.
 */
export function defaultPointsPerJob(points: number): number {
  return Math.max(1, Math.min(32, Math.floor(points / 128)));
}

/**
 * The jobs of `hvlab migrate sweep`: the grid's points in grid order, each
 * point's options checked as the local sweep checks them, `pointsPerJob`
 * consecutive points to a job (default {@link defaultPointsPerJob}); job
 * i carries the points from its `index` on.
 *
 * @throws MigrationConfigError for an empty or oversized grid or a bad point.
 */
export function migrateSweepJobs(
  sweepId: string,
  base: SweepBase,
  grid: SweepGrid,
  pointsPerJob?: number,
): Payload[] {
  const points = sweepPoints(grid);
  if (points.length === 0) throw new MigrationConfigError("the sweep grid has no points");
  if (points.length > MAX_SWEEP_POINTS) {
    throw new MigrationConfigError(
      `the sweep grid has ${points.length} points (at most ${MAX_SWEEP_POINTS})`,
    );
  }
  const perJob = pointsPerJob ?? defaultPointsPerJob(points.length);
  if (!(Number.isInteger(perJob) && perJob >= 1 && perJob <= MAX_POINTS_PER_JOB)) {
    throw new RangeError(`points per job must be 1-${MAX_POINTS_PER_JOB}, not ${perJob}`);
  }
  const options = points.map((p) => {
    const o: Omit<MigrationOptions, "onRound" | "beforeVerify"> = {
      ...base,
      maxBandwidth: p.bandwidth,
      writesPerSecond: p.writesPerSecond,
      downtimeLimitMs: p.downtimeLimitMs,
      policy: p.policy,
    };
    resolveMigrationOptions(o);
    return o;
  });
  const jobs: Payload[] = [];
  for (let index = 0; index < points.length; index += perJob) {
    const batch = options.slice(index, index + perJob);
    const body =
      batch.length === 1
        ? { kind: "migrate-point", options: batch[0] }
        : { kind: "migrate-points", options: batch };
    // The schema is run over the first and the last job, as a worker runs it
    // over each: every point shares the base and differs only in the four
    // axes, which resolveMigrationOptions checked above. A thousand schema
    // runs over one shape would cost the submitter a tenth of a sweep.
    const last = index + perJob >= points.length;
    jobs.push(
      index === 0 || last
        ? payload(sweepId, index, body)
        : ({ hvlab: PAYLOAD_VERSION, sweep: sweepId, index, ...body } as Payload),
    );
  }
  return jobs;
}

/**
 * The order to enqueue a migrate sweep's jobs in (their positions): the
 * longest expected first, as the local sweep hands its points out, so that
 * no long job starts last and leaves the other workers idle.
 */
export function migrateSweepOrder(jobs: readonly Payload[]): number[] {
  const cost = jobs.map((job) => {
    const all =
      job.kind === "migrate-points"
        ? job.options
        : job.kind === "migrate-point"
          ? [job.options]
          : [];
    return all.reduce(
      (sum, o) =>
        sum +
        expectedCost({
          bandwidth: o.maxBandwidth ?? Number.POSITIVE_INFINITY,
          writesPerSecond: o.writesPerSecond,
          downtimeLimitMs: o.downtimeLimitMs ?? 0,
          policy: o.policy ?? "qemu",
        }),
      0,
    );
  });
  return jobs.map((_, i) => i).sort((a, b) => (cost[b] ?? 0) - (cost[a] ?? 0) || a - b);
}

/** A migrate sweep's result from its jobs' outcomes: the points that finished, in grid order. */
export function migrateSweepResult(
  grid: SweepGrid,
  jobs: readonly Payload[],
  submission: Submission,
): SweepResult & { distributed: Omit<DistributedRun, "sweepId"> } {
  const points = sweepPoints(grid);
  const done: SweepPoint[] = [];
  const failed: PointFailure[] = [];
  for (const [at, outcome] of submission.outcomes.entries()) {
    const job = jobs[at];
    if (!job) throw new Error(`sweep job ${at} missing`);
    const count = pointsIn(job);
    const results: PointOutcome[] = [];
    if (!outcome.ok || job.kind !== "migrate-points") {
      // A single point, or a batch that failed as a whole: each point has the job's outcome.
      for (let k = 0; k < count; k++) results.push(outcome);
    } else {
      const batch = (outcome.value as BatchResult).points;
      if (batch.length !== count) {
        throw new Error(`sweep job ${at} returned ${batch.length} points of ${count}`);
      }
      for (const p of batch) {
        results.push(
          p.ok
            ? { ok: true, value: p.value, worker: outcome.worker }
            : { ok: false, error: p.error, attempts: p.attempts ?? 1, worker: outcome.worker },
        );
      }
    }
    for (const [k, result] of results.entries()) {
      const index = job.index + k;
      const p = points[index];
      if (!p) throw new Error(`sweep point ${index} missing`);
      if (result.ok) {
        done.push({ ...p, summary: (result.value as { summary: MigrationSummary }).summary });
      } else failed.push(failure(index, p, result));
    }
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

/** A comparison over one trace as the paging jobs carry it: a path, file: URL or http(s) URL. */
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
