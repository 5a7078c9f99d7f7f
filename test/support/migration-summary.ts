import type { MigrationSummary } from "../../src/migration/stats.js";

/**
 * A completed run's summary that measured nothing: every counter zero and
 * every optional figure absent, for tests that set only what they check.
 */
export const EMPTY_SUMMARY = {
  status: "completed",
  reason: null,
  mode: "metadata",
  policy: "xen",
  transferred: 0,
  remaining: 0,
  total: 0,
  duplicate: 0,
  normal: 0,
  "normal-bytes": 0,
  "dirty-pages-rate": 0,
  mbps: 0,
  "pages-per-second": 0,
  "dirty-sync-count": 0,
  "precopy-bytes": 0,
  "downtime-bytes": 0,
  "postcopy-bytes": 0,
  "expected-downtime": 0,
  downtime: 0,
  "setup-time": 0,
  "total-time": 0,
  "cpu-throttle-percentage": 0,
  "xbzrle-cache": null,
  "postcopy-remote-faults": 0,
  "postcopy-fault-wait-ms": 0,
  rounds: 3,
  verified: null,
} as const satisfies MigrationSummary;
