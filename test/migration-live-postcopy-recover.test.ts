import { afterEach, describe, expect, it } from "vitest";
import { FrameType } from "../src/migration/live/frame.js";
import {
  decodeRecoverHello,
  encodeRecvBitmap,
  recvBitmapBytes,
} from "../src/migration/live/messages.js";
import type { PostcopyStatus } from "../src/migration/live/postcopy-recovery.js";
import type { LiveSource } from "../src/migration/live/source.js";
import type { MigrationResult } from "../src/migration/stats.js";
import { hvlabAsync as hvlab, startHvlab } from "./support/cli.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";

const MiB = 1024 ** 2;
/** 2 MiB/s: pass 1 of the 8 MiB guest takes about 4 s, post-copy as long. */
const LINK = 2 * MiB;
/** How long either side waits for a recovery in these tests. */
const RECOVER_MS = 20_000;
const PAGE = 4096;

const rig = new LivePostcopyRig();
afterEach(() => rig.close());

/** A destination that waits RECOVER_MS for a paused post-copy session. */
const destination = () => rig.destination({ postcopyRecoverMs: RECOVER_MS });

/** A migration through `link` that switches to post-copy after pass 1, with recovery on. */
async function migrate(
  s: LiveSource,
  port: number,
  onStatus: (status: PostcopyStatus) => void,
  onSwitch: () => void,
): Promise<MigrationResult> {
  return await s.migrate({
    host: "127.0.0.1",
    port,
    maxBandwidth: LINK,
    postcopyAfter: 1,
    timeoutMs: 30_000,
    postcopyRecoverMs: RECOVER_MS,
    onPostcopyStatus: onStatus,
    onRound: (round) => {
      if (round.phase === "stop-and-copy") onSwitch();
    },
  });
}

/**
 * Bytes a resume may put on the link at most: every page left (page number
 * and bytes), each page requested again once more, a frame's header and
 * digest per 64 pages, and 64 KiB for the control frames.
 */
function resumeBudget(left: number, rerequested: number): number {
  const page = PAGE + 4;
  const frames = Math.ceil((left + rerequested) / 64) + rerequested;
  return left * page + rerequested * page + frames * (24 + 8 + 8) + 64 * 1024;
}

describe("post-copy recovery over TCP (QEMU's postcopy-recover)", () => {
  it("a cut during post-copy pauses both sides; the source reconnects, resumes from the destination's bitmap, and every page verifies", async () => {
    const dest = await destination();
    const link = await rig.proxy(dest.port);
    const s = rig.source();
    const statuses: PostcopyStatus[] = [];
    const result = await migrate(
      s,
      link.port,
      (status) => statuses.push(status),
      // Well into post-copy; the destination is unreachable for 600 ms: the source retries.
      () => setTimeout(() => link.cut(600), 400),
    );
    const report = await dest.nextReport();
    expect(result.summary.reason).toBeNull();
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect(report).toMatchObject({ status: "completed", verified: true, mismatches: 0 });
    expect(statuses).toEqual([
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-active",
      "completed",
    ]);
    const recovered = result.summary["postcopy-recovery"];
    expect(recovered?.pauses).toBe(1);
    // Paused at least while the address refused connections (less the time the break took to notice).
    expect(recovered?.["paused-ms"]).toBeGreaterThanOrEqual(500);
    expect(report.recovery?.pauses).toBe(1);
    // What the source had left is exactly what the destination was missing.
    const missing = report.recovery?.missingAtResume ?? [];
    expect(missing).toHaveLength(1);
    expect(recovered?.["pages-left"]).toEqual(missing);
    const left = missing[0] ?? 0;
    const [switched] = result.rounds.filter((round) => round.phase === "stop-and-copy");
    const atSwitch = (switched?.remaining ?? 0) / PAGE;
    // Pages arrived before the break, and pages were left after it.
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(atSwitch);
    // Pages received before the break are not sent again: after the resume
    // the link carries the pages left (and requests repeated), not the guest.
    const after = recovered?.["bytes-after-resume"] ?? Number.POSITIVE_INFINITY;
    const rerequested = recovered?.["rerequested-pages"] ?? 0;
    expect(rerequested).toBe(report.recovery?.rerequested);
    expect(after).toBeGreaterThanOrEqual(left * PAGE);
    expect(after).toBeLessThan(resumeBudget(left, rerequested));
    // The destination's vCPUs ran across the pause: their writes verified with every page.
    expect(report.postcopy?.writes).toBeGreaterThan(0);
  }, 90_000);

  it("a second break during the recovery pauses again, and the next reconnect recovers", async () => {
    const dest = await destination();
    const link = await rig.proxy(dest.port);
    const s = rig.source();
    const statuses: PostcopyStatus[] = [];
    let recovers = 0;
    const result = await migrate(
      s,
      link.port,
      (status) => {
        statuses.push(status);
        // The first reconnect is cut as soon as it is up.
        if (status === "postcopy-recover" && ++recovers === 1) link.cut();
      },
      () => setTimeout(() => link.cut(), 400),
    );
    const report = await dest.nextReport();
    expect(result.summary.reason).toBeNull();
    expect(result.summary.verified).toBe(true);
    expect(report).toMatchObject({ status: "completed", verified: true });
    expect(statuses).toEqual([
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-active",
      "completed",
    ]);
    // One pause, recovered on the second try.
    expect(result.summary["postcopy-recovery"]?.pauses).toBe(1);
    expect(report.recovery?.missingAtResume).toEqual(
      result.summary["postcopy-recovery"]?.["pages-left"],
    );
  }, 90_000);

  it("a received-page bitmap of the wrong size is refused: the run fails and the destination is told why", async () => {
    const dest = await destination();
    const link = await rig.proxy(dest.port);
    // After the cut the source reaches a destination whose bitmap covers 64 pages more than the guest.
    const wrong = await wrongBitmapDestination(64);
    const s = rig.source();
    const result = await migrate(
      s,
      link.port,
      () => {},
      () =>
        setTimeout(() => {
          link.target.port = wrong.port;
          link.cut();
        }, 400),
    );
    const mismatch = /the destination's bitmap covers 2112 pages, this guest has 2048/;
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(mismatch);
    expect(await wrong.told).toMatch(mismatch);
    // The guest never runs in two places: the source's copy stays paused.
    expect(s.runner.running).toBe(false);
  }, 90_000);

  it("hvlab migrate --to --postcopy-recover: the source reconnects after a cut and the JSON counts the pause", async () => {
    const dest = await rig.destination({ postcopyRecoverMs: RECOVER_MS });
    const reports = dest.reports;
    const link = await rig.proxy(dest.port);
    const running = hvlab([
      "migrate",
      "--to",
      `127.0.0.1:${link.port}`,
      "--mode",
      "content",
      "--guest",
      "8MiB",
      "--workload",
      "uniform",
      "--dirty-rate",
      "4000",
      "--bandwidth",
      "16Mbit",
      "--postcopy-after",
      "1",
      "--postcopy-recover",
      String(RECOVER_MS),
      "--json",
    ]);
    // Pass 1 lands every page once: more than that is post-copy under way.
    const guestPages = (8 * MiB) / PAGE;
    while (dest.server.pagesReceiving < guestPages + 64) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    link.cut(300);
    const run = await running;
    expect(run.stderr).toMatch(
      /post-copy paused: the connection to 127\.0\.0\.1:\d+ broke; reconnecting for up to 20000 ms/,
    );
    expect(run.stderr).toMatch(/post-copy recovering: reconnected/);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as {
      summary: {
        status: string;
        hvlab: { verified: boolean; "postcopy-recovery": { pauses: number } };
      };
    };
    expect(out.summary.status).toBe("completed");
    expect(out.summary.hvlab.verified).toBe(true);
    expect(out.summary.hvlab["postcopy-recovery"].pauses).toBe(1);
    while (reports.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(reports[0]).toMatchObject({ status: "completed", verified: true });
    expect(reports[0]?.recovery?.pauses).toBe(1);
  }, 90_000);

  it("hvlab migrate --listen --postcopy-recover: the destination waits for its source, resumes and completes", async () => {
    const run = startHvlab(["migrate", "--listen", "0", "--postcopy-recover", String(RECOVER_MS)]);
    try {
      while (!/listening on 127\.0\.0\.1:\d+/.test(run.output.stdout)) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(run.output.stdout)?.[1]);
      const link = await rig.proxy(port);
      const statuses: PostcopyStatus[] = [];
      const result = await migrate(
        rig.source(),
        link.port,
        (status) => statuses.push(status),
        () => setTimeout(() => link.cut(300), 400),
      );
      expect(result.summary.reason).toBeNull();
      expect(result.summary.verified).toBe(true);
      expect(statuses).toContain("postcopy-paused");
      expect(result.summary["postcopy-recovery"]?.pauses).toBe(1);
      const code = await run.exited;
      // The destination command saw one migration, completed: the pause did not end it.
      expect(run.output.stderr).toBe("");
      expect(run.output.stdout).toMatch(
        /migration 1 from 127\.0\.0\.1:\d+ completed: 8\.0 MiB guest, .* every page verified/,
      );
      expect(code).toBe(0);
    } finally {
      run.child.kill();
    }
  }, 90_000);

  it("a source that reconnects to a destination without recovery is told nothing is paused there", async () => {
    const dest = await rig.destination();
    const reports = dest.reports;
    const link = await rig.proxy(dest.port);
    const result = await migrate(
      rig.source(),
      link.port,
      () => {},
      () => setTimeout(() => link.cut(), 400),
    );
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      /no post-copy migration is paused here to resume .*is lost there/,
    );
    // The destination lost the guest at the cut, and refused the reconnect as a session of its own.
    expect(reports.map((report) => report.status)).toEqual(["failed", "failed"]);
    expect(reports[0]?.reason).toMatch(/is lost/);
  }, 90_000);

  it("without recovery a cut still loses the guest on both sides (the default is unchanged)", async () => {
    const dest = await rig.destination();
    const reports = dest.reports;
    const link = await rig.proxy(dest.port);
    const s = rig.source();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: link.port,
      maxBandwidth: LINK,
      postcopyAfter: 1,
      timeoutMs: 30_000,
      onRound: (round) => {
        if (round.phase === "stop-and-copy") setTimeout(() => link.cut(), 400);
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(/during post-copy.*is lost there/);
    expect(result.summary["postcopy-recovery"]).toBeUndefined();
    while (reports.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(reports[0]?.reason).toMatch(/is lost/);
    expect(reports[0]?.recovery).toBeUndefined();
  }, 90_000);
});

/**
 * A destination that answers a recover-hello with a received-page bitmap
 * of `extra` pages more than the guest, and resolves `told` with the reason
 * of the error frame the source answers with.
 */
function wrongBitmapDestination(extra: number) {
  return rig.fakeDestination(
    (frame, reply, writer) => {
      if (frame.type === FrameType.recoverHello) {
        const pages = decodeRecoverHello(frame.payload).guestPages + extra;
        reply(
          FrameType.recvBitmap,
          encodeRecvBitmap(writer.payload(recvBitmapBytes(pages)), pages, () => true),
        );
      }
    },
    recvBitmapBytes(2 ** 19),
  );
}
