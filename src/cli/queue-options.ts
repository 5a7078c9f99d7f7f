import { randomBytes } from "node:crypto";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parseQueueUrl, type QueueTarget } from "../distributed/connection.js";
import { MAX_ATTEMPTS } from "../distributed/limits.js";
import type { Payload } from "../distributed/payload.js";
import { pointsIn, sweepIdSchema } from "../distributed/payload.js";
import type { PointFailure } from "../distributed/studies.js";
import type { Submission } from "../distributed/submitter.js";
import { integerOption, UsageError } from "./options.js";
import { startSweepProgress } from "./progress.js";

/** Flags a command gains with {@link addQueueOptions}. */
export interface QueueFlags {
  queue?: string;
  sweepId?: string;
  attempts: number;
}

/** Default attempts of a point before it counts as failed. */
export const DEFAULT_ATTEMPTS = 3;

function sweepIdOption(text: string): string {
  const parsed = sweepIdSchema.safeParse(text);
  if (!parsed.success)
    throw new InvalidArgumentError(
      `"${text}" is not a sweep id (1-64 letters, digits, '.', '_' or '-')`,
    );
  return parsed.data;
}

/** The `--queue` URL option, shared by the submitting commands, `hvlab worker` and `hvlab queue status`. */
export function queueOption(description: string): Option {
  return new Option("--queue <url>", description);
}

/** Reads `--queue`; a bad URL is a usage error whose message never holds the password. */
export function queueTarget(url: string): QueueTarget {
  try {
    return parseQueueUrl(url);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** Adds `--queue`, `--sweep-id` and `--attempts` to a command that can run its points on workers. */
export function addQueueOptions(command: Command): Command {
  command.optionsGroup("Distributed over a BullMQ queue on Redis (hvlab worker runs the points):");
  return command
    .addOption(
      queueOption(
        "run the points as jobs on the workers of this queue: redis://[:password@]host[:port][/db][?queue=name] or rediss://",
      ),
    )
    .addOption(
      new Option(
        "--sweep-id <id>",
        "the sweep's id in the queue; run again with the same id to resume (default: a new one)",
      ).argParser(sweepIdOption),
    )
    .addOption(
      new Option("--attempts <n>", "attempts a failing point gets")
        .argParser(integerOption(1, MAX_ATTEMPTS))
        .default(DEFAULT_ATTEMPTS),
    );
}

/** A new sweep id: the time and a random suffix. */
export function newSweepId(): string {
  return `sweep-${new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14)}-${randomBytes(3).toString("hex")}`;
}

/**
 * Submits a study's jobs and waits for them with a progress bar (done /
 * running / failed / waiting, per worker). Tells stderr the sweep id, so a
 * stopped submitter can be run again to resume.
 */
export async function submitWithProgress(
  title: string,
  flags: QueueFlags & { queue: string },
  sweepId: string,
  payloads: readonly Payload[],
  order?: readonly number[],
): Promise<Submission> {
  const target = queueTarget(flags.queue);
  const points = payloads.reduce((n, p) => n + pointsIn(p), 0);
  console.error(
    `hvlab: sweep ${sweepId}: ${points} points${points === payloads.length ? "" : ` in ${payloads.length} jobs`} on ${target.shown} (queue ${target.name}); run again with --sweep-id ${sweepId} to resume`,
  );
  // BullMQ is loaded only by the commands that use a queue.
  const { submitSweep } = await import("../distributed/submitter.js");
  const progress = startSweepProgress(title, points);
  try {
    const submission = await submitSweep({
      target,
      sweepId,
      payloads,
      ...(order ? { order } : {}),
      attempts: flags.attempts,
      onProgress: (view) => progress.update(view),
    });
    if (submission.resumed > 0) {
      console.error(`hvlab: sweep ${sweepId}: ${submission.resumed} points were already finished`);
    }
    return submission;
  } finally {
    progress.stop();
  }
}

/**
 * Says which points failed on every attempt (their errors are in the JSON
 * too) and makes the command exit non-zero, after the results were written.
 */
export function reportFailures(failed: readonly PointFailure[]): void {
  if (failed.length === 0) return;
  for (const f of failed) {
    console.error(
      `hvlab: point ${f.index} (${Object.entries(f.point)
        .map(([k, v]) => `${k} ${String(v)}`)
        .join(", ")}) failed after ${f.attempts} attempts: ${f.error}`,
    );
  }
  throw new Error(`${failed.length} points failed`);
}
