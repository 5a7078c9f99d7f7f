import type { Command } from "commander";
import {
  DEFAULT_FAILOVER_MS,
  MAX_QUICK_GUEST_BYTES,
  runQuickMigration,
} from "../../migration/quick/quick-migration.js";
import {
  MAX_CHUNK_BYTES,
  MAX_SAVED_DEVICE_BYTES,
  MIN_CHUNK_BYTES,
} from "../../migration/quick/saved-state.js";
import { formatBytes } from "../../util/units.js";
import { WORKLOAD_KINDS, type WorkloadKind } from "../../workload/spec.js";
import {
  addGuestOption,
  addOutputOptions,
  addSeedOption,
  addVcpusOption,
  checkOutputFlags,
  integerOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";
import { readMeasuredLunMove } from "./csv-measured.js";
import { MigrationNotCompletedError } from "./migrate-live.js";
import { printMigration } from "./migration-output.js";

interface QuickFlags {
  guest: number;
  vcpus: number;
  workload: string;
  writes?: number;
  threads: number;
  seed: number;
  failover: number;
  failoverFrom?: string;
  resume: number;
  file?: string;
  chunk: number;
  deviceState: number;
  sync: boolean;
  json?: boolean;
  csv?: boolean;
}

/** `hvlab quick-migrate`: Hyper-V 1.0's quick migration through a real saved-state file. */
export function registerQuickMigrate(program: Command): void {
  const quick = program
    .command("quick-migrate")
    .description(
      "quick migration (Hyper-V 1.0): pause, save RAM to a saved-state file, fail the storage over, restore, resume; the downtime is the whole",
    );
  addGuestOption(quick, { min: 1024 ** 2, max: MAX_QUICK_GUEST_BYTES, fallback: 256 * 1024 ** 2 });
  addVcpusOption(quick, 64, 2, "vCPUs writing before the pause");
  addSeedOption(quick, "seed of the workload and the guest's content");
  quick
    .option(
      "--workload <kind>",
      `write pattern before the pause: ${WORKLOAD_KINDS.join(", ")}`,
      "hotset",
    )
    .option(
      "--writes <n>",
      "guest writes before the pause (default: one per page)",
      integerOption(0, 2 ** 40),
    )
    .option(
      "--threads <n>",
      "pool workers for those writes (0: this thread)",
      integerOption(0, 64),
      0,
    )
    .option(
      "--failover <ms>",
      "storage failover time: unmount, move, mount (assumed default)",
      numberOption(0, 3_600_000),
      DEFAULT_FAILOVER_MS,
    )
    .option(
      "--failover-from <file>",
      "take the failover time measured on a cluster: the JSON of hvlab csv vms --json (quick.lunMoveMs, a VM's LUN move) or of hvlab csv bench --json (its planned move)",
    )
    .option(
      "--resume <ms>",
      "fixed cost of resuming on the destination",
      numberOption(0, 3_600_000),
      0,
    )
    .option(
      "--file <path>",
      "saved-state file to write and keep (default: a temporary file, removed)",
    )
    .addOption(
      sizeOptionOf(
        "--chunk <size>",
        "saved-state chunk size (power of two)",
        MIN_CHUNK_BYTES,
        MAX_CHUNK_BYTES,
        4 * 1024 ** 2,
      ),
    )
    .addOption(
      sizeOptionOf(
        "--device-state <size>",
        "device-state blob",
        0,
        MAX_SAVED_DEVICE_BYTES,
        64 * 1024,
      ),
    )
    .option("--no-sync", "skip the fsync before failover");
  addOutputOptions(quick, { json: "print the result as JSON", csv: "print the rounds as CSV" });
  quick.action(async (flags: QuickFlags) => {
    checkOutputFlags(flags);
    if (!WORKLOAD_KINDS.includes(flags.workload as WorkloadKind)) {
      throw new UsageError(
        `unknown workload '${flags.workload}' (one of ${WORKLOAD_KINDS.join(", ")})`,
      );
    }
    if (flags.guest % 4096 !== 0) {
      throw new UsageError(`--guest ${flags.guest} bytes is not a whole number of 4 KiB pages`);
    }
    if ((flags.chunk & (flags.chunk - 1)) !== 0) {
      throw new UsageError(`--chunk ${flags.chunk} bytes is not a power of two`);
    }
    let failoverMs = flags.failover;
    if (flags.failoverFrom !== undefined) {
      if (quick.getOptionValueSource("failover") === "cli")
        throw new UsageError("choose one of --failover and --failover-from");
      failoverMs = readMeasuredLunMove(flags.failoverFrom);
    }
    const result = await runQuickMigration({
      guestBytes: flags.guest,
      vcpus: flags.vcpus,
      workload: { kind: flags.workload as WorkloadKind },
      ...(flags.writes !== undefined ? { writes: flags.writes } : {}),
      threads: flags.threads,
      seed: flags.seed,
      failoverMs,
      resumeMs: flags.resume,
      ...(flags.file !== undefined ? { file: flags.file } : {}),
      chunkBytes: flags.chunk,
      deviceStateBytes: flags.deviceState,
      sync: flags.sync,
    });
    printMigration({ rounds: result.rounds, summary: result.summary }, flags);
    if (!flags.json && !flags.csv) {
      console.log(
        `save ${Math.round(result.saveMs)} ms, failover ${Math.round(result.failoverMs)} ms, restore ${Math.round(result.restoreMs)} ms; saved-state file ${formatBytes(result.fileBytes)}${flags.file ? ` kept at ${result.file}` : " (removed)"}`,
      );
    }
    if (result.summary.status !== "completed") {
      throw new MigrationNotCompletedError(result.summary.status, result.summary.reason);
    }
  });
}
