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
 * The guided schedule's divisor: a job carries 1/{@link GUIDED_DIVISOR} of
 * the points not yet in a job. Guided self-scheduling (Polychronopoulos and
 * Kuck, "Guided Self-Scheduling", IEEE Trans. Computers C-36(12), 1987;
 * OpenMP's `schedule(guided)`) divides by k x the workers; the submitter
 * cannot know how many pool workers will take part (workers come and go,
 * and a resumed sweep must make the same jobs), so the divisor is fixed:
 * 8 is k = 2 for 4 pool workers, k = 4 for the 2 of one small machine.
 */
export const GUIDED_DIVISOR = 8;

/**
 * How many points each job carries when the user names no size, in the
 * order the jobs are enqueued: guided self-scheduling, each job
 * ceil(remaining / {@link GUIDED_DIVISOR}) points, at most
 * {@link MAX_POINTS_PER_JOB}. The first jobs are large (the queue's cost,
 * a few ms of CPU a job across worker, Redis and submitter, is paid once
 * for up to 64 points) and the last ones carry a single point each, so the
 * workers finish within about one point of each other. A 1,000-point sweep
 * goes as 44 jobs (8 of 64, then 61 down to 1) where fixed batches of 7
 * made 143. A sweep of up to 8 points goes a point a job. It depends on
 * the number of points alone, so a submitter run again with the same sweep
 * id makes the same jobs.
 */
export function guidedBatchSizes(points: number): number[] {
  const sizes: number[] = [];
  for (let remaining = points; remaining > 0; ) {
    const size = Math.min(MAX_POINTS_PER_JOB, Math.ceil(remaining / GUIDED_DIVISOR));
    sizes.push(size);
    remaining -= size;
  }
  return sizes;
}

/**
 * The grid's points in the order a sweep hands them out (positions in the
 * grid): the longest expected first (slow links, fast dirtying), ties in
 * grid order, as the local sweep hands them to its pool.
 */
export function migrateSweepHandOut(grid: SweepGrid): number[] {
  return sweepPoints(grid)
    .map((p, index) => ({ index, cost: expectedCost(p) }))
    .sort((x, y) => y.cost - x.cost || x.index - y.index)
    .map(({ index }) => index);
}

/**
 * The jobs of `hvlab migrate sweep`: the grid's points in hand-out order
 * ({@link migrateSweepHandOut}, longest first), each point's options
 * checked as the local sweep checks them, cut into jobs of
 * {@link guidedBatchSizes} (or of `pointsPerJob` each when given). A job's
 * `index` is the hand-out position of its first point; its points are the
 * next ones in hand-out order. So the jobs, in position order, go largest
 * and longest first, and the last ones are single short points.
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
  if (
    pointsPerJob !== undefined &&
    !(Number.isInteger(pointsPerJob) && pointsPerJob >= 1 && pointsPerJob <= MAX_POINTS_PER_JOB)
  ) {
    throw new RangeError(`points per job must be 1-${MAX_POINTS_PER_JOB}, not ${pointsPerJob}`);
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
  const handOut = migrateSweepHandOut(grid).map(
    (index) => options[index] as (typeof options)[number],
  );
  const sizes =
    pointsPerJob === undefined
      ? guidedBatchSizes(points.length)
      : Array.from({ length: Math.ceil(points.length / pointsPerJob) }, (_, j) =>
          Math.min(pointsPerJob, points.length - j * pointsPerJob),
        );
  const jobs: Payload[] = [];
  let index = 0;
  for (const [j, size] of sizes.entries()) {
    const batch = handOut.slice(index, index + size);
    const body =
      batch.length === 1
        ? { kind: "migrate-point", options: batch[0] }
        : { kind: "migrate-points", options: batch };
    // The schema is run over the first and the last job, as a worker runs it
    // over each: every point shares the base and differs only in the four
    // axes, which resolveMigrationOptions checked above. A thousand schema
    // runs over one shape would cost the submitter a tenth of a sweep.
    jobs.push(
      j === 0 || j === sizes.length - 1
        ? payload(sweepId, index, body)
        : ({ hvlab: PAYLOAD_VERSION, sweep: sweepId, index, ...body } as Payload),
    );
    index += size;
  }
  return jobs;
}

/**
 * The order to enqueue a migrate sweep's jobs in (their positions): the
 * jobs' own order, since {@link migrateSweepJobs} makes them largest and
 * longest first. BullMQ hands jobs out first in, first out, so no long job
 * starts last and leaves the other workers idle.
 */
export function migrateSweepOrder(jobs: readonly Payload[]): number[] {
  return jobs.map((_, i) => i);
}

/** A migrate sweep's result from its jobs' outcomes: the points that finished, in grid order. */
export function migrateSweepResult(
  grid: SweepGrid,
  jobs: readonly Payload[],
  submission: Submission,
): SweepResult & { distributed: Omit<DistributedRun, "sweepId"> } {
  const points = sweepPoints(grid);
  const handOut = migrateSweepHandOut(grid);
  // By grid position: a job's points are consecutive in hand-out order, not in the grid.
  const done: (SweepPoint | undefined)[] = new Array(points.length);
  const failed: PointFailure[] = [];
  const seen = new Set<number>();
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
      const index = handOut[job.index + k];
      const p = index === undefined ? undefined : points[index];
      if (index === undefined || !p) throw new Error(`sweep point ${job.index + k} missing`);
      if (seen.has(index)) throw new Error(`sweep point ${index} came back twice`);
      seen.add(index);
      if (result.ok) {
        done[index] = { ...p, summary: (result.value as { summary: MigrationSummary }).summary };
      } else failed.push(failure(index, p, result));
    }
  }
  failed.sort((a, b) => a.index - b.index);
  return {
    points: done.filter((p): p is SweepPoint => p !== undefined),
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
