import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { pageAlignedBytes } from "../storage/direct-file.js";
import { packageRoot } from "../util/package-root.js";
import type { BatchOutcome } from "./fenced-batch.js";

/*
 * A node's I/O thread, as QEMU's iothread (iothread.c, IOThread: a thread
 * of its own for a device's I/O, so the main loop does not run it): a
 * batch of the node's direct writes goes to it in one message, it issues
 * them back to back with synchronous pwrite, fencing each by the
 * registration board (fenced-batch.ts), and answers once per batch. On a
 * virtual machine where a thread's wake-up costs tens of microseconds, the
 * node's event loop is woken once per batch instead of once per write, and
 * no pool thread is woken between two writes (docs/csv.md, "What bounds
 * direct I/O on a LUN file").
 *
 * The thread is a plain worker_threads Worker, not a slot in the project's
 * piscina pool (KernelPool): a KernelPool's workers are built for the wasm
 * engines (each holds the engine's shared memory and compiles every kernel
 * at start), where this thread holds two descriptors and runs no kernel;
 * and a batch's part must run on the thread that keeps them, not on
 * whichever worker is free.
 */

/** Writes in one batch at most. */
export const MAX_BATCH_WRITES = 4096;

/** What the thread gets at start (workerData). */
export interface IoThreadBoot {
  readonly lun: string;
  /** Open the LUN with O_DIRECT (DirectFile, which bounces an unaligned request itself). */
  readonly direct: boolean;
  readonly board: string;
  /**
   * Control words shared with the node and the other threads of its
   * group (io-threads.ts): [0] non-zero while the node halts its writes;
   * [1] non-zero once a thread's part of the current batch has stopped
   * (the others stop before their next write); [slot] this thread's writes
   * acknowledged so far in its part.
   */
  readonly control: Int32Array;
  readonly slot: number;
}

/** The control words of a group of `threads` threads (see {@link IoThreadBoot.control}). */
export function controlWords(threads: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer(4 * (2 + threads)));
}

/** One batch sent to the thread: `table` holds buffer, buffer offset, length and LUN offset of each write. */
export interface IoThreadRequest {
  readonly id: number;
  readonly key: bigint;
  readonly buffers: readonly Uint8Array[];
  readonly table: Float64Array;
}

/** The thread's answer to a batch (what it did, or why it could not run it), or its word that its descriptors are open. */
export type IoThreadReply =
  | { readonly id: number; readonly outcome: BatchOutcome }
  | { readonly id: number; readonly error: string }
  | { readonly ready: true };

/** One write handed to {@link LunIoThread.write}: `data` at `lunOffset`. */
export interface LunWrite {
  readonly lunOffset: number;
  readonly data: Uint8Array;
}

/** A batch's arguments are not what it takes; the message names the write and the field. */
export class BatchArgumentError extends RangeError {
  override name = "BatchArgumentError";
}

/** The compiled worker (Node 20 cannot load TypeScript in a worker). */
function workerFile(): string {
  return join(packageRoot(), "dist", "src", "csv", "io-thread-worker.js");
}

/** Checks a batch's key and writes; returns the bytes of the writes whose memory is not shared. */
function checkBatch(
  key: bigint,
  writes: readonly LunWrite[],
  lunBytes: number,
  maxWrites = MAX_BATCH_WRITES,
): number {
  if (typeof key !== "bigint" || key < 0n || key >= 1n << 64n)
    throw new BatchArgumentError(`batch key must be a 64-bit bigint, not ${String(key)}`);
  if (!Array.isArray(writes) || writes.length === 0 || writes.length > maxWrites)
    throw new BatchArgumentError(
      `a batch holds 1 to ${maxWrites} writes, not ${Array.isArray(writes) ? writes.length : typeof writes}`,
    );
  let copied = 0;
  for (const [i, w] of writes.entries()) {
    if (!(w?.data instanceof Uint8Array) || w.data.length === 0)
      throw new BatchArgumentError(`batch write ${i}: data must be a Uint8Array of 1 byte or more`);
    const { lunOffset } = w;
    if (!Number.isSafeInteger(lunOffset) || lunOffset < 0 || lunOffset + w.data.length > lunBytes)
      throw new BatchArgumentError(
        `batch write ${i}: ${w.data.length} bytes at ${String(lunOffset)} do not fit the LUN's ${lunBytes} bytes`,
      );
    if (!(w.data.buffer instanceof SharedArrayBuffer)) copied += w.data.length;
  }
  return copied;
}

/** Checks a batch and lays it out for the thread: shared buffers as they are, others copied into one. */
export function packBatch(
  key: bigint,
  writes: readonly LunWrite[],
  lunBytes: number,
): { buffers: Uint8Array[]; table: Float64Array } {
  const copied = checkBatch(key, writes, lunBytes);
  const buffers: Uint8Array[] = [];
  const index = new Map<ArrayBufferLike, number>();
  const staging = copied > 0 ? pageAlignedBytes(copied, true) : undefined;
  let staged = 0;
  const table = new Float64Array(4 * writes.length);
  for (const [i, w] of writes.entries()) {
    let buffer: number;
    let bufferOffset: number;
    if (w.data.buffer instanceof SharedArrayBuffer) {
      const known = index.get(w.data.buffer);
      buffer = known ?? buffers.push(new Uint8Array(w.data.buffer)) - 1;
      index.set(w.data.buffer, buffer);
      bufferOffset = w.data.byteOffset;
    } else {
      // Not shared: copied, once, into memory the thread shares (and page-aligned for O_DIRECT).
      const into = staging as Uint8Array;
      if (!index.has(into.buffer)) index.set(into.buffer, buffers.push(into) - 1);
      buffer = index.get(into.buffer) as number;
      into.set(w.data, staged);
      bufferOffset = staged;
      staged += w.data.length;
    }
    table.set([buffer, bufferOffset, w.data.length, w.lunOffset], 4 * i);
  }
  return { buffers, table };
}

/** A node's I/O thread for fenced batches of direct writes: see the comment at the top of io-thread.ts. */
export class LunIoThread {
  private readonly worker: Worker;
  private readonly pending = new Map<
    number,
    { resolve: (o: BatchOutcome) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private failed: Error | undefined;
  private opened: () => void = () => {};
  private refused: (error: Error) => void = () => {};
  /**
   * Settles once the thread has opened its descriptors of the LUN and the
   * board, or rejects with why it could not (the error the thread threw).
   */
  readonly ready: Promise<void>;
  private closed: Promise<void> | undefined;
  private exited = false;

  /**
   * Starts the thread on the LUN at `lun` (with O_DIRECT when `direct`)
   * and the board at `board`; it opens its own descriptors of both. A
   * thread of a group shares the group's control words and has its own
   * slot in them (2 and on).
   */
  constructor(
    lun: string,
    board: string,
    direct: boolean,
    private readonly lunBytes: number,
    private readonly control: Int32Array = controlWords(1),
    private readonly slot = 2,
  ) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.opened = resolve;
      this.refused = reject;
    });
    // Awaited by the group before a batch; a thread never asked is not an unhandled rejection.
    this.ready.catch(() => {});
    const boot: IoThreadBoot = { lun, direct, board, control, slot };
    this.worker = new Worker(workerFile(), { workerData: boot });
    this.worker.on("message", (reply: IoThreadReply) => this.settle(reply));
    this.worker.on("error", (error) => this.fail(error));
    this.worker.on("exit", (code) => {
      this.exited = true;
      this.fail(new Error(`the I/O thread exited (code ${code})`));
    });
    // While it opens its descriptors and while it has a batch in hand the
    // thread keeps the node's process alive; idle, it does not (settle()
    // lets go once it is ready). Not here: a "message" listener refs the
    // worker's port again, and an idle thread held the process open.
  }

  /**
   * Runs `writes` in order for `key`, each fenced by the board, and
   * settles once the batch has ended: writes 0 .. acknowledged - 1 landed
   * and are acknowledged; the outcome's stop says what became of the next
   * one, and the rest were not issued. Rejects with a BatchArgumentError
   * before anything is issued when an argument is wrong.
   */
  write(key: bigint, writes: readonly LunWrite[]): Promise<BatchOutcome> {
    let packed: { buffers: Uint8Array[]; table: Float64Array };
    try {
      packed = packBatch(key, writes, this.lunBytes);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.failed) return Promise.reject(this.failed);
    const id = this.nextId++;
    const request: IoThreadRequest = { id, key, ...packed };
    return new Promise<BatchOutcome>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(request);
    });
  }

  /** Throws the BatchArgumentError {@link write} would reject with, or nothing. */
  static check(
    key: bigint,
    writes: readonly LunWrite[],
    lunBytes: number,
    maxWrites = MAX_BATCH_WRITES,
  ): void {
    checkBatch(key, writes, lunBytes, maxWrites);
  }

  /** Writes of the batch running now acknowledged so far (read without waking the thread). */
  get acknowledgedSoFar(): number {
    return Atomics.load(this.control, this.slot);
  }

  /** Refuses every write not yet issued, in this batch and later ones, until {@link resume}. */
  halt(): void {
    Atomics.store(this.control, 0, 1);
  }

  /** Lets writes go out again after {@link halt}. */
  resume(): void {
    Atomics.store(this.control, 0, 0);
  }

  private settle(reply: IoThreadReply): void {
    if ("ready" in reply) {
      this.opened();
      if (this.pending.size === 0) this.worker.unref();
      return;
    }
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if ("error" in reply) waiter.reject(new Error(`I/O thread: ${reply.error}`));
    else waiter.resolve(reply.outcome);
  }

  private fail(error: Error): void {
    this.failed ??= error;
    this.refused(this.failed);
    for (const w of this.pending.values()) w.reject(error);
    this.pending.clear();
  }

  /**
   * Stops the thread once the batch it runs has ended (the rest are
   * refused): it closes its descriptors, which are the process's and would
   * outlive a terminated thread. Batches in hand are rejected.
   */
  async close(): Promise<void> {
    this.halt();
    this.fail(new Error("the I/O thread is closed"));
    if (this.closed) return this.closed;
    if (this.exited) return;
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage("close");
    this.closed = exited;
    return exited;
  }
}
