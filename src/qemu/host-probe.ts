import { readGuestStatus } from "./guest-status.js";
import { FINAL_STATUSES, parseMigrationInfo } from "./migrate-info.js";
import { freeLoopbackPort, type QemuLaunch, QemuProcess } from "./qemu-process.js";

/** What a short migration with no rate limit showed about this host. */
export interface HostProbe {
  /**
   * Bytes per second QEMU's migration thread sent with no rate limit while
   * the guest ran: the median over the sampling intervals of the first pass
   * that carried mostly normal pages (an interval through the zero pages
   * outside the working set moves pages, not bytes).
   */
  readonly hostRate: number;
  /** The same with the vCPUs stopped (QMP `stop`), as at completion. */
  readonly pausedRate: number;
  /**
   * How long after `migrate` the pages began to flow at the host's rate,
   * ms: QEMU's setup, starting the dirty log, and the first pass over the
   * low memory before the working set.
   */
  readonly startMs: number;
  /** Sampling intervals each median was taken over. */
  readonly intervals: { readonly running: number; readonly paused: number };
  /** The guest's writes per second while the probe migrated it (before `stop`). */
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
/** Intervals measured in each phase. */
const RUNNING_INTERVALS = 5;
const PAUSED_INTERVALS = 3;

interface Point {
  readonly at: number;
  readonly transferred: number;
  readonly normalBytes: number;
}

function median(values: number[]): number {
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] ?? 0) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

/**
 * Migrates the running guest to a throw-away destination with no rate limit
 * and downtime-limit 1 ms, samples query-migrate every `sampleMs` through
 * the first pass: first with the guest running, then stopped (QMP `stop`),
 * and cancels, all within `probeMs`. The rates QEMU reaches are the host's
 * (under TCG the vCPU and the migration thread share the cores); the write
 * counter's rate meanwhile is the guest's slowdown under migration. Leaves
 * the source stopped (it was a measurement guest); the destination it
 * starts is pushed to `started`.
 */
export async function probeHost(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
  sampleMs = 25,
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
  const running: number[] = [];
  const paused: number[] = [];
  let first: { interval: Point; rate: number } | undefined;
  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  let stoppedAt: number | null = null;
  let writesDuring = 0;
  await source.qmp.execute("migrate", { uri });
  let last: Point | undefined;
  for (;;) {
    await new Promise((r) => setTimeout(r, sampleMs));
    const info = parseMigrationInfo(await source.qmp.execute("query-migrate"));
    const at = performance.now() - t0;
    const ram = info.ram;
    // Only the first pass (one sync, at setup) runs flat out; with the vCPUs
    // stopped it may end in a completion, which is as good a sample.
    if (!ram || (ram["dirty-sync-count"] ?? 0) > 1 || FINAL_STATUSES.has(info.status)) {
      if (info.status === "failed")
        throw new HostProbeError(
          `the probe migration failed${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`,
        );
      if (last) break;
      if (at > probeMs) break;
      continue;
    }
    const now = { at, transferred: ram.transferred ?? 0, normalBytes: ram["normal-bytes"] ?? 0 };
    if (last && (stoppedAt === null || last.at >= stoppedAt)) {
      const bytes = now.transferred - last.transferred;
      const normal = now.normalBytes - last.normalBytes;
      if (bytes > 0 && normal >= bytes * NORMAL_SHARE) {
        const rate = (bytes * 1000) / (now.at - last.at);
        (stoppedAt === null ? running : paused).push(rate);
        if (!first) first = { interval: now, rate };
      }
    }
    last = now;
    if (stoppedAt === null && (running.length >= RUNNING_INTERVALS || at > probeMs / 2)) {
      const status = await readGuestStatus(source.qmp);
      writesDuring = ((status.writes - before.writes) * 1000) / (performance.now() - t0);
      await source.qmp.execute("stop");
      stoppedAt = performance.now() - t0;
      // The interval the stop fell in is neither phase's.
      last = undefined;
    } else if (stoppedAt !== null && paused.length >= PAUSED_INTERVALS) break;
    if (at > probeMs) break;
  }
  const info = parseMigrationInfo(await source.qmp.execute("query-migrate"));
  if (!FINAL_STATUSES.has(info.status)) {
    await source.qmp.execute("migrate_cancel");
    for (let i = 0; i < 100; i++) {
      const now = parseMigrationInfo(await source.qmp.execute("query-migrate"));
      if (FINAL_STATUSES.has(now.status)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  await destination.stop();
  if (!first || running.length === 0 || paused.length === 0)
    throw new HostProbeError(
      `in ${probeMs} ms of migrating with no rate limit the first pass gave ${running.length} running and ${paused.length} paused ${sampleMs} ms intervals of mostly normal pages (need one of each): make the working set larger or the probe longer`,
    );
  const hostRate = median(running);
  // Where the line through the first full-speed sample at the host's rate
  // meets zero bytes: the time before pages flowed.
  const startMs = Math.max(0, first.interval.at - (first.interval.transferred * 1000) / hostRate);
  return {
    hostRate,
    pausedRate: median(paused),
    startMs,
    intervals: { running: running.length, paused: paused.length },
    writesPerSecondDuring: writesDuring,
  };
}
