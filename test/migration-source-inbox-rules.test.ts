/*
 * The live source's inbox (src/migration/live/inbox.ts): every reply frame a
 * destination may send is decoded into its reply, replies wait in arrival
 * order, a wait for one reply times out naming what the destination did not
 * do, a reply of another type is refused naming both, a page request goes to
 * post-copy's return path only while one is set, and an error frame fails
 * every wait, present and future, with the destination's reason
 * (docs/migration-live.md, "Failures"). Also the two error classes of
 * src/migration/live/errors.ts.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { Region } from "../src/memory/region.js";
import { LiveConfigError, PeerError } from "../src/migration/live/errors.js";
import { FrameError, FrameType, type FrameTypeCode } from "../src/migration/live/frame.js";
import type { ReceivedFrame } from "../src/migration/live/frame-codec.js";
import { Inbox } from "../src/migration/live/inbox.js";
import {
  encodeAccept,
  encodeEpoch,
  encodeError,
  encodePageRequest,
  encodePostcopyDone,
  encodeRecvBitmap,
  encodeResult,
  encodeResumeAck,
  postcopyDoneBytes,
  recvBitmapBytes,
} from "../src/migration/live/messages.js";

/** A checked frame as the source's reader hands it over: `payload` at offset 0 of its staging. */
function received(type: FrameTypeCode, payload: Uint8Array, sequence = 0): ReceivedFrame {
  return {
    version: 1,
    type,
    sequence,
    length: payload.length,
    staging: new Region({ name: "staging", offset: 0, byteLength: payload.length }),
    payloadStart: 0,
    payload: new DataView(payload.buffer, payload.byteOffset, payload.byteLength),
  };
}

/** A payload of `bytes` bytes written by `encode`. */
function payload(bytes: number, encode: (view: DataView) => void): Uint8Array {
  const out = new Uint8Array(bytes);
  encode(new DataView(out.buffer));
  return out;
}

const accept = (sessionId: number, sequence = 0) =>
  received(
    FrameType.accept,
    payload(8, (v) => encodeAccept(v, sessionId)),
    sequence,
  );
const synced = (epoch: number) =>
  received(
    FrameType.synced,
    payload(8, (v) => encodeEpoch(v, epoch)),
  );
const errorFrame = (reason: string) => received(FrameType.error, encodeError(reason));

/** What a promise came to so far: its value, its error, or "pending". */
async function settled<T>(
  promise: Promise<T>,
): Promise<{ value: T } | { error: unknown } | "pending"> {
  const outcome = promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  // Both are settled or the outcome is not: a settled outcome wins, being first.
  await Promise.resolve();
  await Promise.resolve();
  return Promise.race([outcome, Promise.resolve("pending" as const)]);
}

/** The FrameError `take` throws for `frame`. */
function refusal(inbox: Inbox, frame: ReceivedFrame): FrameError {
  try {
    inbox.take(frame);
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("frame not refused");
}

afterEach(() => {
  vi.useRealTimers();
});

describe("the inbox decodes each reply a destination sends", () => {
  // Each reply frame type maps to its own reply, its fields decoded at once
  // (the frame's bytes are reused by the reader after `take` returns).
  it("accept, synced, result, postcopy-done, recv-bitmap and resume-ack carry their fields", async () => {
    const inbox = new Inbox();
    inbox.take(accept(0xdead_beef));
    inbox.take(synced(41));
    const result = { mismatches: 2, firstMismatch: 17, pagesReceived: 300, deviceStateGood: true };
    inbox.take(
      received(
        FrameType.result,
        payload(16, (v) => encodeResult(v, result)),
      ),
    );
    const done = {
      requests: 5,
      dropped: 1,
      phaseMs: 12.5,
      blocktime: 3.25,
      vcpuBlocktime: [1.5, 2],
    };
    inbox.take(
      received(
        FrameType.postcopyDone,
        payload(postcopyDoneBytes(2), (v) => encodePostcopyDone(v, done)),
      ),
    );
    inbox.take(
      received(
        FrameType.recvBitmap,
        payload(recvBitmapBytes(10), (v) => encodeRecvBitmap(v, 10, (p) => p === 1 || p === 9)),
      ),
    );
    inbox.take(
      received(
        FrameType.resumeAck,
        payload(8, (v) => encodeResumeAck(v, 6)),
      ),
    );
    expect(await inbox.next("accept", 1000, "accept")).toEqual({
      type: "accept",
      sessionId: 0xdead_beef,
    });
    expect(await inbox.next("synced", 1000, "sync")).toEqual({ type: "synced", epoch: 41 });
    expect(await inbox.next("result", 1000, "report")).toEqual({ type: "result", result });
    expect(await inbox.next("postcopyDone", 1000, "end post-copy")).toEqual({
      type: "postcopyDone",
      done,
    });
    const bitmap = await inbox.next("recvBitmap", 1000, "send its bitmap");
    expect(bitmap.type).toBe("recvBitmap");
    expect(bitmap.pages).toBe(10);
    // Page 1 is bit 1 of byte 0, page 9 bit 1 of byte 1.
    expect([...bitmap.bits]).toEqual([0b10, 0b10, 0, 0, 0, 0, 0, 0]);
    expect(await inbox.next("resumeAck", 1000, "acknowledge")).toEqual({
      type: "resumeAck",
      rerequested: 6,
    });
    expect(inbox.failed).toBeUndefined();
  });

  // resumed carries nothing: an empty payload is the only one taken.
  it("resumed takes an empty payload and refuses any byte", async () => {
    const inbox = new Inbox();
    inbox.take(received(FrameType.resumed, new Uint8Array(0)));
    expect(await inbox.next("resumed", 1000, "resume")).toEqual({ type: "resumed" });
    const error = refusal(inbox, received(FrameType.resumed, new Uint8Array(1)));
    expect(error.kind).toBe("payload");
    expect(error.message).toBe("resumed frame: payload not empty");
  });

  // A frame only a source sends is refused, naming the frame and its type.
  it("refuses a frame type a destination does not send, naming its sequence and type", () => {
    const inbox = new Inbox();
    for (const [type, name] of [
      [FrameType.hello, "hello"],
      [FrameType.pages, "pages"],
      [FrameType.postcopyResume, "postcopyResume"],
    ] as const) {
      const error = refusal(inbox, received(type, new Uint8Array(8), 12));
      expect(error.kind).toBe("type");
      expect(error.message).toBe(`frame 12: a destination does not send ${name} frames`);
    }
    expect(inbox.failed).toBeUndefined();
  });

  // A bad payload is refused by its decoder, and nothing is queued.
  it("a reply whose payload does not decode is refused and not queued", async () => {
    const inbox = new Inbox();
    expect(() => inbox.take(received(FrameType.accept, new Uint8Array(4)))).toThrow(
      /accept frame: payload of 4 bytes, expected 8/,
    );
    inbox.take(accept(3));
    expect(await inbox.next("accept", 1000, "accept")).toEqual({ type: "accept", sessionId: 3 });
  });
});

describe("waiting for a reply", () => {
  // Replies that came before anyone waited are handed out first in, first out.
  it("queued replies come out in arrival order", async () => {
    const inbox = new Inbox();
    inbox.take(synced(1));
    inbox.take(synced(2));
    inbox.take(synced(3));
    const epochs: number[] = [];
    for (let i = 0; i < 3; i++) epochs.push((await inbox.next("synced", 1000, "sync")).epoch);
    expect(epochs).toEqual([1, 2, 3]);
  });

  // A reply arriving while one waits goes to that wait, and its timer is cancelled.
  it("a reply that arrives during the wait ends it and cancels its timer", async () => {
    vi.useFakeTimers();
    const inbox = new Inbox();
    const wait = inbox.next("accept", 5000, "accept");
    expect(vi.getTimerCount()).toBe(1);
    inbox.take(accept(77));
    expect(await settled(wait)).toEqual({ value: { type: "accept", sessionId: 77 } });
    expect(vi.getTimerCount()).toBe(0);
  });

  // Nothing within the timeout: a PeerError saying what the destination did not do, and how long was waited.
  it("times out with what the destination did not do and the timeout, then queues later replies", async () => {
    vi.useFakeTimers();
    const inbox = new Inbox();
    const wait = inbox.next("synced", 250, "acknowledge pass 3's sync");
    await vi.advanceTimersByTimeAsync(249);
    expect(await settled(wait)).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    const outcome = await settled(wait);
    expect(outcome).not.toBe("pending");
    const error = (outcome as { error: unknown }).error;
    expect(error).toBeInstanceOf(PeerError);
    expect((error as Error).message).toBe(
      "the destination did not acknowledge pass 3's sync within 250 ms",
    );
    // A timeout is not a failure of the inbox: a late reply is kept for the next wait.
    expect(inbox.failed).toBeUndefined();
    inbox.take(synced(9));
    expect(await settled(inbox.next("synced", 1000, "sync"))).toEqual({
      value: { type: "synced", epoch: 9 },
    });
  });

  // The next reply must be the one expected: another is a protocol error naming both.
  it("refuses a reply of another type, naming the one expected and the one received", async () => {
    const inbox = new Inbox();
    inbox.take(synced(4));
    const error = await inbox.next("resumed", 1000, "resume").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FrameError);
    expect((error as FrameError).kind).toBe("type");
    expect((error as FrameError).message).toBe(
      "expected a resumed frame from the destination, got synced",
    );
  });
});

describe("an error frame or a failure ends every wait", () => {
  // The destination's reason is kept, behind a line saying it stopped the migration.
  it("fails the present wait with the destination's reason and cancels its timer", async () => {
    vi.useFakeTimers();
    const inbox = new Inbox();
    const wait = inbox.next("result", 5000, "report");
    inbox.take(errorFrame("page 7 failed its check"));
    const outcome = await settled(wait);
    const error = (outcome as { error: unknown }).error;
    expect(error).toBeInstanceOf(PeerError);
    expect((error as Error).message).toBe(
      "the destination stopped the migration: page 7 failed its check",
    );
    expect(inbox.failed).toBe(error);
    expect(vi.getTimerCount()).toBe(0);
  });

  // Every later wait fails at once with the same reason, even with replies queued before it.
  it("fails every later wait at once, queued replies or not", async () => {
    const inbox = new Inbox();
    inbox.take(accept(1));
    inbox.take(errorFrame("out of memory"));
    const failure = inbox.failed;
    expect(failure?.message).toBe("the destination stopped the migration: out of memory");
    await expect(inbox.next("accept", 1000, "accept")).rejects.toBe(failure);
    await expect(inbox.next("synced", 1000, "sync")).rejects.toBe(failure);
  });

  // The first reason wins: a dropped connection after an error frame does not replace it.
  it("keeps the first reason, with or without a wait in progress", async () => {
    const inbox = new Inbox();
    const first = new Error("the connection dropped");
    inbox.fail(first);
    inbox.fail(new Error("a second reason"));
    inbox.take(errorFrame("late"));
    expect(inbox.failed).toBe(first);
    await expect(inbox.next("accept", 1000, "accept")).rejects.toBe(first);
  });
});

describe("the return path's page requests", () => {
  // Outside post-copy (no handler set) a page request is a protocol error.
  it("refuses a page request outside post-copy, naming the frame", () => {
    const inbox = new Inbox();
    const error = refusal(
      inbox,
      received(
        FrameType.pageRequest,
        payload(8, (v) => encodePageRequest(v, 5, 1)),
        33,
      ),
    );
    expect(error.kind).toBe("type");
    expect(error.message).toBe("frame 33: a page request outside post-copy");
  });

  // During post-copy each request goes to the handler with its range; it is not a reply.
  it("hands each request's range to post-copy's handler and queues no reply", async () => {
    const inbox = new Inbox();
    const requests: [number, number][] = [];
    inbox.onPageRequest = (first, count) => requests.push([first, count]);
    inbox.take(
      received(
        FrameType.pageRequest,
        payload(8, (v) => encodePageRequest(v, 2053, 3)),
      ),
    );
    inbox.take(accept(8));
    expect(requests).toEqual([[2053, 3]]);
    expect(await inbox.next("accept", 1000, "accept")).toEqual({ type: "accept", sessionId: 8 });
    // A handler's refusal reaches the reader.
    inbox.onPageRequest = () => {
      throw new FrameError("payload", "outside the guest");
    };
    expect(() =>
      inbox.take(
        received(
          FrameType.pageRequest,
          payload(8, (v) => encodePageRequest(v, 1, 1)),
        ),
      ),
    ).toThrow(/outside the guest/);
  });
});

describe("the live-migration error classes", () => {
  // Their names show in every failed run's reason line.
  it("name a peer's refusal and a bad setting", () => {
    const peer = new PeerError("refused");
    expect(peer).toBeInstanceOf(Error);
    expect(peer.name).toBe("PeerError");
    expect(String(peer)).toBe("PeerError: refused");
    const config = new LiveConfigError("--multifd-channels 0");
    expect(config).toBeInstanceOf(RangeError);
    expect(config.name).toBe("LiveConfigError");
    expect(String(config)).toBe("LiveConfigError: --multifd-channels 0");
  });
});
