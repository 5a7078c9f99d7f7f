import type { MemoryLayout } from "../memory/layout.js";
import { Region, type RegionDescriptor } from "../memory/region.js";

/*
 * A trace ring in the shared memory: one producer (the thread reading or
 * generating the trace) and up to 16 consumers (one per configuration, or
 * per group of configurations), each reading every chunk. A slot is reused
 * only when every consumer is past it. The producing thread may be one of
 * the consumers itself: it runs its share of each chunk as soon as it has
 * published the chunk to the others (so no worker has to be started for it).
 *
 * Header (Int32 slots):
 *   [0] chunks produced    [1] finished (1 = no more)   [2] abort (1 = stop)
 *   [8 + c] chunks consumed by consumer c (c < 16)
 *   [32 + s] records in slot s (s < 32)
 */
const PRODUCED = 0;
const FINISHED = 1;
const ABORT = 2;
const CONSUMED = 8;
const SLOT_COUNT = 32;
/** Most consumers a ring serves. */
export const MAX_CONSUMERS = 16;
/** Most slots a ring has. */
export const MAX_SLOTS = 32;
const HEADER_INTS = 64;

/** Where a ring lies (crosses to workers). */
export interface RingDescriptor {
  readonly header: RegionDescriptor;
  readonly data: RegionDescriptor;
  readonly slots: number;
  readonly slotRecords: number;
  readonly consumers: number;
}

/** Lays out a ring. */
export function allocateRing(
  layout: MemoryLayout,
  name: string,
  slots: number,
  slotRecords: number,
  consumers: number,
): RingDescriptor {
  if (!Number.isInteger(slots) || slots < 1 || slots > MAX_SLOTS) {
    throw new RangeError(`ring slots must be 1 to ${MAX_SLOTS}, not ${slots}`);
  }
  if (!Number.isInteger(consumers) || consumers < 1 || consumers > MAX_CONSUMERS) {
    throw new RangeError(`ring consumers must be 1 to ${MAX_CONSUMERS}, not ${consumers}`);
  }
  return {
    header: layout.allocate(`${name} header`, HEADER_INTS * 4).toDescriptor(),
    data: layout.allocate(`${name} data`, slots * slotRecords * 8, 64).toDescriptor(),
    slots,
    slotRecords,
    consumers,
  };
}

/** Thrown in a consumer when the producer aborted the run. */
export class RingAbortedError extends Error {
  override name = "RingAbortedError";
}

/** A consumer that runs on the producing thread: its index and what it does with a chunk. */
export interface LocalConsumer {
  readonly consumer: number;
  /** Called with each chunk's slot (records from its first byte) right after the chunk is published. */
  readonly consume: (records: Region, count: number) => void;
}

/** The producer's side: fills slots and waits (asynchronously) for space. */
export class RingProducer {
  private readonly h: Int32Array;
  private readonly data: Region;
  private fill = 0;
  private chunk = 0;

  constructor(
    private readonly memory: WebAssembly.Memory,
    readonly ring: RingDescriptor,
    private readonly failed: Promise<never>,
    private readonly local?: LocalConsumer,
  ) {
    if (
      local &&
      (!Number.isInteger(local.consumer) || local.consumer < 0 || local.consumer >= ring.consumers)
    ) {
      throw new RangeError(
        `local consumer ${local.consumer} is not one of the ring's ${ring.consumers}`,
      );
    }
    this.h = new Int32Array(memory.buffer, ring.header.offset, HEADER_INTS);
    this.h.fill(0);
    this.data = new Region(ring.data);
  }

  /** Word view of the slot being filled. */
  private slotWords(): Uint32Array {
    const slot = this.chunk % this.ring.slots;
    return new Uint32Array(
      this.memory.buffer,
      this.data.offset + slot * this.ring.slotRecords * 8,
      this.ring.slotRecords * 2,
    );
  }

  /** Waits until the slot of the current chunk is free of every consumer. */
  private async waitForSlot(): Promise<void> {
    const oldest = this.chunk - this.ring.slots;
    for (let c = 0; c < this.ring.consumers; c++) {
      for (;;) {
        const seen = Atomics.load(this.h, CONSUMED + c);
        if (seen > oldest) break;
        const wait = Atomics.waitAsync(this.h, CONSUMED + c, seen, 200);
        if (wait.async) await Promise.race([wait.value, this.failed]);
      }
    }
  }

  /** Appends records given as word pairs. */
  async write(words: Uint32Array, count: number): Promise<void> {
    let at = 0;
    while (at < count) {
      if (this.fill === 0) await this.waitForSlot();
      const take = Math.min(count - at, this.ring.slotRecords - this.fill);
      this.slotWords().set(words.subarray(at * 2, (at + take) * 2), this.fill * 2);
      this.fill += take;
      at += take;
      if (this.fill === this.ring.slotRecords) this.publish();
    }
  }

  /** Lets `fillSlot` write up to a whole slot in place; returns nothing. */
  async generate(
    count: number,
    fillSlot: (words: Uint32Array, at: number, n: number) => void,
  ): Promise<void> {
    let left = count;
    while (left > 0) {
      if (this.fill === 0) await this.waitForSlot();
      const take = Math.min(left, this.ring.slotRecords - this.fill);
      fillSlot(this.slotWords(), this.fill * 2, take);
      this.fill += take;
      left -= take;
      if (this.fill === this.ring.slotRecords) this.publish();
    }
  }

  private publish(): void {
    const slot = this.chunk % this.ring.slots;
    const count = this.fill;
    Atomics.store(this.h, SLOT_COUNT + slot, count);
    this.chunk++;
    this.fill = 0;
    Atomics.store(this.h, PRODUCED, this.chunk);
    Atomics.notify(this.h, PRODUCED);
    if (this.local) {
      // The workers are already on this chunk: this thread runs its share beside them.
      const bytes = this.ring.slotRecords * 8;
      const at = this.data.check(slot * bytes, bytes, "trace ring slot");
      this.local.consume(
        new Region({ name: `${this.data.name} slot ${slot}`, offset: at, byteLength: bytes }),
        count,
      );
      Atomics.store(this.h, CONSUMED + this.local.consumer, this.chunk);
    }
  }

  /** Publishes the last partial slot and marks the end. */
  finish(): void {
    if (this.fill > 0) this.publish();
    Atomics.store(this.h, FINISHED, 1);
    Atomics.notify(this.h, PRODUCED);
  }

  /** Tells every consumer to stop. */
  abort(): void {
    Atomics.store(this.h, ABORT, 1);
    Atomics.notify(this.h, PRODUCED);
  }
}

/**
 * The consumer's side (a pool worker): blocks until a chunk is there, hands
 * it to `consume(records, count)` (the chunk's slot, records from its first
 * byte), and marks it consumed.
 */
export function consumeRing(
  memory: WebAssembly.Memory,
  ring: RingDescriptor,
  consumer: number,
  consume: (records: Region, count: number) => void,
): void {
  const h = new Int32Array(memory.buffer, ring.header.offset, HEADER_INTS);
  const data = new Region(ring.data);
  let chunk = 0;
  for (;;) {
    const produced = Atomics.load(h, PRODUCED);
    if (Atomics.load(h, ABORT)) throw new RingAbortedError("the trace producer stopped");
    if (produced <= chunk) {
      if (Atomics.load(h, FINISHED) && Atomics.load(h, PRODUCED) <= chunk) return;
      Atomics.wait(h, PRODUCED, produced, 200);
      continue;
    }
    const slot = chunk % ring.slots;
    const count = Atomics.load(h, SLOT_COUNT + slot);
    const bytes = ring.slotRecords * 8;
    const at = data.check(slot * bytes, bytes, "trace ring slot");
    consume(
      new Region({ name: `${data.name} slot ${slot}`, offset: at, byteLength: bytes }),
      count,
    );
    chunk++;
    Atomics.store(h, CONSUMED + consumer, chunk);
    Atomics.notify(h, CONSUMED + consumer);
  }
}
