import type { MigrationResult } from "../migration/stats.js";
import { FINAL_STATUSES, parseMigrationInfo, type QemuMigrationInfo } from "./migrate-info.js";
import type { QmpClient } from "./qmp-client.js";
import { type MigrateSample, roundsFromSamples, summaryFromInfo } from "./rounds.js";

/** How to follow one migration over QMP. */
export interface SampleOptions {
  /** query-migrate every this many ms (and at once on each MIGRATION_PASS). */
  readonly sampleMs: number;
  /** Stop following after this long (ms). */
  readonly timeoutMs: number;
  /** On timeout, cancel the migration (`migrate_cancel`); false: only stop following. */
  readonly cancelOnTimeout: boolean;
  /** Send `migrate-start-postcopy` once dirty-sync-count reaches this (0: never). */
  readonly postcopyAfter: number;
  /** multifd channels, for the summary. */
  readonly multifdChannels: number;
  readonly onSample?: (sample: MigrateSample) => void;
}

/** What following a migration gave. */
export interface SampledMigration {
  readonly result: MigrationResult;
  readonly samples: readonly MigrateSample[];
  /** QEMU's last answer with its RAM figures (the status is the final one). */
  readonly final: QemuMigrationInfo;
}

/**
 * Follows a migration that has been started on `qmp`: samples query-migrate
 * until a final status or the timeout, and rebuilds its rounds. Issues only
 * query-migrate, unless post-copy or a cancel on timeout is asked for.
 * `t0` is the instant (performance.now()) sample times count from.
 */
export async function sampleMigration(
  qmp: QmpClient,
  options: SampleOptions,
  t0: number,
): Promise<SampledMigration> {
  // A MIGRATION_PASS event marks each dirty-log sync: sample at once, so two
  // syncs close together (QEMU's estimate, then exact) still make two rounds.
  let wake: (() => void) | undefined;
  const off = qmp.onEvent((e) => {
    if (e.event === "MIGRATION_PASS" || e.event === "MIGRATION") wake?.();
  });
  const samples: MigrateSample[] = [];
  let postcopyStarted = false;
  let info: QemuMigrationInfo = { status: "none" };
  let reason: string | null = null;
  try {
    for (;;) {
      info = parseMigrationInfo(await qmp.execute("query-migrate"));
      const sample = { atMs: performance.now() - t0, info };
      samples.push(sample);
      options.onSample?.(sample);
      if (FINAL_STATUSES.has(info.status)) {
        // QEMU sets `completed` (migration_completion) a moment before it
        // computes total-time, downtime and mbps (migration_calculate_complete,
        // migration/migration.c): an answer in between reads 0. Ask again.
        for (let i = 0; i < 50 && info.status === "completed" && !(info["total-time"] ?? 0); i++) {
          await new Promise((r) => setTimeout(r, 20));
          info = parseMigrationInfo(await qmp.execute("query-migrate"));
          samples.push({ atMs: performance.now() - t0, info });
        }
        break;
      }
      if (
        options.postcopyAfter > 0 &&
        !postcopyStarted &&
        info.status === "active" &&
        (info.ram?.["dirty-sync-count"] ?? 0) >= options.postcopyAfter
      ) {
        postcopyStarted = true;
        await qmp.execute("migrate-start-postcopy");
      }
      if (sample.atMs > options.timeoutMs) {
        const where = `still ${info.status} at dirty-sync-count ${info.ram?.["dirty-sync-count"] ?? 0}`;
        if (!options.cancelOnTimeout) {
          reason = `did not complete in ${Math.round(options.timeoutMs)} ms (${where}); stopped following it`;
          break;
        }
        reason = `did not complete in ${Math.round(options.timeoutMs)} ms (${where}); cancelled`;
        await qmp.execute("migrate_cancel");
        // Sample once more so the summary holds the figures at the cancel.
        info = parseMigrationInfo(await qmp.execute("query-migrate"));
        samples.push({ atMs: performance.now() - t0, info });
        break;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.sampleMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    off();
  }
  const rounds = roundsFromSamples(samples);
  // After a cancel QEMU may answer without RAM figures: the summary keeps
  // the last ones it gave, with the final status.
  const lastRam = samples.findLast((x) => x.info.ram !== undefined)?.info;
  const final = info.ram || !lastRam ? info : { ...lastRam, status: info.status };
  const summary = summaryFromInfo(final, rounds.length, options.multifdChannels, reason);
  return { result: { rounds, summary }, samples, final };
}
