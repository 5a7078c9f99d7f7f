import type { Region } from "../memory/region.js";
import { SynchronousFile } from "./block-file.js";

/*
 * A block file whose bytes another thread moves. The VHD engine is
 * synchronous over a BlockFile; a file on a Cluster Shared Volume is reached
 * asynchronously, over a socket to the LUN's target (or, redirected, to the
 * coordinator). The engine runs on a pool worker with a ChannelFile; each
 * call posts one request in a shared-memory mailbox and blocks the worker
 * with Atomics.wait until the thread that owns the socket (the node's event
 * loop, see serveChannel) has done it. The mailbox, in one region:
 *
 *   0 state u32   0 idle, 1 request posted (worker), 2 reply ready (server)
 *   4 op u32      1 read, 2 write, 3 size, 4 truncate, 5 sync
 *   8 length u32  bytes of data (request: a write's; reply: a read's)
 *  12 status u32  0 done, 1 failed (the reason, UTF-8, at 32, its length in `length`)
 *  16 position f64 (request), 24 value f64 (reply: size)
 *  32 reason (224 bytes)       256 data (the rest of the region)
 *
 * One request at a time per mailbox, as the engine issues them.
 */

const STATE = 0;
const OP = 1;
const LENGTH = 2;
const STATUS = 3;
const POSITION = 16;
const REASON = 32;
const REASON_BYTES = 224;
/** Where a request's data starts in the mailbox. */
export const CHANNEL_HEADER_BYTES = 256;

/** Mailbox states. */
const State = { idle: 0, posted: 1, replied: 2 } as const;
/** The operations a mailbox request carries. */
export const ChannelOp = { read: 1, write: 2, size: 3, truncate: 4, sync: 5 } as const;
type ChannelOpCode = (typeof ChannelOp)[keyof typeof ChannelOp];

/** A channel request failed at the serving end; the message says what and where. */
export class ChannelError extends Error {
  override name = "ChannelError";
}

/** What the serving end does with each request (asynchronously). */
export interface ChannelHandler {
  read(position: number, length: number): Promise<Uint8Array>;
  write(position: number, data: Uint8Array): Promise<void>;
  size(): Promise<number>;
  truncate(length: number): Promise<void>;
  sync(): Promise<void>;
}

function views(memory: WebAssembly.Memory, region: Region) {
  const at = region.check(0, CHANNEL_HEADER_BYTES + 512, "channel mailbox");
  const buffer = memory.buffer;
  return {
    words: new Int32Array(buffer, at, 4),
    numbers: new Float64Array(buffer, at + POSITION, 2),
    reason: new Uint8Array(buffer, at + REASON, REASON_BYTES),
    data: new Uint8Array(
      buffer,
      at + CHANNEL_HEADER_BYTES,
      region.byteLength - CHANNEL_HEADER_BYTES,
    ),
  };
}

/**
 * The worker's end: a block file whose every call is a request in
 * the mailbox, answered by {@link serveChannel} on another thread. Calls
 * larger than the mailbox are split.
 */
export class ChannelFile extends SynchronousFile {
  private closed = false;

  /**
   * @param name - the file's name, for messages
   * @param memory - the shared memory holding the mailbox
   * @param region - the mailbox (at least 768 bytes; the part past 256 bytes carries data)
   * @param timeoutMs - how long one request may take before the call fails
   */
  constructor(
    readonly name: string,
    private readonly memory: WebAssembly.Memory,
    private readonly region: Region,
    private readonly timeoutMs = 120_000,
  ) {
    super();
    views(memory, region);
  }

  private call(
    op: ChannelOpCode,
    position: number,
    from?: Uint8Array,
    length = from?.length ?? 0,
  ): ReturnType<typeof views> {
    if (this.closed) throw new ChannelError(`${this.name} is closed`);
    const v = views(this.memory, this.region);
    if (from) v.data.set(from);
    Atomics.store(v.words, OP, op);
    Atomics.store(v.words, LENGTH, length);
    v.numbers[0] = position;
    Atomics.store(v.words, STATE, State.posted);
    Atomics.notify(v.words, STATE);
    const deadline = performance.now() + this.timeoutMs;
    while (Atomics.load(v.words, STATE) === State.posted) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new ChannelError(
          `${this.name}: no answer to request ${op} at byte ${position} within ${this.timeoutMs} ms`,
        );
      }
      Atomics.wait(v.words, STATE, State.posted, left);
    }
    if (Atomics.load(v.words, STATUS) !== 0) {
      const n = Math.min(REASON_BYTES, Atomics.load(v.words, LENGTH));
      const reason = new TextDecoder().decode(v.reason.slice(0, n));
      Atomics.store(v.words, STATE, State.idle);
      throw new ChannelError(`${this.name}: ${reason}`);
    }
    return v;
  }

  private done(v: ReturnType<typeof views>): void {
    Atomics.store(v.words, STATE, State.idle);
  }

  size(): number {
    const v = this.call(ChannelOp.size, 0);
    const size = v.numbers[1] ?? 0;
    this.done(v);
    return size;
  }

  read(into: Uint8Array, position: number): number {
    const chunk = this.region.byteLength - CHANNEL_HEADER_BYTES;
    let done = 0;
    while (done < into.length) {
      const want = Math.min(chunk, into.length - done);
      const v = this.call(ChannelOp.read, position + done, undefined, want);
      const got = Atomics.load(v.words, LENGTH);
      into.set(v.data.subarray(0, Math.min(got, want)), done);
      this.done(v);
      done += Math.min(got, want);
      if (got < want) break;
    }
    return done;
  }

  write(from: Uint8Array, position: number): void {
    const chunk = this.region.byteLength - CHANNEL_HEADER_BYTES;
    for (let at = 0; at < from.length || (at === 0 && from.length === 0); at += chunk) {
      const part = from.subarray(at, Math.min(from.length, at + chunk));
      this.done(this.call(ChannelOp.write, position + at, part));
      if (from.length === 0) break;
    }
  }

  truncate(length: number): void {
    this.done(this.call(ChannelOp.truncate, length));
  }

  sync(): void {
    this.done(this.call(ChannelOp.sync, 0));
  }

  close(): void {
    this.closed = true;
  }
}

/** A running {@link serveChannel}. */
export interface ChannelServer {
  /** Stops serving once the request in hand (if any) is answered. */
  stop(): Promise<void>;
}

/**
 * The serving end: answers the mailbox's requests with `handler`, one at a
 * time, on this thread's event loop, until stopped. A handler's error is
 * passed back to the caller as a {@link ChannelError} with its message.
 */
export function serveChannel(
  memory: WebAssembly.Memory,
  region: Region,
  handler: ChannelHandler,
): ChannelServer {
  let stopped = false;
  const answer = async (v: ReturnType<typeof views>): Promise<void> => {
    const op = Atomics.load(v.words, OP);
    const position = v.numbers[0] ?? 0;
    const length = Atomics.load(v.words, LENGTH);
    try {
      if (!Number.isSafeInteger(position) || position < 0)
        throw new RangeError(`position ${position} is not a byte offset`);
      if (length > v.data.length) throw new RangeError(`length ${length} exceeds the mailbox`);
      if (op === ChannelOp.read) {
        const bytes = await handler.read(position, length);
        const fresh = views(memory, region);
        fresh.data.set(bytes.subarray(0, fresh.data.length));
        Atomics.store(fresh.words, LENGTH, Math.min(bytes.length, fresh.data.length));
      } else if (op === ChannelOp.write) {
        await handler.write(position, v.data.slice(0, length));
      } else if (op === ChannelOp.size) {
        views(memory, region).numbers[1] = await handler.size();
      } else if (op === ChannelOp.truncate) {
        await handler.truncate(position);
      } else if (op === ChannelOp.sync) {
        await handler.sync();
      } else throw new RangeError(`unknown operation ${op}`);
      Atomics.store(views(memory, region).words, STATUS, 0);
    } catch (error) {
      const fresh = views(memory, region);
      const reason = new TextEncoder().encode((error as Error).message).subarray(0, REASON_BYTES);
      fresh.reason.set(reason);
      Atomics.store(fresh.words, LENGTH, reason.length);
      Atomics.store(fresh.words, STATUS, 1);
    }
    const fresh = views(memory, region);
    Atomics.store(fresh.words, STATE, State.replied);
    Atomics.notify(fresh.words, STATE);
  };
  const loop = (async () => {
    while (!stopped) {
      const v = views(memory, region);
      const state = Atomics.load(v.words, STATE);
      if (state === State.posted) {
        await answer(v);
        continue;
      }
      const w = Atomics.waitAsync(v.words, STATE, state, 50);
      if (w.async) await w.value;
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
