import type {
  MigrationResult,
  MigrationRound,
  MigrationSummary,
  XbzrleCacheStats,
} from "./stats.js";

/*
 * QEMU's query-migrate layout (qapi/migration.json, MigrationInfo): the
 * status, times and throttle at the top, RAM counters under `ram`
 * (MigrationStats), XBZRLE's under `xbzrle-cache` (present only when it is
 * on). What QEMU does not report (the stop rule's reason, the policy, the
 * verification) goes under `hvlab`. docs/migration.md maps every key.
 */

/*
 * The fields are the flat summary's and round's (stats.ts), picked by name:
 * each is declared once, there, and a field renamed or retyped there shows
 * here as a type error, not as a second copy that drifts.
 */

/**
 * QEMU's MigrationStats: the RAM counters (`mbps` is the rate of the last
 * round, QEMU's current rate, Mbit/s). Counters the summary may leave out
 * are always present here (0 when unused), as QEMU reports them.
 */
export interface QueryMigrateRam
  extends Pick<
      MigrationSummary,
      | "transferred"
      | "remaining"
      | "total"
      | "duplicate"
      | "normal"
      | "normal-bytes"
      | "dirty-pages-rate"
      | "mbps"
      | "dirty-sync-count"
      | "pages-per-second"
      | "precopy-bytes"
      | "downtime-bytes"
      | "postcopy-bytes"
    >,
    Required<Pick<MigrationSummary, "multifd-bytes" | "postcopy-requests">> {
  readonly "page-size": number;
}

/** hvlab's own figures of a run, beside QEMU's. */
export interface QueryMigrateHvlab
  extends Pick<
    MigrationSummary,
    | "reason"
    | "mode"
    | "policy"
    | "rounds"
    | "verified"
    | "postcopy-remote-faults"
    | "postcopy-fault-wait-ms"
    | "postcopy-recovery"
    | "multifd-channels"
    | "multifd-packets"
    | "xbzrle-unchanged-pages"
    | "warning"
  > {
  /** The downtime passed the downtime-limit (the status stays `completed`). */
  readonly downtimeOverLimit?: boolean;
}

/** A run's summary in query-migrate's layout. */
export interface QueryMigrateSummary
  extends Pick<
    MigrationSummary,
    | "status"
    | "total-time"
    | "downtime"
    | "expected-downtime"
    | "setup-time"
    | "cpu-throttle-percentage"
    | "postcopy-blocktime"
    | "postcopy-vcpu-blocktime"
  > {
  readonly ram: QueryMigrateRam;
  readonly "xbzrle-cache"?: XbzrleCacheStats;
  readonly hvlab: QueryMigrateHvlab;
}

/** QEMU's status while a round of the phase runs. */
const PHASE_STATUS: Readonly<Record<MigrationRound["phase"], string>> = {
  setup: "setup",
  precopy: "active",
  "stop-and-copy": "device",
  postcopy: "postcopy-active",
  resume: "device",
};

/** One round as query-migrate would report it when the round ended. */
export interface QueryMigrateRound
  extends Pick<MigrationRound, "expected-downtime" | "cpu-throttle-percentage"> {
  readonly status: string;
  readonly "total-time": number;
  readonly ram: Pick<MigrationRound, "transferred" | "remaining" | "dirty-pages-rate" | "mbps">;
  readonly hvlab: Pick<
    MigrationRound,
    | "round"
    | "phase"
    | "start-ms"
    | "duration-ms"
    | "pages-sent"
    | "pages-dirtied"
    | "bytes-sent"
    | "bandwidth-estimate"
    | "decision"
    | "reason"
  >;
}

/** A round in query-migrate's layout. */
export function queryMigrateRound(r: MigrationRound): QueryMigrateRound {
  return {
    status: PHASE_STATUS[r.phase],
    "total-time": r["start-ms"] + r["duration-ms"],
    "expected-downtime": r["expected-downtime"],
    "cpu-throttle-percentage": r["cpu-throttle-percentage"],
    ram: {
      transferred: r.transferred,
      remaining: r.remaining,
      "dirty-pages-rate": r["dirty-pages-rate"],
      mbps: r.mbps,
    },
    hvlab: {
      round: r.round,
      phase: r.phase,
      "start-ms": r["start-ms"],
      "duration-ms": r["duration-ms"],
      "pages-sent": r["pages-sent"],
      "pages-dirtied": r["pages-dirtied"],
      "bytes-sent": r["bytes-sent"],
      "bandwidth-estimate": r["bandwidth-estimate"],
      decision: r.decision,
      reason: r.reason,
    },
  };
}

/** A run's summary in query-migrate's layout; `pageBytes` is the guest's page size. */
export function queryMigrateSummary(
  result: MigrationResult,
  pageBytes: number,
): QueryMigrateSummary {
  const s = result.summary;
  const last = result.rounds.at(-1);
  const xbzrle = s["xbzrle-cache"];
  return {
    status: s.status,
    "total-time": s["total-time"],
    downtime: s.downtime,
    "expected-downtime": s["expected-downtime"],
    "setup-time": s["setup-time"],
    "cpu-throttle-percentage": s["cpu-throttle-percentage"],
    ram: {
      transferred: s.transferred,
      remaining: s.remaining,
      total: s.total,
      duplicate: s.duplicate,
      normal: s.normal,
      "normal-bytes": s["normal-bytes"],
      "dirty-pages-rate": s["dirty-pages-rate"],
      mbps: last?.mbps ?? 0,
      "dirty-sync-count": s["dirty-sync-count"],
      "page-size": pageBytes,
      "multifd-bytes": s["multifd-bytes"] ?? 0,
      "pages-per-second": s["pages-per-second"],
      "precopy-bytes": s["precopy-bytes"],
      "downtime-bytes": s["downtime-bytes"],
      "postcopy-bytes": s["postcopy-bytes"],
      "postcopy-requests": s["postcopy-requests"] ?? 0,
    },
    ...(xbzrle ? { "xbzrle-cache": xbzrle } : {}),
    ...(s["postcopy-bytes"] > 0 && s["postcopy-vcpu-blocktime"]
      ? {
          "postcopy-blocktime": s["postcopy-blocktime"] ?? 0,
          "postcopy-vcpu-blocktime": s["postcopy-vcpu-blocktime"],
        }
      : {}),
    hvlab: {
      reason: s.reason,
      mode: s.mode,
      policy: s.policy,
      rounds: s.rounds,
      verified: s.verified,
      "postcopy-remote-faults": s["postcopy-remote-faults"],
      "postcopy-fault-wait-ms": s["postcopy-fault-wait-ms"],
      ...(s["postcopy-recovery"] ? { "postcopy-recovery": s["postcopy-recovery"] } : {}),
      ...(s["multifd-channels"] !== undefined ? { "multifd-channels": s["multifd-channels"] } : {}),
      ...(s["multifd-packets"] !== undefined ? { "multifd-packets": s["multifd-packets"] } : {}),
      ...(s["xbzrle-unchanged-pages"] !== undefined
        ? { "xbzrle-unchanged-pages": s["xbzrle-unchanged-pages"] }
        : {}),
      ...(s["downtime-over-limit"] !== undefined
        ? { downtimeOverLimit: s["downtime-over-limit"] }
        : {}),
      ...(s.warning ? { warning: s.warning } : {}),
    },
  };
}

/** A whole result in query-migrate's layout: what `--json` prints. */
export function toQueryMigrate(
  result: MigrationResult,
  pageBytes: number,
): { rounds: QueryMigrateRound[]; summary: QueryMigrateSummary } {
  return {
    rounds: result.rounds.map(queryMigrateRound),
    summary: queryMigrateSummary(result, pageBytes),
  };
}

/**
 * Flattens a nested record into dotted keys (`ram.transferred`), for CSV
 * columns; nested records keep their keys' order.
 */
export function flattenDotted(record: object, prefix = ""): Record<string, string | number | null> {
  const flat: Record<string, string | number | null> = {};
  for (const [key, value] of Object.entries(record)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (value !== null && typeof value === "object")
      Object.assign(flat, flattenDotted(value, name));
    else
      flat[name] = typeof value === "boolean" ? String(value) : (value as string | number | null);
  }
  return flat;
}
