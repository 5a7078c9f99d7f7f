/*
 * QEMU 7.2's iteration on virtual time (src/migration/qemu-iteration):
 * the pending check against threshold_size, the scan that wraps at the end
 * of RAM, the zero tail's scan, and what a time limit cuts. The rates are
 * chosen so that every link time is an exact binary fraction of a
 * millisecond (a record of 4104 bytes at 4104 x 1024 bytes/s takes
 * 1000/1024 ms), so the known answers below hold exactly.
 */
import { describe, expect, it } from "vitest";
import { Migration, runMigration } from "../src/migration/engine.js";
import type { MigrationOptions } from "../src/migration/options.js";
import {
  BUFFER_DELAY_MS,
  MAX_WAIT_MS,
  type QemuIterationOptions,
  ZERO_RECORD_BYTES,
} from "../src/migration/qemu-iteration/iteration.js";
import { formatBytes } from "../src/util/units.js";
import { RECORD_HEADER_BYTES } from "../src/wasm/page.js";

const MiB = 1024 ** 2;
const GiB = 1024 * MiB;
const PAGE = 4096;
const RECORD = PAGE + RECORD_HEADER_BYTES;
/** 1024 records a second: a record in 1000/1024 ms, exactly. */
const RATE = RECORD * 1024;

const iteration: QemuIterationOptions = {
  hostRate: RATE,
  completionRate: RATE,
  startMs: 0,
  stopMs: 0,
};

/** An idle 1 MiB guest (256 pages) under QEMU's iteration, unthrottled, no latency. */
const idle = {
  guestBytes: MiB,
  content: false,
  vcpus: 1,
  workload: { kind: "uniform" },
  writesPerSecond: 0,
  latencyMs: 0,
  maxBandwidth: Number.POSITIVE_INFINITY,
  deviceStateBytes: 0,
  giveUp: "never",
  qemuIteration: iteration,
} as const satisfies MigrationOptions;

const PAGES = idle.guestBytes / PAGE;
/** The idle guest's pages on the link at RATE, ms: 250. */
const PASS_MS = ((PAGES * RECORD) / RATE) * 1000;

describe("a pass cut at the time limit", () => {
  // The link carries what fits before the limit, whole pages; the pages of
  // the cut chunk that did not get out stay set in the migration bitmap,
  // so the sync counts every page not sent as still pending.
  it("sends the whole pages that fit, counts them as normal pages, and leaves every other page pending", async () => {
    const timeoutMs = 120;
    const r = await runMigration({ ...idle, timeoutMs });
    const fit = Math.floor((RATE * timeoutMs) / 1000 / RECORD);
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary["total-time"]).toBe(timeoutMs);
    expect(r.rounds[0]?.["pages-sent"]).toBe(fit);
    expect(r.summary.normal).toBe(fit);
    expect(r.summary.remaining).toBe((PAGES - fit) * PAGE);
  });

  // QEMU's setup before the first pages counts against the limit like any
  // other time, wherever the clock stands when it begins (here after the
  // connection's round trip and a latency): a limit inside it ends the run there.
  it("a limit inside the start-up time ends the run at the limit, before any page", async () => {
    const r = await runMigration({
      ...idle,
      latencyMs: 10,
      timeoutMs: 300,
      qemuIteration: { ...iteration, startMs: 500 },
    });
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary["total-time"]).toBe(300);
    expect(r.summary.normal).toBe(0);
  });
});

describe("the pending check against threshold_size", () => {
  // ram_save_pending (migration/ram.c, QEMU 7.2) syncs only when the
  // estimate is strictly below max_size: pending equal to the threshold
  // goes on with another chunk. Here the threshold is 1 s of 4104 x 4096
  // bytes/s, 4104 pages exactly, and chunks of 8 pages bring 8192 pages
  // down through 4104 exactly: the pass goes on to 4096.
  it("an estimate equal to the threshold is not below it", async () => {
    const hostRate = RECORD * 4096;
    const chunkPages = 8;
    const r = await runMigration({
      ...idle,
      guestBytes: 32 * MiB,
      maxBandwidth: Number.POSITIVE_INFINITY,
      downtimeLimitMs: 1000,
      qemuIteration: {
        ...iteration,
        hostRate,
        completionRate: hostRate,
        // MAX_WAIT of this rate is exactly the chunk.
        unthrottledRate: (chunkPages * RECORD * 1000) / MAX_WAIT_MS,
      },
    });
    const thresholdPages = hostRate / PAGE;
    expect(thresholdPages).toBe(4104);
    expect((32 * MiB) / PAGE - thresholdPages).toBe(4088);
    expect(r.summary.status).toBe("completed");
    expect(r.summary["downtime-bytes"]).toBe((thresholdPages - chunkPages) * RECORD);
  });
});

describe("the scan wraps at the end of RAM", () => {
  // ram_find_and_save_block goes on from where the last iteration left it
  // and wraps to the start: on a guest of more than one batch of page
  // numbers, the pages a pass put back behind the scan are sent after the
  // ones ahead of it, so the pause sends every page the pass left.
  it("every page goes once on a 2 GiB guest whose first pass stops inside the first batch", async () => {
    const r = await runMigration({
      ...idle,
      guestBytes: 2 * GiB,
      downtimeLimitMs: 1500,
      qemuIteration: { ...iteration, hostRate: GiB, completionRate: 4 * GiB },
    });
    expect(r.summary.status).toBe("completed");
    const pages = (2 * GiB) / PAGE;
    expect(r.summary.transferred).toBe(pages * RECORD);
    const [first, stop] = r.rounds;
    // The first pass stopped before the second half of RAM (one batch).
    expect(first?.["pages-sent"]).toBeLessThan(pages / 2);
    expect(stop?.["pages-sent"]).toBe(pages - (first?.["pages-sent"] ?? 0));
  });
});

describe("the zero tail's scan", () => {
  /** 500 zero pages a second: 2 ms a page, 50 pages a 100 ms window. */
  const zeroScanRate = 500;
  const msPerPage = 1000 / zeroScanRate;
  const tailOptions = (zeroTailPages: number, timeoutMs: number): MigrationOptions => ({
    ...idle,
    downtimeLimitMs: 1,
    timeoutMs,
    qemuIteration: { ...iteration, zeroTailPages, zeroScanRate },
  });

  // A limit inside the scan cuts it there: the pages scanned are the ones
  // whose time fits before the limit, and the clock stops at the limit.
  it("a limit inside the scan: the pages that fit before it, and the clock at the limit", async () => {
    const timeoutMs = PASS_MS + 131;
    const r = await runMigration(tailOptions(1000, timeoutMs));
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary.duplicate).toBe(Math.floor((timeoutMs - PASS_MS) / msPerPage));
    expect(r.summary["total-time"]).toBe(timeoutMs);
  });

  // A scan shorter than a window goes in one step of its own length; one
  // that ends exactly at the limit is whole (the limit cuts only what would
  // run past it, as the link's does).
  it("a tail shorter than a window, ending exactly at the limit, is scanned whole", async () => {
    const tail = 40;
    const r = await runMigration(tailOptions(tail, PASS_MS + tail * msPerPage));
    expect(r.summary.status).toBe("completed");
    expect(r.summary.duplicate).toBe(tail);
    expect(r.summary.transferred).toBe(PAGES * RECORD + tail * ZERO_RECORD_BYTES);
  });

  // Slower than a page a window, the scan still moves a page at a time,
  // and each page's time is a window of its own: the window the working
  // set left open closes with the first page, and the last window measures
  // the scan's trickle alone, one zero record per page's time.
  it("a scan slower than a page a window: a page a step, and the last window measures the trickle", async () => {
    const slow = 5;
    expect(1000 / slow).toBeGreaterThan(BUFFER_DELAY_MS);
    // Seven chunks of 51 pages (MAX_WAIT at RATE): windows close every third
    // chunk, so the seventh leaves one open when the scan begins.
    const pages = 7 * 51;
    const r = await runMigration({
      ...idle,
      guestBytes: pages * PAGE,
      maxBandwidth: 10 * GiB,
      downtimeLimitMs: 1,
      qemuIteration: { ...iteration, zeroTailPages: 2, zeroScanRate: slow },
    });
    expect(r.summary.status).toBe("completed");
    expect(r.summary.duplicate).toBe(2);
    const passMs = ((pages * RECORD) / RATE) * 1000;
    expect(r.rounds[0]?.["duration-ms"]).toBeCloseTo(passMs + 2 * (1000 / slow), 9);
    expect(r.rounds[0]?.["bandwidth-estimate"]).toBeCloseTo(ZERO_RECORD_BYTES * slow, 9);
  });
});

describe("the switchover under QEMU's iteration", () => {
  // migration_completion stops the vCPUs and lifts the rate limit: the last
  // pages and the device state go with no rate limit, after the fixed stop
  // cost. An idle guest completes inside its first pass, so its last pages
  // are ones the destination never held: at the first pass's rate. A
  // downtime over the limit says which part pushed it over.
  it("the round names the stop cost and the device state; the warning times the last pages, never sent before, at the first pass's rate", async () => {
    const o = {
      ...idle,
      downtimeLimitMs: 100,
      deviceStateBytes: 64 * 1024,
      qemuIteration: { ...iteration, completionRate: 4 * RATE, stopMs: 150 },
    };
    const r = await runMigration(o);
    expect(r.summary.status).toBe("completed");
    const lastBytes = r.summary["downtime-bytes"] - o.deviceStateBytes;
    expect(lastBytes).toBeGreaterThan(0);
    const completion = o.qemuIteration.completionRate;
    const stateMs = (o.deviceStateBytes / completion) * 1000;
    const fixed = `stopping and handing over ${o.qemuIteration.stopMs} ms, device state ${formatBytes(o.deviceStateBytes)} (${stateMs.toFixed(1)} ms) with no rate limit`;
    const stop = r.rounds.find((x) => x.phase === "stop-and-copy");
    expect(stop?.reason).toBe(
      `sent the last ${lastBytes / RECORD} pages and the device state; ${fixed}`,
    );
    const pagesMs = (lastBytes / o.qemuIteration.hostRate) * 1000;
    expect(r.summary.warning).toContain(
      `the last pages took ${pagesMs.toFixed(1)} ms, within the limit; the fixed part pushed it over: ${fixed}`,
    );
  });

  // A completion inside the first pass sends the pages the pass never
  // reached and the pages the guest wrote again behind it. The destination
  // holds the second kind; its first touch of each paces the first kind.
  it("a completion inside the first pass: pages never sent at the first pass's rate, pages sent again at the completion rate; each run starts with nothing sent", async () => {
    // 256 pages, 32 hot ones at the bottom rewritten 2,000 times a second;
    // threshold 102.4 pages, chunks of 51 (50 ms at the host's rate). The
    // pass sends 4 chunks (204 pages, 199.2 ms: every hot page rewritten)
    // and stops with 52 left: 52 + 32 = 84 pending, below the threshold.
    const m = new Migration({
      ...idle,
      workload: { kind: "hotset", hotBase: 0, hotPages: 32, hotFraction: 1 },
      writesPerSecond: 2000,
      downtimeLimitMs: 100,
      qemuIteration: { ...iteration, completionRate: 4 * RATE },
    });
    for (let run = 1; run <= 2; run++) {
      const r = await m.run();
      expect(r.summary.status).toBe("completed");
      expect(r.rounds.map((x) => [x.phase, x["pages-sent"]])).toEqual([
        ["precopy", 204],
        ["stop-and-copy", 84],
      ]);
      // 52 never sent at 1024 records/s, 32 sent again at 4096.
      expect(r.summary.downtime).toBe(52 * (1000 / 1024) + 32 * (1000 / 4096));
    }
  });

  // The stop cost passes with the vCPUs stopped: it writes nothing, so a
  // later run of the same migration dirties the same pages however long
  // the stop took.
  it("the stop cost writes nothing: a later run dirties the same pages after a 0 ms or a 2 s stop", async () => {
    const o = {
      ...idle,
      guestBytes: 8 * MiB,
      vcpus: 2,
      writesPerSecond: 20_000,
      maxBandwidth: 100 * MiB,
      downtimeLimitMs: 300,
    };
    const secondRun = async (stopMs: number) => {
      const m = new Migration({
        ...o,
        qemuIteration: { hostRate: 50 * MiB, completionRate: 400 * MiB, startMs: 0, stopMs },
      });
      const first = await m.run();
      expect(first.summary.status).toBe("completed");
      return (await m.run()).rounds.map((x) => x["pages-dirtied"]);
    };
    const quick = await secondRun(0);
    expect(quick[0]).toBeGreaterThan(0);
    expect(await secondRun(2000)).toEqual(quick);
  });
});
