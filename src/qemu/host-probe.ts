import { completionRate } from "./completion-rate.js";
import { readGuestStatus } from "./guest-status.js";
import { FINAL_STATUSES, parseMigrationInfo, type QemuMigrationInfo } from "./migrate-info.js";
import { firstPassRate, resendRate, zeroScanRate } from "./pass-rate.js";
import { freeLoopbackPort, type QemuLaunch, QemuProcess } from "./qemu-process.js";
import type { MigrateSample } from "./rounds.js";

/** What a short migration with no rate limit showed about this host. */
export interface HostProbe {
  /**
   * Bytes per second QEMU's migration thread sent with no rate limit while
   * the guest ran: bytes over time from the first to the last sampling
   * interval of the first pass that carried mostly normal pages (an
   * interval through the zero pages outside the working set moves pages,
   * not bytes), the stalls between them included.
   */
  readonly hostRate: number;
  /**
   * Bytes per second of QEMU's completion: the probe ends by raising
   * downtime-limit so that QEMU stops the guest and sends the rest of its
   * first pass with no rate limit; its bytes over its `downtime` less the
   * fixed part the model adds itself ({@link completionRate}). When the
   * completion is too small or too quick to time, `hostRate`.
   */
  readonly completionRate: number;
  /** The probe's completion: bytes and QEMU's downtime, ms. */
  readonly completion: { readonly bytes: number; readonly downtimeMs: number };
  /**
   * How long after `migrate` the pages began to flow at the host's rate,
   * ms: QEMU's setup, starting the dirty log, and the first pass over the
   * low memory before the working set.
   */
  readonly startMs: number;
  /** Sampling intervals the host's rate spans. */
  readonly intervals: number;
  /**
   * Zero pages a second the probe's first pass scanned (the pages past the
   * working set, never written), or null when it saw too few intervals of
   * them to time.
   */
  readonly zeroScanRate: number | null;
  /**
   * Bytes per second after the first pass, under the run's max-bandwidth
   * (pages the destination holds), or null when the probe completed too
   * soon after its first pass to time it.
   */
  readonly resendRate: number | null;
  /** The guest's writes per second while the probe migrated it. */
  readonly writesPerSecondDuring: number;
  /**
   * Bytes per second QEMU sends with no rate limit, where `hostRate` was
   * taken from a pass max-bandwidth paced (the real run's first pass): the
   * probe's own first pass, or the paced rate if higher. Absent: `hostRate`
   * is that rate (the probe's, which ran with no rate limit).
   */
  readonly unthrottledRate?: number;
  /**
   * The rate of each 100 ms window, where it was measured under the run's
   * own max-bandwidth (the run's first pass; the probe's own windows, with
   * no rate limit, are not the run's).
   */
  readonly windowRates?: readonly number[];
}

/** The probe saw no interval it could measure a rate over. */
export class HostProbeError extends Error {
  override name = "HostProbeError";
}

/** max-bandwidth for "no rate limit" (QEMU takes any uint64; 1 TiB/s is never reached). */
const UNLIMITED = 2 ** 40;
/** The shortest span the guest's writes under migration are counted over, ms. */
const WRITES_SPAN_MS = 1000;
/** How long the probe lets QEMU bring pending down to the completion's size, ms. */
const SHRINK_WAIT_MS = 2000;
/** How long the source's monitor may take to answer while QEMU completes, ms. */
const COMPLETION_WAIT_MS = 60_000;
/** downtime-limit that makes QEMU complete at its next check (QEMU's largest is 2000 s). */
const COMPLETE_NOW_MS = 2_000_000;

interface Point {
  readonly at: number;
  readonly transferred: number;
  readonly normalBytes: number;
}

/**
 * Migrates the running guest to a throw-away destination with no rate limit
 * and downtime-limit 1 ms (so it does not complete), samples query-migrate
 * every `sampleMs` through the first pass while the guest runs, and once
 * the first pass is done (QEMU synced again) sets the run's max-bandwidth
 * and downtime-limit (`run`), so that QEMU goes on as the run will and
 * completes on its own when pending fits the run's threshold: it stops the
 * guest and sends the pages dirtied since, pages the destination already
 * holds, as it sends the last pages of any migration, and about as many as
 * the run will leave for its completion: a completion that fits the
 * socket's buffers goes faster than one the destination paces. (With no
 * rate limit after the first pass, pending stayed so small for a hot set
 * that QEMU completed with 200 KB in 1 ms, too little to time; and a
 * completion of first-pass pages went several times
 * slower in runs here, 125 MiB/s against some 870 MiB/s for re-dirtied
 * pages; the destination touching each page for the first time is the
 * likely reason.)
 * The rates QEMU reaches are the host's (under TCG the vCPU and the
 * migration thread share the cores); the write counter's rate meanwhile is
 * the guest's slowdown under migration. `probeMs` bounds the wait for the
 * first pass. The source ends migrated (it was a measurement guest); the
 * destination it starts is pushed to `started`.
 */
export async function probeHost(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
  run: { readonly maxBandwidth: number; readonly downtimeLimitMs: number } | null,
  sampleMs = 50,
): Promise<HostProbe> {
  const destination = await QemuProcess.start({
    ...launch,
    name: "probe-destination",
    incoming: true,
  });
  started.push(destination);
  const uri = `tcp:127.0.0.1:${await freeLoopbackPort()}`;
  await destination.qmp.execute("migrate-incoming", { uri });
  await source.qmp.execute("migrate-set-parameters", {
    "max-bandwidth": UNLIMITED,
    "downtime-limit": 1,
  });
  const active: Point[] = [];
  const samples: MigrateSample[] = [];
  let completingAt = Number.POSITIVE_INFINITY;
  // From when the run's parameters hold (after the first pass).
  let resendFrom = Number.POSITIVE_INFINITY;
  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  let writesDuring: number | null = null;
  let completing = false;
  let forced = false;
  let forcedAt = Number.POSITIVE_INFINITY;
  await source.qmp.execute("migrate", { uri });
  let final: QemuMigrationInfo | undefined;
  for (;;) {
    await new Promise((r) => setTimeout(r, sampleMs));
    // While QEMU completes, its monitor waits for the completion to end.
    const info = parseMigrationInfo(
      await source.qmp.execute("query-migrate", undefined, COMPLETION_WAIT_MS),
    );
    const at = performance.now() - t0;
    if (FINAL_STATUSES.has(info.status)) {
      if (info.status !== "completed")
        throw new HostProbeError(
          `the probe migration ended ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`,
        );
      final = info;
      break;
    }
    if (at > probeMs + COMPLETION_WAIT_MS)
      throw new HostProbeError(
        `the probe migration did not complete in ${probeMs + COMPLETION_WAIT_MS} ms`,
      );
    const ram = info.ram;
    if (!ram || info.status !== "active") continue;
    const now = { at, transferred: ram.transferred ?? 0, normalBytes: ram["normal-bytes"] ?? 0 };
    active.push(now);
    samples.push({ atMs: at, info });
    const passDone = (ram["dirty-sync-count"] ?? 0) >= 2;
    if (!completing && (passDone || at > probeMs)) {
      // QEMU completes on its own once pending fits its threshold (the
      // measured bandwidth x downtime-limit): under the run's parameters
      // its passes, and so the pages left at the switch, are the run's.
      // At once: a probe that first waited out a span for the guest's write
      // rate with no rate limit and downtime-limit 1 ms let QEMU catch up
      // with the guest, and a sync finding less than the last window's
      // bandwidth x 1 ms then completes (`migration_iteration_run` in
      // migration/migration.c): 82 KB to 390 KB, too little to time, and
      // the model sent the last pages at the pre-copy rate (57 ms
      // predicted against 13 at 128 MiB uniform 10,000/s).
      await source.qmp.execute(
        "migrate-set-parameters",
        at > probeMs || !run
          ? { "downtime-limit": COMPLETE_NOW_MS }
          : {
              "max-bandwidth": Math.round(run.maxBandwidth),
              "downtime-limit": Math.round(run.downtimeLimitMs),
            },
      );
      completing = true;
      completingAt = at;
      if (at <= probeMs && run) resendFrom = performance.now() - t0;
      // A pass of a fraction of a second showed no writes at all in runs
      // here: the guest's rate is read over at least WRITES_SPAN_MS, here
      // or else up to the stop.
      if (performance.now() - t0 >= WRITES_SPAN_MS) {
        const status = await readGuestStatus(source.qmp);
        writesDuring = ((status.writes - before.writes) * 1000) / (performance.now() - t0);
      }
    }
    // Not done within the probe's time: complete now, whatever is left.
    if (completing && !forced && (at > probeMs || at > completingAt + SHRINK_WAIT_MS)) {
      forcedAt = at;
      await source.qmp.execute("migrate-set-parameters", { "downtime-limit": COMPLETE_NOW_MS });
      forced = true;
    }
  }
  await destination.stop();
  if (writesDuring === null) {
    // QEMU completed on its own before any sample saw its second sync, or
    // the pass was shorter than WRITES_SPAN_MS: the guest's writes are
    // counted up to the stop (QEMU's clock: total-time less downtime).
    const status = await readGuestStatus(source.qmp);
    const ranMs = (final["total-time"] ?? 0) - (final.downtime ?? 0);
    writesDuring = ranMs > 0 ? ((status.writes - before.writes) * 1000) / ranMs : 0;
  }
  // A first pass quicker than two samples (a quiet host with no rate
  // limit) has no interval to time: its bytes over the time to the sample
  // that saw it done, setup included, are then the rate. A pass so quick
  // that QEMU completed before any sample saw it done (its threshold is 0
  // until its first 100 ms bandwidth window closes, and an empty pending
  // set then completes at once: `migration_iteration_run`) is timed by
  // QEMU's own clock: what went before the stop over total-time less
  // downtime.
  const done = samples.find((x) => (x.info.ram?.["dirty-sync-count"] ?? 0) >= 2);
  const doneBytes = done?.info.ram?.transferred ?? 0;
  const precopyBytes =
    final.ram?.["precopy-bytes"] ??
    (final.ram?.transferred ?? 0) - (final.ram?.["downtime-bytes"] ?? 0);
  const precopyMs = (final["total-time"] ?? 0) - (final.downtime ?? 0);
  const pass =
    firstPassRate(samples, completingAt) ??
    (done && done.atMs > 0 && doneBytes > 0
      ? { rate: (doneBytes * 1000) / done.atMs, startMs: 0, intervals: 1 }
      : !done && precopyMs > 0 && precopyBytes > 0
        ? { rate: (precopyBytes * 1000) / precopyMs, startMs: 0, intervals: 0 }
        : null);
  if (!pass) {
    const syncs = final.ram?.["dirty-sync-count"] ?? 0;
    throw new HostProbeError(
      `the probe's first pass gave no rate: ${samples.length} samples while it ran, none of them ${sampleMs} ms apart over mostly normal pages${done ? `, its end seen at ${Math.round(done.atMs)} ms with ${doneBytes} bytes sent` : ""}; QEMU ${final.status} after ${syncs} syncs, ${precopyBytes} bytes before the stop in ${precopyMs} ms`,
    );
  }
  const hostRate = pass.rate;
  const startMs = pass.startMs;
  // QEMU counts what it sent with the guest stopped (downtime-bytes, 7.1
  // and later); an older one leaves all that went after the last sample
  // before the stop (QEMU's clock: total-time less downtime), less what
  // pre-copy still sent between that sample and the stop (at the host's rate).
  const downtimeMs = final.downtime ?? 0;
  const stopAt = (final["total-time"] ?? 0) - downtimeMs;
  const lastRunning = active.filter((p) => p.at <= stopAt).at(-1);
  const bytes =
    final.ram?.["downtime-bytes"] ??
    (final.ram?.transferred ?? 0) -
      (lastRunning?.transferred ?? 0) -
      (hostRate * Math.max(0, stopAt - (lastRunning?.at ?? stopAt))) / 1000;
  // A completion too small or too quick for QEMU's millisecond clock to
  // time gives no rate of its own: the last pages then go at no slower
  // than the unthrottled rate just measured.
  return {
    hostRate,
    completionRate: completionRate(bytes, downtimeMs, hostRate),
    completion: { bytes, downtimeMs },
    startMs,
    intervals: pass.intervals,
    // The tail's rate where the probe reached it, through the stalls of the
    // pass after it (the destination's backlog of the tail): the model
    // scans the tail at this rate, and the pages below the working set go
    // faster.
    zeroScanRate:
      zeroScanRate(samples, Number.POSITIVE_INFINITY, true) ?? zeroScanRate(samples, completingAt),
    resendRate: resendRate(
      samples.filter((x) => x.atMs <= forcedAt),
      resendFrom,
    ),
    writesPerSecondDuring: writesDuring,
  };
}
