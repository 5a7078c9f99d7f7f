import { GUEST_PAGE } from "./guest-image.js";
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
   * first pass with no rate limit; its bytes over its `downtime`. When the
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
/**
 * How long the probe runs under the run's max-bandwidth before it sets the
 * run's downtime-limit, ms: two of QEMU's 100 ms bandwidth windows and a
 * sample's slack, so the threshold comes from a window under the cap.
 */
const CAPPED_MS = 250;
/**
 * max-bandwidth while the probe lets the guest dirty pages before its
 * completion, bytes/s: a trickle (0 would mean no limit to QEMU).
 */
const HOLD_BANDWIDTH = 1024 ** 2;
/** The longest the probe lets the guest dirty pages before its completion, ms. */
const HOLD_MAX_MS = 2000;
/** How long the source's monitor may take to answer while QEMU completes, ms. */
const COMPLETION_WAIT_MS = 60_000;
/** downtime-limit that makes QEMU complete at its next check (QEMU's largest is 2000 s). */
const COMPLETE_NOW_MS = 2_000_000;
/** Fewer bytes than this in the completion cannot give a rate. */
const MIN_COMPLETION_BYTES = 1024 ** 2;
/** A completion quicker than this is below the resolution of QEMU's downtime (whole ms). */
const MIN_COMPLETION_MS = 2;

interface Point {
  readonly at: number;
  readonly transferred: number;
  readonly normalBytes: number;
}

/**
 * Migrates the running guest to a throw-away destination with no rate limit
 * and downtime-limit 1 ms (so it does not complete), samples query-migrate
 * every `sampleMs` through the first pass while the guest runs, then
 * (given the run's parameters, `run`) goes on under the run's
 * max-bandwidth for {@link CAPPED_MS} (the rate after the first pass, pages
 * the destination already holds; the destination drains what the
 * unlimited pass left in the socket), then lets the guest dirty pages
 * under a trickle of bandwidth for as long as it takes to dirty about what
 * the run's threshold (max-bandwidth x downtime-limit) holds, at
 * `dirtyBytesPerSecond` (calc-dirty-rate's distinct pages a second, else
 * the write counter's rate), and makes QEMU complete: it stops the guest
 * and sends those re-dirtied pages to an idle destination, as a run's
 * completion does, and about as many. A completion QEMU reached on its own
 * was not the run's: under the run's parameters a guest dirtying slower
 * than the cap was caught up (82 KB to 390 KB left, too little to time),
 * and right after an unlimited first pass it waited on the destination's
 * backlog (30 MB in 130 ms where the run's 24 MiB took 20 ms); and a
 * completion of first-pass pages went several times slower in runs here
 * (125 MiB/s against some 870 MiB/s for re-dirtied pages; the destination
 * touching each page for the first time is the likely reason).
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
  dirtyBytesPerSecond: number | null = null,
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
  // From when the run's max-bandwidth holds (after the first pass).
  let resendFrom = Number.POSITIVE_INFINITY;
  let cappedAt = Number.POSITIVE_INFINITY;
  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  let capped = false;
  let holding = false;
  let holdUntil = Number.POSITIVE_INFINITY;
  // From when the trickle holds: no rate after the first pass past it.
  let heldAt = Number.POSITIVE_INFINITY;
  let completing = false;
  let forcedAt = Number.POSITIVE_INFINITY;
  let writesDuring: number | null = null;
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
    if (completing) continue;
    const passDone = (ram["dirty-sync-count"] ?? 0) >= 2;
    if (!capped && passDone && at <= probeMs && run) {
      // The run's max-bandwidth, downtime-limit still 1 ms: QEMU goes on at
      // the run's rate without completing (the rate after the first pass),
      // and the destination drains what the unlimited first pass left in
      // the socket.
      await source.qmp.execute("migrate-set-parameters", {
        "max-bandwidth": Math.round(run.maxBandwidth),
      });
      capped = true;
      cappedAt = at;
      resendFrom = performance.now() - t0;
    }
    if (capped && !holding && run && at >= cappedAt + CAPPED_MS && at <= probeMs) {
      // The guest's rate under migration so far. (Waiting here for a longer
      // span let QEMU catch up with the guest under downtime-limit 1 ms; a
      // sync that then finds no page completes at once, whatever the
      // threshold: `migration_iteration_run` completes when pending is 0.)
      const status = await readGuestStatus(source.qmp);
      const ranMs = performance.now() - t0;
      writesDuring = ((status.writes - before.writes) * 1000) / ranMs;
      // Then a trickle while the guest dirties pages, so that QEMU completes
      // with about as many re-dirtied pages as the run's threshold
      // (max-bandwidth x downtime-limit) holds, to an idle destination, as
      // a real completion does. A completion QEMU reaches on its own here
      // cannot be the run's: a guest dirtying slower than the cap is caught
      // up (QEMU sends what it dirties and syncs again), so it completed
      // with 82 KB to 390 KB, too little to time; right after an unlimited
      // first pass it waited on the destination's backlog (30 MB in 130 ms
      // where the run's 24 MiB took 20 ms).
      await source.qmp.execute("migrate-set-parameters", { "max-bandwidth": HOLD_BANDWIDTH });
      // Distinct pages, as calc-dirty-rate counted them over a second (a
      // hot set saturates: its writes land on the same pages), else every
      // write a new page.
      const dirtying = dirtyBytesPerSecond ?? Math.max(1, writesDuring) * GUEST_PAGE;
      const hold = (run.maxBandwidth * run.downtimeLimitMs) / dirtying;
      holding = true;
      heldAt = at;
      holdUntil = at + Math.min(HOLD_MAX_MS, hold);
    }
    if (
      (holding && at >= holdUntil) ||
      at > probeMs ||
      (passDone && !run) ||
      (capped && !holding && at > cappedAt + HOLD_MAX_MS)
    ) {
      // With the trickle's bandwidth a downtime-limit this long puts QEMU's
      // threshold (the last window's bandwidth x downtime-limit, computed
      // when a window closes: `migration_update_counters` in
      // migration/migration.c) above anything pending: it completes at its
      // next check with all the guest dirtied since its last sync.
      await source.qmp.execute("migrate-set-parameters", { "downtime-limit": COMPLETE_NOW_MS });
      completing = true;
      forcedAt = at;
    }
  }
  await destination.stop();
  // The guest's writes are counted up to the stop (QEMU's clock: total-time
  // less downtime), while it ran under migration.
  if (writesDuring === null) {
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
    firstPassRate(samples, forcedAt) ??
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
  const timed = downtimeMs >= MIN_COMPLETION_MS && bytes >= MIN_COMPLETION_BYTES;
  return {
    hostRate,
    completionRate: timed ? (bytes * 1000) / downtimeMs : hostRate,
    completion: { bytes, downtimeMs },
    startMs,
    intervals: pass.intervals,
    zeroScanRate: zeroScanRate(samples, forcedAt),
    resendRate: resendRate(
      samples.filter((x) => x.atMs <= Math.min(heldAt, forcedAt)),
      resendFrom,
    ),
    writesPerSecondDuring: writesDuring,
  };
}
