import { runMigration } from "../migration/engine.js";
import { fitShrink, projectFinish } from "../migration/policy.js";
import type { MigrationResult } from "../migration/stats.js";
import { QEMU_STOP_MS } from "./completion-rate.js";
import { type DirtyRatePoint, fitWorkingSet, measureDirtyCurve } from "./dirty-curve.js";
import { GUEST_PAGE, type ResolvedGuestSpec, WORKING_SET_BASE } from "./guest-image.js";
import { measureWriteRate, waitUntilWriting } from "./guest-rate.js";
import { type HostProbe, type ProbeTarget, probeHost } from "./host-probe.js";
import type { QemuMigrationSettings } from "./migrate.js";
import {
  CALIBRATION_MS,
  cappedWindowRates,
  firstPassRate,
  type PassRate,
  zeroScanRate,
} from "./pass-rate.js";
import { type Accelerator, QemuProcess } from "./qemu-process.js";
import type { MigrateSample } from "./rounds.js";

/** What was measured on the running guest before migrating. */
export interface GuestMeasurement {
  /** Writes per second from the write counter. */
  readonly writesPerSecond: number;
  /** calc-dirty-rate at each calc-time. */
  readonly curve: readonly DirtyRatePoint[];
  /** The working set the curve implies (pages), or null when it cannot be fitted. */
  readonly fittedWorkingSetPages: number | null;
  /** QEMU's own sending rate on this host and the guest's writes while migrating (null: not probed). */
  readonly probe: HostProbe | null;
}

/**
 * Boots the guest alone and measures its write rate and dirty curve, then
 * (unless `probeMs` is 0) migrates it through its first pass (at most
 * `probeMs`) with no rate limit to a throw-away destination: how fast QEMU sends on this host, and how fast
 * the guest writes meanwhile.
 */
export async function measureGuest(
  launch: { kernel: string; ramBytes: number; accel: Accelerator; dir: string; binary?: string },
  warmupMs: number,
  calcTimesS: readonly number[],
  started: QemuProcess[],
  probeMs = 0,
  run: Omit<ProbeTarget, "workingSetPages"> | null = null,
): Promise<GuestMeasurement> {
  const q = await QemuProcess.start({ ...launch, name: "measure" });
  started.push(q);
  await waitUntilWriting(q.qmp, 120_000);
  const rate = await measureWriteRate(q.qmp, warmupMs);
  const curve = await measureDirtyCurve(q.qmp, calcTimesS);
  // The longest calc-time shows the saturation best.
  const longest = curve.reduce<DirtyRatePoint | undefined>(
    (a, p) => (a === undefined || p.calcTimeS > a.calcTimeS ? p : a),
    undefined,
  );
  const fitted = longest ? fitWorkingSet(longest, rate.writesPerSecond) : null;
  const probe =
    probeMs > 0
      ? await probeHost(
          q,
          launch,
          started,
          probeMs,
          run ? { ...run, workingSetPages: fitted } : null,
        )
      : null;
  return { writesPerSecond: rate.writesPerSecond, curve, fittedWorkingSetPages: fitted, probe };
}

/** The first pass of the real run is timed over at most this long, ms. */
export { CALIBRATION_MS };

/** A first pass at this share of max-bandwidth or more was paced by it. */
const PACED_SHARE = 0.9;

/** The measurement with the host's sending rate taken from the real run's first pass. */
export interface Calibration {
  /** The first pass's rate as the real run saw it. */
  readonly pass: PassRate;
  /** What the model is fed: the measurement with that rate (and start) in place of the probe's. */
  readonly measured: GuestMeasurement;
}

/**
 * Under TCG on a shared host QEMU's sending rate moves from one second to
 * the next with the load, so a rate probed before the run may not be the
 * rate the run gets. The first pass of the run itself sends the working set
 * whatever the guest does (its length depends on the rate alone, not on the
 * model's answer), so its first {@link CALIBRATION_MS} give the host's rate
 * under the run's own max-bandwidth: the model is fed that, with everything
 * else as measured before migrating, except the guest's write rate when
 * `writesPerSecondDuring` gives the one the write counter showed over the
 * same first second (the guest's rate under a rate-limited migration, where
 * the probe's had no rate limit and its migration thread took more of the
 * host's CPU). Null when the first pass had no interval of normal pages to
 * time.
 */
export function calibrateFromRun(
  measured: GuestMeasurement,
  samples: readonly MigrateSample[],
  maxBandwidth: number,
  writesPerSecondDuring: number | null = null,
): Calibration | null {
  const first = firstPassRate(samples);
  if (!first) return null;
  const timed = firstPassRate(samples, first.fromMs + CALIBRATION_MS) ?? first;
  // Where max-bandwidth paced the pass, QEMU's windows each send at most
  // their budget: the rates 50 ms samples show above it are the
  // sampling's, not the windows'; the windows keep their spread below it
  // (a thread that woke late sent less) and the pass's mean.
  const paced = timed.rate >= maxBandwidth * PACED_SHARE;
  const pass = paced
    ? { ...timed, windowRates: cappedWindowRates(timed.windowRates, maxBandwidth, timed.rate) }
    : timed;
  // How fast the host sends with no rate limit decides how much one of
  // QEMU's iterations sends (MAX_WAIT or the window's budget): a paced
  // pass shows only the cap, so the probe's rate, with no limit, stands.
  const unthrottledRate = paced
    ? Math.max(measured.probe?.unthrottledRate ?? measured.probe?.hostRate ?? 0, pass.rate)
    : pass.rate;
  const probe: HostProbe = measured.probe
    ? {
        ...measured.probe,
        hostRate: pass.rate,
        unthrottledRate,
        // With the vCPUs stopped and no rate limit the last pages go no
        // slower than pre-copy ran.
        completionRate: Math.max(measured.probe.completionRate, pass.rate),
        startMs: pass.startMs,
        intervals: pass.intervals,
        windowRates: pass.windowRates,
        // The probe's, timed over the tail past the working set and the
        // stalls of the pass after it: the run's first second sees at most
        // the tail's start, ahead of the destination, and none of the
        // stalls that follow the next sync (1,450 ms predicted against
        // 2,576 at the 1 GiB guest from the start alone). Without a probe
        // figure, the tail's start in the run.
        zeroScanRate: measured.probe.zeroScanRate ?? zeroScanRate(samples, CALIBRATION_MS, true),
        writesPerSecondDuring: writesPerSecondDuring ?? measured.probe.writesPerSecondDuring,
      }
    : {
        hostRate: pass.rate,
        unthrottledRate,
        // Not probed: the last pages go no slower than the running rate.
        completionRate: pass.rate,
        completions: [],
        fresh: null,
        startMs: pass.startMs,
        intervals: pass.intervals,
        zeroScanRate: zeroScanRate(samples, CALIBRATION_MS),
        writesPerSecondDuring: writesPerSecondDuring ?? measured.writesPerSecond,
        windowRates: pass.windowRates,
      };
  return { pass, measured: { ...measured, probe } };
}

/** The smallest guest the model runs. */
const MIN_MODEL_BYTES = 1024 ** 2;

/** (assumed) One-way latency of loopback TCP, ms. */
const LOOPBACK_LATENCY_MS = 0.05;
/** (assumed) Device state of `-machine pc -nodefaults` with no disks or NICs, bytes. */
const QEMU_DEVICE_STATE_BYTES = 256 * 1024;

/**
 * hvlab's model of the migration, fed what was measured: the guest's RAM,
 * its writes per second, its working set (known from the spec it was built
 * with) and QEMU's parameters, under the `qemu` stop policy, in metadata
 * mode (bitmaps and counters, no page bytes).
 */
export async function predictMigration(
  guest: ResolvedGuestSpec,
  measured: GuestMeasurement,
  settings: QemuMigrationSettings,
  timeoutMs: number,
): Promise<MigrationResult> {
  // The model's guest is the working set alone: the pages outside it are
  // never written, and QEMU sends each once as a zero page (a header,
  // RAM_SAVE_FLAG_ZERO in migration/ram.c), where metadata mode, which has
  // no page contents, would send them whole.
  const base = 0;
  const workload =
    guest.pattern === "hotset"
      ? {
          kind: "hotset" as const,
          hotBase: base,
          hotPages: guest.hotPages,
          hotFraction: guest.hotFraction,
        }
      : guest.pattern === "sequential"
        ? { kind: "sequential" as const }
        : {
            kind: "hotset" as const,
            hotBase: base,
            hotPages: guest.workingSetPages,
            hotFraction: 1,
          };
  const probe = measured.probe;
  // The zero pages past the working set, which the first pass scans after
  // it (the ones below it are in the probe's start time), where their scan
  // rate was measured.
  const tail = guest.ramBytes / GUEST_PAGE - WORKING_SET_BASE / GUEST_PAGE - guest.workingSetPages;
  const zeroTail =
    probe?.zeroScanRate && tail > 0
      ? { zeroTailPages: tail, zeroScanRate: probe.zeroScanRate }
      : {};
  const result = await runMigration({
    guestBytes: Math.max(MIN_MODEL_BYTES, guest.workingSetPages * GUEST_PAGE),
    content: false,
    vcpus: 1,
    workload,
    // The guest's rate under migration where it was measured (it slows
    // while the migration thread takes CPU), else the rate before.
    writesPerSecond: probe ? probe.writesPerSecondDuring : measured.writesPerSecond,
    ...(probe
      ? {
          qemuIteration: {
            hostRate: probe.hostRate,
            completionRate: probe.completionRate,
            startMs: probe.startMs,
            stopMs: QEMU_STOP_MS,
            ...(probe.windowRates ? { windowRates: probe.windowRates } : {}),
            ...zeroTail,
            ...(probe.unthrottledRate ? { unthrottledRate: probe.unthrottledRate } : {}),
            ...(probe.fresh ? { freshRate: probe.fresh.rate } : {}),
          },
          latencyMs: LOOPBACK_LATENCY_MS,
          deviceStateBytes: QEMU_DEVICE_STATE_BYTES,
        }
      : {}),
    seed: guest.seed,
    policy: "qemu",
    maxBandwidth: settings.maxBandwidth,
    downtimeLimitMs: settings.downtimeLimitMs,
    autoConverge: settings.autoConverge,
    timeoutMs,
    giveUp: "never",
  });
  return withProjection(result, settings.downtimeLimitMs, timeoutMs);
}

/**
 * A prediction that ran out of time says, with the projection rule of the
 * `qemu` stop policy (the shrink of pending fitted over its last rounds),
 * whether that is non-convergence or only slowness: pending does not
 * shrink, or it shrinks and would fit the threshold so many rounds and
 * seconds later, past the time limit the real run is given too.
 */
export function withProjection(
  result: MigrationResult,
  downtimeLimitMs: number,
  timeoutMs: number,
): MigrationResult {
  if (result.summary.status !== "not-converged") return result;
  const precopy = result.rounds.filter((r) => r.phase === "precopy");
  const fit = fitShrink(precopy.map((r) => r.remaining));
  const last = precopy.at(-1);
  if (!fit || !last) return result;
  const bandwidth = last["bandwidth-estimate"];
  const target = (bandwidth * downtimeLimitMs) / 1000;
  const figures = `shrink factor ${fit.factor.toFixed(4)} ± ${fit.spread.toFixed(4)} a round over the last ${fit.rounds} rounds`;
  let projection: string;
  if (fit.factor + fit.spread >= 1 || !(bandwidth > 0) || !(target > 0)) {
    projection = `pending does not shrink (${figures})`;
  } else {
    const left = projectFinish(last.remaining, target, fit.factor, bandwidth);
    projection = `pending shrinks (${figures}) and would fit bandwidth x downtime-limit ${left.rounds} rounds and ${(left.ms / 1000).toFixed(1)} s later, past the ${(timeoutMs / 1000).toFixed(0)} s the run is given`;
  }
  return {
    ...result,
    summary: {
      ...result.summary,
      reason: `${result.summary.reason ?? "not converged"}; ${projection}`,
    },
  };
}

/** One figure predicted against measured. */
export interface FigureError {
  readonly figure: string;
  readonly predicted: number;
  readonly measured: number;
  /** (predicted - measured) / measured, or null when measured is 0. */
  readonly error: number | null;
}

/** Rounds, total time, bytes and downtime, predicted against measured. */
export function compareMigrations(
  predicted: MigrationResult,
  measured: MigrationResult,
): FigureError[] {
  const p = predicted.summary;
  const m = measured.summary;
  const row = (figure: string, a: number, b: number): FigureError => ({
    figure,
    predicted: a,
    measured: b,
    error: b === 0 ? null : (a - b) / b,
  });
  return [
    row(
      "status converged (1) or not (0)",
      p.status === "completed" ? 1 : 0,
      m.status === "completed" ? 1 : 0,
    ),
    row("rounds (dirty-sync-count)", p["dirty-sync-count"], m["dirty-sync-count"]),
    row("total-time (ms)", p["total-time"], m["total-time"]),
    row("transferred (bytes)", p.transferred, m.transferred),
    row("downtime (ms)", p.downtime, m.downtime),
  ];
}
