/*
 * The pre-copy loop every mode runs (src/migration/precopy/driver.ts), on a
 * scripted guest and link whose every figure is known: 4 KiB pages, a link
 * of 1,000 pages a second (one page a millisecond), a 300 ms downtime-limit
 * (300 pages fit). The loop is QEMU's (migration/migration.c,
 * migration_iteration_run: send, sync the dirty bitmap, switch over once
 * pending bytes fit bandwidth x downtime-limit; migration_completion: stop
 * the vCPUs, sync a last time, send what is left and the device state),
 * with hvlab's time limit, post-copy switch, failure handling and
 * verification around it (docs/migration.md).
 */
import { describe, expect, it } from "vitest";
import { runPrecopy } from "../src/migration/precopy/driver.js";
import { RoundRecorder } from "../src/migration/precopy/recorder.js";
import type {
  Handover,
  Pass,
  PostcopyOutcome,
  PrecopyClock,
  PrecopyGuest,
  PrecopyPolicy,
  PrecopyTransport,
} from "../src/migration/precopy/types.js";

const PAGE = 4096;
const PAGES = 1000;
/** One page a millisecond. */
const RATE = PAGE * 1000;
const FIXED = "device state and switchover";

interface Script {
  /** Pages pending after each round's sync, in turn. */
  readonly syncs: readonly number[];
  /** Pages pending after the last sync, with the vCPUs stopped. */
  readonly paused?: number;
  /** The clock kind. */
  readonly kind?: "virtual" | "wall";
  /** ms the switchover takes. */
  readonly switchoverMs?: number;
  /** Cut a pre-copy pass after this many pages. */
  readonly cutAfter?: number;
  readonly verify?: string | null | undefined;
  readonly ownRound?: Handover["ownRound"];
  readonly switchoverFails?: boolean;
  readonly sendFails?: boolean;
  readonly postcopy?: PostcopyOutcome | "none";
  /** The throttle step after each sync (auto-converge), in turn. */
  readonly throttles?: readonly boolean[];
  /** ms a page takes on the link (default 1). */
  readonly msPerPage?: number;
  /** The bandwidth the link reports for a round (default one page a ms). */
  readonly bandwidth?: number;
  readonly openFails?: boolean;
}

/** A scripted guest and link, and what the loop asked of them. */
function world(script: Script) {
  const log = {
    phases: [] as string[],
    sends: [] as { running: boolean; round: number; untilMs: number }[],
    switchovers: [] as string[],
    cancels: [] as string[],
    resumes: 0,
    postcopies: [] as [number, number][],
  };
  const clock: PrecopyClock & { t: number } = {
    kind: script.kind ?? "virtual",
    t: 0,
    now() {
      return this.t;
    },
  };
  let pending = 0;
  let syncs = 0;
  let step = 0;
  let transferred = 0;
  let sentPages = 0;
  const throttles = script.throttles ?? [];
  const throttle = {
    percentage: 0,
    canRise: throttles.length > 0,
    afterSync(): boolean {
      const rose = throttles[syncs - 1] ?? false;
      if (rose) throttle.percentage += 20;
      return rose;
    },
  };
  const guest: PrecopyGuest = {
    pageBytes: PAGE,
    ramBytes: PAGES * PAGE,
    logAll: () => {
      pending = PAGES;
      return pending;
    },
    sync: () => {
      pending = script.syncs[step++] ?? 0;
      syncs++;
      return pending;
    },
    pause: async () => {
      pending = script.paused ?? pending;
      syncs++;
      return pending;
    },
    resume: () => {
      log.resumes++;
    },
    writeRate: (roundMs) => (roundMs > 0 ? 777 : 0),
    get syncs() {
      return syncs;
    },
    ...(throttles.length > 0 ? { throttle: throttle as unknown as PrecopyGuest["throttle"] } : {}),
  };
  const transport: PrecopyTransport = {
    mode: "metadata",
    open: async () => {
      clock.t += 5;
      if (script.openFails) throw new Error("connection refused");
    },
    sendPending: async (round): Promise<Pass> => {
      log.sends.push(round);
      if (script.sendFails) throw new Error("link down");
      const pages =
        round.running && script.cutAfter !== undefined
          ? Math.min(pending, script.cutAfter)
          : pending;
      clock.t += pages * (script.msPerPage ?? 1);
      transferred += pages * PAGE;
      sentPages += pages;
      const cut = pages < pending;
      pending -= pages;
      return { pages, bytes: pages * PAGE, cut };
    },
    bandwidth: () => script.bandwidth ?? RATE,
    rate: () => RATE,
    get transferred() {
      return transferred;
    },
    switchover: async (to) => {
      log.switchovers.push(to ?? "default");
      clock.t += script.switchoverMs ?? 50;
      if (script.switchoverFails) throw new Error("destination gone");
      transferred += PAGE;
      return {
        bytes: PAGE,
        fixed: FIXED,
        ...(script.ownRound ? { ownRound: script.ownRound } : {}),
      };
    },
    cancel: async (reason) => {
      log.cancels.push(reason);
    },
    ...(script.postcopy === "none"
      ? {}
      : {
          postcopy: async (pendingPages: number, untilMs: number): Promise<PostcopyOutcome> => {
            log.postcopies.push([pendingPages, untilMs]);
            clock.t += 200;
            return (
              (script.postcopy as PostcopyOutcome | undefined) ?? {
                pages: pendingPages,
                bytes: pendingPages * PAGE,
                requests: 3,
                faultWaitMs: 1.25,
                blocktime: 0.5,
                vcpuBlocktime: [0.5, 0.75],
                missing: 0,
                failure: null,
                windows: 2,
              }
            );
          },
        }),
    verify: async () => {
      clock.t += 10;
      return "verify" in script ? script.verify : null;
    },
    counters: () => ({ duplicate: 0, normal: sentPages, xbzrle: null }),
    explain: (error, phase) => `${phase}: ${error.message}`,
  };
  return { log, clock, guest, transport };
}

const QEMU: PrecopyPolicy = {
  name: "qemu",
  label: "qemu",
  downtimeLimitMs: 300,
  maxRounds: null,
  timeoutMs: 60_000,
  giveUp: "projection",
  postcopyAfterRounds: null,
};

async function run(script: Script, policy: Partial<PrecopyPolicy> = {}) {
  const w = world(script);
  const recorder = new RoundRecorder(w.clock, PAGE, PAGES * PAGE);
  const result = await runPrecopy({
    guest: w.guest,
    clock: w.clock,
    transport: w.transport,
    policy: { ...QEMU, ...policy },
    recorder,
    onPhase: (phase) => w.log.phases.push(phase),
  });
  return { ...w, result };
}

describe("a run that converges", () => {
  it("sends, syncs and asks QEMU's rule each round, then stops the guest for the rest", async () => {
    // 1,000 pages in 1 s leave 400 dirty (over the 300 that fit); 400 in
    // 0.4 s leave 100 (they fit); paused, 120 are left: 120 ms and 50 ms
    // of switchover.
    const { result, log } = await run({ syncs: [400, 100], paused: 120 });
    expect(log.phases).toEqual([
      "pre-copy pass 1",
      "pre-copy pass 2",
      "stop-and-copy",
      "verification",
    ]);
    expect(log.sends).toEqual([
      { running: true, round: 1, untilMs: 60_000 },
      { running: true, round: 2, untilMs: 60_000 },
      { running: false, round: 3, untilMs: Number.POSITIVE_INFINITY },
    ]);
    expect(log.switchovers).toEqual(["stop-and-copy"]);
    expect(log.cancels).toEqual([]);
    expect(log.resumes).toBe(0);
    expect(result.rounds).toEqual([
      {
        round: 1,
        phase: "precopy",
        "start-ms": 5,
        "duration-ms": 1000,
        "pages-sent": 1000,
        "pages-dirtied": 400,
        "bytes-sent": 1000 * PAGE,
        remaining: 400 * PAGE,
        transferred: 1000 * PAGE,
        "dirty-pages-rate": 400,
        mbps: (1000 * PAGE * 8) / 1e6,
        "bandwidth-estimate": RATE,
        "expected-downtime": 400,
        "cpu-throttle-percentage": 0,
        decision: "continue",
        reason: "pending 1.6 MiB > bandwidth x downtime-limit 1.2 MiB",
      },
      {
        round: 2,
        phase: "precopy",
        "start-ms": 1005,
        "duration-ms": 400,
        "pages-sent": 400,
        "pages-dirtied": 100,
        "bytes-sent": 400 * PAGE,
        remaining: 100 * PAGE,
        transferred: 1400 * PAGE,
        "dirty-pages-rate": 250,
        mbps: (400 * PAGE * 8) / 1e6 / 0.4,
        "bandwidth-estimate": RATE,
        "expected-downtime": 100,
        "cpu-throttle-percentage": 0,
        decision: "stop-and-copy",
        reason: "pending 400.0 KiB <= bandwidth x downtime-limit 1.2 MiB",
      },
      {
        round: 3,
        phase: "stop-and-copy",
        "start-ms": 1405,
        "duration-ms": 170,
        "pages-sent": 120,
        "pages-dirtied": 0,
        // The last pages and the device state.
        "bytes-sent": 121 * PAGE,
        remaining: 0,
        transferred: 1521 * PAGE,
        "dirty-pages-rate": 0,
        mbps: (121 * PAGE * 8) / 1e6 / 0.17,
        "bandwidth-estimate": RATE,
        "expected-downtime": 0,
        "cpu-throttle-percentage": 0,
        decision: "stop-and-copy",
        reason: `sent the last 120 pages and the device state; ${FIXED}`,
      },
    ]);
    const s = result.summary;
    expect(s.status).toBe("completed");
    expect(s.reason).toBeNull();
    expect(s.policy).toBe("qemu");
    expect(s.mode).toBe("metadata");
    expect(s.transferred).toBe(1521 * PAGE);
    expect(s.remaining).toBe(0);
    expect(s.normal).toBe(1520);
    expect(s["precopy-bytes"]).toBe(1400 * PAGE);
    expect(s["downtime-bytes"]).toBe(121 * PAGE);
    expect(s["postcopy-bytes"]).toBe(0);
    // The last round's figures: 100 pages dirtied in 0.4 s, 100 ms to send them.
    expect(s["dirty-pages-rate"]).toBe(250);
    expect(s["expected-downtime"]).toBe(100);
    expect(s["setup-time"]).toBe(5);
    expect(s.downtime).toBe(170);
    // Ended as the destination ran the guest: the 10 ms of verification are not in it.
    expect(s["total-time"]).toBe(1575);
    expect(s["pages-per-second"]).toBe(1520 / 1.575);
    expect(s["dirty-sync-count"]).toBe(3);
    expect(s.rounds).toBe(3);
    expect(s.verified).toBe(true);
    expect(s["downtime-over-limit"]).toBe(false);
    expect("warning" in s).toBe(false);
    expect(s["postcopy-requests"]).toBe(0);
    expect(s["postcopy-vcpu-blocktime"]).toEqual([]);
  });

  it("is not checked when the transport cannot verify, and fails a mismatch, resuming the source", async () => {
    const unchecked = await run({ syncs: [100], verify: undefined });
    expect(unchecked.result.summary.status).toBe("completed");
    expect(unchecked.result.summary.verified).toBeNull();
    const wrong = await run({ syncs: [100], verify: "page 7 differs" });
    expect(wrong.result.summary.status).toBe("failed");
    expect(wrong.result.summary.verified).toBe(false);
    expect(wrong.result.summary.reason).toBe("page 7 differs; the guest runs again on the source");
    expect(wrong.log.resumes).toBe(1);
    // A failed run says nothing of the downtime's parts.
    expect("downtime-over-limit" in wrong.result.summary).toBe(false);
  });
});

describe("the downtime over its limit", () => {
  it("blames the fixed part when the last pages fit the limit", async () => {
    const { result } = await run({ syncs: [100], paused: 120, switchoverMs: 400 });
    expect(result.summary.downtime).toBe(520);
    expect(result.summary["downtime-over-limit"]).toBe(true);
    expect(result.summary.warning).toBe(
      `downtime 520.0 ms is over the downtime-limit 300 ms: the last pages took 120.0 ms, within the limit; the fixed part pushed it over: ${FIXED}, 400.0 ms in all`,
    );
  });

  it("blames the rule that stopped with more than the limit's pages left", async () => {
    // Hyper-V's pass cap of 1 suspends with 500 pages: 500 ms of them.
    const { result } = await run(
      { syncs: [500] },
      { name: "hyperv", label: "hyperv (2008r2)", maxRounds: 1 },
    );
    expect(result.rounds[0]?.decision).toBe("stop-and-copy");
    expect(result.summary.downtime).toBe(550);
    expect(result.summary.warning).toBe(
      "downtime 550.0 ms is over the downtime-limit 300 ms: the hyperv (2008r2) rule stopped pre-copy with 2.0 MiB still to send (500.0 ms of it)",
    );
  });

  it("is only flagged on the wall clock, and not at the limit itself", async () => {
    const wall = await run({ kind: "wall", syncs: [100], paused: 120, switchoverMs: 400 });
    expect(wall.result.summary["downtime-over-limit"]).toBe(true);
    expect("warning" in wall.result.summary).toBe(false);
    // 250 pages and 50 ms: exactly 300 ms.
    const at = await run({ syncs: [100], paused: 250 });
    expect(at.result.summary.downtime).toBe(300);
    expect(at.result.summary["downtime-over-limit"]).toBe(false);
  });
});

describe("a run that does not converge", () => {
  it("gives up when the rule does, and tells the destination why", async () => {
    const { result, log } = await run({ syncs: [400] }, { maxRounds: 1 });
    const reason =
      "round cap 1 reached with 1.6 MiB pending (expected downtime 400 ms > limit 300 ms)";
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toBe(reason);
    expect(result.rounds.map((r) => r.decision)).toEqual(["give-up"]);
    expect(log.cancels).toEqual([`migration cancelled by the source: ${reason}`]);
    expect(log.phases).toEqual(["pre-copy pass 1"]);
    expect(log.switchovers).toEqual([]);
    expect(result.summary.remaining).toBe(400 * PAGE);
    expect(result.summary["total-time"]).toBe(1005);
  });

  it("ends at the time limit when a pass is cut, with the figures on virtual time", async () => {
    const { result, log } = await run({ syncs: [400], cutAfter: 600 }, { timeoutMs: 10_000 });
    const reason = "timeout: 1.6 MiB still pending after 0.6 s (limit 10.0 s)";
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toBe(reason);
    expect(result.rounds).toHaveLength(1);
    expect(result.rounds[0]?.decision).toBe("give-up");
    expect(result.rounds[0]?.reason).toBe(reason);
    expect(log.cancels).toEqual([`migration cancelled by the source: ${reason}`]);
  });

  it("ends when a round finishes past the time limit, not at it", async () => {
    // Round 1 ends at 1,005 ms.
    const past = await run({ syncs: [400, 100] }, { timeoutMs: 1004 });
    expect(past.result.summary.status).toBe("not-converged");
    expect(past.result.summary.reason).toBe(
      "timeout: 1.6 MiB still pending after 1.0 s (limit 1.0 s)",
    );
    const at = await run({ syncs: [400, 100] }, { timeoutMs: 1005 });
    expect(at.result.rounds[0]?.decision).toBe("continue");
  });

  it("names the dirty rate against the bandwidth on the wall clock", async () => {
    const { result } = await run({ kind: "wall", syncs: [400], cutAfter: 600 }, {});
    expect(result.summary.reason).toBe(
      "no convergence within 60000 ms: 777 pages/s dirtied against 3.9 MiB/s of bandwidth, 1.6 MiB pending above the 1.2 MiB the downtime-limit allows",
    );
  });
});

describe("a failure", () => {
  it("while paused reports the real pause and resumes the guest on the source", async () => {
    const { result, log } = await run({ syncs: [100], paused: 120, switchoverFails: true });
    // Paused at 1,005 ms; 120 pages and 50 ms later the switchover failed.
    const reason =
      "stop-and-copy: destination gone; the guest was paused 170.0 ms and runs again on the source";
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe(reason);
    expect(result.summary.downtime).toBe(170);
    expect(log.resumes).toBe(1);
    // The destination hears the failure itself; the pause is the source's to report.
    expect(log.cancels).toEqual([
      "migration failed at the source: stop-and-copy: destination gone",
    ]);
    expect(result.summary["total-time"]).toBe(1175);
  });

  it("before the pause names its phase and resumes nothing paused", async () => {
    const { result, log } = await run({ syncs: [], sendFails: true });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe("pre-copy pass 1: link down");
    expect(result.summary.downtime).toBe(0);
    expect(log.cancels).toEqual(["migration failed at the source: pre-copy pass 1: link down"]);
  });
});

describe("post-copy", () => {
  it("switches after the given rounds, pauses for the switchover only, and pulls the rest", async () => {
    const { result, log } = await run({ syncs: [400], paused: 420 }, { postcopyAfterRounds: 1 });
    expect(log.phases).toEqual(["pre-copy pass 1", "stop-and-copy", "post-copy", "verification"]);
    // No pages in the pause: only the device state.
    expect(log.sends).toHaveLength(1);
    expect(log.switchovers).toEqual(["postcopy"]);
    expect(log.postcopies).toEqual([[420, 60_000]]);
    const [first, paused, post] = result.rounds;
    expect(first?.decision).toBe("switch-to-postcopy");
    expect(first?.reason).toBe("post-copy after 1 pre-copy rounds (1.6 MiB pending)");
    expect(paused?.decision).toBe("switch-to-postcopy");
    expect(paused?.["bytes-sent"]).toBe(PAGE);
    expect(paused?.remaining).toBe(420 * PAGE);
    expect(paused?.reason).toBe(
      `paused for the device state and switchover (${FIXED}); 1.6 MiB left for post-copy`,
    );
    expect(post?.phase).toBe("postcopy");
    expect(post?.decision).toBe("continue");
    expect(post?.["pages-sent"]).toBe(420);
    expect(post?.reason).toBe(
      "2 windows: 3 remote faults (1.3 ms waiting), the rest pushed in the background",
    );
    const s = result.summary;
    expect(s.status).toBe("completed");
    expect(s.downtime).toBe(50);
    // The migration ends when post-copy does: 1,005 + 50 + 200.
    expect(s["total-time"]).toBe(1255);
    expect(s["postcopy-bytes"]).toBe(420 * PAGE);
    expect(s["postcopy-requests"]).toBe(3);
    expect(s["postcopy-fault-wait-ms"]).toBe(1.25);
    expect(s["postcopy-blocktime"]).toBe(0.5);
    expect(s["postcopy-vcpu-blocktime"]).toEqual([0.5, 0.75]);
    expect(s.remaining).toBe(0);
  });

  it("does not switch before its round, nor when the rule already stops", async () => {
    const late = await run({ syncs: [400, 350, 100] }, { postcopyAfterRounds: 2 });
    expect(late.result.rounds.map((r) => r.decision)).toEqual([
      "continue",
      "switch-to-postcopy",
      "switch-to-postcopy",
      "continue",
    ]);
    const fits = await run({ syncs: [100] }, { postcopyAfterRounds: 1 });
    expect(fits.result.rounds.map((r) => r.decision)).toEqual(["stop-and-copy", "stop-and-copy"]);
  });

  it("switches on command after the round that asked", async () => {
    let asks = 0;
    const { result } = await run({ syncs: [400, 350] }, { postcopyRequested: () => ++asks === 2 });
    expect(asks).toBe(2);
    expect(result.rounds[1]?.decision).toBe("switch-to-postcopy");
    expect(result.rounds[1]?.reason).toBe(
      "post-copy on command after 2 pre-copy rounds (1.4 MiB pending)",
    );
  });

  it("a failure of its own fails the run and says what was missing", async () => {
    const { result } = await run(
      {
        syncs: [400],
        postcopy: {
          pages: 10,
          bytes: 10 * PAGE,
          requests: 1,
          faultWaitMs: 0,
          blocktime: 0,
          vcpuBlocktime: [0],
          missing: 9,
          failure: "connection lost in post-copy",
          windows: 1,
        },
      },
      { postcopyAfterRounds: 1 },
    );
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe("connection lost in post-copy");
    expect(result.summary.remaining).toBe(9 * PAGE);
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
    expect(result.rounds.at(-1)?.reason).toBe("connection lost in post-copy");
  });

  it("passes post-copy recovery's counts on to the summary, in QEMU's names", async () => {
    const recovery = {
      pauses: 2,
      pausedMs: 340.5,
      rerequestedPages: 6,
      pagesLeft: [120, 45],
      bytesAfterResume: 165 * PAGE,
    };
    const { result } = await run(
      {
        syncs: [400],
        postcopy: {
          pages: 400,
          bytes: 400 * PAGE,
          requests: 9,
          faultWaitMs: 4,
          blocktime: 1,
          vcpuBlocktime: [1, 1],
          missing: 0,
          failure: null,
          windows: 3,
          recovery,
        },
      },
      { postcopyAfterRounds: 1 },
    );
    expect(result.summary["postcopy-recovery"]).toEqual({
      pauses: 2,
      "paused-ms": 340.5,
      "rerequested-pages": 6,
      "pages-left": [120, 45],
      "bytes-after-resume": 165 * PAGE,
    });
    // Without recovery there is no such block.
    const plain = await run({ syncs: [400] }, { postcopyAfterRounds: 1 });
    expect("postcopy-recovery" in plain.result.summary).toBe(false);
  });

  it("a mismatch after the switch keeps the source paused", async () => {
    const { result, log } = await run(
      { syncs: [400], verify: "page 3 differs" },
      { postcopyAfterRounds: 1 },
    );
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe(
      "page 3 differs; the guest ran on the destination since the post-copy switch, and the source keeps its paused copy as of the switch",
    );
    expect(log.resumes).toBe(0);
  });

  it("a transport without it is refused before the run starts, naming the mode", async () => {
    for (const policy of [{ postcopyAfterRounds: 1 }, { postcopyRequested: () => false }]) {
      const { result, log } = await run({ syncs: [400], postcopy: "none" }, policy);
      expect(result.summary.status).toBe("failed");
      expect(result.summary.reason).toBe("setup: the metadata transport has no post-copy");
      // Nothing ran: no pass, no pause, no switchover, nothing to resume from.
      expect(log.phases).toEqual([]);
      expect(log.sends).toEqual([]);
      expect(log.switchovers).toEqual([]);
      expect(result.rounds).toEqual([]);
    }
    // Without post-copy asked for, the same transport migrates.
    const plain = await run({ syncs: [400], postcopy: "none" });
    expect(plain.result.summary.status).toBe("completed");
  });
});

describe("auto-converge and quick migration", () => {
  it("a throttle step is the round's decision, with the new percentage", async () => {
    const { result } = await run({ syncs: [400, 380, 100], throttles: [true, false] });
    expect(result.rounds[0]?.decision).toBe("throttle");
    expect(result.rounds[0]?.reason).toBe(
      "pending 1.6 MiB > bandwidth x downtime-limit 1.2 MiB; bytes dirtied > 50% of bytes sent twice: throttle to 20%",
    );
    expect(result.rounds[0]?.["cpu-throttle-percentage"]).toBe(20);
    expect(result.rounds[1]?.decision).toBe("continue");
    expect(result.summary["cpu-throttle-percentage"]).toBe(20);
  });

  it("quick migration runs no round: it pauses at once and records the copy and the resume", async () => {
    const { result, log } = await run(
      { syncs: [], ownRound: { copy: "saved 4.0 MiB", resume: "restored on the destination" } },
      { name: "quick", label: "quick" },
    );
    expect(log.phases).toEqual(["stop-and-copy", "verification"]);
    expect(log.sends).toEqual([{ running: false, round: 1, untilMs: Number.POSITIVE_INFINITY }]);
    const [copy, resume] = result.rounds;
    expect(copy).toMatchObject({
      phase: "stop-and-copy",
      "start-ms": 5,
      "duration-ms": 1000,
      "pages-sent": 1000,
      "bytes-sent": 1000 * PAGE,
      decision: "stop-and-copy",
      reason: "saved 4.0 MiB",
    });
    expect(resume).toMatchObject({
      phase: "resume",
      "start-ms": 1005,
      "duration-ms": 50,
      "pages-sent": 0,
      "bytes-sent": PAGE,
      "bandwidth-estimate": 0,
      decision: "stop-and-copy",
      reason: "restored on the destination",
    });
    expect(result.summary.downtime).toBe(1050);
    expect(result.summary["total-time"]).toBe(1055);
  });
});

describe("the edges of the loop", () => {
  it("a failure while opening names the setup", async () => {
    const { result, log } = await run({ syncs: [], openFails: true });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe("setup: connection refused");
    expect(log.phases).toEqual([]);
  });

  it("a round of no time has no dirty rate, and an unmeasured link no expected downtime", async () => {
    const instant = await run({ syncs: [100], msPerPage: 0 });
    expect(instant.result.rounds[0]?.["duration-ms"]).toBe(0);
    expect(instant.result.summary["dirty-pages-rate"]).toBe(0);
    // MAX_VALUE: the link has no cap and has not been measured.
    const unmeasured = await run({ syncs: [100], bandwidth: Number.MAX_VALUE });
    expect(unmeasured.result.summary["expected-downtime"]).toBe(0);
    expect(unmeasured.result.summary["dirty-pages-rate"]).toBe(100);
  });

  it("QEMU's rule gives up on a flat pending set, unless auto-converge can still throttle", async () => {
    const flat = [500, 500, 500, 500, 500, 500, 500];
    const alone = await run({ syncs: flat });
    expect(alone.result.summary.status).toBe("not-converged");
    expect(alone.result.rounds).toHaveLength(6);
    expect(alone.result.summary.reason).toBe(
      "pending 2.0 MiB does not shrink (shrink factor 1.0000 ± 0.0000 a round over the last 6 rounds): the writable working set does not fit bandwidth x downtime-limit 1.2 MiB",
    );
    const throttling = await run({ syncs: flat, throttles: flat.map(() => false) });
    expect(throttling.result.rounds.slice(0, 7).map((r) => r.decision)).toEqual(
      flat.map(() => "continue"),
    );
  });

  it("neither a post-copy command nor a throttle step overrides a stop", async () => {
    let asks = 0;
    const asked = await run(
      { syncs: [100] },
      {
        postcopyRequested: () => {
          asks++;
          return true;
        },
      },
    );
    expect(asked.result.rounds.map((r) => r.decision)).toEqual(["stop-and-copy", "stop-and-copy"]);
    expect(asks).toBe(0);
    const throttled = await run({ syncs: [100], throttles: [true] });
    expect(throttled.result.rounds.map((r) => r.decision)).toEqual([
      "stop-and-copy",
      "stop-and-copy",
    ]);
  });

  it("a round ended by the time limit and a post-copy round carry the throttle", async () => {
    const timedOut = await run({ syncs: [400], cutAfter: 600, throttles: [true] });
    expect(timedOut.result.rounds[0]?.decision).toBe("give-up");
    expect(timedOut.result.rounds[0]?.["cpu-throttle-percentage"]).toBe(0);
    // Round 1 ends at 1,005 ms and throttles; round 2 ends at 1,405, past the limit.
    const late = await run({ syncs: [400, 380, 100], throttles: [true] }, { timeoutMs: 1100 });
    expect(late.result.rounds.map((r) => r.decision)).toEqual(["throttle", "give-up"]);
    expect(late.result.rounds[1]?.["cpu-throttle-percentage"]).toBe(20);
    const post = await run({ syncs: [400], throttles: [true] }, { postcopyAfterRounds: 1 });
    expect(post.result.rounds.map((r) => r.phase)).toEqual([
      "precopy",
      "stop-and-copy",
      "postcopy",
    ]);
    expect(post.result.rounds[2]?.["cpu-throttle-percentage"]).toBe(20);
  });

  it("counts post-copy's pages in the run's pages a second", async () => {
    const { result } = await run({ syncs: [400], paused: 420 }, { postcopyAfterRounds: 1 });
    // 1,000 pages before, 420 after the switch, in 1,255 ms.
    expect(result.summary["pages-per-second"]).toBe(1420 / 1.255);
  });

  // The last pages' time is the clock's, not their bytes at a rate: a
  // completion's pages need not all go at one pace (QEMU's iteration times
  // pages the destination never held at their own).
  it("times the last pages by the clock", async () => {
    const { result } = await run({ syncs: [100], paused: 120, msPerPage: 2, switchoverMs: 400 });
    expect(result.summary.downtime).toBe(640);
    expect(result.summary.warning).toBe(
      `downtime 640.0 ms is over the downtime-limit 300 ms: the last pages took 240.0 ms, within the limit; the fixed part pushed it over: ${FIXED}, 400.0 ms in all`,
    );
  });

  it("warns of no downtime over the limit once the run failed after it", async () => {
    const { result } = await run({
      syncs: [100],
      paused: 120,
      switchoverMs: 400,
      verify: "page 1 differs",
    });
    expect(result.summary.status).toBe("failed");
    expect("warning" in result.summary).toBe(false);
  });

  it("pages that take exactly the limit are within it: the fixed part is to blame", async () => {
    // 300 pages left after round 1 fit the rule (one a ms) and take exactly the limit.
    const { result } = await run(
      { syncs: [300], paused: 300 },
      { name: "hyperv", label: "hyperv (2008r2)", maxRounds: 1 },
    );
    expect(result.summary.downtime).toBe(350);
    expect(result.summary.warning).toBe(
      `downtime 350.0 ms is over the downtime-limit 300 ms: the last pages took 300.0 ms, within the limit; the fixed part pushed it over: ${FIXED}, 50.0 ms in all`,
    );
  });
});
