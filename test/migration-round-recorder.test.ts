/*
 * The round recorder (src/migration/precopy/recorder.ts): each round and the
 * run's summary as QEMU names and computes them (qapi/migration.json,
 * MigrationStats). The rates follow QEMU's migration/migration.c
 * (migration_update_counters: mbps = transferred x 8 / seconds / 1e6,
 * expected_downtime = remaining / bandwidth, pages_per_second = pages /
 * seconds) and migration/ram.c (migration_update_rates: dirty_pages_rate =
 * pages dirtied in the period / its seconds); `remaining` is
 * ram_bytes_remaining(), dirty pages x page size, and `normal-bytes` is
 * normal pages x page size (qmp_query_migrate's populate_ram_info). A
 * round of no time has no rate (0, not Infinity or NaN), and a bandwidth
 * the link never measured has no estimate.
 */
import { describe, expect, it } from "vitest";
import {
  type RoundFacts,
  RoundRecorder,
  type RunFacts,
} from "../src/migration/precopy/recorder.js";
import type { PrecopyClock, TransportCounters } from "../src/migration/precopy/types.js";
import type { MigrationRound } from "../src/migration/stats.js";

const PAGE = 4096;
const RAM = 64 * 1024 ** 2;

/** A clock that reads what the test sets. */
function clockAt(ms: number): PrecopyClock & { at: number } {
  return {
    kind: "virtual",
    at: ms,
    now() {
      return this.at;
    },
  };
}

/** A round of 2 s, 25,000 pages (100 MB) sent, 5,000 dirtied, 1,000 left, at 50 MB/s. */
const ROUND: RoundFacts = {
  phase: "precopy",
  start: 1000,
  end: 3000,
  sent: { pages: 25_000, bytes: 100_000_000 },
  pagesDirtied: 5000,
  remainingPages: 1000,
  transferred: 150_000_000,
  bandwidth: 50_000_000,
  throttle: 20,
  decision: "continue",
  reason: "pending 3.9 MiB > bandwidth x downtime-limit 1.0 MiB",
};

const COUNTERS: TransportCounters = { duplicate: 300, normal: 16_000, xbzrle: null };

/** A run of 4 s that sent 200 MB in 40,000 pages. */
const RUN: RunFacts = {
  status: "completed",
  reason: null,
  policy: "qemu",
  transferred: 200_000_000,
  remainingPages: 7,
  pagesSent: 40_000,
  syncs: 5,
  dirtyPagesRate: 2500,
  precopyBytes: 190_000_000,
  downtimeBytes: 10_000_000,
  postcopyBytes: 0,
  expectedDowntime: 12.5,
  downtime: 80,
  setupTime: 3,
  throttle: 30,
  requests: 0,
  faultWaitMs: 0,
  blocktime: 0,
  vcpuBlocktime: [],
  verified: true,
  counters: COUNTERS,
  totalTime: 4000,
  overLimit: false,
  warning: null,
};

describe("a round as QEMU counts it", () => {
  it("gives each field from its own fact, the rates per second of the round", () => {
    const seen: MigrationRound[] = [];
    const recorder = new RoundRecorder(clockAt(99_999), PAGE, RAM, (round) => seen.push(round));
    const round = recorder.record(ROUND);
    expect(round).toEqual({
      round: 1,
      phase: "precopy",
      "start-ms": 1000,
      "duration-ms": 2000,
      "pages-sent": 25_000,
      "pages-dirtied": 5000,
      "bytes-sent": 100_000_000,
      // 1,000 dirty pages of 4 KiB.
      remaining: 4_096_000,
      transferred: 150_000_000,
      // 5,000 pages dirtied in 2 s.
      "dirty-pages-rate": 2500,
      // 100 MB x 8 in 2 s: 400 Mbit/s.
      mbps: 400,
      "bandwidth-estimate": 50_000_000,
      // 4,096,000 bytes at 50 MB/s: 81.92 ms.
      "expected-downtime": 81.92,
      "cpu-throttle-percentage": 20,
      decision: "continue",
      reason: "pending 3.9 MiB > bandwidth x downtime-limit 1.0 MiB",
    });
    expect(seen).toEqual([round]);
    expect(seen[0]).toBe(round);
    expect(recorder.rounds).toEqual([round]);
  });

  it("ends a round without an end at the clock's now, and numbers the rounds from 1", () => {
    const clock = clockAt(1500);
    const recorder = new RoundRecorder(clock, PAGE, RAM);
    const { end: _end, ...open } = ROUND;
    const first = recorder.record(open);
    expect(first["duration-ms"]).toBe(500);
    expect(first["dirty-pages-rate"]).toBe(10_000);
    expect(first.mbps).toBe(1600);
    clock.at = 7000;
    const second = recorder.record({ ...open, start: 3000, phase: "stop-and-copy" });
    expect(second.round).toBe(2);
    expect(second.phase).toBe("stop-and-copy");
    expect(second["duration-ms"]).toBe(4000);
    expect(recorder.rounds.map((r) => r.round)).toEqual([1, 2]);
  });

  it("gives a round of no time no rates, not Infinity or NaN", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    const instant = recorder.record({ ...ROUND, start: 3000, end: 3000 });
    expect(instant["duration-ms"]).toBe(0);
    expect(instant["dirty-pages-rate"]).toBe(0);
    expect(instant.mbps).toBe(0);
    const nothing = recorder.record({
      ...ROUND,
      start: 3000,
      end: 3000,
      pagesDirtied: 0,
      sent: { pages: 0, bytes: 0 },
    });
    expect(nothing["dirty-pages-rate"]).toBe(0);
    expect(nothing.mbps).toBe(0);
  });

  it("has no bandwidth estimate and no expected downtime for a rate never measured", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    // MAX_VALUE: unthrottled and unmeasured; 0, negative, NaN and Infinity: no rate.
    for (const bandwidth of [
      Number.MAX_VALUE,
      0,
      -50_000_000,
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ]) {
      const round = recorder.record({ ...ROUND, bandwidth });
      expect(round["bandwidth-estimate"], String(bandwidth)).toBe(0);
      expect(round["expected-downtime"], String(bandwidth)).toBe(0);
    }
    // Just under MAX_VALUE is a rate, however large.
    const huge = recorder.record({ ...ROUND, bandwidth: Number.MAX_VALUE / 2 });
    expect(huge["bandwidth-estimate"]).toBe(Number.MAX_VALUE / 2);
    expect(huge["expected-downtime"]).toBe(((1000 * PAGE) / (Number.MAX_VALUE / 2)) * 1000);
    // A slow link of 1 byte/s: 4,096,000 bytes take 4,096,000 s.
    const slow = recorder.record({ ...ROUND, bandwidth: 1 });
    expect(slow["bandwidth-estimate"]).toBe(1);
    expect(slow["expected-downtime"]).toBe(4_096_000_000);
    // 2 MiB pages: the remaining bytes, and so the downtime, follow the page size.
    const large = new RoundRecorder(clockAt(0), 2 * 1024 ** 2, RAM).record({
      ...ROUND,
      remainingPages: 3,
      bandwidth: 6 * 1024 ** 2,
    });
    expect(large.remaining).toBe(6 * 1024 ** 2);
    expect(large["expected-downtime"]).toBe(1000);
  });
});

describe("the run's summary as QEMU counts it", () => {
  it("gives each field from its own fact, the rates over the total time", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    recorder.record(ROUND);
    recorder.record({ ...ROUND, start: 3000, end: 3100 });
    const result = recorder.result(RUN, "metadata");
    expect(result.rounds).toBe(recorder.rounds);
    expect(result.summary).toEqual({
      status: "completed",
      reason: null,
      mode: "metadata",
      policy: "qemu",
      transferred: 200_000_000,
      // Completed: nothing remains, whatever the last count said.
      remaining: 0,
      total: RAM,
      duplicate: 300,
      normal: 16_000,
      "normal-bytes": 16_000 * PAGE,
      "dirty-pages-rate": 2500,
      // 200 MB x 8 in 4 s.
      mbps: 400,
      // 40,000 pages in 4 s.
      "pages-per-second": 10_000,
      "dirty-sync-count": 5,
      "precopy-bytes": 190_000_000,
      "downtime-bytes": 10_000_000,
      "postcopy-bytes": 0,
      "expected-downtime": 12.5,
      downtime: 80,
      "setup-time": 3,
      "total-time": 4000,
      "cpu-throttle-percentage": 30,
      "xbzrle-cache": null,
      "postcopy-remote-faults": 0,
      "postcopy-fault-wait-ms": 0,
      "postcopy-requests": 0,
      "postcopy-blocktime": 0,
      "postcopy-vcpu-blocktime": [],
      rounds: 2,
      verified: true,
      "downtime-over-limit": false,
    });
  });

  it("keeps what remains of a run that did not complete, and names why", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    for (const status of ["not-converged", "failed"] as const) {
      const { summary } = recorder.result(
        { ...RUN, status, reason: "round cap 3 reached", overLimit: true, warning: "late" },
        "content",
      );
      expect(summary.status).toBe(status);
      expect(summary.reason).toBe("round cap 3 reached");
      expect(summary.mode).toBe("content");
      expect(summary.remaining).toBe(7 * PAGE);
      // Only a completed run says whether its downtime passed the limit.
      expect("downtime-over-limit" in summary).toBe(false);
      expect(summary.warning).toBe("late");
    }
  });

  it("says the downtime passed the limit, and why, only when it did", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    const over = recorder.result(
      { ...RUN, overLimit: true, warning: "the device state took 200 ms" },
      "metadata",
    ).summary;
    expect(over["downtime-over-limit"]).toBe(true);
    expect(over.warning).toBe("the device state took 200 ms");
    const within = recorder.result(RUN, "metadata").summary;
    expect(within["downtime-over-limit"]).toBe(false);
    expect("warning" in within).toBe(false);
    expect("warning" in recorder.result({ ...RUN, warning: "" }, "metadata").summary).toBe(false);
  });

  it("gives a run of no time no rates", () => {
    const { summary } = new RoundRecorder(clockAt(0), PAGE, RAM).result(
      { ...RUN, totalTime: 0 },
      "metadata",
    );
    expect(summary["total-time"]).toBe(0);
    expect(summary.mbps).toBe(0);
    expect(summary["pages-per-second"]).toBe(0);
    expect(summary.rounds).toBe(0);
  });

  it("names the post-copy figures, each from its own fact", () => {
    const { summary } = new RoundRecorder(clockAt(0), PAGE, RAM).result(
      {
        ...RUN,
        postcopyBytes: 4_000_000,
        requests: 11,
        faultWaitMs: 6.5,
        blocktime: 2.25,
        vcpuBlocktime: [1, 2.25],
      },
      "live-tcp",
    );
    expect(summary["postcopy-bytes"]).toBe(4_000_000);
    expect(summary["postcopy-remote-faults"]).toBe(11);
    expect(summary["postcopy-requests"]).toBe(11);
    expect(summary["postcopy-fault-wait-ms"]).toBe(6.5);
    expect(summary["postcopy-blocktime"]).toBe(2.25);
    expect(summary["postcopy-vcpu-blocktime"]).toEqual([1, 2.25]);
  });

  it("adds multifd's and XBZRLE's counters only when the transport kept them", () => {
    const recorder = new RoundRecorder(clockAt(0), PAGE, RAM);
    const plain = recorder.result(RUN, "metadata").summary;
    for (const key of [
      "multifd-channels",
      "multifd-packets",
      "multifd-bytes",
      "xbzrle-unchanged-pages",
    ]) {
      expect(key in plain, key).toBe(false);
    }
    const xbzrle = {
      "cache-size": 1024 ** 2,
      bytes: 5000,
      pages: 40,
      "cache-miss": 9,
      "cache-miss-rate": 0.25,
      "encoding-rate": 3.5,
      overflow: 1,
    };
    const counted = recorder.result(
      {
        ...RUN,
        counters: {
          ...COUNTERS,
          xbzrle,
          xbzrleUnchanged: 0,
          multifd: { channels: 4, packets: 77, bytes: 123_456 },
        },
      },
      "content",
    ).summary;
    expect(counted["xbzrle-cache"]).toEqual(xbzrle);
    // None unchanged is a count of 0, not an absent one.
    expect(counted["xbzrle-unchanged-pages"]).toBe(0);
    expect(counted["multifd-channels"]).toBe(4);
    expect(counted["multifd-packets"]).toBe(77);
    expect(counted["multifd-bytes"]).toBe(123_456);
  });
});
