import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toWire } from "../src/distributed/codec.js";
import { MAX_POINTS_PER_JOB } from "../src/distributed/limits.js";
import { PayloadError, parsePayload, pointsIn } from "../src/distributed/payload.js";
import {
  GUIDED_DIVISOR,
  guidedBatchSizes,
  migrateSweepHandOut,
  migrateSweepJobs,
  migrateSweepOrder,
  migrateSweepResult,
} from "../src/distributed/studies.js";
import type { PointOutcome } from "../src/distributed/submitter.js";
import { expectedCost, sweepPoints } from "../src/migration/sweep.js";

// Sweep points batched into jobs: every point in exactly one job, in the
// order the sweep hands points out (longest first); each point's outcome
// comes back as its own, in its place in the grid, as a local run's would.
const base = { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" as const } };
const gridOf = (b: number, w: number, d: number) => ({
  bandwidths: Array.from({ length: b }, (_, i) => 50e6 + i * 25e6),
  writeRates: Array.from({ length: w }, (_, i) => 5000 + i * 20_000),
  downtimeLimitsMs: Array.from({ length: d }, (_, i) => 100 + i * 100),
  policies: ["qemu" as const],
});

describe("sweep points batched into jobs", () => {
  it("cuts guided batches: 1/8 of the points not yet in a job, at most 64, single points last", () => {
    expect(guidedBatchSizes(1)).toEqual([1]);
    expect(guidedBatchSizes(8)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(guidedBatchSizes(24)).toEqual([3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]);
    // The bench's sweep: 44 jobs where fixed batches of 7 made 143.
    const thousand = guidedBatchSizes(1000);
    expect(thousand).toHaveLength(44);
    expect(thousand.slice(0, 9)).toEqual([64, 64, 64, 64, 64, 64, 64, 64, 61]);
    expect(thousand.slice(-8)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10_000 }), (points) => {
        const sizes = guidedBatchSizes(points);
        let remaining = points;
        for (const [j, size] of sizes.entries()) {
          expect(size).toBe(Math.min(MAX_POINTS_PER_JOB, Math.ceil(remaining / GUIDED_DIVISOR)));
          if (j > 0) expect(size).toBeLessThanOrEqual(sizes[j - 1] ?? 0);
          remaining -= size;
        }
        expect(remaining).toBe(0);
        // The tail: the last jobs carry one point each, so workers end within a point.
        const tail = Math.min(points, GUIDED_DIVISOR - 1);
        expect(sizes.slice(-tail)).toEqual(Array.from({ length: tail }, () => 1));
      }),
      { numRuns: 200 },
    );
  });

  it("puts every point in one job, in hand-out order, each job checked by the workers' schema (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.option(fc.integer({ min: 1, max: MAX_POINTS_PER_JOB }), { nil: undefined }),
        (b, w, d, perJob) => {
          const grid = gridOf(b, w, d);
          const jobs = migrateSweepJobs("batch", base, grid, perJob);
          const points = sweepPoints(grid);
          const handOut = migrateSweepHandOut(grid);
          // Longest first, every grid point once.
          expect([...handOut].sort((x, y) => x - y)).toEqual(points.map((_, i) => i));
          for (let k = 1; k < handOut.length; k++) {
            const before = points[handOut[k - 1] ?? -1];
            const after = points[handOut[k] ?? -1];
            if (!before || !after) throw new Error("hand-out out of the grid");
            expect(expectedCost(before)).toBeGreaterThanOrEqual(expectedCost(after));
          }
          let next = 0;
          for (const job of jobs) {
            // What the worker reads: the job as it crosses Redis.
            const read = parsePayload(toWire(job), "test");
            expect(read).toEqual(job);
            expect(job.index).toBe(next);
            const options =
              job.kind === "migrate-points"
                ? job.options
                : job.kind === "migrate-point"
                  ? [job.options]
                  : [];
            expect(options.length).toBe(pointsIn(job));
            for (const [k, o] of options.entries()) {
              const p = points[handOut[next + k] ?? -1];
              expect(o.maxBandwidth).toBe(p?.bandwidth);
              expect(o.writesPerSecond).toBe(p?.writesPerSecond);
              expect(o.downtimeLimitMs).toBe(p?.downtimeLimitMs);
            }
            next += options.length;
          }
          expect(next).toBe(points.length);
          expect(jobs.map(pointsIn)).toEqual(
            perJob === undefined
              ? guidedBatchSizes(points.length)
              : Array.from({ length: Math.ceil(points.length / perJob) }, (_, j) =>
                  Math.min(perJob, points.length - j * perJob),
                ),
          );
          expect(migrateSweepOrder(jobs)).toEqual(jobs.map((_, i) => i));
        },
      ),
      { numRuns: 80 },
    );
  });

  it("enqueues the longest jobs first: the slowest link and the fastest dirtying", () => {
    const jobs = migrateSweepJobs("order", base, gridOf(3, 3, 1), 1);
    const [first] = migrateSweepOrder(jobs);
    const job = jobs[first ?? -1];
    if (job?.kind !== "migrate-point") throw new Error("expected a point");
    expect(job.options.maxBandwidth).toBe(50e6);
    expect(job.options.writesPerSecond).toBe(45_000);
  });

  it("refuses a batch larger than a job may carry, and a points-per-job out of range", () => {
    const [job] = migrateSweepJobs("big", base, gridOf(1, 1, 2), 2);
    if (job?.kind !== "migrate-points") throw new Error("expected a batch");
    const big = {
      ...job,
      options: Array.from({ length: MAX_POINTS_PER_JOB + 1 }, () => job.options[0]),
    };
    expect(() => parsePayload(toWire(big), "job x")).toThrow(PayloadError);
    expect(() => parsePayload(toWire(big), "job x")).toThrow(/job x: not an hvlab job: options/);
    for (const bad of [0, MAX_POINTS_PER_JOB + 1, 1.5]) {
      expect(() => migrateSweepJobs("big", base, gridOf(1, 1, 2), bad)).toThrow(
        /points per job must be 1-64/,
      );
    }
  });

  it("gives each point of a batch its own outcome: a failed point alone, a failed job all its points", () => {
    const grid = gridOf(1, 1, 5);
    const jobs = migrateSweepJobs("outcomes", base, grid, 2);
    expect(jobs.map(pointsIn)).toEqual([2, 2, 1]);
    const summary = (n: number) => ({ summary: { n } });
    const outcomes: PointOutcome[] = [
      {
        ok: true,
        value: {
          points: [
            { ok: true, value: summary(0) },
            { ok: false, error: "bad point", attempts: 2 },
          ],
        },
        worker: "w1",
      },
      { ok: false, error: "worker died twice", attempts: 3, worker: null },
      { ok: true, value: summary(4), worker: "w2" },
    ];
    const result = migrateSweepResult(grid, jobs, {
      outcomes,
      resumed: 0,
      workers: ["w1", "w2"],
      wallMs: 1,
    });
    expect(result.points.map((p) => p.summary)).toEqual([{ n: 0 }, { n: 4 }]);
    expect(result.points.map((p) => p.downtimeLimitMs)).toEqual([100, 500]);
    expect(result.distributed.failed.map((f) => [f.index, f.error, f.attempts])).toEqual([
      [1, "bad point", 2],
      [2, "worker died twice", 3],
      [3, "worker died twice", 3],
    ]);
  });

  it("puts each point's outcome in its place in the grid when batches follow the hand-out order", () => {
    // 3 bandwidths x 3 dirty rates x 1 downtime: the hand-out order is not the grid's.
    const grid = gridOf(3, 3, 1);
    const jobs = migrateSweepJobs("places", base, grid, 4);
    const handOut = migrateSweepHandOut(grid);
    expect(handOut).not.toEqual(handOut.map((_, i) => i));
    // Each point's summary names its grid position, as the worker would compute it.
    const outcomes: PointOutcome[] = jobs.map((job) => {
      const ofPoint = (k: number) => ({ summary: { at: handOut[job.index + k] } });
      return job.kind === "migrate-points"
        ? {
            ok: true,
            value: { points: job.options.map((_, k) => ({ ok: true, value: ofPoint(k) })) },
            worker: "w",
          }
        : { ok: true, value: ofPoint(0), worker: "w" };
    });
    const result = migrateSweepResult(grid, jobs, {
      outcomes,
      resumed: 0,
      workers: ["w"],
      wallMs: 1,
    });
    expect(result.points.map((p) => p.summary)).toEqual(sweepPoints(grid).map((_, at) => ({ at })));
    expect(result.points.map(({ summary: _, ...p }) => p)).toEqual(sweepPoints(grid));
    // A job listed twice would count its points twice: refused.
    const twice = [...jobs, jobs[0]] as typeof jobs;
    expect(() =>
      migrateSweepResult(grid, twice, {
        outcomes: [...outcomes, outcomes[0] as PointOutcome],
        resumed: 0,
        workers: ["w"],
        wallMs: 1,
      }),
    ).toThrow(/came back twice/);
  });
});
