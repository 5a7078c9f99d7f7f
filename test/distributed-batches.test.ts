import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toWire } from "../src/distributed/codec.js";
import { MAX_POINTS_PER_JOB } from "../src/distributed/limits.js";
import { PayloadError, parsePayload, pointsIn } from "../src/distributed/payload.js";
import {
  defaultPointsPerJob,
  migrateSweepJobs,
  migrateSweepOrder,
  migrateSweepResult,
} from "../src/distributed/studies.js";
import type { PointOutcome } from "../src/distributed/submitter.js";
import { sweepPoints } from "../src/migration/sweep.js";

// Sweep points batched into jobs: every point in exactly one job, in grid
// order; each point's outcome comes back as its own, as a local run's would.
const base = { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" as const } };
const gridOf = (b: number, w: number, d: number) => ({
  bandwidths: Array.from({ length: b }, (_, i) => 50e6 + i * 25e6),
  writeRates: Array.from({ length: w }, (_, i) => 5000 + i * 20_000),
  downtimeLimitsMs: Array.from({ length: d }, (_, i) => 100 + i * 100),
  policies: ["qemu" as const],
});

describe("sweep points batched into jobs", () => {
  it("chooses one point per job up to 255 points, then 1 more per 128, at most 32", () => {
    // 1,000 points: 7 per job, the bench's sweep; 10,000 (the largest grid): 32.
    expect([1, 24, 255, 256, 1000, 4095, 4096, 10_000].map(defaultPointsPerJob)).toEqual([
      1, 1, 1, 2, 7, 31, 32, 32,
    ]);
  });

  it("puts every point in one job, in grid order, each job checked by the workers' schema (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: MAX_POINTS_PER_JOB }),
        (b, w, d, perJob) => {
          const grid = gridOf(b, w, d);
          const jobs = migrateSweepJobs("batch", base, grid, perJob);
          const points = sweepPoints(grid);
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
              const p = points[next + k];
              expect(o.maxBandwidth).toBe(p?.bandwidth);
              expect(o.writesPerSecond).toBe(p?.writesPerSecond);
              expect(o.downtimeLimitMs).toBe(p?.downtimeLimitMs);
            }
            expect(options.length).toBeLessThanOrEqual(perJob);
            next += options.length;
          }
          expect(next).toBe(points.length);
          expect(jobs.length).toBe(Math.ceil(points.length / perJob));
          const order = migrateSweepOrder(jobs);
          expect([...order].sort((x, y) => x - y)).toEqual(jobs.map((_, i) => i));
        },
      ),
      { numRuns: 60 },
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
});
