import { availableParallelism } from "node:os";
import type { Command } from "commander";
import { LOCK_DURATION_RANGE } from "../../distributed/limits.js";
import { formatTable } from "../../report/table.js";
import { integerOption, jsonOption, UsageError } from "../options.js";
import { queueOption, queueTarget } from "../queue-options.js";

/** BullMQ's default lock duration, ms: enough for points of a few seconds on a busy machine. */
const DEFAULT_LOCK_MS = 30_000;

/** `hvlab worker` and `hvlab queue status`. */
export function registerDistributed(program: Command): void {
  program
    .command("worker")
    .description(
      "run the points of distributed sweeps (migrate sweep, paging compare, power sweep) from a BullMQ queue on Redis, on this machine's pool",
    )
    .addOption(
      queueOption(
        "the queue: redis://[:password@]host[:port][/db][?queue=name] or rediss://",
      ).makeOptionMandatory(),
    )
    .option(
      "--workers <n>",
      "pool workers, and so points run at once",
      integerOption(1, 256),
      Math.min(2, availableParallelism()),
    )
    .option(
      "--lock-duration <ms>",
      "how long a point's lock lasts without renewal; after it, a dead worker's point goes to another (renewed every half of it while the point runs)",
      integerOption(LOCK_DURATION_RANGE.min, LOCK_DURATION_RANGE.max),
      DEFAULT_LOCK_MS,
    )
    .option("--name <name>", "this worker's name in the queue (default: host-pid)")
    .option("--quiet", "print nothing per job")
    .showHelpAfterError(false)
    .action(
      async (flags: {
        queue: string;
        workers: number;
        lockDuration: number;
        name?: string;
        quiet?: boolean;
      }) => {
        const target = queueTarget(flags.queue);
        if (flags.name !== undefined && !/^[A-Za-z0-9._-]{1,64}$/.test(flags.name)) {
          throw new UsageError("--name must be 1-64 letters, digits, '.', '_' or '-'");
        }
        // BullMQ is loaded only by the commands that use a queue.
        const { startQueueWorker } = await import("../../distributed/worker.js");
        const worker = await startQueueWorker({
          target,
          threads: flags.workers,
          lockDurationMs: flags.lockDuration,
          ...(flags.name !== undefined ? { name: flags.name } : {}),
          ...(flags.quiet
            ? {}
            : {
                onJob: (e) =>
                  console.error(
                    `${e.ok ? "done" : "failed"} ${e.id} (${e.kind})${e.error ? `: ${e.error}` : ""}`,
                  ),
              }),
          onError: (message) => console.error(`hvlab worker: ${target.shown}: ${message}`),
        });
        console.error(
          `hvlab worker ${worker.name}: taking jobs from ${target.shown} (queue ${target.name}), ${flags.workers} pool workers, lock ${flags.lockDuration} ms`,
        );
        await new Promise<void>((resolve) => {
          const stop = () => {
            console.error(`hvlab worker ${worker.name}: stopping after the running points`);
            resolve();
          };
          process.once("SIGINT", stop);
          process.once("SIGTERM", stop);
        });
        await worker.close();
      },
    );

  const queue = program.command("queue").description("BullMQ queues of distributed sweeps");
  queue
    .command("status")
    .description("list the queues, their job counts, their workers and the jobs they run")
    .addOption(
      queueOption(
        "the Redis server: redis://[:password@]host[:port][/db][?queue=name] or rediss://",
      ).makeOptionMandatory(),
    )
    .option("--all", "every BullMQ queue in the database, not only the URL's")
    .addOption(jsonOption("print the status as JSON"))
    .showHelpAfterError(false)
    .action(async (flags: { queue: string; all?: boolean; json?: boolean }) => {
      const target = queueTarget(flags.queue);
      const { queueStatus } = await import("../../distributed/status.js");
      const statuses = await queueStatus(target, flags.all === true);
      if (flags.json) {
        console.log(JSON.stringify({ server: target.shown, queues: statuses }, null, 2));
        return;
      }
      console.log(`${target.shown}: ${statuses.length} queue${statuses.length === 1 ? "" : "s"}`);
      for (const s of statuses) {
        const c = s.counts;
        console.log(
          `\nqueue ${s.name}: waiting ${c.waiting ?? 0}, active ${c.active ?? 0}, completed ${c.completed ?? 0}, failed ${c.failed ?? 0}, delayed ${c.delayed ?? 0}`,
        );
        console.log(
          formatTable({
            columns: ["worker", "connected (s)", "running"],
            rows: s.workers.map((w) => [
              w.name,
              w.ageS,
              s.running
                .filter((j) => j.worker === w.name)
                .map((j) => `${j.id} (${j.kind}, ${(j.forMs / 1000).toFixed(1)} s)`)
                .join(", "),
            ]),
          }),
        );
      }
    });
}
