import type { ChildProcess } from "node:child_process";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Job, Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseQueueUrl } from "../src/distributed/connection.js";
import { PAYLOAD_VERSION } from "../src/distributed/payload.js";
import { migrateSweepJobs, migrateSweepResult } from "../src/distributed/studies.js";
import { submitSweep } from "../src/distributed/submitter.js";
import { runSweep } from "../src/migration/sweep.js";
import { hvlab, hvlabAsync } from "./support/cli.js";
import {
  haveRedis,
  startRedis,
  startWorkers,
  stopWorkers,
  type TestRedis,
} from "./support/redis.js";

// Faults a distributed sweep survives: a worker killed mid-point, a bad
// point, a submitter killed and run again, Redis restarted (AOF on), and a
// payload of another version.
const BIN = join(import.meta.dirname, "..", "bin", "hvlab.js");
const ready = haveRedis();
/** Six cheap points (3 policies x 2 dirty rates). */
const SMALL = [
  "--guest",
  "64MiB",
  "--mode",
  "metadata",
  "--bandwidths",
  "1Gbit",
  "--downtime-limits",
  "300",
  "--dirty-rates",
  "20000,400000",
];

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function completedOf(queue: Queue, sweep: string): Promise<number> {
  const done = await queue.getCompleted(0, -1);
  return done.filter((j) => j.id?.startsWith(`${sweep}-p`)).length;
}

describe.skipIf(!ready)("faults in a distributed sweep", () => {
  let redis: TestRedis;
  let queue: Queue;
  const workers: ChildProcess[] = [];
  let local: { points: unknown[] };
  beforeAll(async () => {
    redis = await startRedis();
    queue = new Queue("hvlab", { connection: parseQueueUrl(redis.url).redis });
    const run = hvlab(["migrate", "sweep", ...SMALL, "--json"]);
    expect(run.status, run.stderr).toBe(0);
    local = JSON.parse(run.stdout) as { points: unknown[] };
  }, 60_000);
  afterAll(async () => {
    await queue?.close();
    await stopWorkers(workers);
    await redis?.close();
  });

  /**
   * Starts two workers, submits a sweep of points of a few seconds each (8
   * GiB guests dirtied faster than the link), SIGKILLs the worker running
   * the first job it sees, and checks that the sweep ends with every point
   * once, equal to a local run, the killed job taken over by the other
   * worker after its lock ran out.
   */
  async function killMidJob(o: {
    names: [string, string];
    sweep: string;
    policies: string;
    pointsPerJob: number;
    points: number;
    jobs: number;
  }): Promise<void> {
    // Only this test's two workers: a survivor of an earlier test would take jobs too.
    await stopWorkers(workers.splice(0));
    const pair = await startWorkers(redis.url, o.names, ["--lock-duration", "1000"]);
    workers.push(...pair);
    const grid = [
      "--guest",
      "8GiB",
      "--mode",
      "metadata",
      "--bandwidths",
      "10Gbit",
      "--downtime-limits",
      "300",
      "--policies",
      o.policies,
      "--dirty-rates",
      "3000000,4000000",
    ];
    const submitter = hvlabAsync([
      "migrate",
      "sweep",
      ...grid,
      "--queue",
      redis.url,
      "--sweep-id",
      o.sweep,
      "--points-per-job",
      String(o.pointsPerJob),
      "--json",
    ]);
    let victim = "";
    let victimJob = "";
    await until("a running job", async () => {
      const active = await queue.getActive(0, -1);
      const job = active.find((j) => j.id?.startsWith(`${o.sweep}-p`) && j.processedBy);
      if (!job) return false;
      victim = job.processedBy ?? "";
      victimJob = job.id ?? "";
      return true;
    });
    const child = pair[victim === o.names[0] ? 0 : 1];
    process.kill(child?.pid ?? 0, "SIGKILL");
    const far = await submitter;
    expect(far.code, far.stderr).toBe(0);
    const d = JSON.parse(far.stdout) as { points: unknown[]; distributed: { failed: unknown[] } };
    expect(d.points).toHaveLength(o.points);
    expect(d.distributed.failed).toEqual([]);
    const here = hvlab(["migrate", "sweep", ...grid, "--json"]);
    expect(d.points).toEqual((JSON.parse(here.stdout) as { points: unknown[] }).points);
    const job = await Job.fromId(queue, victimJob);
    expect(job?.processedBy).not.toBe(victim);
    expect(job?.stalledCounter).toBeGreaterThanOrEqual(1);
    expect(await completedOf(queue, o.sweep)).toBe(o.jobs);
  }

  it("a worker SIGKILLed mid-point: its point runs again on another, none lost or doubled", async () => {
    await killMidJob({
      names: ["k1", "k2"],
      sweep: "kill",
      policies: "hyperv",
      pointsPerJob: 1,
      points: 2,
      jobs: 2,
    });
  }, 240_000);

  it("a worker SIGKILLed mid-batch: the whole batch runs again on another, its points neither lost nor doubled", async () => {
    // Two jobs of two points: the kill lands while a job holds points not yet run.
    await killMidJob({
      names: ["b1", "b2"],
      sweep: "killbatch",
      policies: "hyperv,qemu",
      pointsPerJob: 2,
      points: 4,
      jobs: 2,
    });
  }, 240_000);

  it("a bad point fails alone, with its error, after the bounded attempts", async () => {
    const target = parseQueueUrl(redis.url);
    const jobs = migrateSweepJobs(
      "bad",
      { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" } },
      {
        bandwidths: [125e6],
        writeRates: [20_000],
        downtimeLimitsMs: [300],
        policies: ["qemu", "hyperv", "xen"],
      },
    );
    const bad = jobs[1];
    if (bad?.kind !== "migrate-point") throw new Error("expected a migrate point");
    // Not a whole number of pages: the engine refuses it on the worker, every time.
    jobs[1] = { ...bad, options: { ...bad.options, guestBytes: 64 * 1024 ** 2 + 1 } };
    const submission = await submitSweep({
      target,
      sweepId: "bad",
      payloads: jobs,
      attempts: 2,
      pollMs: 100,
    });
    expect(submission.outcomes.map((o) => o.ok)).toEqual([true, false, true]);
    const failed = submission.outcomes[1];
    if (!failed || failed.ok) throw new Error("point 1 should have failed");
    expect(failed.attempts).toBe(2);
    expect(failed.error).toMatch(/page/);
  }, 120_000);

  it("a bad point in a batch fails alone: the batch is retried, then its other points keep their results", async () => {
    const target = parseQueueUrl(redis.url);
    const grid = {
      bandwidths: [125e6],
      writeRates: [20_000],
      downtimeLimitsMs: [300],
      policies: ["qemu", "hyperv", "xen"] as const,
    };
    const jobs = migrateSweepJobs(
      "badbatch",
      { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" } },
      { ...grid, policies: [...grid.policies] },
      3,
    );
    const [batch] = jobs;
    if (jobs.length !== 1 || batch?.kind !== "migrate-points")
      throw new Error("expected one batch");
    const options = [...batch.options];
    const good = options[1];
    if (!good) throw new Error("no point 1");
    options[1] = { ...good, guestBytes: 64 * 1024 ** 2 + 1 };
    jobs[0] = { ...batch, options };
    const submission = await submitSweep({
      target,
      sweepId: "badbatch",
      payloads: jobs,
      attempts: 2,
      pollMs: 100,
    });
    const result = migrateSweepResult({ ...grid, policies: [...grid.policies] }, jobs, submission);
    expect(result.points.map((p) => p.policy)).toEqual(["qemu", "xen"]);
    // The good points are what a local run of them gives.
    const here = await runSweep(
      { guestBytes: 64 * 1024 ** 2, content: false, workload: { kind: "uniform" } },
      { ...grid, policies: ["qemu", "xen"] },
      { workers: 1 },
    );
    expect(result.points).toEqual(here.points);
    expect(result.distributed.failed).toHaveLength(1);
    expect(result.distributed.failed[0]).toMatchObject({ index: 1, attempts: 2 });
    expect(result.distributed.failed[0]?.error).toMatch(/page/);
    // The batch ran twice (its failed point retried with it), then completed.
    const job = await Job.fromId(queue, "badbatch-p0");
    expect(job?.attemptsMade).toBe(2);
    expect(await queue.getJobState("badbatch-p0")).toBe("completed");
  }, 120_000);

  it("a payload of another version, an unknown field or kind is refused at once, naming why", async () => {
    const add = (id: string, data: Record<string, unknown>) =>
      queue.add("migrate-point", data, { jobId: id, attempts: 3 });
    await add("newer-p0", { hvlab: PAYLOAD_VERSION + 1, kind: "empty", sweep: "newer", index: 0 });
    await add("older-p0", { hvlab: PAYLOAD_VERSION - 1, kind: "empty", sweep: "older", index: 0 });
    await add("file-p0", {
      hvlab: PAYLOAD_VERSION,
      kind: "empty",
      sweep: "file",
      index: 0,
      out: "/tmp/x",
    });
    await add("shell-p0", {
      hvlab: PAYLOAD_VERSION,
      kind: "shell",
      sweep: "shell",
      index: 0,
      command: "rm -rf /",
    });
    const reasons: Record<string, string> = {};
    await until("four refusals", async () => {
      for (const id of ["newer-p0", "older-p0", "file-p0", "shell-p0"]) {
        // The state first, then the job: a job read before it failed would show its old attempts.
        if ((await queue.getJobState(id)) !== "failed") continue;
        const job = await Job.fromId(queue, id);
        if (job) {
          reasons[id] = job.failedReason;
          expect(job.attemptsMade).toBe(1);
        }
      }
      return Object.keys(reasons).length === 4;
    });
    expect(reasons["newer-p0"]).toMatch(/payload version 3 is not this worker's version 2/);
    // Version 1 workers returned bare results, which this submitter would not read.
    expect(reasons["older-p0"]).toMatch(/payload version 1 is not this worker's version 2/);
    expect(reasons["file-p0"]).toMatch(/not an hvlab job: .*out/);
    expect(reasons["shell-p0"]).toMatch(/not an hvlab job: kind/);
  }, 60_000);

  it("a submitter killed and started again with the same sweep id resumes", async () => {
    const child = spawn(
      process.execPath,
      [BIN, "migrate", "sweep", ...SMALL, "--queue", redis.url, "--sweep-id", "resume", "--json"],
      {
        stdio: "ignore",
      },
    );
    await until("two finished points", async () => (await completedOf(queue, "resume")) >= 2);
    // On a quick machine the submitter may have collected all six points and
    // exited by now: then there is nothing left to kill, and the restart finds
    // every point finished, which the assertions below accept as a resume too.
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(child.pid ?? 0, "SIGKILL");
      await exited;
    }
    const again = await hvlabAsync([
      "migrate",
      "sweep",
      ...SMALL,
      "--queue",
      redis.url,
      "--sweep-id",
      "resume",
      "--json",
    ]);
    expect(again.code, again.stderr).toBe(0);
    const resumed = Number(/(\d+) points were already finished/.exec(again.stderr)?.[1]);
    expect(resumed).toBeGreaterThanOrEqual(2);
    const d = JSON.parse(again.stdout) as { points: unknown[]; distributed: { resumed: number } };
    expect(d.distributed.resumed).toBe(resumed);
    expect(d.points).toEqual(local.points);
    // Each point ran once: six jobs of this sweep, each completed by one attempt.
    const done = (await queue.getCompleted(0, -1)).filter((j) => j.id?.startsWith("resume-p"));
    expect(done).toHaveLength(6);
    expect(done.every((j) => j.attemptsMade === 1)).toBe(true);
  }, 180_000);

  it("Redis restarted with its AOF: the sweep goes on and finishes", async () => {
    const submitter = hvlabAsync([
      "migrate",
      "sweep",
      ...SMALL,
      "--queue",
      redis.url,
      "--sweep-id",
      "aof",
      "--json",
    ]);
    await until("a finished point", async () => (await completedOf(queue, "aof")) >= 1);
    await redis.restart();
    const far = await submitter;
    expect(far.code, far.stderr).toBe(0);
    const d = JSON.parse(far.stdout) as { points: unknown[] };
    expect(d.points).toEqual(local.points);
  }, 180_000);
});
