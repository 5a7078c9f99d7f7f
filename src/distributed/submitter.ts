import { isDeepStrictEqual } from "node:util";
import { Job, Queue, QueueEvents } from "bullmq";
import { fromWire, toWire } from "./codec.js";
import type { QueueTarget } from "./connection.js";
import { KEEP_FINISHED_S, MAX_ATTEMPTS } from "./limits.js";
import { type Payload, pointsIn } from "./payload.js";
import { reach } from "./reach.js";
import { readJobReturn } from "./returned.js";

/** How one point ended: its result, or the error of its last attempt. */
export type PointOutcome =
  | { readonly ok: true; readonly value: unknown; readonly worker: string | null }
  | {
      readonly ok: false;
      readonly error: string;
      readonly attempts: number;
      readonly worker: string | null;
    };

/** One worker's share of a sweep so far. */
export interface WorkerShare {
  readonly name: string;
  readonly done: number;
  readonly running: number;
  readonly failed: number;
}

/** Where a sweep stands: points done, running, failed and waiting, and per worker. */
export interface SweepProgress {
  readonly total: number;
  readonly done: number;
  readonly running: number;
  readonly failed: number;
  readonly waiting: number;
  readonly workers: readonly WorkerShare[];
}

/** What a submission is. */
export interface SubmitOptions {
  readonly target: QueueTarget;
  /** The sweep's id: its jobs are `<sweep>-p<index>`, so a submitter run again with it resumes. */
  readonly sweepId: string;
  /** The jobs, job i at position i (each one point, or a batch of points). */
  readonly payloads: readonly Payload[];
  /** The order to enqueue new jobs in, as positions (default: position order). */
  readonly order?: readonly number[];
  /** Attempts a failing point gets before it counts as failed. */
  readonly attempts: number;
  /** How often the queue is read for progress, ms. */
  readonly pollMs?: number;
  readonly onProgress?: (progress: SweepProgress) => void;
}

/** A submission's outcomes in grid order, and how many points an earlier run had already finished. */
export interface Submission {
  readonly outcomes: readonly PointOutcome[];
  /** Points finished before this submitter started (a resumed sweep). */
  readonly resumed: number;
  /** Distinct workers that finished points. */
  readonly workers: readonly string[];
  readonly wallMs: number;
}

/** Thrown when a sweep id already names a different study. */
export class SweepIdConflictError extends Error {
  override name = "SweepIdConflictError";
}

/** The job id of point `index` of sweep `sweepId` (BullMQ's ids cannot hold ':'). */
export function jobId(sweepId: string, index: number): string {
  return `${sweepId}-p${index}`;
}

/**
 * Enqueues a sweep's points as jobs (ids from the sweep id and the index:
 * a point already in the queue is not added again, so a submitter that was
 * stopped and started again with the same id takes up the points already
 * finished and never counts one twice), and waits until every point has
 * finished or failed. Completions arrive as queue events and are confirmed
 * from the job itself; a poll every `pollMs` catches any event missed (a
 * Redis restart) and reads the running jobs for progress.
 *
 * @throws SweepIdConflictError when a job of this id holds another payload.
 */
export async function submitSweep(options: SubmitOptions): Promise<Submission> {
  const { target, sweepId, payloads } = options;
  if (
    !(
      Number.isInteger(options.attempts) &&
      options.attempts >= 1 &&
      options.attempts <= MAX_ATTEMPTS
    )
  ) {
    throw new RangeError(`attempts must be 1-${MAX_ATTEMPTS}, not ${options.attempts}`);
  }
  const started = performance.now();
  const queue = new Queue(target.name, { connection: target.redis });
  const events = new QueueEvents(target.name, { connection: target.redis });
  queue.on("error", () => {});
  events.on("error", () => {});
  const outcomes: (PointOutcome | undefined)[] = new Array(payloads.length);
  const pending = new Set<number>(payloads.map((_, i) => i));
  const indexOf = new Map<string, number>(payloads.map((_, i) => [jobId(sweepId, i), i]));
  let wake: () => void = () => {};

  let lastSettled = performance.now();
  const finish = (index: number, outcome: PointOutcome): void => {
    if (!pending.has(index)) return;
    lastSettled = performance.now();
    outcomes[index] = outcome;
    pending.delete(index);
    if (pending.size === 0) wake();
  };
  /** A completed job's outcome from its return value (the event's, or the job's hash's). */
  const completed = (index: number, returned: unknown): PointOutcome => {
    try {
      const { worker, value } = readJobReturn(returned, `job ${jobId(sweepId, index)}`);
      return { ok: true, value: fromWire(value), worker };
    } catch (error) {
      return { ok: false, error: (error as Error).message, attempts: 1, worker: null };
    }
  };

  const check = async (index: number): Promise<boolean> => {
    // The state first, then the job: a job read while it runs and found
    // finished a moment later would have no result in the copy read.
    const state = await queue.getJobState(jobId(sweepId, index));
    if (state !== "completed" && state !== "failed") return false;
    const job = await Job.fromId(queue, jobId(sweepId, index));
    if (!job) return false;
    // BullMQ moves a job to failed only once it has no attempt left (or cannot run at all).
    finish(
      index,
      state === "completed"
        ? completed(index, job.returnvalue)
        : {
            ok: false,
            error: job.failedReason ?? "failed",
            attempts: job.attemptsMade,
            worker: job.processedBy ?? null,
          },
    );
    return true;
  };

  try {
    await reach(target, [queue, events]);
    // A completed event is final and carries the job's return value
    // (BullMQ's moveToFinished script writes it to the job and the event
    // stream at once), and the return value names the worker: the point is
    // settled from the event, without reading the job back. A failed one is
    // confirmed from the job's state first (a retried attempt is not final).
    events.on(
      "completed",
      ({ jobId: id, returnvalue }: { jobId: string; returnvalue: unknown }) => {
        const index = indexOf.get(id);
        if (index !== undefined && pending.has(index)) finish(index, completed(index, returnvalue));
      },
    );
    events.on("failed", ({ jobId: id }: { jobId: string }) => {
      const index = indexOf.get(id);
      if (index !== undefined && pending.has(index)) void check(index).catch(() => {});
    });

    // Points already in the queue (an earlier run of this sweep) must be the same points.
    let resumed = 0;
    const fresh: number[] = [];
    for (let at = 0; at < payloads.length; at += 500) {
      const chunk = payloads.slice(at, at + 500).map((_, k) => at + k);
      const jobs = await Promise.all(chunk.map((i) => Job.fromId(queue, jobId(sweepId, i))));
      for (const [k, job] of jobs.entries()) {
        const index = chunk[k] ?? 0;
        if (!job) {
          fresh.push(index);
          continue;
        }
        if (!isDeepStrictEqual(job.data, toWire(payloads[index]))) {
          throw new SweepIdConflictError(
            `sweep id '${sweepId}' already names a different study in queue ${target.name} (point ${index} differs): choose another --sweep-id`,
          );
        }
        if (await check(index)) resumed += pointsIn(payloads[index] as Payload);
      }
    }
    if (options.order) {
      const rank = new Map(options.order.map((index, k) => [index, k]));
      fresh.sort((a, b) => (rank.get(a) ?? a) - (rank.get(b) ?? b));
    }
    for (let at = 0; at < fresh.length; at += 500) {
      await queue.addBulk(
        fresh.slice(at, at + 500).map((index) => {
          const payload = payloads[index] as Payload;
          return {
            name: payload.kind,
            data: toWire(payload) as Record<string, unknown>,
            opts: {
              jobId: jobId(sweepId, index),
              attempts: options.attempts,
              removeOnComplete: { age: KEEP_FINISHED_S },
              removeOnFail: { age: KEEP_FINISHED_S },
            },
          };
        }),
      );
    }

    const pollMs = options.pollMs ?? 500;
    const done = new Promise<void>((resolve) => {
      wake = resolve;
      if (pending.size === 0) resolve();
    });
    let stopped = false;
    // The poll's wait between reads ends early once the last point is in:
    // the sweep is over then, not a poll interval later.
    let interrupt = () => {};
    const poll = async () => {
      for (let tick = 1; !stopped; tick++) {
        try {
          // Events missed while Redis was away are read back from the jobs,
          // when none has come for four polls: reading every pending job's
          // state costs Redis a script per job, which a sweep whose events
          // flow does not pay.
          if (tick % 4 === 0 && performance.now() - lastSettled >= 4 * pollMs) {
            await Promise.all([...pending].map((index) => check(index)));
          }
          if (options.onProgress)
            options.onProgress(await progress(queue, sweepId, payloads, outcomes, pending));
        } catch {
          // Redis is away: ioredis reconnects; the next poll reads again.
        }
        if (pending.size === 0 || stopped) break;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, pollMs);
          interrupt = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    };
    const polling = poll();
    await done;
    stopped = true;
    interrupt();
    await polling;
    options.onProgress?.(
      await progress(queue, sweepId, payloads, outcomes, pending).catch(() =>
        finalProgress(payloads, outcomes),
      ),
    );
    const final = outcomes as PointOutcome[];
    const workers = [...new Set(final.map((o) => o.worker).filter((w): w is string => w !== null))];
    return {
      outcomes: final,
      resumed,
      workers: workers.sort(),
      wallMs: performance.now() - started,
    };
  } finally {
    await Promise.allSettled([events.close(), queue.close()]);
  }
}

function finalProgress(
  payloads: readonly Payload[],
  outcomes: readonly (PointOutcome | undefined)[],
): SweepProgress {
  const total = payloads.reduce((n, p) => n + pointsIn(p), 0);
  let failed = 0;
  let done = 0;
  for (const [i, o] of outcomes.entries()) {
    const w = pointsIn(payloads[i] as Payload);
    if (o?.ok) done += w;
    else if (o) failed += w;
  }
  return { total, done, failed, running: 0, waiting: total - done - failed, workers: [] };
}

/** Reads the sweep's running jobs (and who runs them) beside what has finished, in points. */
async function progress(
  queue: Queue,
  sweepId: string,
  payloads: readonly Payload[],
  outcomes: readonly (PointOutcome | undefined)[],
  pending: ReadonlySet<number>,
): Promise<SweepProgress> {
  const shares = new Map<string, { done: number; running: number; failed: number }>();
  const share = (name: string) => {
    let s = shares.get(name);
    if (!s) {
      s = { done: 0, running: 0, failed: 0 };
      shares.set(name, s);
    }
    return s;
  };
  const weight = (index: number) => {
    const payload = payloads[index];
    return payload ? pointsIn(payload) : 1;
  };
  const total = payloads.reduce((n, p) => n + pointsIn(p), 0);
  let done = 0;
  let failed = 0;
  for (const [index, o] of outcomes.entries()) {
    if (!o) continue;
    const w = weight(index);
    if (o.ok) done += w;
    else failed += w;
    if (o.worker) {
      if (o.ok) share(o.worker).done += w;
      else share(o.worker).failed += w;
    }
  }
  let running = 0;
  if (pending.size > 0) {
    const prefix = `${sweepId}-p`;
    const active = await queue.getActive(0, -1);
    for (const job of active) {
      if (!job.id?.startsWith(prefix)) continue;
      const w = weight(Number(job.id.slice(prefix.length)));
      running += w;
      share(job.processedBy ?? "?").running += w;
    }
  }
  return {
    total,
    done,
    failed,
    running,
    waiting: total - done - failed - running,
    workers: [...shares.entries()]
      .map(([name, s]) => ({ name, ...s }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  };
}
