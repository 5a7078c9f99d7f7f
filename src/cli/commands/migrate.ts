import { writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { type Command, InvalidArgumentError, Option } from "commander";
import { machineInfo } from "../../bench/machine.js";
import { MAX_POINTS_PER_JOB } from "../../distributed/limits.js";
import type { PointFailure } from "../../distributed/studies.js";
import {
  migrateSweepJobs,
  migrateSweepOrder,
  migrateSweepResult,
} from "../../distributed/studies.js";
import { MAX_CONTENT_GUEST_BYTES, MAX_GUEST_BYTES } from "../../guest/guest.js";
import { runMigration } from "../../migration/engine.js";
import {
  GIVE_UP_RULES,
  type GiveUpRule,
  HYPERV_VERSIONS,
  type HypervVersion,
  MIGRATION_DEFAULTS,
  type MigrationOptions,
  MULTIFD_DEFAULT_CHANNELS,
  STOP_POLICIES,
  type StopPolicyName,
} from "../../migration/options.js";
import { migrationSection, sweepSection, sweepTable } from "../../migration/report.js";
import type { MigrationResult } from "../../migration/stats.js";
import { runSweep, type SweepBase, type SweepResult } from "../../migration/sweep.js";
import { toCsv } from "../../report/csv.js";
import { renderHtmlReport } from "../../report/html.js";
import type { ReportSection } from "../../report/section.js";
import { formatTable } from "../../report/table.js";
import { formatBytes, formatSize, parseSize } from "../../util/units.js";
import { WORKLOAD_KINDS, type WorkloadKind, type WorkloadSpec } from "../../workload/spec.js";
import {
  addGuestOption,
  addSeedOption,
  addVcpusOption,
  addWorkloadOptions,
  checkOutputFlags,
  checkWorkloadKind,
  csvOption,
  integerOption,
  jsonOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";
import { startProgress } from "../progress.js";
import {
  addQueueOptions,
  newSweepId,
  type QueueFlags,
  reportFailures,
  submitWithProgress,
} from "../queue-options.js";
import { readMeasuredHandover } from "./csv-measured.js";
import { printMigration, processOutput } from "./migration-output.js";

/** Bit rates accepted by {@link parseBandwidth}, in bits per second. */
const BIT_UNITS: Readonly<Record<string, number>> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  bps: 1,
  kbps: 1e3,
  mbps: 1e6,
  gbps: 1e9,
};

/**
 * Parses a link bandwidth into bytes per second: a bit rate (`10Gbit`,
 * `100Mbps`), a byte rate (`128MiB`, a size per second), or `unlimited`.
 *
 * @throws TypeError for anything else, and for zero or negative rates.
 */
export function parseBandwidth(text: string): number {
  const trimmed = text.trim().toLowerCase();
  if (trimmed === "unlimited") return Number.POSITIVE_INFINITY;
  const bits = /^(-?\d+(?:\.\d+)?)\s*([a-z]+)$/.exec(trimmed);
  if (bits && BIT_UNITS[bits[2] ?? ""] !== undefined) {
    const rate = (Number(bits[1]) * (BIT_UNITS[bits[2] ?? ""] ?? 0)) / 8;
    if (!(rate > 0)) throw new TypeError(`bandwidth must be more than 0, not "${text}"`);
    return rate;
  }
  if (/^\s*-/.test(text) || /^0+(\.0*)?[a-z]*$/i.test(trimmed)) {
    throw new TypeError(`bandwidth must be more than 0, not "${text}"`);
  }
  let rate: number;
  try {
    rate = parseSize(text);
  } catch {
    throw new TypeError(
      `"${text}" is not a bandwidth (examples: 10Gbit, 100Mbps, 128MiB per second, unlimited)`,
    );
  }
  if (!(rate > 0)) throw new TypeError(`bandwidth must be more than 0, not "${text}"`);
  return rate;
}

function bandwidthOption(text: string): number {
  try {
    return parseBandwidth(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function listOption<T>(parse: (item: string) => T) {
  return (text: string): T[] => {
    const items = text.split(",").map((item) => item.trim());
    if (items.length === 0 || items.some((item) => item === "")) {
      throw new InvalidArgumentError(`"${text}" is not a comma-separated list`);
    }
    return items.map(parse);
  };
}

function policyOption(text: string): StopPolicyName {
  if (!(STOP_POLICIES as readonly string[]).includes(text)) {
    throw new InvalidArgumentError(`unknown policy '${text}' (one of ${STOP_POLICIES.join(", ")})`);
  }
  return text as StopPolicyName;
}

/** Flags shared by `hvlab migrate` and `hvlab migrate sweep`. */
interface GuestFlags {
  guest: number;
  mode: string;
  pageSize: number;
  workload: string;
  hotSet?: number;
  hotFraction: number;
  zipf: number;
  vcpus: number;
  hypervVersion: string;
  latency: number;
  maxRounds?: number;
  maxTime: number;
  giveUp: string;
  deviceState: number;
  switchover: number;
  handoverFrom?: string;
  zeroFraction: number;
  zeroPages: boolean;
  xbzrle?: boolean;
  xbzrleCache: number;
  autoConverge?: boolean;
  cpuThrottleInitial: number;
  cpuThrottleIncrement: number;
  maxCpuThrottle: number;
  throttleTriggerThreshold: number;
  cpuThrottleTailslow?: boolean;
  multifd: number | true;
  postcopyAfter?: number;
  /** Live mode: milliseconds to wait for a post-copy recovery after a lost connection. */
  postcopyRecover?: number;
  seed: number;
  json?: boolean;
  csv?: boolean;
  report?: string;
}

/** Flags of `hvlab migrate`. */
export interface MigrateFlags extends GuestFlags {
  dirtyRate: number;
  policy: string;
  bandwidth: number;
  downtimeLimit: number;
  [liveOption: string]: unknown;
}

/** Flags of `hvlab migrate sweep`. */
interface SweepFlags extends GuestFlags {
  bandwidths: number[];
  dirtyRates: number[];
  downtimeLimits: number[];
  policies: StopPolicyName[];
  workers: number;
  pointsPerJob?: number;
}

/**
 * The live mode over TCP plugs into `hvlab migrate` here: a hook adds its
 * options (`--listen PORT`, `--to HOST:PORT`, ...), says whether a command
 * line asks for it, and runs it, printing with {@link printMigrationResult}.
 * Live mode registers itself by adding its hook to {@link LIVE_MIGRATION_HOOKS}.
 */
export interface LiveMigrationHook {
  /** Adds the live mode's options to the `migrate` command. */
  addOptions(command: Command): void;
  /** Whether the parsed flags ask for live mode (e.g. `--listen` or `--to` given). */
  wants(flags: MigrateFlags): boolean;
  /** Runs the live migration for these flags (the guest options are already checked). */
  run(flags: MigrateFlags, guest: MigrationOptions): Promise<void>;
}

/** Live-mode hooks, tried in order; the first that wants the flags runs instead of virtual time. */
export const LIVE_MIGRATION_HOOKS: LiveMigrationHook[] = [];

/** An option whose default is shown in words (1GiB rather than 1073741824). */
function shown<T>(
  flags: string,
  description: string,
  parse: (text: string) => T,
  value: T,
  text: string,
): Option {
  return new Option(flags, description).argParser(parse).default(value, text);
}

function addGuestOptions(command: Command): Command {
  const d = MIGRATION_DEFAULTS;
  addGuestOption(
    command,
    { min: 4096, max: MAX_GUEST_BYTES, fallback: 1024 ** 3 },
    "guest memory, a whole number of pages; content mode up to 3GiB",
  );
  addWorkloadOptions(command, { kinds: WORKLOAD_KINDS, maxHotSet: MAX_GUEST_BYTES, zipf: true });
  addVcpusOption(command, 256, d.vcpus);
  addSeedOption(command, "seed of the workload and the starting image", d.seed);
  return command
    .option(
      "--mode <mode>",
      "content (real page bytes, checked at the end) or metadata (bitmaps only)",
      "content",
    )
    .addOption(
      sizeOptionOf("--page-size <size>", "guest page size: 4KiB or 2MiB", 1, 2 * 1024 ** 2, 4096),
    )
    .option(
      "--hyperv-version <v>",
      `hyperv policy: ${HYPERV_VERSIONS.join(" (10 passes), ")} (5 passes)`,
      d.hypervVersion,
    )
    .option("--latency <ms>", "one-way link latency, ms", numberOption(0, 10_000), d.latencyMs)
    .option(
      "--max-rounds <n>",
      "cap on pre-copy rounds (default: none for qemu, 10 or 5 for hyperv, 30 for xen)",
      integerOption(-1e9, 1e9),
    )
    .option(
      "--max-time <s>",
      "give up after this much virtual time, s",
      numberOption(-1e12, 1e12),
      d.timeoutMs / 1000,
    )
    .option(
      "--give-up <rule>",
      `qemu policy: ${GIVE_UP_RULES.join(" (when the fitted shrink of pending says it cannot finish within --max-time) or ")} (as QEMU: only at --max-time)`,
      d.giveUp,
    )
    .addOption(
      sizeOptionOf(
        "--device-state <size>",
        "device state sent in stop-and-copy",
        0,
        256 * 1024 ** 2,
        d.deviceStateBytes,
      ),
    )
    .option(
      "--switchover <ms>",
      "fixed switchover cost on the destination, counted in downtime",
      numberOption(0, 3_600_000),
      d.switchoverMs,
    )
    .option(
      "--handover-from <file>",
      "add the storage handover a cluster measured to the switchover: the JSON of hvlab csv vms --json (live.downtimeMs, a VM's VHD closed on one node and opened on another) (default: none)",
    )
    .option(
      "--zero-fraction <p>",
      "content mode: share of all-zero pages in the starting image",
      numberOption(0, 1),
      d.zeroFraction,
    )
    .option(
      "--no-zero-pages",
      "send zero pages whole instead of as a header and one byte (default: zero pages detected)",
    )
    .option(
      "--xbzrle",
      "XBZRLE delta encoding against a cache of sent pages, content mode (default: off)",
    )
    .addOption(
      sizeOptionOf(
        "--xbzrle-cache <size>",
        "XBZRLE cache size (a power of two of pages)",
        1,
        1024 ** 3,
        d.xbzrleCacheBytes,
      ),
    )
    .option(
      "--auto-converge",
      "throttle the vCPUs when the guest dirties faster than the link sends (default: off)",
    )
    .option(
      "--cpu-throttle-initial <pct>",
      "auto-converge: first throttle",
      numberOption(1, 99),
      d.throttleInitial,
    )
    .option(
      "--cpu-throttle-increment <pct>",
      "auto-converge: step",
      numberOption(1, 99),
      d.throttleIncrement,
    )
    .option(
      "--max-cpu-throttle <pct>",
      "auto-converge: maximum",
      numberOption(1, 99),
      d.throttleMax,
    )
    .option(
      "--throttle-trigger-threshold <pct>",
      "auto-converge: throttle when bytes dirtied pass this share of bytes sent",
      numberOption(1, 100),
      d.throttleTriggerThreshold,
    )
    .option(
      "--cpu-throttle-tailslow",
      "auto-converge: each step only as large as the dirty rate needs (default: off)",
    )
    .option(
      "--multifd [channels]",
      `multifd channels as pool workers (alone: QEMU's ${MULTIFD_DEFAULT_CHANNELS}; 0: one stream)`,
      integerOption(0, 64),
      d.multifdChannels,
    )
    .option(
      "--postcopy-after <rounds>",
      "switch to post-copy after this many pre-copy rounds (default: pure pre-copy)",
      integerOption(-1e9, 1e9),
    )
    .addOption(jsonOption("print the result as JSON (default: a table)"))
    .addOption(csvOption("print the table as CSV (default: a table)"))
    .option("--report <file>", "also write an HTML report with the charts (default: none)");
}

/** Turns flags into migration options, refusing what cannot run. */
function guestOptions(flags: GuestFlags): SweepBase {
  checkOutputFlags(flags);
  if (flags.mode !== "content" && flags.mode !== "metadata") {
    throw new UsageError(`unknown mode '${flags.mode}' (content or metadata)`);
  }
  checkWorkloadKind(flags.workload, WORKLOAD_KINDS);
  if (flags.pageSize !== 4096 && flags.pageSize !== 2 * 1024 ** 2) {
    throw new UsageError("--page-size must be 4KiB or 2MiB");
  }
  if (flags.guest % flags.pageSize !== 0) {
    throw new UsageError(
      `--guest ${flags.guest} bytes is not a whole number of ${formatBytes(flags.pageSize)} pages`,
    );
  }
  if (flags.mode === "content" && flags.guest > MAX_CONTENT_GUEST_BYTES) {
    throw new UsageError(
      `--guest ${formatBytes(flags.guest)} is too large for content mode (at most ${formatBytes(MAX_CONTENT_GUEST_BYTES)}): use --mode metadata`,
    );
  }
  if (flags.hotSet !== undefined && flags.hotSet % flags.pageSize !== 0) {
    throw new UsageError("--hot-set must be a whole number of pages");
  }
  if (!(HYPERV_VERSIONS as readonly string[]).includes(flags.hypervVersion)) {
    throw new UsageError(
      `unknown --hyperv-version '${flags.hypervVersion}' (one of ${HYPERV_VERSIONS.join(", ")})`,
    );
  }
  if (flags.maxRounds !== undefined && flags.maxRounds < 1) {
    throw new UsageError(`--max-rounds must be at least 1, not ${flags.maxRounds}`);
  }
  if (!(flags.maxTime > 0))
    throw new UsageError(`--max-time must be more than 0 s, not ${flags.maxTime}`);
  if (!(GIVE_UP_RULES as readonly string[]).includes(flags.giveUp)) {
    throw new UsageError(
      `unknown --give-up rule '${flags.giveUp}' (one of ${GIVE_UP_RULES.join(", ")})`,
    );
  }
  if (flags.postcopyAfter !== undefined && flags.postcopyAfter < 1) {
    throw new UsageError(`--postcopy-after must be at least 1 round, not ${flags.postcopyAfter}`);
  }
  const workload: WorkloadSpec = {
    kind: flags.workload as WorkloadKind,
    hotFraction: flags.hotFraction,
    zipfExponent: flags.zipf,
    ...(flags.hotSet !== undefined ? { hotPages: flags.hotSet / flags.pageSize } : {}),
  };
  return {
    guestBytes: flags.guest,
    pageShift: flags.pageSize === 4096 ? 12 : 21,
    content: flags.mode === "content",
    vcpus: flags.vcpus,
    workload,
    seed: flags.seed,
    zeroFraction: flags.zeroFraction,
    hypervVersion: flags.hypervVersion as HypervVersion,
    latencyMs: flags.latency,
    ...(flags.maxRounds !== undefined ? { maxRounds: flags.maxRounds } : {}),
    timeoutMs: flags.maxTime * 1000,
    giveUp: flags.giveUp as GiveUpRule,
    deviceStateBytes: flags.deviceState,
    // A VM on a Cluster Shared Volume also hands its VHDs over while it is
    // paused: the pause a cluster run measured joins the switchover.
    switchoverMs:
      flags.switchover +
      (flags.handoverFrom !== undefined ? readMeasuredHandover(flags.handoverFrom) : 0),
    zeroPages: flags.zeroPages,
    xbzrle: flags.xbzrle === true,
    xbzrleCacheBytes: flags.xbzrleCache,
    autoConverge: flags.autoConverge === true,
    throttleInitial: flags.cpuThrottleInitial,
    throttleIncrement: flags.cpuThrottleIncrement,
    throttleMax: flags.maxCpuThrottle,
    throttleTriggerThreshold: flags.throttleTriggerThreshold,
    throttleTailslow: flags.cpuThrottleTailslow === true,
    multifdChannels: flags.multifd === true ? MULTIFD_DEFAULT_CHANNELS : flags.multifd,
    postcopyAfterRounds: flags.postcopyAfter ?? null,
  };
}

async function writeReport(file: string, sections: ReportSection[]): Promise<void> {
  const html = await renderHtmlReport("hvlab migrate", machineInfo(), sections, new Date());
  await writeFile(file, html);
}

/**
 * Prints a migration result with the one printer of every mode
 * ({@link printMigration}) and writes the HTML report when asked.
 */
export async function printMigrationResult(
  result: MigrationResult,
  flags: { json?: boolean; csv?: boolean; report?: string },
  pageBytes = 4096,
): Promise<void> {
  printMigration(result, flags, processOutput, pageBytes);
  if (flags.report) await writeReport(flags.report, [migrationSection(result, pageBytes)]);
}

/** `hvlab migrate` and `hvlab migrate sweep`. */
export function registerMigrate(program: Command): void {
  const d = MIGRATION_DEFAULTS;
  const migrate = addGuestOptions(
    program
      .command("migrate")
      .description(
        "profile a live migration's convergence round by round on virtual time (pre-copy, stop policies, optimizations)",
      ),
  )
    .option(
      "--dirty-rate <writes/s>",
      "guest writes per second of virtual time",
      numberOption(0, 1e11),
      20_000,
    )
    .option("--policy <name>", `stop policy: ${STOP_POLICIES.join(", ")}`, d.policy)
    .addOption(
      shown(
        "--bandwidth <rate>",
        "link bandwidth: 10Gbit, 100Mbps, 128MiB (per second) or unlimited",
        bandwidthOption,
        d.maxBandwidth,
        Number.isFinite(d.maxBandwidth) ? `${formatSize(d.maxBandwidth)} per second` : "unlimited",
      ),
    )
    .option(
      "--downtime-limit <ms>",
      "downtime the qemu and hyperv policies aim for",
      numberOption(-1e12, 1e12),
      d.downtimeLimitMs,
    );
  // Bad input is one line: no usage hint after it.
  migrate.showHelpAfterError(false);
  // The live mode's own options, apart in help from the virtual-time ones above.
  migrate.optionsGroup("Live mode over TCP, on the wall clock (--listen or --to selects it):");
  // `migrate sweep --guest ...`: options after a subcommand are the subcommand's
  // (commander needs this on every command above one with subcommands).
  program.enablePositionalOptions();
  migrate.enablePositionalOptions();
  for (const hook of LIVE_MIGRATION_HOOKS) hook.addOptions(migrate);
  migrate.action(async (flags: MigrateFlags) => {
    if (!(STOP_POLICIES as readonly string[]).includes(flags.policy)) {
      throw new UsageError(`unknown policy '${flags.policy}' (one of ${STOP_POLICIES.join(", ")})`);
    }
    if (!(flags.downtimeLimit > 0)) {
      throw new UsageError(`--downtime-limit must be more than 0 ms, not ${flags.downtimeLimit}`);
    }
    const options: MigrationOptions = {
      ...guestOptions(flags),
      writesPerSecond: flags.dirtyRate,
      policy: flags.policy as StopPolicyName,
      maxBandwidth: flags.bandwidth,
      downtimeLimitMs: flags.downtimeLimit,
    };
    const live = LIVE_MIGRATION_HOOKS.find((hook) => hook.wants(flags));
    if (live) {
      await live.run(flags, options);
      return;
    }
    const progress = startProgress("migrate", 100);
    let result: MigrationResult;
    try {
      result = await runMigration({
        ...options,
        onRound: (round, remaining, total) =>
          progress.update(
            Math.round(100 * (1 - remaining / total)),
            `round ${round}, ${formatBytes(remaining)} left`,
          ),
      });
    } finally {
      progress.stop();
    }
    await printMigrationResult(result, flags, flags.pageSize);
    if (result.summary.status !== "completed") {
      // The records are printed; the exit code tells scripts it did not complete.
      throw new Error(`migration ${result.summary.status}: ${result.summary.reason ?? ""}`);
    }
  });

  const sweep = addGuestOptions(
    migrate
      .command("sweep")
      .description(
        "run a grid of migrations (bandwidth x dirty rate x downtime-limit x policy) in parallel on the pool",
      ),
  )
    .addOption(
      shown(
        "--bandwidths <list>",
        "link bandwidths, comma-separated",
        listOption(parseBandwidth),
        [1e9 / 8, 10e9 / 8],
        "1Gbit,10Gbit",
      ),
    )
    .option(
      "--dirty-rates <list>",
      "guest writes per second, comma-separated",
      listOption((t) => numberOption(0, 1e11)(t)),
      [20_000, 200_000],
    )
    .option(
      "--downtime-limits <list>",
      "downtime limits in ms, comma-separated",
      listOption((t) => numberOption(1e-3, 3_600_000)(t)),
      [300, 1000],
    )
    .option("--policies <list>", "stop policies, comma-separated", listOption(policyOption), [
      ...STOP_POLICIES,
    ])
    .option(
      "--workers <n>",
      "pool workers running points in parallel",
      integerOption(1, 256),
      Math.min(2, availableParallelism()),
    )
    .showHelpAfterError(false);
  addQueueOptions(sweep)
    .addOption(
      new Option(
        "--points-per-job <n>",
        "sweep points one job carries (default: guided, each job 1/8 of the points not yet in a job, at most 64, the last ones a point each)",
      ).argParser(integerOption(1, MAX_POINTS_PER_JOB)),
    )
    .action(async (flags: SweepFlags & QueueFlags) => {
      if (flags.pointsPerJob !== undefined && flags.queue === undefined) {
        throw new UsageError("--points-per-job is for a sweep run through --queue");
      }
      const base = guestOptions(flags);
      const grid = {
        bandwidths: flags.bandwidths,
        writeRates: flags.dirtyRates,
        downtimeLimitsMs: flags.downtimeLimits,
        policies: flags.policies,
      };
      let sweep: SweepResult;
      let failed: readonly PointFailure[] = [];
      if (flags.queue !== undefined) {
        const sweepId = flags.sweepId ?? newSweepId();
        const jobs = migrateSweepJobs(sweepId, base, grid, flags.pointsPerJob);
        const submission = await submitWithProgress(
          "sweep",
          { ...flags, queue: flags.queue },
          sweepId,
          jobs,
          migrateSweepOrder(jobs),
        );
        const distributed = migrateSweepResult(grid, jobs, submission);
        sweep = distributed;
        failed = distributed.distributed.failed;
      } else {
        const progress = startProgress("sweep", 1);
        try {
          sweep = await runSweep(base, grid, {
            workers: flags.workers,
            onPoint: (done, total) => progress.update(done, "points", total),
          });
        } finally {
          progress.stop();
        }
      }
      if (flags.json) console.log(JSON.stringify(sweep, null, 2));
      else if (flags.csv) process.stdout.write(toCsv(sweepTable(sweep)));
      else {
        console.log(formatTable(sweepTable(sweep)));
        console.log(
          `\n${sweep.points.length} points on ${sweep.workers} workers in ${(sweep.wallMs / 1000).toFixed(2)} s`,
        );
      }
      if (flags.report) await writeReport(flags.report, [sweepSection(sweep)]);
      reportFailures(failed);
    });
}
