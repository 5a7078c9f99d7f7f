import { Queue } from "bullmq";
import { Redis } from "ioredis";
import type { QueueTarget } from "./connection.js";
import { reach } from "./reach.js";

/** One queue as `hvlab queue status` shows it. */
export interface QueueStatus {
  readonly name: string;
  /** Jobs by state (BullMQ's states: waiting, active, completed, failed, delayed, ...). */
  readonly counts: Readonly<Record<string, number>>;
  /** Workers connected to it, by the name each gave (host-pid), and how long each has been connected, s. */
  readonly workers: readonly { readonly name: string; readonly ageS: number }[];
  /** Jobs running now and who runs them. */
  readonly running: readonly {
    readonly id: string;
    readonly kind: string;
    readonly worker: string | null;
    readonly forMs: number;
  }[];
}

/** Most queues listed (a database full of other applications' queues is cut here). */
export const MAX_QUEUES_LISTED = 100;

/**
 * Lists the BullMQ queues in the URL's database (all of them, or the URL's
 * one when it names one), each with its job counts, its workers and the jobs
 * they are running.
 */
export async function queueStatus(target: QueueTarget, all: boolean): Promise<QueueStatus[]> {
  const first = new Queue(target.name, { connection: target.redis });
  first.on("error", () => {});
  try {
    await reach(target, [first]);
    let names = [target.name];
    if (all) {
      const client = new Redis({ ...target.redis, lazyConnect: true });
      client.on("error", () => {});
      const found = new Set<string>();
      try {
        let cursor = "0";
        do {
          const [next, keys] = await client.scan(cursor, "MATCH", "bull:*:meta", "COUNT", 1000);
          cursor = next;
          for (const key of keys) found.add(key.slice("bull:".length, -":meta".length));
        } while (cursor !== "0" && found.size < MAX_QUEUES_LISTED);
      } finally {
        client.disconnect();
      }
      names = [...found].sort().slice(0, MAX_QUEUES_LISTED);
    }
    const statuses: QueueStatus[] = [];
    for (const name of names) {
      const queue = name === target.name ? first : new Queue(name, { connection: target.redis });
      queue.on("error", () => {});
      try {
        const counts = await queue.getJobCounts();
        const clients = (await queue.getWorkers()) as Record<string, string>[];
        const workers = clients.map((c) => ({
          name: /:w:(.*)$/.exec(c.rawname ?? "")?.[1] ?? c.name ?? "?",
          ageS: Number(c.age ?? 0),
        }));
        const now = Date.now();
        const active = await queue.getActive(0, 999);
        statuses.push({
          name,
          counts,
          workers: workers.sort((a, b) => a.name.localeCompare(b.name)),
          running: active.map((job) => ({
            id: job.id ?? "?",
            kind: job.name,
            worker: job.processedBy ?? null,
            forMs: job.processedOn ? now - job.processedOn : 0,
          })),
        });
      } finally {
        if (queue !== first) await queue.close();
      }
    }
    return statuses;
  } finally {
    await first.close();
  }
}
