import { afterEach, describe, expect, it } from "vitest";
import { FrameType } from "../src/migration/live/frame.js";
import { decodeHello, encodeAccept, encodePageRequest } from "../src/migration/live/messages.js";
import type { MigrationResult, MigrationRound } from "../src/migration/stats.js";
import { hvlabAsync as hvlab, startHvlab } from "./support/cli.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";

const rig = new LivePostcopyRig();
afterEach(() => rig.close());

/** The link runs at 4 MiB/s: pass 1 takes about 2 s and post-copy has pages left to pull. */
const LINK = 4 * 1024 ** 2;

function phase(result: MigrationResult, name: MigrationRound["phase"]): MigrationRound[] {
  return result.rounds.filter((round) => round.phase === name);
}

/**
 * A destination that follows the protocol up to post-copy's switch, then
 * sends one page request for `request` (first page, count), whatever the
 * guest's size: what a broken or hostile destination might send. Resolves
 * `told` with the reason of the error frame the source answers with.
 */
function misbehavingDestination(request: (guestPages: number) => [number, number]) {
  let guestPages = 0;
  return rig.fakeDestination((frame, reply, writer) => {
    if (frame.type === FrameType.hello) {
      const hello = decodeHello(frame.payload);
      guestPages = hello.guestBytes / 4096;
      reply(FrameType.accept, encodeAccept(writer.payload(8), hello.sessionId));
    } else if (frame.type === FrameType.postcopyRun) {
      reply(FrameType.resumed, 0);
      const [first, count] = request(guestPages);
      reply(FrameType.pageRequest, encodePageRequest(writer.payload(8), first, count));
    }
  });
}

describe("post-copy over TCP", () => {
  it("switches after pass 1, pulls faulted pages, pushes the rest and verifies every page", async () => {
    const dest = await rig.destination();
    const s = rig.source();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: dest.port,
      maxBandwidth: LINK,
      postcopyAfter: 1,
      timeoutMs: 30_000,
    });
    const report = await dest.nextReport();
    expect(result.summary.reason).toBeNull();
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect(report).toMatchObject({ status: "completed", verified: true, mismatches: 0 });
    const [switched] = phase(result, "stop-and-copy");
    expect(switched?.decision).toBe("switch-to-postcopy");
    const [post] = phase(result, "postcopy");
    expect(post).toBeDefined();
    const summary = result.summary;
    expect(summary["postcopy-bytes"]).toBeGreaterThan(0);
    // The destination's vCPUs wrote uniformly over a guest with pages missing: they faulted.
    expect(summary["postcopy-requests"]).toBeGreaterThan(0);
    expect(report.postcopy?.requests).toBe(summary["postcopy-requests"]);
    expect(report.postcopy?.writes).toBeGreaterThan(0);
    const vcpu = summary["postcopy-vcpu-blocktime"] ?? [];
    expect(vcpu).toHaveLength(2);
    // A blocked vCPU is blocked within the phase: from the switch to post-copy's end.
    const phaseMs = summary.downtime + (post?.["duration-ms"] ?? 0);
    for (const ms of vcpu) {
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThanOrEqual(phaseMs);
    }
    // All vCPUs blocked at once is no longer than any one blocked.
    expect(summary["postcopy-blocktime"]).toBeLessThanOrEqual(Math.min(...vcpu));
    expect(summary["postcopy-fault-wait-ms"]).toBeCloseTo(
      vcpu.reduce((a, b) => a + b, 0),
      6,
    );
  }, 60_000);

  it("on command (QEMU's migrate-start-postcopy): the pass under way ends in post-copy", async () => {
    const dest = await rig.destination();
    const s = rig.source();
    // Nothing to switch before an attempt runs.
    expect(s.startPostcopy()).toBe(false);
    let asked: boolean | undefined;
    const running = s.migrate({
      host: "127.0.0.1",
      port: dest.port,
      maxBandwidth: LINK,
      timeoutMs: 30_000,
    });
    setTimeout(() => {
      asked = s.startPostcopy();
    }, 300);
    const result = await running;
    expect(asked).toBe(true);
    expect(result.summary.reason).toBeNull();
    expect(result.summary.verified).toBe(true);
    expect(result.rounds.map((r) => r.phase)).toEqual(["precopy", "stop-and-copy", "postcopy"]);
    expect(result.rounds[0]?.reason).toMatch(/^post-copy on command after 1 pre-copy rounds/);
    expect((await dest.nextReport()).status).toBe("completed");
  }, 60_000);

  it("post-copy after multifd pre-copy passes: every page verified", async () => {
    const dest = await rig.destination();
    const s = rig.source();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: dest.port,
      maxBandwidth: LINK,
      multifdChannels: 2,
      postcopyAfter: 1,
      timeoutMs: 30_000,
    });
    expect(result.summary.reason).toBeNull();
    expect(result.summary.verified).toBe(true);
    expect(phase(result, "postcopy")).toHaveLength(1);
    expect((await dest.nextReport()).channels).toBe(2);
  }, 60_000);

  it("a cut during post-copy loses the guest on both sides and keeps the source's copy", async () => {
    const dest = await rig.destination();
    const proxy = await rig.proxy(dest.port);
    const s = rig.source();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: proxy.port,
      // Slow enough that post-copy is still pushing when the cut comes.
      maxBandwidth: LINK / 4,
      postcopyAfter: 1,
      timeoutMs: 30_000,
      onRound: (round) => {
        if (round.phase === "stop-and-copy") setTimeout(proxy.cut, 50);
      },
    });
    const report = await dest.nextReport();
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(/during post-copy/);
    expect(result.summary.reason).toMatch(/lost/);
    expect(result.summary.reason).toMatch(/source keeps its paused copy/);
    expect(report.status).toBe("failed");
    expect(report.reason).toMatch(/post-copy broke with \d+ pages still on the source/);
    expect(report.reason).toMatch(/is lost/);
    expect(report.discarded).toBe(true);
    // The source's guest is paused, not discarded: migrating it again completes and verifies.
    expect(s.runner.running).toBe(false);
    const again = await s.migrate({ host: "127.0.0.1", port: dest.port });
    expect(again.summary.status).toBe("completed");
    expect(again.summary.verified).toBe(true);
    expect((await dest.nextReport()).status).toBe("completed");
  }, 60_000);

  it("refuses a page request outside the guest with a clear error, and says so to the destination", async () => {
    const fake = await misbehavingDestination((pages) => [pages + 5, 1]);
    const s = rig.source();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: fake.port,
      // Pass 1 leaves more than the downtime-limit allows: the policy goes on, and post-copy starts.
      maxBandwidth: 2 * LINK,
      postcopyAfter: 1,
      verify: false,
      // Bounds the wait for the fake's replies; on a loaded machine one
      // took more than 5 s to come back through this process's loop.
      replyTimeoutMs: 20_000,
    });
    const outside = /page-request frame: pages 2053 to 2053 are outside the guest's 2048 pages/;
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(outside);
    expect(result.summary.reason).toMatch(
      /^post-copy .*the guest ran on the destination .* is lost/,
    );
    expect(await fake.told).toMatch(outside);
    // After the switch the source's guest stays paused: it never runs in two places.
    expect(s.runner.running).toBe(false);
  }, 60_000);

  it("hvlab migrate --to --postcopy-after: the post-copy phase in the rounds and summary by QEMU's names", async () => {
    const dest = await rig.destination();
    const run = await hvlab([
      "migrate",
      "--to",
      `127.0.0.1:${dest.port}`,
      "--mode",
      "content",
      "--guest",
      "8MiB",
      "--workload",
      "uniform",
      "--dirty-rate",
      "4000",
      "--bandwidth",
      "32Mbit",
      "--postcopy-after",
      "1",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as {
      rounds: { hvlab: { phase: string; decision: string } }[];
      summary: {
        status: string;
        ram: { "postcopy-bytes": number; "postcopy-requests": number };
        "postcopy-blocktime": number;
        "postcopy-vcpu-blocktime": number[];
        hvlab: { verified: boolean };
      };
    };
    expect(out.summary.status).toBe("completed");
    expect(out.summary.hvlab.verified).toBe(true);
    expect(out.summary.ram["postcopy-bytes"]).toBeGreaterThan(0);
    expect(out.summary.ram["postcopy-requests"]).toBeGreaterThan(0);
    expect(out.summary["postcopy-vcpu-blocktime"]).toHaveLength(2);
    expect(out.summary["postcopy-blocktime"]).toBeGreaterThanOrEqual(0);
    expect(out.rounds.map((r) => r.hvlab.phase)).toEqual(["precopy", "stop-and-copy", "postcopy"]);
    expect(out.rounds[1]?.hvlab.decision).toBe("switch-to-postcopy");
    expect((await dest.nextReport()).status).toBe("completed");
  }, 60_000);

  it("SIGUSR2 to hvlab migrate-live --to is migrate-start-postcopy", async () => {
    const dest = await rig.destination();
    const run = startHvlab([
      "migrate-live",
      "--to",
      `127.0.0.1:${dest.port}`,
      "--guest",
      "8MiB",
      "--workload",
      "uniform",
      "--rate",
      "4000",
      "--max-bandwidth",
      "4MiB",
      "--json",
    ]);
    // The signal goes once the migration is under way (its hello reached the destination).
    while (!dest.server.receiving) await new Promise((resolve) => setTimeout(resolve, 20));
    run.child.kill("SIGUSR2");
    const code = await run.exited;
    expect(run.output.stderr).toMatch(
      /SIGUSR2: switching to post-copy at the end of this pre-copy pass/,
    );
    expect(code).toBe(0);
    const out = JSON.parse(run.output.stdout) as { rounds: { hvlab: { phase: string } }[] };
    expect(out.rounds.map((r) => r.hvlab.phase)).toEqual(["precopy", "stop-and-copy", "postcopy"]);
    expect((await dest.nextReport()).status).toBe("completed");
  }, 60_000);
});
