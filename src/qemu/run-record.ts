import type { QemuMigrationRun } from "./migrate.js";
import type { MigrateSample } from "./rounds.js";

/**
 * The extra record `--json` carries beside query-migrate's layout: what
 * QEMU measured that the layout has no key for.
 */
export interface QemuRunRecord {
  readonly version: string;
  readonly "write-rate-before": number;
  readonly "write-rate-during": number;
  readonly "write-rate-first-second": number;
  readonly "destination-runs": boolean | null;
  /** How many query-migrate answers the run was sampled into. */
  readonly "sample-count": number;
  /** Every query-migrate answer, as QEMU gave it (`--samples` only). */
  readonly samples?: readonly MigrateSample[];
  readonly pids: { readonly source: number; readonly destination: number };
}

/**
 * The `qemu` record of a real run; with `withSamples` it holds every
 * query-migrate sample too, so that `predict --json --samples` keeps the
 * comparison and the samples it was made from in one document.
 */
export function qemuRunRecord(run: QemuMigrationRun, withSamples: boolean): QemuRunRecord {
  return {
    version: run.qemuVersion,
    "write-rate-before": run.rateBefore.writesPerSecond,
    "write-rate-during": run.rateDuring,
    "write-rate-first-second": run.rateFirstSecond,
    "destination-runs": run.destinationRuns,
    "sample-count": run.samples.length,
    ...(withSamples ? { samples: run.samples } : {}),
    pids: run.pids,
  };
}
