/*
 * query-migrate leaves out what a run did not measure: no key at all, not a
 * key holding undefined (JSON would drop it, but a CSV column or a reader
 * that lists keys would not), and `mbps` is the last round's of any number.
 */
import { describe, expect, it } from "vitest";
import { queryMigrateSummary } from "../src/migration/query-migrate.js";
import type { MigrationRound } from "../src/migration/stats.js";
import { EMPTY_SUMMARY } from "./support/migration-summary.js";

const SUMMARY = EMPTY_SUMMARY;

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
