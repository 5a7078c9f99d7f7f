import { once } from "node:events";
import { connect, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  type DestinationOptions,
  type DestinationReport,
  DestinationServer,
  MAX_TIMEOUT_MS,
} from "../src/migration/live/destination.js";
import { LiveConfigError } from "../src/migration/live/errors.js";
import { FrameType } from "../src/migration/live/frame.js";
import { decodeEpoch, decodeResult } from "../src/migration/live/messages.js";
import { MAX_RECOVER_WAIT_MS } from "../src/migration/live/postcopy-recovery.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";
import { RawSource } from "./support/live-raw-source.js";
import { until } from "./support/until.js";

// The destination's rules, each driven by a source that speaks the stream's
// frames by hand on this thread (test/support/live-raw-source.ts): what it
// accepts, in what order, what it refuses and with which words, what a
// session's report counts, and that a failed session leaves nothing behind.

const MiB = 1024 ** 2;
const PAGES = 256;

const rig = new LivePostcopyRig();
const servers: DestinationServer[] = [];
const peers: RawSource[] = [];

afterEach(async () => {
  for (const peer of peers.splice(0)) peer.close();
  for (const server of servers.splice(0)) await server.close();
  await rig.close();
});

const destination = (options: Partial<DestinationOptions> = {}) => rig.destination(options);

async function peer(port: number, guestBytes = MiB): Promise<RawSource> {
  const p = await RawSource.connect(port, guestBytes);
  peers.push(p);
  return p;
}

/** Writes a recognisable page: its number and a byte pattern. */
function stamp(p: RawSource, page: number): void {
  const at = page * 4096;
  p.ram.fill((page * 37 + 11) & 0xff, at, at + 4096);
  new DataView(p.ram.buffer, p.ram.byteOffset).setUint32(at, page, true);
}

/** Hello, then waits for the accept. */
async function accepted(
  p: RawSource,
  fields: Parameters<RawSource["hello"]>[0] = {},
): Promise<void> {
  p.hello(fields);
  const frame = await p.frame(0);
  expect(frame?.type).toBe(FrameType.accept);
  expect(frame?.payload.getUint32(0, true)).toBe(fields.sessionId ?? 77);
}

/** Device state, switchover, and the resumed reply (frame `index`). */
async function switchover(p: RawSource, index: number): Promise<void> {
  p.deviceState();
  p.send(FrameType.switchover);
  const resumed = await p.frame(index);
  expect(resumed?.type).toBe(FrameType.resumed);
}

describe("a destination's session, frame by frame", () => {
  it("lands each page at its number, verifies against the source's digests, and reports what it counted", async () => {
    const { port, nextReport, server } = await destination();
    const p = await peer(port);
    for (const page of [5, 3, 255]) stamp(p, page);
    await accepted(p);
    expect(server.receiving).toBe(true);
    p.pages([5, 3]);
    p.pages([255]);
    await switchover(p, 1);
    expect(server.pagesReceiving).toBe(3);
    // Every page the source never sent is zero there, and zero here.
    p.verify(0, 100);
    p.verify(100, PAGES - 100);
    p.verifyEnd(PAGES, p.deviceDigest());
    const result = await p.frame(2);
    expect(result?.type).toBe(FrameType.result);
    expect(decodeResult(result?.payload as DataView)).toEqual({
      mismatches: 0,
      firstMismatch: null,
      pagesReceived: 3,
      deviceStateGood: true,
    });
    const report = await nextReport();
    expect(report).toMatchObject({
      session: 1,
      status: "completed",
      reason: null,
      guestBytes: MiB,
      pagesReceived: 3,
      verified: true,
      mismatches: 0,
      discarded: false,
      channels: 0,
      syncs: 0,
    });
    // hello 32, two pages frames, device state 64, switchover 0, two verify frames, verify-end 16.
    expect(report.payloadBytes).toBe(
      32 + (8 + 2 * 4100) + (8 + 4100) + 64 + (8 + 800) + (8 + 156 * 8) + 16,
    );
    expect(report.frames).toBe(8);
    expect(report.peer).toBe(`127.0.0.1:${p.socket.localPort}`);
    expect(report.durationMs).toBeGreaterThan(0);
    expect(report).not.toHaveProperty("postcopy");
    expect(report).not.toHaveProperty("recovery");
    expect(server.receiving).toBe(false);
    expect(server.pagesReceiving).toBe(0);
    await p.closed;
  });

  it("a page that differs from the source's digest fails verification, names the first one, and discards the copy", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    for (const page of [1, 2, 9, 40]) stamp(p, page);
    await accepted(p);
    // Pages 9 and 40 are never sent: two mismatches, the first at 9.
    p.pages([1, 2]);
    await switchover(p, 1);
    p.verify(0, PAGES);
    p.verifyEnd(PAGES, p.deviceDigest());
    const result = await p.frame(2);
    expect(decodeResult(result?.payload as DataView)).toEqual({
      mismatches: 2,
      firstMismatch: 9,
      pagesReceived: 2,
      deviceStateGood: true,
    });
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "verification failed: 2 pages differ from the source",
      verified: false,
      mismatches: 2,
      discarded: true,
    });
  });

  it("a device state whose digest differs fails verification though every page matches", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    await accepted(p);
    p.pages([0]);
    await switchover(p, 1);
    p.verify(0, PAGES);
    p.verifyEnd(PAGES, p.deviceDigest(64, 0x5b));
    const result = await p.frame(2);
    expect(decodeResult(result?.payload as DataView)).toMatchObject({
      mismatches: 0,
      deviceStateGood: false,
    });
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "verification failed: 0 pages differ from the source, and the device state differs",
      verified: false,
    });
  });

  it("without verification the switchover completes the session: resumed, then the connection ends", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    await accepted(p, { verify: false });
    p.pages([0, 1]);
    await switchover(p, 1);
    expect(await nextReport()).toMatchObject({
      status: "completed",
      verified: null,
      pagesReceived: 2,
      discarded: false,
    });
    await p.closed;
    expect(p.received).toHaveLength(2);
  });

  it("a failed session's pages are wiped, and so are an earlier completed guest's: the next guest sees zeros", async () => {
    const { port, nextReport, server } = await destination();
    // A completed session of a larger guest, every page non-zero.
    const big = await peer(port, 2 * MiB);
    for (let page = 0; page < 512; page++) stamp(big, page);
    await accepted(big, { verify: false });
    for (let first = 0; first < 512; first += 256) {
      big.pages(Array.from({ length: 256 }, (_, i) => first + i));
    }
    await switchover(big, 1);
    expect((await nextReport()).status).toBe("completed");
    const grown = server.memoryBytes;
    // A failed session that landed pages: they are discarded.
    const failed = await peer(port);
    for (let page = 0; page < 8; page++) stamp(failed, page);
    await accepted(failed);
    failed.pages([0, 1, 2, 3, 4, 5, 6, 7]);
    failed.close();
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "the connection closed mid-migration after 8 pages",
      pagesReceived: 8,
      discarded: true,
    });
    // A smaller guest that sends one page: every other page must read as zero.
    const small = await peer(port);
    stamp(small, 200);
    await accepted(small);
    small.pages([200]);
    await switchover(small, 1);
    small.verify(0, PAGES);
    small.verifyEnd(PAGES, small.deviceDigest());
    expect(decodeResult((await small.frame(2))?.payload as DataView)).toMatchObject({
      mismatches: 0,
    });
    expect(await nextReport()).toMatchObject({ session: 3, status: "completed", verified: true });
    // The landing memory is the largest guest's, not one region per size.
    expect(server.memoryBytes).toBe(grown);
  });

  it("a session that never sent a page has nothing to discard", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    await accepted(p);
    p.close();
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "the connection closed mid-migration after 0 pages",
      discarded: false,
    });
  });

  it("closes once its wanted sessions have completed, and done() gives the last one's report", async () => {
    const { port, server } = await destination({ sessions: 2 });
    let settled = false;
    const done = server.done().then((report) => {
      settled = true;
      return report;
    });
    for (const session of [1, 2]) {
      const p = await peer(port);
      await accepted(p, { verify: false });
      await switchover(p, 1);
      await p.closed;
      if (session === 1) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(settled).toBe(false);
      }
    }
    expect(await done).toMatchObject({ session: 2, status: "completed" });
    // The listener is closed: nothing more connects.
    const refused = connect(port, "127.0.0.1");
    const [error] = (await once(refused, "error")) as [NodeJS.ErrnoException];
    expect(error.code).toBe("ECONNREFUSED");
  });
});

describe("what a destination refuses, and the words it uses", () => {
  /** Sends `steps` after the hello and returns the error the destination told and its report. */
  async function refusal(
    steps: (p: RawSource) => void,
    options: { hello?: boolean; fields?: Parameters<RawSource["hello"]>[0] } = {},
  ): Promise<{ told: string; report: DestinationReport; received: number }> {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    if (options.hello !== false) await accepted(p, options.fields);
    steps(p);
    const report = await nextReport();
    await p.closed;
    const last = p.received.at(-1);
    return { told: RawSource.text(last), report, received: p.received.length };
  }

  it("the first frame must be a hello", async () => {
    const { told, report } = await refusal((p) => p.pages([0]), { hello: false });
    expect(told).toBe("the first frame must be hello, not pages");
    expect(report).toMatchObject({
      status: "failed",
      reason: "the first frame must be hello, not pages",
      guestBytes: 0,
      pagesReceived: 0,
      discarded: false,
    });
  });

  it("a recover-hello where no post-copy is paused is told so", async () => {
    const { told } = await refusal((p) => p.sendBytes(FrameType.recoverHello, new Uint8Array(16)), {
      hello: false,
    });
    expect(told).toBe(
      "no post-copy migration is paused here to resume (this destination never had it, gave up waiting, or restarted)",
    );
  });

  it("a guest over the destination's limit, before any memory is laid out", async () => {
    const { port, nextReport, server } = await destination({ maxGuestBytes: MiB });
    const before = server.memoryBytes;
    const p = await peer(port, 2 * MiB);
    p.hello();
    const report = await nextReport();
    await p.closed;
    expect(RawSource.text(p.received[0])).toBe(
      "a guest of 2.0 MiB is over this destination's limit of 1.0 MiB",
    );
    expect(report).toMatchObject({ status: "failed", guestBytes: 0 });
    expect(server.memoryBytes).toBe(before);
  });

  it("a guest exactly at the limit is taken", async () => {
    const { port } = await destination({ maxGuestBytes: MiB });
    const p = await peer(port, MiB);
    await accepted(p);
  });

  it("a device state of another size than the hello announced", async () => {
    const { told } = await refusal((p) => p.deviceState(63));
    expect(told).toBe("device state of 63 bytes, the hello announced 64");
  });

  it("a switchover before the device state, or with a payload", async () => {
    expect((await refusal((p) => p.send(FrameType.switchover))).told).toBe(
      "switchover before the device state, or with a payload",
    );
    expect(
      (
        await refusal((p) => {
          p.deviceState();
          p.sendBytes(FrameType.switchover, new Uint8Array(1));
        })
      ).told,
    ).toBe("switchover before the device state, or with a payload");
  });

  it("a second switchover, and pages after the switch", async () => {
    const second = await refusal((p) => {
      p.deviceState();
      p.send(FrameType.switchover);
      p.send(FrameType.switchover);
    });
    expect(second.told).toBe("switchover frame after the switch");
    expect(
      (
        await refusal((p) => {
          p.deviceState();
          p.send(FrameType.switchover);
          p.pages([0]);
        })
      ).told,
    ).toBe("pages frame after switchover");
    expect(
      (
        await refusal((p) => {
          p.deviceState();
          p.send(FrameType.switchover);
          p.sendBytes(FrameType.discard, new Uint8Array(8));
        })
      ).told,
    ).toBe("discard frame after the switch");
  });

  it("verify frames only after the switch, in order, inside the guest, and covering all of it", async () => {
    expect((await refusal((p) => p.verify(0, 4))).told).toBe("verify frame before switchover");
    const outOfOrder = await refusal((p) => {
      p.deviceState();
      p.send(FrameType.switchover);
      p.verify(4, 2);
    });
    expect(outOfOrder.told).toBe("verify frame for pages 4 to 5, expected from page 0 of 256");
    const past = await refusal((p) => {
      p.deviceState();
      p.send(FrameType.switchover);
      p.verify(0, 200);
      p.verify(200, 57);
    });
    expect(past.told).toBe("verify frame for pages 200 to 256, expected from page 200 of 256");
    const short = await refusal((p) => {
      p.deviceState();
      p.send(FrameType.switchover);
      p.verify(0, 255);
      p.verifyEnd(PAGES, 0n);
    });
    expect(short.told).toBe("verification covered 255 of 256 pages");
    const claimed = await refusal((p) => {
      p.deviceState();
      p.send(FrameType.switchover);
      p.verify(0, PAGES);
      p.verifyEnd(PAGES - 1, 0n);
    });
    expect(claimed.told).toBe("verification covered 256 of 256 pages");
  });

  it("frames only a destination sends, and post-copy's frames outside post-copy", async () => {
    expect((await refusal((p) => p.send(FrameType.accept))).told).toBe(
      "a source does not send accept frames",
    );
    expect((await refusal((p) => p.send(FrameType.postcopyEnd))).told).toBe(
      "postcopy-end frame outside post-copy",
    );
  });

  it("a source's error frame ends the session with its reason, and is not answered", async () => {
    const { report, received } = await refusal((p) => p.error("operator cancelled"));
    expect(report).toMatchObject({
      status: "failed",
      reason: "the source stopped the migration: operator cancelled",
    });
    // The accept only: no error frame back to a source that said why it left.
    expect(received).toBe(1);
  });

  it("a damaged frame: refused before its pages land, the landed ones discarded", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    stamp(p, 0);
    await accepted(p);
    p.pages([0]);
    // A pages frame with a page number outside the guest.
    p.pages([PAGES]);
    const report = await nextReport();
    await p.closed;
    expect(report).toMatchObject({ status: "failed", pagesReceived: 1, discarded: true });
    expect(report.reason).toMatch(/256/);
    expect(RawSource.text(p.received.at(-1))).toBe(report.reason);
  });

  it("one migration at a time: a second source is told the destination is busy, and the first goes on", async () => {
    const { port, nextReport } = await destination();
    const first = await peer(port);
    await accepted(first, { verify: false });
    const second = await peer(port);
    second.hello();
    await second.closed;
    expect(RawSource.text(second.received[0])).toBe(
      "the destination is receiving another migration",
    );
    await switchover(first, 1);
    expect(await nextReport()).toMatchObject({ session: 1, status: "completed" });
  });

  it("a connection that says nothing is dropped at the handshake deadline, told why", async () => {
    const { port, nextReport } = await destination({ handshakeTimeoutMs: 100 });
    const p = await peer(port);
    const report = await nextReport();
    expect(report).toMatchObject({
      status: "failed",
      reason: "no hello within 100 ms of connecting",
    });
    await p.closed;
    expect(RawSource.text(p.received[0])).toBe("no hello within 100 ms of connecting");
  });

  it("a source that goes silent after its hello is dropped at the idle deadline, naming its pages", async () => {
    const { port, nextReport } = await destination({ idleTimeoutMs: 400, handshakeTimeoutMs: 200 });
    const p = await peer(port);
    // The hello came in time: the handshake deadline no longer applies.
    await accepted(p);
    p.pages([0, 1]);
    const report = await nextReport();
    expect(report).toMatchObject({
      status: "failed",
      reason: "nothing received for 400 ms after 2 pages",
      discarded: true,
    });
    await p.closed;
    expect(RawSource.text(p.received.at(-1))).toBe(report.reason);
  });

  it("a connection that closes before its hello", async () => {
    const { port, nextReport } = await destination();
    const p = await peer(port);
    p.close();
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "the connection closed before a hello",
    });
  });
});

describe("multifd channels joining a session", () => {
  async function session(channels: number, options: Partial<DestinationOptions> = {}) {
    const d = await destination(options);
    const main = await peer(d.port);
    await accepted(main, { channels });
    return { ...d, main };
  }

  /**
   * Joins `channel` as channel `index` of `channels` and waits until the
   * destination has landed a page it sent after its hello: it has joined.
   */
  async function joined(
    server: DestinationServer,
    channel: RawSource,
    index: number,
    channels: number,
  ): Promise<void> {
    const before = server.pagesReceiving;
    channel.channelHello(index, channels);
    channel.pages([index]);
    await until(() => server.pagesReceiving > before, 10_000, `channel ${index} joining`);
  }

  it("pages on the channels land; when every channel reached a pass's sync the main connection hears synced", async () => {
    const { port, main, nextReport } = await session(2);
    const a = await peer(port);
    const b = await peer(port);
    stamp(a, 10);
    stamp(b, 20);
    a.channelHello(0, 2);
    b.channelHello(1, 2);
    a.pages([10]);
    b.pages([20]);
    a.epoch(FrameType.sync, 1);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // One channel of two: not yet.
    expect(main.received).toHaveLength(1);
    b.epoch(FrameType.sync, 1);
    const synced = await main.frame(1);
    expect(synced?.type).toBe(FrameType.synced);
    expect(decodeEpoch(synced?.payload as DataView, "synced")).toBe(1);
    stamp(main, 10);
    stamp(main, 20);
    await switchover(main, 2);
    main.verify(0, PAGES);
    main.verifyEnd(PAGES, main.deviceDigest());
    expect(await nextReport()).toMatchObject({
      status: "completed",
      verified: true,
      pagesReceived: 2,
      channels: 2,
      syncs: 1,
    });
  });

  it("a switchover before every channel synced its last pass", async () => {
    const { port, main, nextReport, server } = await session(2);
    const a = await peer(port);
    await joined(server, a, 0, 2);
    main.deviceState();
    main.send(FrameType.switchover);
    expect((await nextReport()).reason).toBe(
      "switchover before every multifd channel synced its last pass (1 of 2 joined, sync 0)",
    );
  });

  it("a channel's sync out of turn fails the session naming the channel", async () => {
    const { port, nextReport } = await session(1);
    const a = await peer(port);
    a.channelHello(0, 1);
    a.epoch(FrameType.sync, 2);
    expect((await nextReport()).reason).toBe("multifd channel 0: sync 2 where sync 1 was due");
  });

  it("a channel carries pages, records and syncs, nothing else", async () => {
    const { port, nextReport } = await session(1);
    const a = await peer(port);
    a.channelHello(0, 1);
    a.verify(0, 1);
    expect((await nextReport()).reason).toBe(
      "multifd channel 0: a multifd channel does not carry verify frames",
    );
  });

  it("a channel that closes mid-migration fails the session naming it and its pages", async () => {
    const { port, nextReport, server } = await session(1);
    const a = await peer(port);
    await joined(server, a, 0, 1);
    a.close();
    expect(await nextReport()).toMatchObject({
      status: "failed",
      reason: "multifd channel 0 closed mid-migration after 1 pages",
      discarded: true,
    });
  });

  it("turns away a channel of another session, one whose first frame is not a channel-hello, and one that joins twice", async () => {
    const { port, main, reports, nextReport, server } = await session(2);
    const other = await peer(port);
    other.channelHello(0, 2, 78);
    await other.closed;
    expect(RawSource.text(other.received[0])).toBe(
      "the destination is receiving another migration",
    );
    const hello = await peer(port);
    hello.hello();
    await hello.closed;
    expect(RawSource.text(hello.received[0])).toBe(
      "the destination is receiving another migration",
    );
    const wrong = await peer(port);
    wrong.pages([0]);
    await wrong.closed;
    expect(RawSource.text(wrong.received[0])).toBe(
      "the first frame of a multifd channel must be channelHello, not pages",
    );
    // None of these touched the session.
    expect(reports).toHaveLength(0);
    const a = await peer(port);
    await joined(server, a, 0, 2);
    const twice = await peer(port);
    twice.channelHello(0, 2);
    await twice.closed;
    expect(RawSource.text(twice.received[0])).toBe("multifd channel 0 joined twice");
    expect(reports).toHaveLength(0);
    // The session goes on, its main connection's frames still in sequence.
    const b = await peer(port);
    b.channelHello(1, 2);
    a.epoch(FrameType.sync, 1);
    b.epoch(FrameType.sync, 1);
    expect((await main.frame(1))?.type).toBe(FrameType.synced);
    await switchover(main, 2);
    main.verify(0, PAGES);
    main.verifyEnd(PAGES, main.deviceDigest());
    expect(decodeResult((await main.frame(3))?.payload as DataView).mismatches).toBe(0);
    expect(await nextReport()).toMatchObject({ status: "completed", channels: 2, syncs: 1 });
  });

  it("a channel that sends no channel-hello in time is dropped without failing the session", async () => {
    const { port, main, reports } = await session(1, { handshakeTimeoutMs: 300 });
    const silent = await peer(port);
    await silent.closed;
    // Dropped, not told: it never said it was a channel of this session.
    expect(silent.received).toHaveLength(0);
    expect(reports).toHaveLength(0);
    expect(main.socket.destroyed).toBe(false);
  });

  it("once every channel joined, a further connection is another source, turned away", async () => {
    const { port, reports, server } = await session(1);
    const a = await peer(port);
    await joined(server, a, 0, 1);
    const late = await peer(port);
    late.channelHello(0, 1);
    await late.closed;
    expect(RawSource.text(late.received[0])).toBe("the destination is receiving another migration");
    expect(reports).toHaveLength(0);
  });
});

describe("DestinationServer.listen checks its options", () => {
  it.each([
    [{ port: -1 }, "port must be from 0 to 65535, not -1"],
    [{ port: 65_536 }, "port must be from 0 to 65535, not 65536"],
    [{ port: 1.5 }, "port must be from 0 to 65535, not 1.5"],
    [{ port: 0, maxGuestBytes: MiB - 1 }, "largest guest must be from 1 MiB to 2.0 GiB"],
    [{ port: 0, maxGuestBytes: 2 * 1024 * MiB + 1 }, "largest guest must be from 1 MiB to 2.0 GiB"],
    [{ port: 0, maxGuestBytes: 1.5 * MiB + 0.5 }, "largest guest must be from 1 MiB to 2.0 GiB"],
    [
      { port: 0, handshakeTimeoutMs: 0 },
      `handshake timeout must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, not 0`,
    ],
    [
      { port: 0, idleTimeoutMs: MAX_TIMEOUT_MS + 1 },
      `idle timeout must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, not ${MAX_TIMEOUT_MS + 1}`,
    ],
    [
      { port: 0, idleTimeoutMs: 2.5 },
      `idle timeout must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, not 2.5`,
    ],
    [
      { port: 0, postcopyRecoverMs: -1 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not -1`,
    ],
    [
      { port: 0, postcopyRecoverMs: MAX_RECOVER_WAIT_MS + 1 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not ${MAX_RECOVER_WAIT_MS + 1}`,
    ],
    [
      { port: 0, postcopyRecoverMs: 0.5 },
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not 0.5`,
    ],
  ] as const)("%o", async (options, message) => {
    await expect(DestinationServer.listen(options)).rejects.toThrow(new LiveConfigError(message));
  });

  it("takes each bound itself", async () => {
    for (const options of [
      { port: 0, maxGuestBytes: MiB, handshakeTimeoutMs: 1, idleTimeoutMs: MAX_TIMEOUT_MS },
      { port: 0, maxGuestBytes: 2 * 1024 * MiB, postcopyRecoverMs: MAX_RECOVER_WAIT_MS },
    ]) {
      const server = await DestinationServer.listen(options);
      servers.push(server);
      expect(server.address.host).toBe("127.0.0.1");
    }
  });

  it("a port in use, named", async () => {
    const taken = createServer().listen(0, "127.0.0.1");
    await once(taken, "listening");
    const address = taken.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    await expect(DestinationServer.listen({ port: address.port })).rejects.toThrow(
      new LiveConfigError(`port ${address.port} on 127.0.0.1 is in use`),
    );
    taken.close();
  });

  it("an address it cannot listen on, named", async () => {
    await expect(
      DestinationServer.listen({
        port: 0,
        host: "192.0.2.1",
        security: { kind: "plain", insecure: true },
      }),
    ).rejects.toThrow(/^cannot listen on 192\.0\.2\.1:0: /);
  });
});
