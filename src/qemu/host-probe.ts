import { readGuestStatus } from "./guest-status.js";
import { FINAL_STATUSES, parseMigrationInfo, type QemuMigrationInfo } from "./migrate-info.js";
import { freeLoopbackPort, type QemuLaunch, QemuProcess } from "./qemu-process.js";

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
  /** The guest's writes per second while the probe migrated it. */
  readonly writesPerSecondDuring: number;
}

/** The probe saw no interval it could measure a rate over. */
export class HostProbeError extends Error {
  override name = "HostProbeError";
}

/** An interval counts when at least this share of its bytes were normal pages. */
const NORMAL_SHARE = 0.9;
/** max-bandwidth for "no rate limit" (QEMU takes any uint64; 1 TiB/s is never reached). */
const UNLIMITED = 2 ** 40;
/** Intervals of mostly normal pages measured while the guest runs. */
const RUNNING_INTERVALS = 4;
/**
 * The completion is started with about this much of the working set still
 * to send: enough for a rate, little enough that the source's monitor
 * (blocked while QEMU completes) answers again soon.
 */
const COMPLETION_TARGET_BYTES = 48 * 1024 ** 2;
/** How long the source's monitor may take to answer while QEMU completes, ms. */
const COMPLETION_WAIT_MS = 60_000;
/** downtime-limit that makes QEMU complete at its next check (QEMU's largest is 2000 s). */
const COMPLETE_NOW_MS = 2_000_000;
/** Fewer bytes than this in the completion cannot give a rate. */
const MIN_COMPLETION_BYTES = 4 * 1024 ** 2;
/** A completion quicker than this is below the resolution of QEMU's downtime (whole ms). */
const MIN_COMPLETION_MS = 5;

interface Point {
  readonly at: number;
  readonly transferred: number;
  readonly normalBytes: number;
}

/**
 * Migrates the running guest to a throw-away destination with no rate limit
 * and downtime-limit 1 ms (so it does not complete), samples query-migrate
 * every `sampleMs` through the first pass while the guest runs, then raises
 * downtime-limit so that QEMU completes at once, sending the rest of the
 * pass with the guest stopped, as it sends the last pages of any migration.
 * The rates QEMU reaches are the host's (under TCG the vCPU and the
 * migration thread share the cores); the write counter's rate meanwhile is
 * the guest's slowdown under migration. The source ends migrated (it was a
 * measurement guest); the destination it starts is pushed to `started`.
 */
export async function probeHost(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
  workingSetBytes: number,
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
  let intervals = 0;
  let first: Point | undefined;
  let lastGood: Point | undefined;
  const active: Point[] = [];
  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  let writesDuring = 0;
  let completing = false;
  await source.qmp.execute("migrate", { uri });
  let last: Point | undefined;
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
    // Only the first pass (one sync, at setup) runs flat out.
    if (!completing && last && (ram["dirty-sync-count"] ?? 0) <= 1) {
      const bytes = now.transferred - last.transferred;
      const normal = now.normalBytes - last.normalBytes;
      if (bytes > 0 && normal >= bytes * NORMAL_SHARE) {
        intervals++;
        first ??= last;
        lastGood = now;
      }
    }
    last = now;
    const nearEnd = now.normalBytes >= workingSetBytes - COMPLETION_TARGET_BYTES;
    if (!completing && ((intervals >= RUNNING_INTERVALS && nearEnd) || at > probeMs)) {
      const status = await readGuestStatus(source.qmp);
      writesDuring = ((status.writes - before.writes) * 1000) / (performance.now() - t0);
      await source.qmp.execute("migrate-set-parameters", { "downtime-limit": COMPLETE_NOW_MS });
      completing = true;
    }
  }
  await destination.stop();
  if (!first || !lastGood || lastGood.at <= first.at)
    throw new HostProbeError(
      `in ${probeMs} ms of migrating with no rate limit no ${sampleMs} ms interval of the first pass carried mostly normal pages: make the working set larger or the probe longer`,
    );
  const hostRate = ((lastGood.transferred - first.transferred) * 1000) / (lastGood.at - first.at);
  // Where the line through the first full-speed sample at the host's rate
  // meets zero bytes: the time before pages flowed.
  const startMs = Math.max(0, first.at - (first.transferred * 1000) / hostRate);
  // The completion's bytes: all that went after the last sample before the
  // stop (QEMU's clock: total-time less downtime), less what pre-copy still
  // sent between that sample and the stop (at the host's rate).
  const downtimeMs = final.downtime ?? 0;
  const stopAt = (final["total-time"] ?? 0) - downtimeMs;
  const lastRunning = active.filter((p) => p.at <= stopAt).at(-1) ?? first;
  const bytes =
    (final.ram?.transferred ?? 0) -
    lastRunning.transferred -
    (hostRate * Math.max(0, stopAt - lastRunning.at)) / 1000;
  // A completion too small or too quick for QEMU's millisecond clock to
  // time (a few MiB in 1 ms on a quiet host) gives no rate of its own: the
  // last pages then go at no slower than the unthrottled rate just measured.
  const timed = downtimeMs >= MIN_COMPLETION_MS && bytes >= MIN_COMPLETION_BYTES;
  return {
    hostRate,
    completionRate: timed ? (bytes * 1000) / downtimeMs : hostRate,
    completion: { bytes, downtimeMs },
    startMs,
    intervals,
    writesPerSecondDuring: writesDuring,
  };
}
