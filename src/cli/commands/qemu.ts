import { rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Command, InvalidArgumentError, Option } from "commander";
import { flattenDotted, toQueryMigrate } from "../../migration/query-migrate.js";
import {
  GUEST_PAGE,
  GUEST_PATTERNS,
  type GuestPattern,
  guestImage,
  MAX_GUEST_RAM,
  MAX_WRITE_RATE,
  MIN_GUEST_RAM,
  type ResolvedGuestSpec,
  resolveGuestSpec,
  WORKING_SET_BASE,
  WRITE_COUNTER_ADDRESS,
} from "../../qemu/guest-image.js";
import { measureWriteRate, waitUntilWriting } from "../../qemu/guest-rate.js";
import {
  type QemuMigrationRun,
  type QemuMigrationSettings,
  runQemuMigration,
} from "../../qemu/migrate.js";
import { parseMigrationInfo } from "../../qemu/migrate-info.js";
import {
  calibrateFromRun,
  compareMigrations,
  type FigureError,
  measureGuest,
  predictMigration,
} from "../../qemu/predict.js";
import {
  ACCELERATORS,
  type Accelerator,
  QEMU_BINARY,
  QemuProcess,
} from "../../qemu/qemu-process.js";
import { parseQmpAddress, type QmpAddress } from "../../qemu/qmp-address.js";
import { QmpClient } from "../../qemu/qmp-client.js";
import type { MigrateSample } from "../../qemu/rounds.js";
import { qemuRunRecord } from "../../qemu/run-record.js";
import { sampleMigration } from "../../qemu/sampler.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatPercent } from "../../report/format.js";
import { formatTable } from "../../report/table.js";
import { makeTemporaryDir } from "../../util/temporary.js";
import { formatBytes, formatSize } from "../../util/units.js";
import {
  addSeedOption,
  checkOutputFlags,
  integerOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";
import { parseBandwidth, printMigrationResult } from "./migrate.js";
import { MigrationNotCompletedError } from "./migrate-live.js";
import { printMigration } from "./migration-output.js";

/** The options every `hvlab qemu` command that builds a guest shares. */
interface GuestFlags {
  readonly guest: number;
  readonly pattern: string;
  readonly rate: number;
  readonly workingSet?: number;
  readonly hotSet?: number;
  readonly hotFraction: number;
  readonly seed: number;
  readonly accel: string;
  readonly qemu: string;
}

/** Adds the write guest's options. */
function addGuestFlags(command: Command): Command {
  command
    .addOption(
      sizeOptionOf("--guest <size>", "guest RAM", MIN_GUEST_RAM, MAX_GUEST_RAM, 256 * 2 ** 20),
    )
    .option("--pattern <kind>", `write pattern: ${GUEST_PATTERNS.join(", ")}`, "uniform")
    .option(
      "--rate <writes/s>",
      `page writes per second, paced by the HPET (0 = as fast as the vCPU runs; at most ${MAX_WRITE_RATE})`,
      integerOption(0, MAX_WRITE_RATE),
      15_000,
    )
    .addOption(
      sizeOptionOf(
        "--working-set <size>",
        "pages the guest writes (default: all RAM from 16 MiB to 1 MiB below the top)",
        GUEST_PAGE,
        MAX_GUEST_RAM,
      ),
    )
    .addOption(
      sizeOptionOf(
        "--hot-set <size>",
        "hotset: the hot pages (default: 1/64 of the working set)",
        GUEST_PAGE,
        MAX_GUEST_RAM,
      ),
    )
    .option(
      "--hot-fraction <p>",
      "hotset: share of writes into the hot set (0 to 1)",
      numberOption(0, 1),
      0.9,
    )
    .addOption(
      new Option("--accel <name>", `QEMU accelerator: ${ACCELERATORS.join(", ")}`).default("tcg"),
    )
    .option("--qemu <binary>", "the QEMU to run", QEMU_BINARY);
  return addSeedOption(command, "seed of the guest's xorshift32 generator");
}

/** The guest spec the flags ask for; a spec that does not fit is a usage error. */
function guestSpecOf(flags: GuestFlags): ResolvedGuestSpec {
  if (!GUEST_PATTERNS.includes(flags.pattern as GuestPattern))
    throw new UsageError(`--pattern '${flags.pattern}' is not one of ${GUEST_PATTERNS.join(", ")}`);
  if (flags.guest % (2 * 2 ** 20) !== 0)
    throw new UsageError(`--guest ${formatSize(flags.guest)} is not a multiple of 2 MiB`);
  const pageCount = (bytes: number | undefined, name: string) => {
    if (bytes === undefined) return undefined;
    if (bytes % GUEST_PAGE !== 0)
      throw new UsageError(`${name} ${bytes} is not a multiple of 4 KiB`);
    return bytes / GUEST_PAGE;
  };
  try {
    return resolveGuestSpec({
      ramBytes: flags.guest,
      pattern: flags.pattern as GuestPattern,
      workingSetPages: pageCount(flags.workingSet, "--working-set"),
      hotPages: pageCount(flags.hotSet, "--hot-set"),
      hotFraction: flags.hotFraction,
      writesPerSecond: flags.rate,
      seed: flags.seed,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The accelerator the flags ask for. */
function accelOf(flags: GuestFlags): Accelerator {
  if (!ACCELERATORS.includes(flags.accel as Accelerator))
    throw new UsageError(`--accel '${flags.accel}' is not one of ${ACCELERATORS.join(", ")}`);
  return flags.accel as Accelerator;
}

/** Writes the guest image into a fresh temporary folder; returns the folder and the image's path. */
export async function writeGuestToTemp(
  spec: ResolvedGuestSpec,
): Promise<{ dir: string; kernel: string }> {
  const dir = makeTemporaryDir("qemu");
  const kernel = join(dir, "guest.elf");
  await writeFile(kernel, guestImage(spec));
  return { dir, kernel };
}

/** Stops every QEMU that `run` started, whatever happens, also on Ctrl-C. */
export async function withQemus<T>(run: (started: QemuProcess[]) => Promise<T>): Promise<T> {
  const started: QemuProcess[] = [];
  const onSignal = () => {
    for (const q of started) q.kill();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await run(started);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await Promise.all(started.map((q) => q.stop()));
  }
}

function registerGuest(qemu: Command): void {
  const guest = qemu
    .command("guest")
    .description(
      "write the multiboot write guest (a bare-metal ELF QEMU boots with -kernel); --boot runs it and measures its write rate",
    )
    .option("--out <file>", "where to write the image (default: only boot it)")
    .option(
      "--boot <seconds>",
      "boot it under QEMU and measure the write counter for this long",
      numberOption(0.2, 600),
    )
    .option("--json", "print the spec and the measured rate as JSON");
  addGuestFlags(guest).action(
    async (flags: GuestFlags & { out?: string; boot?: number; json?: boolean }) => {
      const spec = guestSpecOf(flags);
      const accel = accelOf(flags);
      if (!flags.out && flags.boot === undefined)
        throw new UsageError("give --out FILE, --boot SECONDS, or both");
      if (flags.out) await writeFile(flags.out, guestImage(spec));
      const record: Record<string, unknown> = {
        spec,
        layout: {
          "write-counter": `0x${WRITE_COUNTER_ADDRESS.toString(16)}`,
          "working-set-base": `0x${WORKING_SET_BASE.toString(16)}`,
        },
        ...(flags.out ? { image: flags.out } : {}),
      };
      if (flags.boot !== undefined) {
        const { dir, kernel } = await writeGuestToTemp(spec);
        try {
          const rate = await withQemus(async (started) => {
            const q = await QemuProcess.start({
              kernel,
              ramBytes: spec.ramBytes,
              accel,
              dir,
              name: "guest",
              binary: flags.qemu,
            });
            started.push(q);
            await waitUntilWriting(q.qmp, 60_000);
            return measureWriteRate(q.qmp, (flags.boot ?? 1) * 1000);
          });
          record.measured = rate;
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
      if (flags.json) {
        console.log(JSON.stringify(record, null, 2));
        return;
      }
      if (flags.out)
        console.log(
          `wrote ${flags.out}: ${formatSize(spec.ramBytes)} guest, ${spec.pattern} over ${spec.workingSetPages} pages at ${spec.writesPerSecond} writes/s; write counter (u64) at guest-physical 0x${WRITE_COUNTER_ADDRESS.toString(16)}`,
        );
      const m = record.measured as
        | { writesPerSecond: number; writesPerGuestSecond: number; wallMs: number }
        | undefined;
      if (m)
        console.log(
          `measured ${Math.round(m.writesPerSecond)} writes/s over ${Math.round(m.wallMs)} ms of wall time (${Math.round(m.writesPerGuestSecond)} per second of the guest's HPET), asked ${spec.writesPerSecond}`,
        );
    },
  );
}

function bandwidthOption(text: string): number {
  let rate: number;
  try {
    rate = parseBandwidth(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  // QEMU's max-bandwidth is a whole number of bytes per second (uint64).
  if (!Number.isFinite(rate)) throw new InvalidArgumentError("QEMU needs a finite max-bandwidth");
  return rate;
}

/** The flags of `hvlab qemu migrate` (and `predict --then-migrate`). */
interface MigrateFlags extends GuestFlags {
  readonly bandwidth: number;
  readonly downtimeLimit: number;
  readonly multifd?: number | true;
  readonly xbzrle?: boolean;
  readonly autoConverge?: boolean;
  readonly postcopyAfter?: number;
  readonly port?: number;
  readonly timeout: number;
  readonly sampleMs: number;
  readonly warmup: number;
  readonly json?: boolean;
  readonly csv?: boolean;
  readonly samples?: boolean;
}

/** QEMU's defaults (migration/options.c): 128 MiB/s and 300 ms; multifd's 2 channels. */
const QEMU_MAX_BANDWIDTH = 128 * 2 ** 20;
const QEMU_DOWNTIME_LIMIT_MS = 300;
const QEMU_MULTIFD_CHANNELS = 2;

/** Adds the migration's options, named after QEMU's parameters. */
function addMigrateFlags(command: Command): Command {
  return command
    .addOption(
      new Option("--bandwidth <rate>", "max-bandwidth: 100MiB (per second), 800Mbit, ...")
        .argParser(bandwidthOption)
        .default(QEMU_MAX_BANDWIDTH, "128MiB per second, QEMU's default"),
    )
    .option(
      "--downtime-limit <ms>",
      "downtime-limit (1 to 2000)",
      integerOption(1, 2000),
      QEMU_DOWNTIME_LIMIT_MS,
    )
    .addOption(
      new Option(
        "--multifd [channels]",
        `multifd with multifd-channels (alone: ${QEMU_MULTIFD_CHANNELS}, QEMU's default; 1 to 16)`,
      ).argParser(integerOption(1, 16)),
    )
    .option("--xbzrle", "the xbzrle capability")
    .option("--auto-converge", "the auto-converge capability")
    .option(
      "--postcopy-after <syncs>",
      "postcopy-ram, switched to (migrate-start-postcopy) once dirty-sync-count reaches this",
      integerOption(1, 1000),
    )
    .option(
      "--port <n>",
      "loopback port the destination listens on (default: a free one)",
      integerOption(1, 65535),
    )
    .option(
      "--timeout <s>",
      "cancel the migration (migrate_cancel) after this long",
      numberOption(1, 3600),
      60,
    )
    .option("--sample-ms <ms>", "query-migrate every this many ms", integerOption(10, 5000), 50)
    .option(
      "--warmup <ms>",
      "measure the guest's write rate this long before migrating",
      integerOption(100, 60_000),
      1000,
    )
    .option(
      "--json",
      "print query-migrate's layout (rounds, summary) and what QEMU measured, as hvlab migrate --json does",
    )
    .option(
      "--csv",
      "print the rounds (or with --samples every sample) with query-migrate's keys dotted",
    )
    .option("--samples", "with --json or --csv: every query-migrate sample, not the rounds");
}

function settingsOf(flags: MigrateFlags): QemuMigrationSettings {
  return {
    maxBandwidth: flags.bandwidth,
    downtimeLimitMs: flags.downtimeLimit,
    multifdChannels: flags.multifd === true ? QEMU_MULTIFD_CHANNELS : (flags.multifd ?? 0),
    xbzrle: flags.xbzrle ?? false,
    autoConverge: flags.autoConverge ?? false,
    postcopyAfter: flags.postcopyAfter ?? 0,
  };
}

/** A one-line progress on stderr (a terminal only), from each query-migrate sample. */
function progressLine(): { update(sample: MigrateSample): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  return {
    update(sample) {
      const r = sample.info.ram;
      process.stderr.write(
        `\r${sample.info.status} ${(sample.atMs / 1000).toFixed(1)} s, sync ${r?.["dirty-sync-count"] ?? 0}, ${formatBytes(r?.transferred ?? 0)} sent, ${formatBytes(r?.remaining ?? 0)} remaining, ${Math.round(r?.mbps ?? 0)} Mbit/s\x1b[K`,
      );
    },
    stop() {
      process.stderr.write("\r\x1b[K");
    },
  };
}

/** Prints a real migration as `hvlab migrate` prints its own. */
export function printQemuMigration(run: QemuMigrationRun, flags: MigrateFlags): void {
  if (flags.samples && (flags.json || flags.csv)) {
    const records = run.samples.map((s) => ({
      "at-ms": Math.round(s.atMs),
      ...flattenDotted(s.info),
    }));
    console.log(
      flags.json ? JSON.stringify(run.samples, null, 2) : toCsv(recordsToTable(records)).trimEnd(),
    );
    return;
  }
  if (flags.json) {
    const lines: string[] = [];
    printMigration(
      run.result,
      { json: true },
      { out: (l) => lines.push(l), err: (l) => console.error(l) },
    );
    const record = JSON.parse(lines.join("\n")) as Record<string, unknown>;
    console.log(JSON.stringify({ ...record, qemu: qemuRunRecord(run, false) }, null, 2));
    return;
  }
  printMigration(run.result, { csv: flags.csv });
  if (!flags.csv)
    console.log(
      `\nQEMU ${run.qemuVersion}; the guest wrote ${Math.round(run.rateBefore.writesPerSecond)} pages/s before migrating, ${Math.round(run.rateDuring)} while pre-copy ran; destination ${run.destinationRuns === null ? "not running" : run.destinationRuns ? "runs the guest" : "DOES NOT RUN the guest"}`,
    );
}

function registerMigrate(qemu: Command): void {
  const migrate = qemu
    .command("migrate")
    .description(
      "migrate the write guest between two real QEMU processes on loopback, sampling query-migrate into hvlab's rounds",
    );
  addMigrateFlags(addGuestFlags(migrate)).action(async (flags: MigrateFlags) => {
    checkOutputFlags(flags);
    const spec = guestSpecOf(flags);
    const accel = accelOf(flags);
    const { dir, kernel } = await writeGuestToTemp(spec);
    const progress = progressLine();
    try {
      const run = await withQemus((started) =>
        runQemuMigration(
          {
            guest: spec,
            kernel,
            dir,
            accel,
            binary: flags.qemu,
            settings: settingsOf(flags),
            port: flags.port,
            sampleMs: flags.sampleMs,
            timeoutMs: flags.timeout * 1000,
            warmupMs: flags.warmup,
            onSample: (s) => progress.update(s),
          },
          started,
        ),
      );
      progress.stop();
      printQemuMigration(run, flags);
      if (run.result.summary.status !== "completed")
        throw new MigrationNotCompletedError(run.result.summary.status, run.result.summary.reason);
    } finally {
      progress.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

interface ProfileFlags {
  readonly qmp: string;
  readonly start?: string;
  readonly sampleMs: number;
  readonly timeout: number;
  readonly json?: boolean;
  readonly csv?: boolean;
  readonly samples?: boolean;
  readonly report?: string;
}

function registerProfile(qemu: Command): void {
  qemu
    .command("profile")
    .description(
      "attach to anyone's QEMU over QMP and record its migration round by round, read-only (query-migrate only, unless --start)",
    )
    .requiredOption("--qmp <address>", "the QEMU's monitor: unix:PATH or tcp:HOST:PORT")
    .option(
      "--start <uri>",
      "start the migration first (QMP migrate to this URI, e.g. tcp:127.0.0.1:4444)",
    )
    .option("--sample-ms <ms>", "query-migrate every this many ms", integerOption(10, 5000), 50)
    .option(
      "--timeout <s>",
      "stop following after this long (the migration goes on)",
      numberOption(1, 86_400),
      3600,
    )
    .option(
      "--json",
      "print query-migrate's layout (rounds, summary), as hvlab migrate --json does",
    )
    .option(
      "--csv",
      "print the rounds (or with --samples every sample) with query-migrate's keys dotted",
    )
    .option("--samples", "with --json or --csv: every query-migrate sample, not the rounds")
    .option("--report <file>", "also write an HTML report with the convergence charts")
    .action(async (flags: ProfileFlags) => {
      checkOutputFlags(flags);
      let address: QmpAddress;
      try {
        address = parseQmpAddress(flags.qmp);
      } catch (error) {
        throw new UsageError(`--qmp ${(error as Error).message}`);
      }
      const qmp = await QmpClient.connect(address);
      const progress = progressLine();
      try {
        const t0 = performance.now();
        if (flags.start) await qmp.execute("migrate", { uri: flags.start });
        else {
          // Wait for a migration to begin (read-only: query-migrate only).
          for (;;) {
            const info = parseMigrationInfo(await qmp.execute("query-migrate"));
            if (info.status !== "none") break;
            if (performance.now() - t0 > flags.timeout * 1000)
              throw new Error(`no migration started on ${flags.qmp} in ${flags.timeout} s`);
            await new Promise((r) => setTimeout(r, flags.sampleMs));
          }
        }
        const caps = await qmp.execute<{ capability: string; state: boolean }[]>(
          "query-migrate-capabilities",
        );
        const params = await qmp.execute<Record<string, unknown>>("query-migrate-parameters");
        const multifd = caps.find((c) => c.capability === "multifd")?.state
          ? Number(params["multifd-channels"] ?? QEMU_MULTIFD_CHANNELS)
          : 0;
        const sampled = await sampleMigration(
          qmp,
          {
            sampleMs: flags.sampleMs,
            timeoutMs: flags.timeout * 1000,
            cancelOnTimeout: false,
            postcopyAfter: 0,
            multifdChannels: multifd,
            onSample: (s) => progress.update(s),
          },
          t0,
        );
        progress.stop();
        if (flags.samples && (flags.json || flags.csv)) {
          printSamples(sampled.samples, flags);
          return;
        }
        await printMigrationResult(sampled.result, flags, sampled.final.ram?.["page-size"] ?? 4096);
        const { status, reason } = sampled.result.summary;
        if (status !== "completed") throw new MigrationNotCompletedError(status, reason);
      } finally {
        progress.stop();
        qmp.close();
      }
    });
}

/** Prints every raw query-migrate sample: JSON as QEMU answered, CSV with dotted keys. */
function printSamples(samples: readonly MigrateSample[], flags: { json?: boolean }): void {
  const records = samples.map((s) => ({ "at-ms": Math.round(s.atMs), ...flattenDotted(s.info) }));
  console.log(
    flags.json ? JSON.stringify(samples, null, 2) : toCsv(recordsToTable(records)).trimEnd(),
  );
}

interface PredictFlags extends MigrateFlags {
  readonly calcTimes: number[];
  readonly probeMs: number;
  readonly thenMigrate?: boolean;
}

function calcTimesOption(text: string): number[] {
  const items = text.split(",").map((x) => x.trim());
  const parse = integerOption(1, 60);
  const times = items.map((x) => parse(x));
  if (times.length > 8) throw new InvalidArgumentError("at most 8 calc-times");
  return times;
}

function registerPredict(qemu: Command): void {
  const predict = qemu
    .command("predict")
    .description(
      "measure the guest's dirty curve (calc-dirty-rate) and write rate, predict the migration with hvlab's model; --then-migrate migrates for real and compares",
    )
    .option(
      "--calc-times <s,...>",
      "calc-dirty-rate calc-time of each measurement, seconds",
      calcTimesOption,
      [1, 2],
    )
    .option(
      "--probe-ms <ms>",
      "migrate the measured guest through its first pass (at most this long) with no rate limit first, then complete: QEMU's own sending and completion rates here and the guest's writes meanwhile feed QEMU's iteration in the model (0: no probe, one sync per pass)",
      integerOption(0, 60_000),
      15_000,
    )
    .option("--then-migrate", "then migrate for real and print predicted against measured");
  addMigrateFlags(addGuestFlags(predict)).action(async (flags: PredictFlags) => {
    checkOutputFlags(flags);
    // The samples are the real run's: without one there are none to print.
    if (flags.samples && !flags.thenMigrate)
      throw new UsageError("--samples needs --then-migrate (the samples are the real run's)");
    const spec = guestSpecOf(flags);
    const accel = accelOf(flags);
    const settings = settingsOf(flags);
    const { dir, kernel } = await writeGuestToTemp(spec);
    try {
      const launch = { kernel, ramBytes: spec.ramBytes, accel, dir, binary: flags.qemu };
      const measured = await withQemus((started) =>
        // The probe's completion gathers about what the run's will send.
        measureGuest(launch, flags.warmup, flags.calcTimes, started, flags.probeMs, settings),
      );
      const predicted = await predictMigration(spec, measured, settings, flags.timeout * 1000);
      let real: QemuMigrationRun | undefined;
      if (flags.thenMigrate) {
        real = await withQemus((started) =>
          runQemuMigration(
            {
              guest: spec,
              kernel,
              dir,
              accel,
              binary: flags.qemu,
              settings,
              port: flags.port,
              sampleMs: flags.sampleMs,
              timeoutMs: flags.timeout * 1000,
              warmupMs: flags.warmup,
            },
            started,
          ),
        );
      }
      const comparison = real ? compareMigrations(predicted, real.result) : null;
      // The model again, at the rate the run's own first pass showed.
      const calibration = real
        ? calibrateFromRun(measured, real.samples, settings.maxBandwidth, real.rateFirstSecond)
        : null;
      const calibrated = calibration
        ? await predictMigration(spec, calibration.measured, settings, flags.timeout * 1000)
        : null;
      const calibratedComparison =
        real && calibrated ? compareMigrations(calibrated, real.result) : null;
      if (flags.json) {
        console.log(
          JSON.stringify(
            {
              measured: measured,
              predicted: toQueryMigrate(predicted, GUEST_PAGE).summary,
              ...(real
                ? {
                    real: toQueryMigrate(real.result, GUEST_PAGE).summary,
                    qemu: qemuRunRecord(real, flags.samples ?? false),
                  }
                : {}),
              ...(comparison ? { comparison } : {}),
              ...(calibration && calibrated && calibratedComparison
                ? {
                    calibrated: {
                      "first-pass": calibration.pass,
                      predicted: toQueryMigrate(calibrated, GUEST_PAGE).summary,
                      comparison: calibratedComparison,
                    },
                  }
                : {}),
            },
            null,
            2,
          ),
        );
        return;
      }
      if (flags.csv && flags.samples && real) {
        printSamples(real.samples, flags);
        return;
      }
      if (flags.csv) {
        console.log(toCsv(recordsToTable((comparison ?? []).map((c) => ({ ...c })))).trimEnd());
        return;
      }
      console.log(
        `measured: ${Math.round(measured.writesPerSecond)} writes/s; calc-dirty-rate ${measured.curve.map((p) => `${p.dirtyRateMiBps} MiB/s over ${p.calcTimeS} s`).join(", ")}; working set ${spec.workingSetPages} pages (the curve implies ${measured.fittedWorkingSetPages ?? "n/a"})`,
      );
      if (measured.probe)
        console.log(
          `probe: with no rate limit QEMU sent ${formatBytes(measured.probe.hostRate)}/s while the guest ran and completed at ${formatBytes(measured.probe.completionRate)}/s (the fastest of ${measured.probe.completions.map((c) => `${formatBytes(c.bytes)} in ${c.downtimeMs} ms`).join(", ")} of downtime), pages flowing ${Math.round(measured.probe.startMs)} ms after migrate; the guest wrote ${Math.round(measured.probe.writesPerSecondDuring)} pages/s meanwhile; zero pages scanned ${measured.probe.zeroScanRate ? `${Math.round(measured.probe.zeroScanRate)}/s` : "not timed"}; pages a destination never held taken at ${measured.probe.fresh ? `${formatBytes(measured.probe.fresh.rate)}/s with the guest stopped` : "a rate not timed"}`,
        );
      const p = predicted.summary;
      console.log(
        `predicted: ${p.status}, ${p["dirty-sync-count"]} syncs, total-time ${(p["total-time"] / 1000).toFixed(2)} s, ${formatBytes(p.transferred)} transferred, downtime ${p.downtime.toFixed(1)} ms${p.status === "completed" || !p.reason ? "" : ` (${p.reason})`}`,
      );
      if (real)
        console.log(
          `real: QEMU ${real.qemuVersion}; the guest wrote ${Math.round(real.rateBefore.writesPerSecond)} pages/s before migrating and ${Math.round(real.rateDuring)} while pre-copy ran (${formatPercent(real.rateDuring / real.rateBefore.writesPerSecond - 1)})`,
        );
      if (comparison) {
        const at = new Map((calibratedComparison ?? []).map((c) => [c.figure, c]));
        const error = (c: FigureError | undefined) =>
          c === undefined ? "" : c.error === null ? "n/a" : formatPercent(c.error);
        const table = {
          columns: [
            "figure",
            "predicted",
            "measured",
            "error",
            ...(calibratedComparison ? ["at the run's rate", "error"] : []),
          ],
          rows: comparison.map((c) => [
            c.figure,
            c.predicted,
            c.measured,
            error(c),
            ...(calibratedComparison
              ? [at.get(c.figure)?.predicted ?? "", error(at.get(c.figure))]
              : []),
          ]),
        };
        console.log(`\n${formatTable(table)}`);
        if (calibration)
          console.log(
            `at the run's rate: the model fed the ${formatBytes(calibration.pass.rate)}/s QEMU sent over ${Math.round(calibration.pass.toMs - calibration.pass.fromMs)} ms of the run's first pass, in place of the probe's rate`,
          );
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Registers `hvlab qemu` and its subcommands. */
export function registerQemu(program: Command): void {
  const qemu = program
    .command("qemu")
    .description(
      "real QEMU as the peer: a write guest hvlab writes itself, real migrations driven over QMP",
    );
  registerGuest(qemu);
  registerMigrate(qemu);
  registerProfile(qemu);
  registerPredict(qemu);
}
