import type { ChildProcess } from "node:child_process";
import { Job, Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseQueueUrl } from "../src/distributed/connection.js";
import { type Payload, pointsIn } from "../src/distributed/payload.js";
import {
  migrateSweepJobs,
  migrateSweepOrder,
  migrateSweepResult,
} from "../src/distributed/studies.js";
import { jobId, submitSweep } from "../src/distributed/submitter.js";
import { runSweep, type SweepGrid } from "../src/migration/sweep.js";
import {
  haveRedis,
  startRedis,
  startWorkers,
  stopWorkers,
  type TestRedis,
} from "./support/redis.js";

// A sweep in guided batches (large jobs first, single points last) through
// 2 workers: a submitter run again with the same sweep id takes up the
// finished jobs and runs only the rest, and a batch retried for a failed
// point counts each of its points once. 41 points (a prime): no batch size
// divides the grid.
const base = { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" as const } };
const grid: SweepGrid = {
  bandwidths: [1e9],
  // Different dirty rates: the hand-out order (longest first) is not the grid's.
  writeRates: Array.from({ length: 41 }, (_, i) => 5_000 + i * 10_000),
  downtimeLimitsMs: [300],
  policies: ["qemu"],
};

async function completedOf(queue: Queue, sweep: string): Promise<number> {
  const done = await queue.getCompleted(0, -1);
  return done.filter((j) => j.id?.startsWith(`${sweep}-p`)).length;
}

describe.skipIf(!haveRedis())("a sweep in guided batches", () => {
  let redis: TestRedis;
  let queue: Queue;
  let workers: ChildProcess[] = [];
  let local: Awaited<ReturnType<typeof runSweep>>;
  beforeAll(async () => {
    redis = await startRedis();
    queue = new Queue("hvlab", { connection: parseQueueUrl(redis.url).redis });
    workers = await startWorkers(redis.url, ["g1", "g2"], ["--quiet"]);
    local = await runSweep(base, grid, { workers: 1 });
  }, 120_000);
  afterAll(async () => {
    await queue?.close();
    await stopWorkers(workers);
    await redis?.close();
  });

  it("resumed with the same sweep id: finished jobs are taken as they are, the rest run once", async () => {
    const target = parseQueueUrl(redis.url);
    const jobs = migrateSweepJobs("guided", base, grid);
    expect(jobs.map(pointsIn)).toEqual([6, 5, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]);
    const submit = () =>
      submitSweep({
        target,
        sweepId: "guided",
        payloads: jobs,
        order: migrateSweepOrder(jobs),
        attempts: 1,
        pollMs: 100,
      });
    const first = migrateSweepResult(grid, jobs, await submit());
    expect(first.distributed.failed).toEqual([]);
    expect(first.points).toEqual(local.points);
    expect(new Set(first.distributed.workers)).toEqual(new Set(["g1", "g2"]));

    // As if the first submitter had died before these jobs ran: a batch of
    // 5, a batch of 2 and a single point are gone from the queue.
    const gone = [1, 8, 13];
    for (const at of gone) await (await Job.fromId(queue, jobId("guided", at)))?.remove();
    const again = await submit();
    const lost = gone.reduce((n, at) => n + pointsIn(jobs[at] as Payload), 0);
    expect(lost).toBe(8);
    expect(again.resumed).toBe(41 - lost);
    const second = migrateSweepResult(grid, jobs, again);
    expect(second.distributed.resumed).toBe(33);
    expect(second.points).toEqual(local.points);
    // Each job once in the queue: none was added twice.
    expect(await completedOf(queue, "guided")).toBe(jobs.length);
  }, 180_000);

  it("a batch retried for a failed point counts each of its points once", async () => {
    const target = parseQueueUrl(redis.url);
    const jobs = migrateSweepJobs("guided-retry", base, grid);
    const [batch] = jobs;
    if (batch?.kind !== "migrate-points") throw new Error("expected a batch first");
    const options = [...batch.options];
    const second = options[1];
    if (!second) throw new Error("no second point");
    // Not a whole number of pages: refused on the worker, on every attempt.
    options[1] = { ...second, guestBytes: 64 * 1024 ** 2 + 1 };
    jobs[0] = { ...batch, options };
    const submission = await submitSweep({
      target,
      sweepId: "guided-retry",
      payloads: jobs,
      order: migrateSweepOrder(jobs),
      attempts: 3,
      pollMs: 100,
    });
    const result = migrateSweepResult(grid, jobs, submission);
    // The second point handed out is the second fastest dirtying: grid point 39.
    expect(result.distributed.failed.map((f) => [f.index, f.attempts])).toEqual([[39, 3]]);
    expect(result.distributed.failed[0]?.error).toMatch(/page/);
    expect(result.points).toEqual(local.points.filter((_, i) => i !== 39));
    const job = await Job.fromId(queue, jobId("guided-retry", 0));
    expect(job?.attemptsMade).toBe(3);
    expect(await queue.getJobState(jobId("guided-retry", 0))).toBe("completed");
  }, 180_000);
});
