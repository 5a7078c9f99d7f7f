import type { MigrationRound, MigrationSummary, XbzrleCacheStats } from "../migration/stats.js";
import type { QemuMigrationInfo } from "./migrate-info.js";

/** One query-migrate answer and when it came, ms after `migrate` was sent. */
export interface MigrateSample {
  readonly atMs: number;
  readonly info: QemuMigrationInfo;
}

function ram(info: QemuMigrationInfo, key: string): number {
  return info.ram?.[key] ?? 0;
}

/**
 * Rebuilds rounds from samples: QEMU counts a dirty-log sync in
 * `ram.dirty-sync-count` (migration/ram.c: migration_bitmap_sync), and a
 * round here is the time between two syncs, as hvlab's own rounds are the
 * time between two harvests. The first sync is at setup; the last, when the
 * migration completed, is the stop-and-copy's.
 */
export function roundsFromSamples(samples: readonly MigrateSample[]): MigrationRound[] {
  const withSync = samples.filter((s) => s.info.ram !== undefined);
  const rounds: MigrationRound[] = [];
  let start: MigrateSample | undefined;
  let prevTransferred = 0;
  const close = (begin: MigrateSample, end: MigrateSample, last: boolean) => {
    const pageSize = ram(end.info, "page-size") || 4096;
    const transferred = ram(end.info, "transferred");
    const bytesSent = Math.max(0, transferred - prevTransferred);
    prevTransferred = transferred;
    const duration = Math.max(0, end.atMs - begin.atMs);
    const postcopy = begin.info.status.startsWith("postcopy");
    rounds.push({
      round: rounds.length + 1,
      phase: postcopy ? "postcopy" : "precopy",
      "start-ms": begin.atMs,
      "duration-ms": duration,
      "pages-sent": Math.round(bytesSent / pageSize),
      "pages-dirtied": Math.round(ram(end.info, "remaining") / pageSize),
      "bytes-sent": bytesSent,
      remaining: ram(end.info, "remaining"),
      transferred,
      "dirty-pages-rate": ram(end.info, "dirty-pages-rate"),
      // The last round: QEMU's own rate over the transfer (set at completion).
      mbps:
        duration > 0 && !last ? (bytesSent * 8) / 1e6 / (duration / 1000) : ram(end.info, "mbps"),
      "bandwidth-estimate": (ram(end.info, "mbps") * 1e6) / 8,
      "expected-downtime": end.info["expected-downtime"] ?? 0,
      "cpu-throttle-percentage": end.info["cpu-throttle-percentage"] ?? 0,
      decision: last
        ? end.info.status === "completed"
          ? "stop-and-copy"
          : "give-up"
        : end.info.status.startsWith("postcopy") && !postcopy
          ? "switch-to-postcopy"
          : "continue",
      reason: last
        ? `QEMU status ${end.info.status} at sync ${ram(end.info, "dirty-sync-count")}`
        : `QEMU synced the dirty log (dirty-sync-count ${ram(end.info, "dirty-sync-count")})`,
    });
  };
  for (const s of withSync) {
    if (!start) {
      start = s;
      continue;
    }
    const syncs = ram(s.info, "dirty-sync-count") - ram(start.info, "dirty-sync-count");
    if (syncs > 0) {
      close(start, s, false);
      // Syncs no sample fell between (QEMU's estimate-then-exact pair):
      // rounds of no length at the same sample, so rounds match syncs.
      for (let i = 1; i < syncs; i++) close(s, s, false);
      start = s;
    }
  }
  const last = withSync.at(-1);
  if (start && last) close(start, last, true);
  return rounds;
}

/** hvlab's status for QEMU's final one. */
function statusOf(info: QemuMigrationInfo): MigrationSummary["status"] {
  if (info.status === "completed") return "completed";
  return info.status === "failed" ? "failed" : "not-converged";
}

/** QEMU's final query-migrate as hvlab's summary (mode `qemu`, policy `qemu-real`). */
export function summaryFromInfo(
  info: QemuMigrationInfo,
  rounds: number,
  multifdChannels: number,
  reason: string | null,
): MigrationSummary {
  const x = info["xbzrle-cache"];
  const xbzrle: XbzrleCacheStats | null = x
    ? {
        "cache-size": x["cache-size"] ?? 0,
        bytes: x.bytes ?? 0,
        pages: x.pages ?? 0,
        "cache-miss": x["cache-miss"] ?? 0,
        "cache-miss-rate": x["cache-miss-rate"] ?? 0,
        "encoding-rate": x["encoding-rate"] ?? 0,
        overflow: x.overflow ?? 0,
      }
    : null;
  const totalTime = info["total-time"] ?? 0;
  return {
    status: statusOf(info),
    reason:
      reason ??
      (info.status === "completed" ? null : (info["error-desc"] ?? `QEMU status ${info.status}`)),
    mode: "qemu",
    policy: "qemu",
    transferred: ram(info, "transferred"),
    remaining: ram(info, "remaining"),
    total: ram(info, "total"),
    duplicate: ram(info, "duplicate"),
    normal: ram(info, "normal"),
    "normal-bytes": ram(info, "normal-bytes"),
    "dirty-pages-rate": ram(info, "dirty-pages-rate"),
    mbps: ram(info, "mbps"),
    "pages-per-second": ram(info, "pages-per-second"),
    "dirty-sync-count": ram(info, "dirty-sync-count"),
    "precopy-bytes": ram(info, "precopy-bytes"),
    "downtime-bytes": ram(info, "downtime-bytes"),
    "postcopy-bytes": ram(info, "postcopy-bytes"),
    "expected-downtime": info["expected-downtime"] ?? 0,
    downtime: info.downtime ?? 0,
    "setup-time": info["setup-time"] ?? 0,
    "total-time": totalTime,
    "cpu-throttle-percentage": info["cpu-throttle-percentage"] ?? 0,
    "xbzrle-cache": xbzrle,
    "postcopy-remote-faults": ram(info, "postcopy-requests"),
    "postcopy-fault-wait-ms": 0,
    "postcopy-requests": ram(info, "postcopy-requests"),
    rounds,
    verified: null,
    "multifd-channels": multifdChannels,
    "multifd-bytes": ram(info, "multifd-bytes"),
  };
}
