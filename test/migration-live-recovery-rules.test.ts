import { afterEach, describe, expect, it } from "vitest";
import { FrameType } from "../src/migration/live/frame.js";
import { decodeHello, encodeAccept, encodeResult } from "../src/migration/live/messages.js";
import type { PostcopyStatus } from "../src/migration/live/postcopy-recovery.js";
import type { LiveMigrationOptions, LiveSource } from "../src/migration/live/source.js";
import type { MigrationResult } from "../src/migration/stats.js";
import { type FakeAnswer, LivePostcopyRig } from "./support/live-postcopy.js";

// Post-copy recovery and a source's answers to a destination that gets the
// protocol wrong, with both ends on this thread. The guest is idle; the test
// dirties pages during pass 1 so that post-copy has pages left to push, and
// cuts the link at post-copy's first pages frame: no clock decides where.

const PAGES = 256;

const rig = new LivePostcopyRig();
afterEach(() => rig.close());

/**
 * A progress hook that dirties pages after pass 1's frames (so post-copy
 * starts with pages left) and calls `atPostcopy` on post-copy's first frame.
 */
function hooks(s: LiveSource, atPostcopy: () => void): (bytes: number) => void {
  let fired = false;
  return () => {
    const phase = s.activity?.phase ?? "";
    if (phase === "pre-copy pass 1") void s.guest.write(400);
    if (phase === "post-copy" && !fired) {
      fired = true;
      atPostcopy();
    }
  };
}

/**
 * Migrates `s` through `port`, switching to post-copy after pass 1 (which
 * the hook keeps from converging), and calls `atPostcopy` at post-copy's
 * first pages frame.
 */
function migrateToPostcopy(
  s: LiveSource,
  port: number,
  atPostcopy: () => void,
  options: Partial<LiveMigrationOptions> = {},
): Promise<MigrationResult> {
  return s.migrate({
    host: "127.0.0.1",
    port,
    postcopyAfter: 1,
    downtimeLimitMs: 0.001,
    onProgress: hooks(s, atPostcopy),
    ...options,
  });
}

describe("post-copy recovery on this thread", () => {
  it("a cut at post-copy's first frame pauses both sides; the source reconnects and resumes from the bitmap; every page verifies", async () => {
    const dest = await rig.destination({ postcopyRecoverMs: 10_000 });
    const link = await rig.proxy(dest.port);
    const s = rig.idleSource({ seed: 5 });
    const statuses: PostcopyStatus[] = [];
    const result = await migrateToPostcopy(s, link.port, () => link.cut(), {
      postcopyRecoverMs: 10_000,
      onPostcopyStatus: (status) => statuses.push(status),
    });
    expect(result.summary.reason).toBeNull();
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    expect(statuses).toEqual([
      "postcopy-active",
      "postcopy-paused",
      "postcopy-recover",
      "postcopy-active",
      "completed",
    ]);
    const report = await dest.nextReport();
    expect(report).toMatchObject({ status: "completed", verified: true, mismatches: 0 });
    expect(report.recovery?.pauses).toBe(1);
    const recovered = result.summary["postcopy-recovery"];
    expect(recovered?.pauses).toBe(1);
    // What the source had left is what the destination was missing.
    expect(recovered?.["pages-left"]).toEqual(report.recovery?.missingAtResume);
    const [left = 0] = report.recovery?.missingAtResume ?? [];
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThan(PAGES);
    expect(recovered?.["bytes-after-resume"]).toBeGreaterThanOrEqual(left * 4096);
    // No vCPU wrote at the destination (the guest is idle): none waited on a page.
    expect(report.recovery?.rerequested).toBe(0);
  });

  it("no reconnect within the wait fails both sides, each saying it waited", async () => {
    const dest = await rig.destination({ postcopyRecoverMs: 400 });
    const link = await rig.proxy(dest.port);
    const s = rig.idleSource({ seed: 5 });
    const statuses: PostcopyStatus[] = [];
    // The link refuses connections for longer than either side waits.
    const result = await migrateToPostcopy(s, link.port, () => link.cut(1_000), {
      postcopyRecoverMs: 300,
      replyTimeoutMs: 2000,
      onPostcopyStatus: (status) => statuses.push(status),
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      /post-copy paused and no recovery within 300 ms \(last try: .*\): the guest ran on the destination since the switch and is lost there \(\d+ pages never sent\)/,
    );
    expect(statuses[0]).toBe("postcopy-active");
    expect(statuses[1]).toBe("postcopy-paused");
    expect(statuses.at(-1)).toBe("failed");
    // The guest never runs in two places: the source's copy stays paused.
    expect(s.runner.running).toBe(false);
    const report = await dest.nextReport();
    expect(report.status).toBe("failed");
    expect(report.reason).toMatch(/post-copy paused and no source resumed it within 400 ms/);
    expect(report.recovery?.pauses).toBe(1);
  });

  it("without recovery a cut in post-copy loses the guest on both sides", async () => {
    const dest = await rig.destination();
    const link = await rig.proxy(dest.port);
    const s = rig.idleSource({ seed: 5 });
    const result = await migrateToPostcopy(s, link.port, () => link.cut());
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      /^the connection to 127\.0\.0\.1:\d+ dropped during post-copy after .*: the guest ran on the destination since the switch and is lost there \(\d+ pages never sent\)/,
    );
    expect(result.summary["postcopy-recovery"]).toBeUndefined();
    const report = await dest.nextReport();
    expect(report).toMatchObject({ status: "failed", discarded: true });
    expect(report.reason).toMatch(
      /post-copy broke with \d+ pages still on the source: the guest ran here since the switch and is lost/,
    );
    expect(report.recovery).toBeUndefined();
  });
});

describe("a source's answers to a destination that gets the protocol wrong", () => {
  /** Answers the hello with an accept of `session(id)`; everything else as `rest` says. */
  function acceptAs(session: (id: number) => number, rest: FakeAnswer = () => {}): FakeAnswer {
    return (frame, reply, writer) => {
      if (frame.type === FrameType.hello) {
        const hello = decodeHello(frame.payload);
        reply(FrameType.accept, encodeAccept(writer.payload(8), session(hello.sessionId)));
        return;
      }
      rest(frame, reply, writer);
    };
  }

  it("an accept of another session", async () => {
    let sent = 0;
    const fake = await rig.fakeDestination(
      acceptAs((id) => {
        sent = id;
        return (id + 1) >>> 0;
      }),
    );
    const result = await rig
      .idleSource({ seed: 5 })
      .migrate({ host: "127.0.0.1", port: fake.port });
    const words = `the destination accepted session ${(sent + 1) >>> 0}, not ${sent}`;
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toContain(words);
    expect(await fake.told).toContain(words);
  });

  it("no accept within the reply timeout", async () => {
    const fake = await rig.fakeDestination(() => {});
    const s = rig.idleSource({ seed: 5 });
    const result = await s.migrate({ host: "127.0.0.1", port: fake.port, replyTimeoutMs: 200 });
    expect(result.summary.reason).toContain(
      "the destination did not accept the migration within 200 ms",
    );
    expect(s.runner.running).toBe(true);
  });

  /** A destination that takes every frame and answers verification with `result`. */
  function verifying(result: { mismatches: number; first: number | null; device: boolean }) {
    return acceptAs(
      (id) => id,
      (frame, reply, writer) => {
        if (frame.type === FrameType.switchover) reply(FrameType.resumed, 0);
        if (frame.type === FrameType.verifyEnd) {
          reply(
            FrameType.result,
            encodeResult(writer.payload(16), {
              mismatches: result.mismatches,
              firstMismatch: result.first,
              pagesReceived: PAGES,
              deviceStateGood: result.device,
            }),
          );
        }
      },
    );
  }

  it("verification's mismatches, named with the first page", async () => {
    const fake = await rig.fakeDestination(verifying({ mismatches: 3, first: 17, device: true }));
    const s = rig.idleSource({ seed: 5 });
    const result = await s.migrate({ host: "127.0.0.1", port: fake.port });
    expect(result.summary.status).toBe("failed");
    expect(s.runner.running).toBe(true);
    expect(result.summary.reason).toBe(
      "verification failed: 3 destination pages differ from the source (first: page 17); the guest runs again on the source",
    );
    expect(result.summary.verified).toBe(false);
  });

  it("a device state that differs", async () => {
    const fake = await rig.fakeDestination(
      verifying({ mismatches: 0, first: null, device: false }),
    );
    const result = await rig
      .idleSource({ seed: 5 })
      .migrate({ host: "127.0.0.1", port: fake.port });
    expect(result.summary.reason).toBe(
      "verification failed: the device state differs from the source's; the guest runs again on the source",
    );
    expect(result.summary.verified).toBe(false);
  });

  it("a destination that says the pages match completes the run", async () => {
    const fake = await rig.fakeDestination(verifying({ mismatches: 0, first: null, device: true }));
    const result = await rig
      .idleSource({ seed: 5 })
      .migrate({ host: "127.0.0.1", port: fake.port });
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
  });
});
