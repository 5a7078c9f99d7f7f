import { hostname } from "node:os";
import { type Job, UnrecoverableError, Worker } from "bullmq";
import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { toWire } from "./codec.js";
import type { QueueTarget } from "./connection.js";
import { type BatchResult, runJob, WORKER_DOMAINS } from "./jobs.js";
import { LOCK_DURATION_RANGE } from "./limits.js";
import { PayloadError, parsePayload } from "./payload.js";
import { reach } from "./reach.js";
import { jobReturn } from "./returned.js";

/** How a worker process takes jobs. */
export interface QueueWorkerOptions {
  readonly target: QueueTarget;
  /** Pool workers, and so jobs run at once (and as many more wait in the pool's queue). */
  readonly threads: number;
  /**
   * How long a job's lock lasts without renewal, ms. The worker renews it
   * every half of this while the job runs; a worker that dies stops renewing,
   * and after this long another worker's stalled-job check takes the job back.
   */
  readonly lockDurationMs: number;
  /** This worker's name in the queue (default host:pid). */
  readonly name?: string;
  /** Told of every job as it ends (the CLI prints a line per job). */
  readonly onJob?: (event: { id: string; kind: string; ok: boolean; error?: string }) => void;
  /** Told of connection errors (ioredis reconnects by itself meanwhile). */
  readonly onError?: (message: string) => void;
}

/** A running worker process's queue side. */
export interface QueueWorker {
  readonly name: string;
  /** Stops taking jobs, lets running ones finish, closes the pool. */
  close(): Promise<void>;
}

/** The name a worker shows in the queue: host and process. */
export function defaultWorkerName(): string {
  return `${hostname()}-${process.pid}`;
}

/**
 * Starts a worker: takes hvlab's jobs from the queue and runs each on a
 * local pool, as many at once as the pool has workers, with one more per
 * pool worker taken ahead and waiting in the pool's queue. A job whose payload
 * is not hvlab's (another version, an unknown kind, a field out of shape)
 * fails at once without retries; a job whose point fails (bad parameters)
 * fails with the engine's message and is retried up to the attempts the
 * submitter set.
 */
export async function startQueueWorker(options: QueueWorkerOptions): Promise<QueueWorker> {
  const { min, max } = LOCK_DURATION_RANGE;
  if (!(options.lockDurationMs >= min && options.lockDurationMs <= max)) {
    throw new RangeError(
      `lock duration ${options.lockDurationMs} ms is not within ${min}-${max} ms`,
    );
  }
  const name = options.name ?? defaultWorkerName();
  const pool = new KernelPool(new MemoryLayout(), {
    threads: options.threads,
    domains: [...WORKER_DOMAINS],
  });
  const processor = async (job: Job) => {
    const where = `job ${job.id ?? "?"}`;
    try {
      const payload = parsePayload(job.data, where);
      const result = await runJob(pool, payload, where);
      if (payload.kind === "migrate-points") {
        // A batch's failed points are retried with the batch while it has
        // attempts left; on its last, the batch completes and each failed
        // point carries its error alone (the others keep their results).
        const { points } = result as BatchResult;
        const failed = points.filter((p) => !p.ok);
        const attempt = job.attemptsMade + 1;
        const first = failed[0];
        if (first && !first.ok && attempt < (job.opts.attempts ?? 1)) {
          throw new Error(
            `${failed.length} of ${points.length} points failed (attempt ${attempt}): ${first.error}`,
          );
        }
        return jobReturn(
          name,
          toWire({
            points: points.map((p) => (p.ok ? p : { ...p, attempts: attempt })),
          } satisfies BatchResult),
        );
      }
      return jobReturn(name, toWire(result));
    } catch (error) {
      // A payload hvlab cannot run will not run on a retry either.
      if (error instanceof PayloadError) throw new UnrecoverableError(error.message);
      throw error;
    }
  };
  const worker = new Worker(options.target.name, processor, {
    connection: options.target.redis,
    // One job more per pool worker than it runs: the next job waits in the
    // pool's queue, so the pool does not idle while a finished job's result
    // goes to Redis and the next one comes back.
    concurrency: options.threads * 2,
    lockDuration: options.lockDurationMs,
    // Check for stalled jobs as often as a lock can expire, so a dead worker's job waits at most about two lock durations.
    stalledInterval: options.lockDurationMs,
    // A job whose worker died twice is failed rather than handed out forever.
    maxStalledCount: 2,
    name,
    autorun: false,
  });
  worker.on("completed", (job) => options.onJob?.({ id: job.id ?? "?", kind: job.name, ok: true }));
  worker.on("failed", (job, error) =>
    options.onJob?.({
      id: job?.id ?? "?",
      kind: job?.name ?? "?",
      ok: false,
      error: error.message,
    }),
  );
  // Connection errors are retried by ioredis; without a listener Node would treat them as fatal.
  worker.on("error", (error) => options.onError?.(error.message));
  try {
    await reach(options.target, [worker]);
  } catch (error) {
    await worker.close(true).catch(() => {});
    await pool.close();
    throw error;
  }
  void worker.run();
  return {
    name,
    async close() {
      try {
        await worker.close();
      } finally {
        await pool.close();
      }
    },
  };
}
