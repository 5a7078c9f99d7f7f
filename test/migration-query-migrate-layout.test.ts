/*
 * query-migrate's layout (QEMU's qapi/migration.json, MigrationInfo and
 * MigrationStats) from a run's flat records, on a result made by hand so
 * that each field is seen to come from its own source: the status, times
 * and throttle at the top, the RAM counters under `ram`, XBZRLE's block only
 * when it was on, post-copy's blocktimes only after a post-copy, and
 * hvlab's own figures under `hvlab`.
 */
import { describe, expect, it } from "vitest";
import {
  flattenDotted,
  queryMigrateRound,
  queryMigrateSummary,
  toQueryMigrate,
} from "../src/migration/query-migrate.js";
import type { MigrationResult, MigrationRound, MigrationSummary } from "../src/migration/stats.js";

function round(n: number, phase: MigrationRound["phase"]): MigrationRound {
  return {
    round: n,
    phase,
    "start-ms": 100 * n,
    "duration-ms": 40 + n,
    "pages-sent": 1000 + n,
    "pages-dirtied": 2000 + n,
    "bytes-sent": 3000 + n,
    remaining: 4000 + n,
    transferred: 5000 + n,
    "dirty-pages-rate": 6000 + n,
    mbps: 70 + n,
    "bandwidth-estimate": 8000 + n,
    "expected-downtime": 90 + n,
    "cpu-throttle-percentage": 10 + n,
    decision: "continue",
    reason: `reason ${n}`,
  };
}

const SUMMARY: MigrationSummary = {
  status: "completed",
  reason: null,
  mode: "content",
  policy: "qemu",
  transferred: 1,
  remaining: 2,
  total: 3,
  duplicate: 4,
  normal: 5,
  "normal-bytes": 6,
  "dirty-pages-rate": 7,
  mbps: 8,
  "pages-per-second": 9,
  "dirty-sync-count": 10,
  "precopy-bytes": 11,
  "downtime-bytes": 12,
  "postcopy-bytes": 0,
  "expected-downtime": 14,
  downtime: 15,
  "setup-time": 16,
  "total-time": 17,
  "cpu-throttle-percentage": 18,
  "xbzrle-cache": null,
  "postcopy-remote-faults": 19,
  "postcopy-fault-wait-ms": 20,
  rounds: 2,
  verified: true,
};

const RESULT: MigrationResult = {
  rounds: [round(1, "precopy"), round(2, "stop-and-copy")],
  summary: SUMMARY,
};

describe("a round in query-migrate's layout", () => {
  it("QEMU's status for each phase", () => {
    const status = (phase: MigrationRound["phase"]) => queryMigrateRound(round(1, phase)).status;
    expect(status("setup")).toBe("setup");
    expect(status("precopy")).toBe("active");
    expect(status("stop-and-copy")).toBe("device");
    expect(status("postcopy")).toBe("postcopy-active");
    expect(status("resume")).toBe("device");
  });

  it("each field from its own, the total time at the round's end", () => {
    expect(queryMigrateRound(round(3, "precopy"))).toEqual({
      status: "active",
      "total-time": 343,
      "expected-downtime": 93,
      "cpu-throttle-percentage": 13,
      ram: { transferred: 5003, remaining: 4003, "dirty-pages-rate": 6003, mbps: 73 },
      hvlab: {
        round: 3,
        phase: "precopy",
        "start-ms": 300,
        "duration-ms": 43,
        "pages-sent": 1003,
        "pages-dirtied": 2003,
        "bytes-sent": 3003,
        "bandwidth-estimate": 8003,
        decision: "continue",
        reason: "reason 3",
      },
    });
  });
});

describe("a summary in query-migrate's layout", () => {
  it("each field from its own; mbps the last round's; the counters a run left out as 0", () => {
    expect(queryMigrateSummary(RESULT, 4096)).toEqual({
      status: "completed",
      "total-time": 17,
      downtime: 15,
      "expected-downtime": 14,
      "setup-time": 16,
      "cpu-throttle-percentage": 18,
      ram: {
        transferred: 1,
        remaining: 2,
        total: 3,
        duplicate: 4,
        normal: 5,
        "normal-bytes": 6,
        "dirty-pages-rate": 7,
        mbps: 72,
        "dirty-sync-count": 10,
        "page-size": 4096,
        "multifd-bytes": 0,
        "pages-per-second": 9,
        "precopy-bytes": 11,
        "downtime-bytes": 12,
        "postcopy-bytes": 0,
        "postcopy-requests": 0,
      },
      hvlab: {
        reason: null,
        mode: "content",
        policy: "qemu",
        rounds: 2,
        verified: true,
        "postcopy-remote-faults": 19,
        "postcopy-fault-wait-ms": 20,
      },
    });
  });

  it("no rounds: mbps 0", () => {
    expect(queryMigrateSummary({ rounds: [], summary: SUMMARY }, 4096).ram.mbps).toBe(0);
  });

  it("the optional figures when the run has them", () => {
    const xbzrle = {
      "cache-size": 1,
      bytes: 2,
      pages: 3,
      "cache-miss": 4,
      "cache-miss-rate": 0.5,
      "encoding-rate": 6,
      overflow: 7,
    };
    const summary = queryMigrateSummary(
      {
        rounds: RESULT.rounds,
        summary: {
          ...SUMMARY,
          status: "not-converged",
          reason: "why",
          "xbzrle-cache": xbzrle,
          "multifd-bytes": 21,
          "postcopy-requests": 22,
          "multifd-channels": 0,
          "multifd-packets": 0,
          "xbzrle-unchanged-pages": 0,
          "downtime-over-limit": false,
          warning: "the device state",
        },
      },
      65536,
    );
    expect(summary["xbzrle-cache"]).toEqual(xbzrle);
    expect(summary.ram).toMatchObject({
      "page-size": 65536,
      "multifd-bytes": 21,
      "postcopy-requests": 22,
    });
    expect(summary.hvlab).toEqual({
      reason: "why",
      mode: "content",
      policy: "qemu",
      rounds: 2,
      verified: true,
      "postcopy-remote-faults": 19,
      "postcopy-fault-wait-ms": 20,
      // Zeros and false are figures, kept.
      "multifd-channels": 0,
      "multifd-packets": 0,
      "xbzrle-unchanged-pages": 0,
      downtimeOverLimit: false,
      warning: "the device state",
    });
    expect(summary).not.toHaveProperty("postcopy-blocktime");
  });

  it("an empty warning is left out, as is no XBZRLE block", () => {
    const summary = queryMigrateSummary({ rounds: [], summary: { ...SUMMARY, warning: "" } }, 4096);
    expect(summary.hvlab).not.toHaveProperty("warning");
    expect(summary).not.toHaveProperty("xbzrle-cache");
  });

  it("post-copy's blocktimes only after a post-copy that measured them", () => {
    const postcopy = { ...SUMMARY, "postcopy-bytes": 1, "postcopy-vcpu-blocktime": [3, 4] };
    expect(
      queryMigrateSummary({ rounds: [], summary: { ...postcopy, "postcopy-blocktime": 2 } }, 4096),
    ).toMatchObject({ "postcopy-blocktime": 2, "postcopy-vcpu-blocktime": [3, 4] });
    // No figure of the whole: 0.
    expect(queryMigrateSummary({ rounds: [], summary: postcopy }, 4096)).toMatchObject({
      "postcopy-blocktime": 0,
      "postcopy-vcpu-blocktime": [3, 4],
    });
    // No post-copy bytes, or no per-vCPU figures: neither key.
    for (const s of [
      { ...postcopy, "postcopy-bytes": 0 },
      { ...SUMMARY, "postcopy-bytes": 1, "postcopy-blocktime": 2 },
    ]) {
      const out = queryMigrateSummary({ rounds: [], summary: s }, 4096);
      expect(out).not.toHaveProperty("postcopy-blocktime");
      expect(out).not.toHaveProperty("postcopy-vcpu-blocktime");
    }
  });

  it("a whole result: every round and the summary", () => {
    const whole = toQueryMigrate(RESULT, 4096);
    expect(whole.rounds).toEqual(RESULT.rounds.map(queryMigrateRound));
    expect(whole.summary).toEqual(queryMigrateSummary(RESULT, 4096));
    expect(Object.keys(whole)).toEqual(["rounds", "summary"]);
  });
});

describe("dotted keys for CSV columns", () => {
  it("flattens nested records in order, booleans as text, null and numbers kept", () => {
    expect(
      flattenDotted({ a: 1, ram: { b: "x", deep: { c: null } }, ok: true, no: false, d: 2 }),
    ).toEqual({ a: 1, "ram.b": "x", "ram.deep.c": null, ok: "true", no: "false", d: 2 });
    expect(Object.keys(flattenDotted({ z: 1, ram: { y: 2, x: 3 }, a: 4 }))).toEqual([
      "z",
      "ram.y",
      "ram.x",
      "a",
    ]);
    expect(flattenDotted({ b: 1 }, "top")).toEqual({ "top.b": 1 });
    expect(flattenDotted({ list: [5, 6] })).toEqual({ "list.0": 5, "list.1": 6 });
  });
});
