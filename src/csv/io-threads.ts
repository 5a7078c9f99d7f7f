import type { BatchStop } from "./fenced-batch.js";
import {
  BatchArgumentError,
  controlWords,
  LunIoThread,
  type LunWrite,
  MAX_BATCH_WRITES,
} from "./io-thread.js";

/*
 * A node's I/O threads: a batch split into as many contiguous parts as the
 * node keeps writes in flight, each part run back to back on its own
 * thread (io-thread.ts) and fenced there write by write. One thread keeps
 * one write in flight; a device that serves several at once (an array, a
 * virtio disk with its queues) needs as many in flight from the node as the
 * thread pool kept before: measured on the 2-core virtual machine of the
 * README's figures, four nodes with one thread each wrote as fast as one
 * process with 4 writes in flight, and half as fast as one with 16.
 *
 * A part that stops (RESERVATION CONFLICT, or an I/O error) sets the
 * group's stop word, and every other part stops before its next write; a
 * PREEMPT shows on each thread's next board read anyway. The node is
 * answered once, when every part has ended.
 */

/** What a batch on the node's I/O threads did, write by write. */
export interface BatchResult {
  /** Per write of the batch, in its order: whether it landed and is acknowledged. */
  readonly acknowledged: readonly boolean[];
  /** Why parts stopped, each at the index of its write in the batch, in the batch's order. */
  readonly stops: readonly BatchStop[];
  readonly boardReads: number;
}

/** A group of I/O threads for one node's path to the LUN: see the comment at the top of io-threads.ts. */
export class LunIoThreads {
  private readonly threads: LunIoThread[] = [];
  private readonly control: Int32Array;
  /** Batches run one at a time: the stop word belongs to the batch running. */
  private queue: Promise<unknown> = Promise.resolve();

  /** Starts `count` threads (1 to 64) on the LUN at `lun` and the board at `board`. */
  constructor(
    lun: string,
    board: string,
    direct: boolean,
    private readonly lunBytes: number,
    count: number,
  ) {
    if (!Number.isSafeInteger(count) || count < 1 || count > 64)
      throw new RangeError(`I/O threads must be a whole number from 1 to 64, not ${count}`);
    this.control = controlWords(count);
    for (let i = 0; i < count; i++)
      this.threads.push(new LunIoThread(lun, board, direct, lunBytes, this.control, 2 + i));
  }

  /**
   * Settles once every thread has its descriptors of the LUN and the board
   * open, or rejects with why one could not open them. A batch waits for
   * it before it sends any part.
   */
  get ready(): Promise<void> {
    return Promise.all(this.threads.map((t) => t.ready)).then(() => {});
  }

  /** Threads in the group: writes in flight at most. */
  get size(): number {
    return this.threads.length;
  }

  /**
   * Runs `writes` for `key` on the threads, each a contiguous part of the
   * batch, and settles once every part has ended. Rejects with a
   * BatchArgumentError before anything is issued when an argument is wrong.
   */
  write(key: bigint, writes: readonly LunWrite[]): Promise<BatchResult> {
    const run = () => this.run(key, writes);
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => {});
    return next;
  }

  private async run(key: bigint, writes: readonly LunWrite[]): Promise<BatchResult> {
    if (!Array.isArray(writes) || writes.length === 0)
      throw new BatchArgumentError(
        `a batch holds 1 or more writes, not ${Array.isArray(writes) ? 0 : typeof writes}`,
      );
    const parts = Math.min(this.threads.length, writes.length);
    const bounds = Array.from({ length: parts + 1 }, (_, j) =>
      Math.floor((j * writes.length) / parts),
    );
    // The whole batch checked before any part is sent, so that a bad
    // argument issues nothing and is named by its place in the batch; each
    // thread takes up to MAX_BATCH_WRITES, so the group takes that many per part.
    LunIoThread.check(key, writes, this.lunBytes, MAX_BATCH_WRITES * parts);
    Atomics.store(this.control, 1, 0);
    // Every thread's count from zero, those given no part too: the count is this batch's.
    for (let i = 0; i < this.threads.length; i++) Atomics.store(this.control, 2 + i, 0);
    // Every thread's descriptors open, not only those of the parts: a thread
    // that cannot open the LUN fails the batch before anything is issued,
    // and a node's descriptors are whole once its first batch has run.
    await this.ready;
    const outcomes = await Promise.all(
      Array.from({ length: parts }, (_, j) =>
        (this.threads[j] as LunIoThread).write(key, writes.slice(bounds[j], bounds[j + 1])),
      ),
    );
    const acknowledged = new Array<boolean>(writes.length).fill(false);
    const stops: BatchStop[] = [];
    let boardReads = 0;
    for (const [j, outcome] of outcomes.entries()) {
      const from = bounds[j] as number;
      for (let i = 0; i < outcome.acknowledged; i++) acknowledged[from + i] = true;
      if (outcome.stop) stops.push({ ...outcome.stop, at: from + outcome.stop.at });
      boardReads += outcome.boardReads;
    }
    return { acknowledged, stops, boardReads };
  }

  /** Writes acknowledged so far in the batch running now, over every thread (read without waking them). */
  get acknowledgedSoFar(): number {
    let n = 0;
    for (let i = 0; i < this.threads.length; i++) n += Atomics.load(this.control, 2 + i);
    return n;
  }

  /** Refuses every write not yet issued, on every thread, until {@link resume}. */
  halt(): void {
    Atomics.store(this.control, 0, 1);
  }

  resume(): void {
    Atomics.store(this.control, 0, 0);
  }

  /** Stops every thread once its part has ended; they close their descriptors. */
  async close(): Promise<void> {
    this.halt();
    await Promise.all(this.threads.map((t) => t.close()));
  }
}
