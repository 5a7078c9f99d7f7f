import { once } from "node:events";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { DestinationReport } from "../src/migration/live/destination.js";
import { LiveConfigError } from "../src/migration/live/errors.js";
import { MAX_RECOVER_WAIT_MS } from "../src/migration/live/postcopy-recovery.js";
import type {
  LiveGuestOptions,
  LiveMigrationOptions,
  LiveSource,
} from "../src/migration/live/source.js";
import type { MigrationRound } from "../src/migration/stats.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";
import { until } from "./support/until.js";

// The live source's rules, with both ends on this thread over loopback TCP.
// The guest's vCPUs are idle (0 writes per second), and the test dirties
// pages itself as each pre-copy round ends, so every pass carries a known
// set of pages and each figure below is exact, not a race with a clock.

const MiB = 1024 ** 2;
const PAGES = 256;

const rig = new LivePostcopyRig();
afterEach(() => rig.close());

function source(options: Partial<LiveGuestOptions> = {}): LiveSource {
  return rig.idleSource(options);
}

async function destination(
  options: { maxGuestBytes?: number } = {},
): Promise<{ port: number; reports: readonly DestinationReport[] }> {
  return rig.destination(options);
}

/**
 * Dirties pages during pre-copy: `writes` guest writes (logged as the
 * vCPUs' are) after each pages frame of a pre-copy pass, and the pages
 * they newly dirtied, summed per pass: what the next pass must send.
 */
function dirtier(s: LiveSource, writes: number) {
  const dirtied: number[] = [];
  return {
    dirtied,
    onProgress: () => {
      const pass = /^pre-copy pass (\d+)/.exec(s.activity?.phase ?? "");
      if (!pass) return;
      const index = Number(pass[1]) - 1;
      dirtied[index] ??= 0;
      // No pool: the writes run on this thread, before the pass's sync.
      void s.guest.write(writes).then((newly) => {
        dirtied[index] = (dirtied[index] ?? 0) + newly;
      });
    },
  };
}

async function migrate(s: LiveSource, port: number, options: Partial<LiveMigrationOptions> = {}) {
  return s.migrate({ host: "127.0.0.1", port, ...options });
}

describe("a live source's passes, page for page", () => {
  it("an idle guest: one pass of every page, then the stop-and-copy of none; the destination counts the same", async () => {
    const { port, reports } = await destination();
    const s = source();
    expect(s.activity).toBeUndefined();
    const progress: number[] = [];
    const rounds: MigrationRound[] = [];
    const result = await migrate(s, port, {
      onProgress: (bytes) => progress.push(bytes),
      onRound: (round) => rounds.push(round),
    });
    expect(result.summary).toMatchObject({
      status: "completed",
      reason: null,
      mode: "live-tcp",
      policy: "qemu",
      remaining: 0,
      total: MiB,
      duplicate: 0,
      normal: PAGES,
      "normal-bytes": MiB,
      "postcopy-bytes": 0,
      "xbzrle-cache": null,
      rounds: 2,
      verified: true,
    });
    expect(result.rounds.map((r) => [r.phase, r["pages-sent"]])).toEqual([
      ["precopy", PAGES],
      ["stop-and-copy", 0],
    ]);
    expect(rounds).toEqual(result.rounds);
    expect(result.rounds[1]?.reason).toBe(
      "sent the last 0 pages and the device state; device state 64.0 KiB and the destination's resume",
    );
    // Every pages frame told its progress, in order, up to the pages' bytes.
    expect(progress.length).toBeGreaterThan(0);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBeLessThanOrEqual(result.summary.transferred);
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]).toMatchObject({
      status: "completed",
      pagesReceived: PAGES,
      verified: true,
      guestBytes: MiB,
    });
    // The source counts the frames' headers and digests; the destination, their payloads.
    expect(result.summary.transferred).toBeGreaterThan(reports[0]?.payloadBytes ?? 0);
    expect(s.activity?.phase).toBe("verification");
    expect(s.activity?.bytesSent).toBe(result.summary.transferred);
    // The guest runs at the destination now; here its vCPUs stay stopped.
    expect(s.runner.running).toBe(false);
  });

  it("pages dirtied during a pass go in the next one; a pass cap of 2 copies the rest while paused", async () => {
    const { port, reports } = await destination();
    const s = source();
    const d = dirtier(s, 300);
    const result = await migrate(s, port, {
      maxPasses: 2,
      downtimeLimitMs: 0.001,
      onProgress: d.onProgress,
    });
    const [first, second] = d.dirtied;
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(0);
    expect(result.summary.status).toBe("completed");
    expect(result.summary.policy).toBe("hyperv");
    expect(result.rounds.map((r) => [r.phase, r["pages-sent"]])).toEqual([
      ["precopy", PAGES],
      ["precopy", first],
      ["stop-and-copy", second],
    ]);
    expect(result.rounds[1]?.reason).toMatch(/^pass cap of 2 reached: suspending with /);
    const sent = PAGES + (first ?? 0) + (second ?? 0);
    expect(result.summary.normal).toBe(sent);
    expect(result.summary.verified).toBe(true);
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]).toMatchObject({ status: "completed", pagesReceived: sent, verified: true });
  });

  it("QEMU's rule with a round cap: a guest that keeps dirtying is not converged, and the guest runs on here", async () => {
    const { port, reports } = await destination();
    const s = source();
    const d = dirtier(s, 300);
    const result = await migrate(s, port, {
      maxRounds: 3,
      downtimeLimitMs: 0.001,
      onProgress: d.onProgress,
    });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.policy).toBe("qemu");
    expect(result.rounds.map((r) => r.phase)).toEqual(["precopy", "precopy", "precopy"]);
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
    expect(s.runner.running).toBe(true);
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]).toMatchObject({ status: "failed", discarded: true });
    expect(reports[0]?.reason).toMatch(/^the source stopped the migration: /);
    // The same source migrates again, from a clean log: every page once more.
    const again = await migrate(s, port);
    expect(again.rounds[0]?.["pages-sent"]).toBe(PAGES);
    expect(again.summary).toMatchObject({ status: "completed", verified: true });
  });

  it("zero pages as ZERO records: the guest's zero pages counted as duplicate, and each lands as zeros", async () => {
    const { port, reports } = await destination();
    const s = source();
    const ram = s.guest.ram?.bytes(s.layout.memory) as Uint8Array;
    // Sixteen zero pages, and one that is zero but for its last byte.
    ram.fill(0, 10 * 4096, 26 * 4096);
    ram.fill(0, 40 * 4096, 41 * 4096 - 1);
    const result = await migrate(s, port, { zeroPages: true });
    expect(result.summary).toMatchObject({
      status: "completed",
      duplicate: 16,
      normal: PAGES - 16,
      "normal-bytes": (PAGES - 16) * 4096,
      verified: true,
    });
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]?.pagesReceived).toBe(PAGES);
    // Off, the same pages go whole.
    const whole = await migrate(s, port);
    expect(whole.summary).toMatchObject({ duplicate: 0, normal: PAGES });
    expect(whole.summary.transferred - result.summary.transferred).toBeGreaterThan(16 * 4000);
  });

  it("XBZRLE from the second pass: re-sent pages go as deltas against the cache, and the copy verifies", async () => {
    const { port } = await destination();
    const s = source();
    const d = dirtier(s, 50);
    const result = await migrate(s, port, {
      xbzrle: true,
      xbzrleCacheBytes: 4 * MiB,
      maxPasses: 2,
      downtimeLimitMs: 0.001,
      onProgress: d.onProgress,
    });
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    const cache = result.summary["xbzrle-cache"];
    expect(cache).not.toBeNull();
    expect(cache?.["cache-size"]).toBe(4 * MiB);
    // As in QEMU's save_xbzrle_page: the first pass fills no cache; from the
    // second on, a page the cache holds goes as a delta and any other is a
    // miss, sent whole and cached. The hot set's pages re-dirtied after pass
    // 2 are hits in the stop-and-copy.
    const [second = 0, last = 0] = d.dirtied;
    expect((cache?.pages ?? 0) + (cache?.["cache-miss"] ?? 0)).toBe(second + last);
    expect(cache?.["cache-miss"]).toBeGreaterThanOrEqual(second);
    expect(cache?.pages).toBeGreaterThan(0);
    expect(cache?.bytes).toBeLessThan((cache?.pages ?? 0) * 4096);
    // A later attempt cannot change the size of the cache this source holds.
    await expect(migrate(s, port, { xbzrle: true, xbzrleCacheBytes: 8 * MiB })).rejects.toThrow(
      new LiveConfigError(
        "this source's XBZRLE cache is 4.0 MiB; it cannot change to 8.0 MiB between attempts",
      ),
    );
  });

  it("multifd: pages on the channels, a sync each pass the destination confirms", async () => {
    const { port, reports } = await destination();
    const s = source();
    const d = dirtier(s, 300);
    const result = await migrate(s, port, {
      multifdChannels: 2,
      maxPasses: 2,
      downtimeLimitMs: 0.001,
      onProgress: d.onProgress,
    });
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]).toMatchObject({
      status: "completed",
      channels: 2,
      // One per pass, and one for the stop-and-copy's pages.
      syncs: 3,
      pagesReceived: PAGES + (d.dirtied[0] ?? 0) + (d.dirtied[1] ?? 0),
    });
  });

  it("post-copy after pass 1: the guest runs at the destination, pulls what it faults on, and every page verifies", async () => {
    const { port, reports } = await destination();
    const s = source();
    const d = dirtier(s, 300);
    const result = await migrate(s, port, {
      postcopyAfter: 1,
      downtimeLimitMs: 0.001,
      onProgress: d.onProgress,
    });
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    expect(result.rounds.map((r) => r.phase)).toContain("postcopy");
    expect(result.summary["postcopy-bytes"]).toBeGreaterThan(0);
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]?.postcopy).toBeDefined();
    expect(reports[0]?.pagesReceived).toBeGreaterThanOrEqual(PAGES + (d.dirtied[0] ?? 0));
  });

  it("without verification the run completes at the switchover, verified unknown on both sides", async () => {
    const { port, reports } = await destination();
    const s = source();
    const result = await migrate(s, port, { verify: false });
    expect(result.summary).toMatchObject({ status: "completed", verified: null });
    await until(() => reports.length === 1, 10_000, "the destination's report");
    expect(reports[0]).toMatchObject({ status: "completed", verified: null });
  });

  it("the device state's size and a storage handover are in the blackout", async () => {
    const { port, reports } = await destination();
    const s = source();
    const small = await migrate(s, port, { deviceStateBytes: 0 });
    const large = await migrate(s, port, { deviceStateBytes: 10_000, storageHandoverMs: 40 });
    await until(() => reports.length === 2, 10_000, "the destination's reports");
    expect((reports[1]?.payloadBytes ?? 0) - (reports[0]?.payloadBytes ?? 0)).toBe(10_000);
    expect(small.summary["downtime-bytes"]).toBeLessThan(large.summary["downtime-bytes"]);
    expect(large.summary.downtime).toBeGreaterThanOrEqual(40);
    expect(large.rounds.at(-1)?.reason).toBe(
      "sent the last 0 pages and the device state; device state 9.8 KiB, the storage handover (40 ms) and the destination's resume",
    );
  });
});

describe("a live source's failures: said in one line, the guest still running here", () => {
  it("nothing listening", async () => {
    const closed = createServer().listen(0, "127.0.0.1");
    await once(closed, "listening");
    const address = closed.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    closed.close();
    await once(closed, "close");
    const s = source();
    const result = await migrate(s, address.port, { replyTimeoutMs: 2000 });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      new RegExp(`^cannot migrate to 127\\.0\\.0\\.1:${address.port}: `),
    );
    expect(s.runner.running).toBe(true);
  });

  it("a peer that is not a destination", async () => {
    const foreign = createServer((socket) => socket.end("SSH-2.0-OpenSSH_9.6\r\n"));
    foreign.listen(0, "127.0.0.1");
    await once(foreign, "listening");
    const address = foreign.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    const s = source();
    const result = await migrate(s, address.port);
    expect(result.summary.reason).toBe(
      `127.0.0.1:${address.port}: the peer does not speak hvlab's migration protocol (it sent "SSH-2.0-OpenSSH_9.6\\x0d\\x0a")`,
    );
    foreign.close();
  });

  it("a destination that refuses: its words, then a retry elsewhere succeeds", async () => {
    const small = await destination({ maxGuestBytes: MiB });
    const s = source({ guestBytes: 2 * MiB });
    const refused = await migrate(s, small.port);
    expect(refused.summary.status).toBe("failed");
    expect(refused.summary.reason).toBe(
      "the destination stopped the migration: a guest of 2.0 MiB is over this destination's limit of 1.0 MiB (during setup after 64 B sent)",
    );
    expect(s.runner.running).toBe(true);
    const { port } = await destination();
    const retried = await migrate(s, port);
    expect(retried.summary).toMatchObject({ status: "completed", normal: 512, verified: true });
  });

  it("post-copy is asked only of an attempt in pre-copy", async () => {
    const s = source();
    expect(s.startPostcopy()).toBe(false);
    const { port } = await destination();
    await migrate(s, port);
    expect(s.startPostcopy()).toBe(false);
  });
});

describe("a live source checks its options before it connects", () => {
  it.each([
    [
      { guestBytes: MiB - 4096 },
      `live guest size must be from 1 MiB to 2.0 GiB, not ${MiB - 4096} bytes`,
    ],
    [
      { guestBytes: 2 * 1024 * MiB + 4096 },
      `live guest size must be from 1 MiB to 2.0 GiB, not ${2 * 1024 * MiB + 4096} bytes`,
    ],
    [{ guestBytes: MiB + 1 }, `guest size ${MiB + 1} bytes is not a whole number of 4 KiB pages`],
    [
      { guestBytes: MiB + 0.5 },
      `live guest size must be from 1 MiB to 2.0 GiB, not ${MiB + 0.5} bytes`,
    ],
    [{ threads: -1 }, "threads must be from 0 to 64, not -1"],
    [{ threads: 65 }, "threads must be from 0 to 64, not 65"],
    [{ threads: 1.5 }, "threads must be from 0 to 64, not 1.5"],
  ] as const)("guest %o", (options, message) => {
    expect(() => source(options)).toThrow(new LiveConfigError(message));
  });

  it.each([
    [{ port: 0 }, "port must be from 1 to 65535, not 0"],
    [{ port: 65_536 }, "port must be from 1 to 65535, not 65536"],
    [{ port: 80.5 }, "port must be from 1 to 65535, not 80.5"],
    [{ downtimeLimitMs: 0 }, "downtime-limit must be positive, not 0 ms"],
    [{ downtimeLimitMs: Number.NaN }, "downtime-limit must be positive, not NaN ms"],
    [{ maxBandwidth: -1 }, "max-bandwidth must be positive (or 0: unthrottled), not -1"],
    [{ maxBandwidth: Number.NaN }, "max-bandwidth must be positive (or 0: unthrottled), not NaN"],
    [{ multifdChannels: -1 }, "multifd channels must be from 0 to 16, not -1"],
    [{ multifdChannels: 17 }, "multifd channels must be from 0 to 16, not 17"],
    [{ multifdChannels: 1.5 }, "multifd channels must be from 0 to 16, not 1.5"],
    [{ postcopyAfter: 0 }, "post-copy must start after at least 1 pre-copy pass, not 0"],
    [{ postcopyAfter: 1.5 }, "post-copy must start after at least 1 pre-copy pass, not 1.5"],
    [
      { postcopyRecoverMs: -1 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not -1`,
    ],
    [
      { postcopyRecoverMs: MAX_RECOVER_WAIT_MS + 1 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not ${MAX_RECOVER_WAIT_MS + 1}`,
    ],
    [
      { postcopyRecoverMs: 2.5 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not 2.5`,
    ],
    [
      { xbzrle: true, multifdChannels: 1 },
      "XBZRLE does not work with multifd (as in QEMU): choose one",
    ],
    [
      { xbzrle: true, xbzrleCacheBytes: 2048 },
      "XBZRLE cache must be a power of two from 4 KiB to 1.0 GiB, not 2048 bytes",
    ],
    [
      { xbzrle: true, xbzrleCacheBytes: 2 * 1024 * MiB },
      `XBZRLE cache must be a power of two from 4 KiB to 1.0 GiB, not ${2 * 1024 * MiB} bytes`,
    ],
    [
      { xbzrle: true, xbzrleCacheBytes: 3 * MiB },
      `XBZRLE cache must be a power of two from 4 KiB to 1.0 GiB, not ${3 * MiB} bytes`,
    ],
    [{ storageHandoverMs: -1 }, "storage handover must be 0 to 3600000 ms, not -1"],
    [{ storageHandoverMs: 3_600_001 }, "storage handover must be 0 to 3600000 ms, not 3600001"],
    [
      { storageHandoverMs: Number.POSITIVE_INFINITY },
      "storage handover must be 0 to 3600000 ms, not Infinity",
    ],
    [{ deviceStateBytes: -1 }, "device state must be from 0 to 4.0 MiB, not -1 bytes"],
    [
      { deviceStateBytes: 4 * MiB + 1 },
      `device state must be from 0 to 4.0 MiB, not ${4 * MiB + 1} bytes`,
    ],
    [{ deviceStateBytes: 1.5 }, "device state must be from 0 to 4.0 MiB, not 1.5 bytes"],
  ] as const)("migration %o", async (options, message) => {
    const s = source();
    await expect(migrate(s, 9, options)).rejects.toThrow(new LiveConfigError(message));
    expect(s.activity).toBeUndefined();
  });

  it("takes each bound itself (refused only by the closed port)", async () => {
    const s = source({ threads: 0 });
    for (const options of [
      { port: 65_535, maxBandwidth: 0, multifdChannels: 16, storageHandoverMs: 0 },
      { port: 1, postcopyAfter: 1, postcopyRecoverMs: MAX_RECOVER_WAIT_MS, deviceStateBytes: 0 },
      { port: 1, xbzrle: true, xbzrleCacheBytes: 4096, deviceStateBytes: 4 * MiB },
    ]) {
      const result = await s.migrate({ host: "127.0.0.1", replyTimeoutMs: 2000, ...options });
      expect(result.summary.reason).toMatch(/^cannot migrate to 127\.0\.0\.1:\d+: /);
    }
  });

  it("post-copy runs at most 64 vCPUs on the destination", async () => {
    const s = source({ vcpus: 65 });
    await expect(migrate(s, 9, { postcopyAfter: 1 })).rejects.toThrow(
      new LiveConfigError("post-copy runs at most 64 vCPUs on the destination, not 65"),
    );
  });
});
