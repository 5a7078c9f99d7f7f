/**
 * Distributed sweeps: a metadata-mode migrate sweep through a local Redis
 * and 2 `hvlab worker` processes of 1 pool worker each, against the same
 * sweep on one local pool of 2 workers (the queue's cost per point shows as
 * the ratio); and the per-job overhead of BullMQ itself, enqueue to result,
 * for an empty job (median and p99). Like with like: the worker processes
 * and the local pool are both started before anything is timed, and both
 * sides are timed from the sweep's start (its points checked) to every
 * result in hand. The sweeps' points are compared with each other and with
 * `runSweep` before anything is timed. Needs redis-server (Debian's
 * package): the suite starts its own on a free loopback port, without
 * persistence, and stops it by PID.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Queue, QueueEvents } from "bullmq";
import type { BenchSuite } from "../src/bench/harness.js";
import { libraryName } from "../src/bench/machine.js";
import { parseQueueUrl } from "../src/distributed/connection.js";
import { PAYLOAD_VERSION } from "../src/distributed/payload.js";
import { readJobReturn } from "../src/distributed/returned.js";
import {
  GUIDED_DIVISOR,
  guidedBatchSizes,
  migrateSweepJobs,
  migrateSweepOrder,
  migrateSweepResult,
} from "../src/distributed/studies.js";
import { submitSweep } from "../src/distributed/submitter.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { resolveMigrationOptions } from "../src/migration/options.js";
import {
  expectedCost,
  runSweep,
  type SweepBase,
  type SweepGrid,
  type SweepPoint,
  sweepPoints,
} from "../src/migration/sweep.js";
import { KernelPool } from "../src/pool/pool.js";
import { packageRoot } from "../src/util/package-root.js";

async function freePort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") throw new Error("no free port");
  return address.port;
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} did not start in 30 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => {
      socket.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    socket.once("error", () => resolve(false));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  process.kill(child.pid ?? 0, "SIGTERM");
  await exited;
}

function equalPoints(a: unknown, b: unknown, what: string): void {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  if (x !== y) throw new Error(`sweep: ${what}`);
}

/**
 * CPU time (user + system) of a process so far, ms, from `/proc/<pid>/stat`
 * (utime and stime, fields 14 and 15, in clock ticks of 1/100 s on Linux);
 * null where there is no /proc.
 */
function processCpuMs(pid: number): number | null {
  if (pid === process.pid) {
    const { user, system } = process.cpuUsage();
    return (user + system) / 1000;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name, in parentheses, may hold spaces: fields count from its end.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return null;
  }
}

/** CPU time of a sweep's processes, summed over the calls of one side. */
class CpuTally {
  private totalMs = 0;
  private calls = 0;
  private known = true;
  constructor(private readonly pids: () => number[]) {}
  /** Runs `fn` and adds the CPU every process spent meanwhile. */
  async time<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.pids().map(processCpuMs);
    const result = await fn();
    const after = this.pids().map(processCpuMs);
    for (const [i, b] of before.entries()) {
      const a = after[i];
      if (a === null || a === undefined || b === null) this.known = false;
      else this.totalMs += a - b;
    }
    this.calls++;
    return result;
  }
  /** CPU seconds a call, or null when a process could not be read. */
  perCall(): number | null {
    return this.known && this.calls > 0 ? this.totalMs / this.calls / 1000 : null;
  }
}

export const suite: BenchSuite = {
  name: "distributed",
  description:
    "a metadata-mode migrate sweep through Redis on 2 worker processes against one local pool of 2; BullMQ's per-job overhead",
  async setup({ quick }) {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-bench-redis-"));
    const port = await freePort();
    const redis = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: "ignore" },
    );
    const spawned = new Promise<void>((resolve, reject) => {
      redis.once("spawn", resolve);
      redis.once("error", (error) =>
        reject(
          new Error(`bench distributed needs redis-server (Debian's package): ${error.message}`),
        ),
      );
    });
    await spawned;
    const workers: ChildProcess[] = [];
    let pool: KernelPool | undefined;
    const teardown = async () => {
      await pool?.close();
      for (const w of workers) await stop(w);
      await stop(redis);
      rmSync(dir, { recursive: true, force: true });
    };
    try {
      await waitFor("redis-server", () => answers(port));
      const url = `redis://127.0.0.1:${port}/0`;
      const bin = join(packageRoot(), "bin", "hvlab.js");
      for (const name of ["bench-w1", "bench-w2"]) {
        const child = spawn(
          process.execPath,
          [bin, "worker", "--queue", url, "--workers", "1", "--name", name, "--quiet"],
          {
            stdio: ["ignore", "ignore", "pipe"],
          },
        );
        workers.push(child);
        let text = "";
        child.stderr?.on("data", (d: Buffer) => {
          text += d.toString();
        });
        await waitFor(`worker ${name}`, async () => {
          if (child.exitCode !== null) throw new Error(`worker ${name} exited: ${text}`);
          return text.includes("taking jobs");
        });
      }
      const target = parseQueueUrl(url);

      // 1,000 points (quick: 40): 10 bandwidths x 10 dirty rates x 10 downtime limits, 64 MiB guests in metadata mode.
      const side = quick ? [2, 4, 5] : [10, 10, 10];
      const range = (n: number, from: number, step: number) =>
        Array.from({ length: n }, (_, i) => from + i * step);
      const grid: SweepGrid = {
        bandwidths: range(side[0] ?? 1, 50e6, 25e6),
        writeRates: range(side[1] ?? 1, 5_000, 20_000),
        downtimeLimitsMs: range(side[2] ?? 1, 100, 100),
        policies: ["qemu"],
      };
      const base: SweepBase = {
        guestBytes: 64 * 1024 ** 2,
        content: false,
        workload: { kind: "uniform" },
      };
      const points = grid.bandwidths.length * grid.writeRates.length * grid.downtimeLimitsMs.length;
      let run = 0;
      const distributed = async () => {
        // A new sweep id each call: the same id would resume the finished sweep.
        const sweepId = `bench-${process.pid}-${run++}`;
        const jobs = migrateSweepJobs(sweepId, base, grid);
        const submission = await submitSweep({
          target,
          sweepId,
          payloads: jobs,
          order: migrateSweepOrder(jobs),
          attempts: 1,
          pollMs: 250,
        });
        return migrateSweepResult(grid, jobs, submission);
      };
      // The local peer on a pool started before timing, as the worker
      // processes' pools are: runSweep starts (and times) its own pool, which
      // costs its threads their start-up beside the points. The same work
      // otherwise: every point's options checked, then the points handed out
      // longest first, results in grid order.
      pool = new KernelPool(new MemoryLayout(), { threads: 2, domains: ["migration"] });
      const warm = pool;
      const local = async (): Promise<{ points: SweepPoint[] }> => {
        const all = sweepPoints(grid);
        const options = all.map((p) => ({
          ...base,
          maxBandwidth: p.bandwidth,
          writesPerSecond: p.writesPerSecond,
          downtimeLimitMs: p.downtimeLimitMs,
          policy: p.policy,
        }));
        for (const o of options) resolveMigrationOptions(o);
        const order = all
          .map((p, index) => ({ index, cost: expectedCost(p) }))
          .sort((x, y) => y.cost - x.cost || x.index - y.index);
        const points: SweepPoint[] = new Array(all.length);
        await Promise.all(
          order.map(async ({ index }) => {
            const p = all[index];
            const o = options[index];
            if (!p || !o) throw new Error(`sweep point ${index} missing`);
            const { summary } = await warm.run({ type: "migration.sweep-point", options: o });
            points[index] = { ...p, summary };
          }),
        );
        return { points };
      };

      // The empty job: one Queue and one QueueEvents kept open, as a submitter holds them.
      const queue = new Queue(target.name, { connection: target.redis });
      const events = new QueueEvents(target.name, { connection: target.redis });
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
      let empty = 0;
      const emptyJob = async () => {
        const index = empty++;
        const job = await queue.add(
          "empty",
          { hvlab: PAYLOAD_VERSION, kind: "empty", sweep: `empty-${process.pid}`, index },
          // Kept a while: waitUntilFinished reads the finished job back.
          { removeOnComplete: { count: 10_000 }, removeOnFail: { count: 10_000 } },
        );
        return job.waitUntilFinished(events, 30_000);
      };
      const bullmq = libraryName("bullmq");
      // CPU time of every process taking part, per sweep: on a machine whose
      // cores the pool threads fill, the queue's cost shows here first.
      const distributedCpu = new CpuTally(() => [
        process.pid,
        redis.pid ?? 0,
        ...workers.map((w) => w.pid ?? 0),
      ]);
      const localCpu = new CpuTally(() => [process.pid]);
      const conditions: Record<string, string | number | boolean> = {
        sweepJobs: guidedBatchSizes(points).length,
        batching: `guided: ceil(remaining points / ${GUIDED_DIVISOR}) a job, at most 64, longest first`,
      };
      return {
        conditions,
        cases: [
          {
            case: `${points}-point metadata-mode migrate sweep, 64 MiB guests, pools and workers started before timing, timed from the points' check to every result in hand (ops: points)`,
            opsPerCall: points,
            // Each side 5 timed sweeps after a warm-up one: a median of 2 said little.
            iterations: quick ? 1 : 5,
            verify: async () => {
              const [d, l] = [await distributed(), await local()];
              if (d.distributed.failed.length > 0)
                throw new Error(`${d.distributed.failed.length} points failed`);
              if (d.points.length !== points)
                throw new Error(`${d.points.length} points of ${points}`);
              equalPoints(d.points, l.points, "the distributed points differ from the local ones");
              // The local peer is the local sweep, as `hvlab migrate sweep` runs it.
              const swept = await runSweep(base, grid, { workers: 2 });
              equalPoints(l.points, swept.points, "the local points differ from runSweep's");
            },
            impls: [
              {
                impl: `hvlab distributed (${bullmq} on redis-server, 2 processes x 1 pool worker)`,
                fn: async () => {
                  await distributedCpu.time(distributed);
                },
              },
              {
                impl: "local pool of 2 workers (no queue, started before timing)",
                fn: async () => {
                  await localCpu.time(local);
                },
              },
            ],
          },
          {
            case: "empty job, enqueue to result (ops: jobs)",
            verify: async () => {
              const { worker, value } = readJobReturn(await emptyJob(), "an empty job");
              if (JSON.stringify(value) !== "{}" || !["bench-w1", "bench-w2"].includes(worker))
                throw new Error(`an empty job returned ${JSON.stringify(value)} from ${worker}`);
            },
            impls: [
              {
                impl: `hvlab worker (${bullmq}, 2 processes)`,
                fn: async () => {
                  await emptyJob();
                },
              },
            ],
          },
        ],
        async teardown() {
          const [far, here] = [distributedCpu.perCall(), localCpu.perCall()];
          if (far !== null && here !== null) {
            conditions.cpuSecondsPerSweepDistributed = Number(far.toFixed(3));
            conditions.cpuSecondsPerSweepLocal = Number(here.toFixed(3));
            conditions.cpuRatioLocalOverDistributed = Number((here / far).toFixed(3));
          }
          await Promise.allSettled([events.close(), queue.close()]);
          await teardown();
        },
      };
    } catch (error) {
      await teardown();
      throw error;
    }
  },
};
