import { once } from "node:events";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { FrameType } from "../src/migration/live/frame.js";
import {
  decodeRecvBitmap,
  decodeResumeAck,
  encodePostcopyResume,
  encodeRecoverHello,
} from "../src/migration/live/messages.js";
import { LivePostcopyRig, type TestDestination } from "./support/live-postcopy.js";
import { RawSource } from "./support/live-raw-source.js";

// Post-copy's rules on this thread: migrate-start-postcopy asked during a
// pass, and a destination's recovery handshake driven by hand against a
// session left paused by a source that gave up (docs/migration-live.md,
// post-copy recovery).

const PAGES = 256;

const rig = new LivePostcopyRig();
const peers: RawSource[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await rig.close();
});

/** A loopback port nothing listens on (the kernel picked it, then it was closed). */
async function closedPort(): Promise<number> {
  const server = createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("not listening");
  server.close();
  await once(server, "close");
  return address.port;
}

async function peer(port: number): Promise<RawSource> {
  const p = await RawSource.connect(port);
  peers.push(p);
  return p;
}

describe("migrate-start-postcopy", () => {
  it("asked during pass 1, the run switches to post-copy when the pass ends, and every page verifies", async () => {
    const dest = await rig.destination();
    const s = rig.idleSource();
    const asked: boolean[] = [];
    const result = await s.migrate({
      host: "127.0.0.1",
      port: dest.port,
      downtimeLimitMs: 0.001,
      maxRounds: 5,
      onProgress: () => {
        if (s.activity?.phase !== "pre-copy pass 1") return;
        // Pages dirtied in the pass: without the command, pass 2 would follow.
        void s.guest.write(300);
        asked.push(s.startPostcopy());
      },
    });
    // Asked after each of the pass's frames; each time the pass was still pre-copy.
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.every(Boolean)).toBe(true);
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    expect(result.rounds.map((r) => r.phase)).toEqual(["precopy", "stop-and-copy", "postcopy"]);
    expect((await dest.nextReport()).postcopy).toBeDefined();
  });
});

describe("a destination's post-copy session paused by a broken link", () => {
  /**
   * Migrates an idle source through a proxy to `dest`, switching to
   * post-copy after pass 1, and cuts the link at post-copy's first frame
   * with the proxy then leading nowhere: the source's reconnects fail and
   * it gives up at once (it waits 1 ms), leaving the destination paused.
   */
  async function abandon(dest: TestDestination): Promise<void> {
    const link = await rig.proxy(dest.port);
    const nowhere = await closedPort();
    const s = rig.idleSource();
    let cut = false;
    const result = await s.migrate({
      host: "127.0.0.1",
      port: link.port,
      postcopyAfter: 1,
      downtimeLimitMs: 0.001,
      postcopyRecoverMs: 1,
      onProgress: () => {
        const phase = s.activity?.phase;
        if (phase === "pre-copy pass 1") void s.guest.write(400);
        if (phase === "post-copy" && !cut) {
          cut = true;
          link.target.port = nowhere;
          link.cut();
        }
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(/post-copy paused and no recovery within 1 ms/);
  }

  /** A session paused in post-copy, its source gone for good. */
  async function paused(): Promise<TestDestination> {
    const dest = await rig.destination({ postcopyRecoverMs: 60_000 });
    await abandon(dest);
    expect(dest.reports).toHaveLength(0);
    expect(dest.server.receiving).toBe(true);
    return dest;
  }

  /** Sends `build`'s frame on a new connection and returns the error it is told. */
  async function refused(port: number, send: (p: RawSource) => void): Promise<string> {
    const p = await peer(port);
    send(p);
    await p.closed;
    return RawSource.text(p.received.at(-1));
  }

  /**
   * What a stranger's hello is told once the session is paused: until the
   * destination has seen its link break, the session is active and a
   * stranger hears that instead (and the session goes on either way).
   */
  async function whenPaused(port: number): Promise<string> {
    const busy = "the destination is receiving another migration";
    let told = busy;
    for (let attempt = 0; told === busy && attempt < 100; attempt++) {
      told = await refused(port, (p) => p.hello());
    }
    return told;
  }

  it("holds it for its source: a stranger is refused and the pause goes on; the right source resumes from the bitmap; the server's close ends it", async () => {
    const dest = await paused();
    expect(await whenPaused(dest.port)).toBe(
      "a post-copy migration is paused here, waiting for its source: the first frame must be recoverHello, not hello",
    );
    const wrong = await refused(dest.port, (p) =>
      p.send(FrameType.recoverHello, (view) =>
        encodeRecoverHello(view, { sessionId: 1, guestPages: PAGES }),
      ),
    );
    const named =
      /^recover-hello for session 1 of 256 pages: the session paused here is (\d+) of 256 pages$/.exec(
        wrong,
      );
    expect(named, wrong).not.toBeNull();
    const sessionId = Number(named?.[1]);
    expect(
      await refused(dest.port, (p) =>
        p.send(FrameType.recoverHello, (view) =>
          encodeRecoverHello(view, { sessionId, guestPages: PAGES + 1 }),
        ),
      ),
    ).toBe(
      `recover-hello for session ${sessionId} of 257 pages: the session paused here is ${sessionId} of 256 pages`,
    );
    // Refused connections leave the session as it was.
    expect(dest.reports).toHaveLength(0);

    /** A recover-hello naming the session; returns the peer and the pages missing there. */
    const recover = async (): Promise<{ p: RawSource; missing: number }> => {
      const p = await peer(dest.port);
      p.send(FrameType.recoverHello, (view) =>
        encodeRecoverHello(view, { sessionId, guestPages: PAGES }),
      );
      const frame = await p.frame(0);
      expect(frame?.type).toBe(FrameType.recvBitmap);
      const { pages, bits } = decodeRecvBitmap(frame?.payload as DataView);
      expect(pages).toBe(PAGES);
      let held = 0;
      for (let page = 0; page < PAGES; page++) held += ((bits[page >> 3] ?? 0) >> (page & 7)) & 1;
      return { p, missing: PAGES - held };
    };

    // A resume that miscounts the pages left is refused.
    const first = await recover();
    expect(first.missing).toBeGreaterThan(0);
    first.p.send(FrameType.postcopyResume, (view) => encodePostcopyResume(view, first.missing + 1));
    await first.p.closed;
    expect(RawSource.text(first.p.received.at(-1))).toBe(
      `postcopy-resume frame: the source has ${first.missing + 1} pages left to send, ${first.missing} are missing here`,
    );

    // The right count: acknowledged, post-copy runs again with this connection as its source.
    const second = await recover();
    expect(second.missing).toBe(first.missing);
    // While one recovery runs, another connection is turned away.
    expect(await refused(dest.port, (p) => p.hello())).toBe(
      "the destination is receiving another migration",
    );
    second.p.send(FrameType.postcopyResume, (view) => encodePostcopyResume(view, second.missing));
    const ack = await second.p.frame(1);
    expect(ack?.type).toBe(FrameType.resumeAck);
    // No vCPU ran here (the guest is idle): none waits on a page.
    expect(decodeResumeAck(ack?.payload as DataView)).toBe(0);

    // This source breaks too: paused again, until the server closes.
    second.p.close();
    expect(await whenPaused(dest.port)).toMatch(/^a post-copy migration is paused here/);
    expect(dest.reports).toHaveLength(0);
    await dest.server.close();
    const report = await dest.nextReport();
    expect(report.status).toBe("failed");
    expect(report.reason).toMatch(
      /; the destination closed while post-copy was paused; post-copy broke with \d+ pages still on the source/,
    );
    expect(report.recovery).toMatchObject({
      pauses: 2,
      missingAtResume: [second.missing],
      rerequested: 0,
    });
    expect(report.recovery?.pausedMs).toBeGreaterThan(0);
    expect(report.discarded).toBe(true);
  });

  it("gives up when no source resumes within its wait, and says how long it waited", async () => {
    const dest = await rig.destination({ postcopyRecoverMs: 300 });
    await abandon(dest);
    const report = await dest.nextReport();
    expect(report.reason).toMatch(/; post-copy paused and no source resumed it within 300 ms; /);
    expect(report.recovery?.pauses).toBe(1);
    expect(report.recovery?.missingAtResume).toEqual([]);
    expect(report.recovery?.pausedMs).toBeGreaterThanOrEqual(290);
  });
});
