import type { Region } from "../memory/region.js";

/**
 * Batches one stream's sender may have written ahead of its receivers: a
 * ring of this many slots. The sender writes ahead until the ring is full
 * and only then receives a batch itself, so the destination's thread always
 * finds one waiting; six let the sender's spare time (its own work is a
 * third of a page's) go into receiving in whole batches while the receiver
 * stays busy (one slot being written, one being received there, four
 * waiting at most). Fewer, or more, measured slower: the pages the sender
 * just hashed should still be in the last-level cache when a receiver
 * copies them.
 */
export const STREAM_SLOTS = 6;

// The control block's 32-bit words.
/** Batches written so far in this wave. */
const WRITTEN = 0;
/** Batches claimed by a receiver so far (the next one to claim). */
const CLAIMED = 1;
/** {@link StreamState}. */
const STATE = 2;
/** Bumped on every change the other thread may wait for; the one word waited on. */
const SIGNAL = 3;
/** Batches the destination's thread received in this wave. */
const REMOTE = 4;
/** Per slot: batches received from it so far in this wave. */
const FINISHED = 8;
/** Per slot: the packets of the batch in it. */
const PACKETS = FINISHED + STREAM_SLOTS;
const WORDS = PACKETS + STREAM_SLOTS;

/** Bytes of a stream queue's control block. */
export const STREAM_QUEUE_BYTES = WORDS * 4;

/** Where a wave stands. */
export const StreamState = {
  /** The sender is still writing batches. */
  sending: 0,
  /** Every batch of the wave is written; receivers take what is left and stop. */
  sent: 1,
  /** A receiver or the sender failed: nobody takes another batch. */
  failed: 2,
} as const;
/** A wave's state, one of {@link StreamState}'s values. */
export type StreamState = (typeof StreamState)[keyof typeof StreamState];

/**
 * One stream's queue of batches between its sender and its receivers (the
 * destination's thread, and the sender itself when it has time), in shared
 * memory: batch `b` lives in slot `b % STREAM_SLOTS`, receivers claim
 * batches in the order they were written, each exactly once, and the sender
 * reuses a slot only once the batch in it was received.
 */
export class StreamQueue {
  private readonly words: Int32Array;

  /** @throws RangeError if the region is too small or not 4-byte aligned. */
  constructor(memory: WebAssembly.Memory, region: Region) {
    if (region.byteLength < STREAM_QUEUE_BYTES || region.offset % 4 !== 0) {
      throw new RangeError(
        `stream queue '${region.name}' at ${region.offset} (${region.byteLength} bytes): needs ${STREAM_QUEUE_BYTES} bytes, 4-byte aligned`,
      );
    }
    this.words = new Int32Array(memory.buffer, region.offset, WORDS);
  }

  /** Empties the queue for a new wave (no receiver may be running). */
  reset(): void {
    this.words.fill(0);
  }

  /** The wave's state (a method: it changes under the caller, from the other thread). */
  state(): StreamState {
    return Atomics.load(this.words, STATE) as StreamState;
  }

  /** Batches the destination's thread received in this wave. */
  get remote(): number {
    return Atomics.load(this.words, REMOTE);
  }

  /** Whether slot `batch % STREAM_SLOTS` is free for batch `batch` (the one before it there was received). */
  slotFree(batch: number): boolean {
    const slot = batch % STREAM_SLOTS;
    return Atomics.load(this.words, FINISHED + slot) >= Math.floor(batch / STREAM_SLOTS);
  }

  /** Packets of the batch in `slot`. */
  packets(slot: number): number {
    return Atomics.load(this.words, PACKETS + slot);
  }

  /** The sender: batch number WRITTEN (of `packets` packets) is in its slot; receivers may claim it. */
  write(packets: number): void {
    const batch = Atomics.load(this.words, WRITTEN);
    Atomics.store(this.words, PACKETS + (batch % STREAM_SLOTS), packets);
    Atomics.add(this.words, WRITTEN, 1);
    this.signal();
  }

  /** Claims the oldest batch written and not claimed; -1 if there is none. */
  claim(): number {
    for (;;) {
      const next = Atomics.load(this.words, CLAIMED);
      if (next >= Atomics.load(this.words, WRITTEN)) return -1;
      if (Atomics.compareExchange(this.words, CLAIMED, next, next + 1) === next) return next;
    }
  }

  /** A receiver is done with `batch`: its slot may be written again. */
  finish(batch: number, remote: boolean): void {
    if (remote) Atomics.add(this.words, REMOTE, 1);
    Atomics.add(this.words, FINISHED + (batch % STREAM_SLOTS), 1);
    this.signal();
  }

  /** Ends the wave as `state` (sent or failed), waking whoever waits. */
  end(state: StreamState): void {
    // A failure is never overwritten by the sender's end of the wave.
    Atomics.compareExchange(this.words, STATE, StreamState.sending, state);
    if (state === StreamState.failed) Atomics.store(this.words, STATE, state);
    this.signal();
  }

  /** The value to wait on: read before checking the condition waited for. */
  seen(): number {
    return Atomics.load(this.words, SIGNAL);
  }

  /** Blocks this thread (a worker's) until something changed since `seen`, at most `ms`. */
  waitBlocking(seen: number, ms: number): void {
    Atomics.wait(this.words, SIGNAL, seen, ms);
  }

  /** Waits without blocking (the sender's thread) until something changed since `seen`, at most `ms`. */
  async waitAsync(seen: number, ms: number): Promise<void> {
    const wait = Atomics.waitAsync(this.words, SIGNAL, seen, ms);
    if (wait.async) await wait.value;
  }

  private signal(): void {
    Atomics.add(this.words, SIGNAL, 1);
    Atomics.notify(this.words, SIGNAL);
  }
}
