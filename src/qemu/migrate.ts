import type { MigrationResult } from "../migration/stats.js";
import type { ResolvedGuestSpec } from "./guest-image.js";
import { type MeasuredRate, measureWriteRate, waitUntilWriting } from "./guest-rate.js";
import { readGuestStatus } from "./guest-status.js";
import { CALIBRATION_MS } from "./pass-rate.js";
import { type Accelerator, freeLoopbackPort, QemuProcess, QemuStartError } from "./qemu-process.js";
import { QmpCommandError } from "./qmp-client.js";
import type { MigrateSample } from "./rounds.js";
import { sampleMigration } from "./sampler.js";

/** QEMU's migration settings, by their QMP names' meaning. */
export interface QemuMigrationSettings {
  /** `max-bandwidth`, bytes per second. */
  readonly maxBandwidth: number;
  /** `downtime-limit`, ms. */
  readonly downtimeLimitMs: number;
  /** `multifd` capability with `multifd-channels` (0: off). */
  readonly multifdChannels: number;
  /** `xbzrle` capability. */
  readonly xbzrle: boolean;
  /** `auto-converge` capability. */
  readonly autoConverge: boolean;
  /** `postcopy-ram`, switching (`migrate-start-postcopy`) once dirty-sync-count reaches this; 0: no post-copy. */
  readonly postcopyAfter: number;
}

/** One real migration between two QEMU processes on loopback. */
export interface QemuMigrationSpec {
  readonly guest: ResolvedGuestSpec;
  /** The guest image on disk. */
  readonly kernel: string;
  /** Folder for the QMP sockets. */
  readonly dir: string;
  readonly accel: Accelerator;
  /** The QEMU binary (default qemu-system-x86_64 from PATH). */
  readonly binary?: string;
  readonly settings: QemuMigrationSettings;
  /** The loopback port the destination listens on (default: one free now). */
  readonly port?: number;
  /** query-migrate every this many ms. */
  readonly sampleMs: number;
  /** Give up (migrate_cancel) after this long. */
  readonly timeoutMs: number;
  /** How long to measure the write rate before migrating, ms. */
  readonly warmupMs: number;
  /** Called with each sample, for a progress line. */
  readonly onSample?: (sample: MigrateSample) => void;
}

/** What a real migration did. */
export interface QemuMigrationRun {
  readonly result: MigrationResult;
  readonly samples: readonly MigrateSample[];
  /** The guest's write rate before migrating. */
  readonly rateBefore: MeasuredRate;
  /** Writes per second while pre-copy ran (counter at `migrate` to counter once the source stopped). */
  readonly rateDuring: number;
  /**
   * Writes per second over the first {@link CALIBRATION_MS} after `migrate`
   * (the whole pre-copy's rate when it ended sooner).
   */
  readonly rateFirstSecond: number;
  /** The destination ran the guest afterwards (its counter advanced). */
  readonly destinationRuns: boolean | null;
  readonly qemuVersion: string;
  readonly pids: { readonly source: number; readonly destination: number };
}

/** Capabilities hvlab sets, by QMP name. */
function capabilities(s: QemuMigrationSettings, side: "source" | "destination") {
  const caps: { capability: string; state: boolean }[] = [
    { capability: "events", state: true },
    { capability: "multifd", state: s.multifdChannels > 0 },
    { capability: "postcopy-ram", state: s.postcopyAfter > 0 },
  ];
  if (side === "source") {
    caps.push(
      { capability: "xbzrle", state: s.xbzrle },
      { capability: "auto-converge", state: s.autoConverge },
    );
  }
  return caps;
}

/** The QMP error about the incoming port as a clear start error. */
function incomingError(error: unknown, port: number): Error {
  if (error instanceof QmpCommandError && /in use|Address already/i.test(error.message))
    return new QemuStartError(`port ${port} on 127.0.0.1 is in use: choose another with --port`);
  return error as Error;
}

/**
 * Runs one real migration: starts the source and the destination, waits for
 * the guest to write, measures its rate, sets QEMU's parameters and
 * capabilities, migrates and samples query-migrate until the end. Every
 * QEMU it starts is pushed to `started` so the caller stops it by PID.
 */
export async function runQemuMigration(
  spec: QemuMigrationSpec,
  started: QemuProcess[],
): Promise<QemuMigrationRun> {
  const launch = {
    kernel: spec.kernel,
    ramBytes: spec.guest.ramBytes,
    accel: spec.accel,
    dir: spec.dir,
    ...(spec.binary ? { binary: spec.binary } : {}),
  };
  const source = await QemuProcess.start({ ...launch, name: "source" });
  started.push(source);
  const destination = await QemuProcess.start({ ...launch, name: "destination", incoming: true });
  started.push(destination);
  const s = spec.settings;
  const port = spec.port ?? (await freeLoopbackPort());
  const uri = `tcp:127.0.0.1:${port}`;

  for (const [side, q] of [
    ["source", source],
    ["destination", destination],
  ] as const) {
    await q.qmp.execute("migrate-set-capabilities", { capabilities: capabilities(s, side) });
    if (s.multifdChannels > 0)
      await q.qmp.execute("migrate-set-parameters", { "multifd-channels": s.multifdChannels });
  }
  await source.qmp.execute("migrate-set-parameters", {
    "max-bandwidth": Math.round(s.maxBandwidth),
    "downtime-limit": Math.round(s.downtimeLimitMs),
  });
  try {
    await destination.qmp.execute("migrate-incoming", { uri });
  } catch (error) {
    throw incomingError(error, port);
  }

  await waitUntilWriting(source.qmp, 120_000);
  const rateBefore = await measureWriteRate(source.qmp, spec.warmupMs);

  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  await source.qmp.execute("migrate", { uri });
  // The write counter once more CALIBRATION_MS in, while pre-copy runs: the
  // guest's rate under this migration from its start (the read's instant is
  // the middle of its round trip).
  let early: { writes: number; atMs: number } | null = null;
  let ended = false;
  let stopEarly = () => {};
  const earlyRead = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      const sent = performance.now();
      readGuestStatus(source.qmp)
        .then((status) => {
          if (!ended) early = { writes: status.writes, atMs: (sent + performance.now()) / 2 - t0 };
        })
        .catch(() => {})
        .finally(resolve);
    }, CALIBRATION_MS);
    stopEarly = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  const {
    result,
    samples,
    final: info,
  } = await sampleMigration(
    source.qmp,
    {
      sampleMs: spec.sampleMs,
      timeoutMs: spec.timeoutMs,
      cancelOnTimeout: true,
      postcopyAfter: s.postcopyAfter,
      multifdChannels: s.multifdChannels,
      ...(spec.onSample ? { onSample: spec.onSample } : {}),
    },
    t0,
  );
  // A read still under way when the migration ended counts the stop: not
  // the first second's rate.
  ended = true;
  stopEarly();
  await earlyRead;
  // The source's vCPU is stopped once the migration completed (or runs on
  // after a cancel): its counter then tells how much it wrote meanwhile.
  const after = await readGuestStatus(source.qmp);
  const precopyMs = Math.max(
    1,
    (info["total-time"] ?? samples.at(-1)?.atMs ?? 1) - (info.downtime ?? 0),
  );
  const rateDuring = ((after.writes - before.writes) * 1000) / precopyMs;
  const first = early as { writes: number; atMs: number } | null;
  const rateFirstSecond =
    first && first.atMs > 0 && first.atMs < precopyMs
      ? ((first.writes - before.writes) * 1000) / first.atMs
      : rateDuring;
  let destinationRuns: boolean | null = null;
  if (info.status === "completed") {
    const a = await readGuestStatus(destination.qmp);
    await new Promise((r) => setTimeout(r, 200));
    const b = await readGuestStatus(destination.qmp);
    destinationRuns = b.writes > a.writes;
  }
  return {
    result,
    samples,
    rateBefore,
    rateDuring,
    rateFirstSecond,
    destinationRuns,
    qemuVersion: source.qmp.version,
    pids: { source: source.pid, destination: destination.pid },
  };
}
