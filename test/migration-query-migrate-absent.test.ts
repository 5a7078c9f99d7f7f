/*
 * query-migrate leaves out what a run did not measure: no key at all, not a
 * key holding undefined (JSON would drop it, but a CSV column or a reader
 * that lists keys would not), and `mbps` is the last round's of any number.
 */
import { describe, expect, it } from "vitest";
import { queryMigrateSummary } from "../src/migration/query-migrate.js";
import type { MigrationRound, MigrationSummary } from "../src/migration/stats.js";

const SUMMARY = {
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
} satisfies MigrationSummary;

describe("what a run did not measure", () => {
  it("has no key under hvlab", () => {
    const hvlab = queryMigrateSummary({ rounds: [], summary: SUMMARY }, 4096).hvlab;
    expect(Object.keys(hvlab)).toEqual([
      "reason",
      "mode",
      "policy",
      "rounds",
      "verified",
      "postcopy-remote-faults",
      "postcopy-fault-wait-ms",
    ]);
  });

  it("mbps is the last of three rounds'", () => {
    const rounds = [10, 20, 30].map((mbps, i) => ({ round: i + 1, mbps }) as MigrationRound);
    expect(queryMigrateSummary({ rounds, summary: SUMMARY }, 4096).ram.mbps).toBe(30);
  });
});
