import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { expect, onTestFinished } from "vitest";
import { encodeFrame, type Frame, FrameReader, Op } from "../../src/csv/protocol.js";

/** The clock's own timers, which a test's fake timers leave alone. */
export const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;

/** A reply frame from the block target, decoded; `text` is its payload as UTF-8. */
export interface Reply {
  readonly type: number;
  readonly tag: number;
  readonly status: number;
  readonly payload: Uint8Array;
  readonly text: string;
}

/** `frame` as a {@link Reply}, its payload copied out of the reader's buffers. */
export function decoded(frame: Frame): Reply {
  const payload = Uint8Array.from(frame.payload);
  return {
    type: frame.type,
    tag: frame.tag,
    status: frame.status,
    payload,
    text: new TextDecoder().decode(payload),
  };
}

/** `promise`, or a failure naming `what` when it has not settled within `ms` (on the real clock). */
export async function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = realSetTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    realClearTimeout(timer);
  }
}

/** Waits (on the real clock, a turn of the event loop at a time) until `test` holds. */
export async function until(test: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!test()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within 2000 ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * A raw connection to a block target (src/csv/target.ts): sends bytes as
 * given and keeps every frame it is sent, so a test sees exactly what the
 * target answered and when it closed.
 */
export class TargetPeer {
  readonly frames: Reply[] = [];
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  private readonly reader = new FrameReader();
  private wake: (() => void) | undefined;
  private taken = 0;

  /** Reads the frames of an open `socket` (plain or TLS), destroyed when the test ends. */
  constructor(readonly socket: Socket) {
    onTestFinished(() => {
      socket.destroy();
    });
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      for (const frame of this.reader.push(chunk)) this.frames.push(decoded(frame));
      this.wake?.();
    });
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
  }

  /**
   * Connects in plain TCP to a loopback port, or to a Unix socket by path;
   * `allowHalfOpen` keeps this end open when the target ends its own, so
   * only the target's destroy closes the connection.
   */
  static async open(where: number | string, allowHalfOpen = false): Promise<TargetPeer> {
    const socket =
      typeof where === "number"
        ? connect({ host: "127.0.0.1", port: where, allowHalfOpen })
        : connect({ path: where, allowHalfOpen });
    const peer = new TargetPeer(socket);
    await within(once(socket, "connect"), "the connection");
    return peer;
  }

  send(...bytes: Uint8Array[]): void {
    this.socket.write(Buffer.concat(bytes));
  }

  /** The next frame not yet taken. */
  async next(what = "a frame"): Promise<Reply> {
    while (this.frames.length <= this.taken)
      await within(
        new Promise<void>((resolve) => {
          this.wake = resolve;
        }),
        what,
      );
    return this.frames[this.taken++] as Reply;
  }

  /** Logs in as `name` and returns the LOGIN reply. */
  async login(name = "node-1", tag = 1): Promise<Reply> {
    this.send(encodeFrame(Op.login, tag, new TextEncoder().encode(name)));
    return await this.next("the LOGIN reply");
  }

  /** The error frame the target closes the connection with: its reason, once the connection is closed. */
  async refusal(): Promise<string> {
    const frame = await this.next("the error frame");
    expect(frame.type).toBe(Op.error);
    expect(frame.tag).toBe(0);
    expect(frame.status).toBe(0);
    await within(this.closed, "the connection's close");
    return frame.text;
  }
}
