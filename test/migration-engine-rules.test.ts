/*
 * The virtual-time engine's wiring onto the one pre-copy driver: what it
 * names in the summary, what it hands out, how a pass cut at the time limit
 * counts, what the pause costs on the clock, and that it stops its pool.
 * Small guests and known answers computed here from the options.
 */
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Migration, runMigration } from "../src/migration/engine.js";
import type { MigrationOptions } from "../src/migration/options.js";
import { formatBytes } from "../src/util/units.js";
import { RECORD_HEADER_BYTES } from "../src/wasm/page.js";

const MiB = 1024 ** 2;
const PAGE = 4096;
/** A page on the wire: the page and its record header (QEMU's RAM_SAVE_FLAG_PAGE). */
const RECORD = PAGE + RECORD_HEADER_BYTES;

/** An idle 1 MiB guest on a link with no latency: every figure follows from the options. */
const idle = {
  guestBytes: MiB,
  content: false,
  vcpus: 1,
  workload: { kind: "uniform" },
  writesPerSecond: 0,
  latencyMs: 0,
} as const satisfies MigrationOptions;

describe("what the summary names", () => {
  // query-migrate's mode says whether pages moved (content) or only their
  // bitmaps (metadata); the policy column names the rule, Hyper-V with its release.
  it("names the mode and the stop policy it ran", async () => {
    const metadata = await runMigration({ ...idle, policy: "xen" });
    expect(metadata.summary.mode).toBe("metadata");
    expect(metadata.summary.policy).toBe("xen");
    const content = await runMigration({ ...idle, content: true });
    expect(content.summary.mode).toBe("content");
    expect(content.summary.policy).toBe("qemu");
    const hyperv = await runMigration({ ...idle, policy: "hyperv", hypervVersion: "2012r2" });
    expect(hyperv.summary.policy).toBe("hyperv-2012r2");
  });

  // Progress bars hear of every round as the result lists it.
  it("tells onRound of every round: its number, the bytes remaining and the guest's size", async () => {
    const heard: [number, number, number][] = [];
    const r = await runMigration({
      ...idle,
      writesPerSecond: 5000,
      maxBandwidth: 20 * MiB,
      onRound: (round, remaining, guestBytes) => heard.push([round, remaining, guestBytes]),
    });
    expect(r.rounds.length).toBeGreaterThan(1);
    expect(heard).toEqual(r.rounds.map((x) => [x.round, x.remaining, idle.guestBytes]));
  });
});

describe("guest RAM handed out", () => {
  // Content mode holds both copies: after a verified run the destination
  // holds the source's bytes. Metadata mode holds no RAM on either side.
  it("gives both sides' RAM in content mode, equal after a verified run, and none in metadata mode", async () => {
    const content = new Migration({ ...idle, content: true, writesPerSecond: 2000 });
    try {
      const r = await content.run();
      expect(r.summary.verified).toBe(true);
      const source = content.sourceRamBytes();
      const destination = content.destinationRamBytes();
      expect(source?.length).toBe(idle.guestBytes);
      expect(destination?.length).toBe(idle.guestBytes);
      expect(Buffer.compare(Buffer.from(source ?? []), Buffer.from(destination ?? []))).toBe(0);
      // The seeded image is not all zero: the comparison compares something.
      expect(source?.some((byte) => byte !== 0)).toBe(true);
    } finally {
      await content.close();
    }
    const metadata = new Migration(idle);
    expect(metadata.sourceRamBytes()).toBeUndefined();
    expect(metadata.destinationRamBytes()).toBeUndefined();
  });
});

describe("a pass cut at the time limit", () => {
  // A time limit holds within a batch: the link carries what fits before
  // the limit (bandwidth x time, whole pages) and the run does not converge.
  it("metadata mode: sends the whole pages that fit bandwidth x time, then gives up at the limit", async () => {
    const maxBandwidth = 10 * MiB;
    const timeoutMs = 200;
    const r = await runMigration({ ...idle, guestBytes: 4 * MiB, maxBandwidth, timeoutMs });
    const fit = Math.floor((maxBandwidth * timeoutMs) / 1000 / RECORD);
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary["total-time"]).toBe(timeoutMs);
    expect(r.rounds[0]?.["pages-sent"]).toBe(fit);
    expect(r.summary.normal).toBe(fit);
    expect(r.summary.transferred).toBe(fit * RECORD);
    // Every page not sent is still pending, as QEMU counts it remaining.
    expect(r.summary.remaining).toBe(4 * MiB - fit * PAGE);
    expect(r.rounds[0]?.remaining).toBe(4 * MiB - fit * PAGE);
  });

  // The pages a cut pass never sent stay pending, and the guest's writes
  // after the cut are merged into them: a page in both counts once.
  it("metadata mode: what the guest dirtied meanwhile joins the unsent pages, each once", async () => {
    const guestBytes = 4 * MiB;
    const r = await runMigration({
      ...idle,
      guestBytes,
      writesPerSecond: 2000,
      maxBandwidth: 10 * MiB,
      timeoutMs: 200,
    });
    const pending = (r.summary.remaining ?? 0) / PAGE;
    const unsent = guestBytes / PAGE - (r.rounds[0]?.["pages-sent"] ?? 0);
    expect(pending).toBeGreaterThan(unsent);
    expect(pending).toBeLessThanOrEqual(guestBytes / PAGE);
  });

  // Content mode: a cut wave ends the pass too, so pages never decoded on
  // the destination are not taken for sent.
  it("content mode: a wave cut at the limit ends the run as not converged", async () => {
    const r = await runMigration({ ...idle, content: true, maxBandwidth: MiB, timeoutMs: 200 });
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary["total-time"]).toBe(200);
    expect(r.summary.verified).toBeNull();
    const sent = r.rounds[0]?.["pages-sent"] ?? 0;
    expect(sent).toBeLessThan(idle.guestBytes / PAGE);
    // The pages of the cut wave that did not get out, and those never listed, are pending.
    expect(r.summary.remaining).toBe(idle.guestBytes - sent * PAGE);
  });
});

describe("the pause on the clock", () => {
  // Stop-and-copy with the vCPUs stopped: no latency before the last pages
  // (they follow the last pass on the open connection); the handover costs
  // the device state at max-bandwidth, one latency and the switchover
  // (src/migration/options.ts: switchoverMs counts in downtime).
  it("downtime is the device state at max-bandwidth plus one latency and the switchover", async () => {
    const o = {
      ...idle,
      guestBytes: 4 * MiB,
      maxBandwidth: 100 * MiB,
      latencyMs: 5,
      deviceStateBytes: MiB,
      switchoverMs: 50,
    };
    const r = await runMigration(o);
    expect(r.summary.status).toBe("completed");
    const stateMs = (o.deviceStateBytes / o.maxBandwidth) * 1000;
    expect(r.summary.downtime).toBeCloseTo(o.latencyMs + stateMs + o.switchoverMs, 9);
    const pagesMs = ((o.guestBytes / PAGE) * RECORD * 1000) / o.maxBandwidth;
    // Open (a round trip), the pass (a latency and the pages), the pause.
    expect(r.summary["total-time"]).toBeCloseTo(
      2 * o.latencyMs + o.latencyMs + pagesMs + r.summary.downtime,
      9,
    );
    // The stop-and-copy round runs at the link's max-bandwidth.
    const stop = r.rounds.find((x) => x.phase === "stop-and-copy");
    expect(stop?.["bandwidth-estimate"]).toBe(o.maxBandwidth);
  });
});

describe("post-copy", () => {
  // Metadata mode has no destination memory: post-copy runs on the bitmaps alone.
  it("metadata mode: switches to post-copy and completes with nothing missing", async () => {
    const r = await runMigration({
      ...idle,
      guestBytes: 4 * MiB,
      writesPerSecond: 2000,
      maxBandwidth: 20 * MiB,
      downtimeLimitMs: 10,
      postcopyAfterRounds: 1,
    });
    expect(r.summary.status).toBe("completed");
    expect(r.rounds.map((x) => x.phase)).toContain("postcopy");
    expect(r.summary.remaining).toBe(0);
  });

  // QEMU's ram_save_page (migration/ram.c) tries XBZRLE only while not in
  // post-copy: the pages post-copy sends go whole. With the switch after the
  // first round (whose pages go whole too: the cache starts empty), XBZRLE
  // never looks at the cache, and every destination page ends equal to the source's.
  it("content mode: post-copy sends whole pages, never XBZRLE deltas, and every page verifies", async () => {
    const r = await runMigration({
      ...idle,
      guestBytes: 4 * MiB,
      content: true,
      writesPerSecond: 20_000,
      maxBandwidth: 4 * MiB,
      xbzrle: true,
      xbzrleCacheBytes: MiB,
      postcopyAfterRounds: 1,
    });
    expect(r.summary.status).toBe("completed");
    expect(r.summary.verified).toBe(true);
    expect(r.summary["postcopy-requests"]).toBeGreaterThan(0);
    expect(r.summary["xbzrle-cache"]).toMatchObject({ pages: 0, "cache-miss": 0, overflow: 0 });
    expect(r.summary["xbzrle-unchanged-pages"]).toBe(0);
  });
});

describe("why a run failed", () => {
  // A failure names the phase it came in (QEMU's error_report prefixes).
  it("names the phase and the error", async () => {
    const r = await runMigration({
      ...idle,
      content: true,
      beforeVerify: () => {
        throw new Error("checker fell over");
      },
    });
    expect(r.summary.status).toBe("failed");
    expect(r.summary.reason).toMatch(/^verification: checker fell over/);
  });
});

describe("auto-converge at its ceiling", () => {
  // The guest's write rate as the policy sees it is the vCPUs' rate less
  // the throttle (QEMU's cpu-throttle-percentage stops the vCPUs that share
  // of the time): at max-cpu-throttle 50 % it is half the configured rate.
  it("gives up naming the throttled dirty rate against the bandwidth", async () => {
    const o = {
      ...idle,
      guestBytes: 4 * MiB,
      writesPerSecond: 50_000,
      maxBandwidth: 10 * MiB,
      autoConverge: true,
      throttleInitial: 20,
      throttleIncrement: 10,
      throttleMax: 50,
    };
    const r = await runMigration(o);
    expect(r.summary.status).toBe("not-converged");
    expect(r.summary["cpu-throttle-percentage"]).toBe(o.throttleMax);
    const rate = o.writesPerSecond * (1 - o.throttleMax / 100) * PAGE;
    expect(r.summary.reason).toContain(
      `dirty rate ${formatBytes(rate)}/s is above bandwidth ${formatBytes(o.maxBandwidth)}/s`,
    );
  });
});

/** Threads of this process (Linux): pool workers are threads. */
function threads(): number {
  const match = /^Threads:\s+(\d+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return Number(match?.[1]);
}

describe("the multifd pool is stopped", () => {
  // Each multifd channel is a pool worker thread; closing the migration
  // (and runMigration, always) stops them, so nothing outlives the run.
  it.runIf(existsSync("/proc/self/status"))(
    "close() and runMigration stop every channel's worker",
    async () => {
      const o = { ...idle, content: true, multifdChannels: 1 };
      const m = new Migration(o);
      const before = threads();
      await m.run();
      const running = threads();
      expect(running - before).toBeGreaterThanOrEqual(o.multifdChannels);
      await m.close();
      expect(threads()).toBe(running - o.multifdChannels);
      const idleThreads = threads();
      const r = await runMigration(o);
      expect(r.summary.verified).toBe(true);
      expect(threads()).toBe(idleThreads);
    },
  );
});
