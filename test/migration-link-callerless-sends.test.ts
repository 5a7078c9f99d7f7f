/*
 * The live sending link (src/migration/live/link.ts) on a scripted socket:
 * `sent` is optional (a caller that keeps no buffer passes none), so every
 * path that would call it must cope with its absence; and a send that waited
 * on the socket's backpressure leaves no listener behind (a link sends many
 * thousands of frames over one socket: a listener per wait would pile up
 * past Node's MaxListenersExceededWarning).
 */
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { Link, LinkError } from "../src/migration/live/link.js";
import { TokenBucket } from "../src/transport/token-bucket.js";

/** More than the 8 MiB a link lets wait in the socket before it waits for "drain". */
const OVER_QUEUE_LIMIT = 8 * 1024 * 1024 + 1;

/**
 * A socket that keeps each write's callback until the test completes the
 * write, and reports whatever queue length the test sets.
 */
class ScriptedSocket extends EventEmitter {
  writableLength = 0;
  readonly chunks: Buffer[] = [];
  private readonly callbacks: ((error?: Error | null) => void)[] = [];

  write(chunk: Buffer, callback: (error?: Error | null) => void): boolean {
    this.chunks.push(chunk);
    this.callbacks.push(callback);
    return true;
  }

  /** The kernel took every chunk handed over so far: their callbacks run. */
  completeWrites(): void {
    for (const callback of this.callbacks.splice(0)) callback(null);
  }

  get asSocket(): Socket {
    return this as unknown as Socket;
  }
}

/** A throttle fast enough never to wait, with windows of `slice` bytes. */
const quickThrottle = (slice: number) => new TokenBucket(1e12, slice);

describe("link: sends without a `sent` callback", () => {
  // A link already down refuses the send with its reason, whether or not
  // the caller asked to hear when the bytes are free.
  it("refuses a send on a link that is down with the link's reason", async () => {
    const socket = new ScriptedSocket();
    const link = new Link(socket.asSocket);
    const why = new LinkError("the connection closed");
    link.fail(why);
    await expect(link.send(Buffer.alloc(16))).rejects.toBe(why);
    expect(socket.chunks).toEqual([]);
  });

  // A throttled frame whose link fails while its first slice waits for
  // tokens stops there and throws the link's reason.
  it("stops a throttled frame at a failure with the link's reason", async () => {
    const socket = new ScriptedSocket();
    const link = new Link(socket.asSocket, quickThrottle(100));
    const why = new LinkError("the destination refused the page: bad page");
    const sending = link.send(Buffer.alloc(300));
    link.fail(why);
    await expect(sending).rejects.toBe(why);
    expect(socket.chunks).toEqual([]);
  });

  // Every slice of a throttled frame completing, the last one included, is
  // counted by the meter and raises nothing when there is no one to tell.
  it("completes a throttled frame's slices quietly and counts them", async () => {
    const socket = new ScriptedSocket();
    const link = new Link(socket.asSocket, quickThrottle(100));
    await link.send(Buffer.alloc(250));
    expect(socket.chunks.map((chunk) => chunk.length)).toEqual([100, 100, 50]);
    expect(() => socket.completeWrites()).not.toThrow();
    expect(link.queued).toBe(250);
  });
});

describe("link: waiting on the socket's backpressure", () => {
  // Once the socket drains, the send goes on and its "drain" and "close"
  // listeners are gone: only the link's own "close" watch stays.
  it("removes its listeners after a drain", async () => {
    const socket = new ScriptedSocket();
    const link = new Link(socket.asSocket);
    const closeWatchers = socket.listenerCount("close");
    socket.writableLength = OVER_QUEUE_LIMIT;
    const sending = link.send(Buffer.alloc(64));
    expect(socket.listenerCount("drain")).toBe(1);
    expect(socket.listenerCount("close")).toBe(closeWatchers + 1);
    socket.writableLength = 0;
    socket.emit("drain");
    await sending;
    expect(socket.listenerCount("drain")).toBe(0);
    expect(socket.listenerCount("close")).toBe(closeWatchers);
  });

  // A close ends the wait as well, with the same clean-up, and the send
  // throws why the link is down.
  it("removes its listeners after a close and throws the close", async () => {
    const socket = new ScriptedSocket();
    const link = new Link(socket.asSocket);
    const closeWatchers = socket.listenerCount("close");
    socket.writableLength = OVER_QUEUE_LIMIT;
    const sending = link.send(Buffer.alloc(64));
    socket.emit("close");
    await expect(sending).rejects.toEqual(new LinkError("the connection closed"));
    expect(socket.listenerCount("drain")).toBe(0);
    expect(socket.listenerCount("close")).toBe(closeWatchers);
  });
});
