import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import {
  allocateRing,
  consumeRing,
  MAX_CONSUMERS,
  MAX_SLOTS,
  RingAbortedError,
  RingProducer,
} from "../src/paging/ring.js";

// The trace ring: one producer, every consumer reads every chunk, and a slot
// is written again only when every consumer is past the chunk it held. Here
// the consumers run on the test's own thread; a consumer whose callback
// throws stops where it is, which lets a test hold one consumer back.

/** A chunk as a consumer saw it: its slot's name and its records (word pairs as one number each). */
interface Chunk {
  readonly slot: string;
  readonly records: number[];
}

function reader(memory: WebAssembly.Memory, into: Chunk[]) {
  return (records: Region, count: number) => {
    const words = new Uint32Array(memory.buffer, records.offset, count * 2);
    const values: number[] = [];
    for (let i = 0; i < count; i++)
      values.push((words[2 * i] ?? 0) + (words[2 * i + 1] ?? 0) * 2 ** 32);
    into.push({ slot: records.name, records: values });
  };
}

function pairs(values: number[]): Uint32Array {
  const words = new Uint32Array(values.length * 2);
  values.forEach((v, i) => {
    words[2 * i] = v % 2 ** 32;
    words[2 * i + 1] = Math.floor(v / 2 ** 32);
  });
  return words;
}

const never = new Promise<never>(() => {});

describe("laying out a trace ring", () => {
  it("takes 1 to 32 slots and 1 to 16 consumers and refuses one past either end", () => {
    const layout = new MemoryLayout();
    expect(MAX_SLOTS).toBe(32);
    expect(MAX_CONSUMERS).toBe(16);
    for (const slots of [0, 33, 1.5]) {
      expect(() => allocateRing(layout, "r", slots, 8, 1)).toThrow(
        new RangeError(`ring slots must be 1 to 32, not ${slots}`),
      );
    }
    for (const consumers of [0, 17, 2.5]) {
      expect(() => allocateRing(layout, "r", 4, 8, consumers)).toThrow(
        new RangeError(`ring consumers must be 1 to 16, not ${consumers}`),
      );
    }
    expect(allocateRing(layout, "low", 1, 8, 1).slots).toBe(1);
    const ring = allocateRing(layout, "high", 32, 100, 16);
    expect(ring).toMatchObject({ slots: 32, slotRecords: 100, consumers: 16 });
    expect(ring.header).toMatchObject({ name: "high header", byteLength: 256 });
    expect(ring.data).toMatchObject({ name: "high data", byteLength: 32 * 100 * 8 });
    expect(ring.data.offset % 64).toBe(0);
  });

  it("refuses a local consumer that is not one of the ring's", () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 4, 3);
    for (const consumer of [-1, 3, 1.5]) {
      expect(
        () => new RingProducer(layout.memory, ring, never, { consumer, consume: () => {} }),
      ).toThrow(new RangeError(`local consumer ${consumer} is not one of the ring's 3`));
    }
    expect(
      () => new RingProducer(layout.memory, ring, never, { consumer: 2, consume: () => {} }),
    ).not.toThrow();
  });
});

describe("a trace ring's chunks", () => {
  it("reach the local consumer as each slot fills and every other consumer after", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "trace", 4, 3, 2);
    const local: Chunk[] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 0,
      consume: reader(layout.memory, local),
    });
    const records = [1, 2, 3, 4, 5, 6, 7, 8, 9, 2 ** 40 + 10];
    await producer.write(pairs(records.slice(0, 4)), 4);
    expect(
      local.map((c) => c.records),
      "one slot full",
    ).toEqual([[1, 2, 3]]);
    await producer.write(pairs(records.slice(4)), 6);
    expect(local).toHaveLength(3);
    producer.finish();
    expect(local).toEqual([
      { slot: "trace data slot 0", records: [1, 2, 3] },
      { slot: "trace data slot 1", records: [4, 5, 6] },
      { slot: "trace data slot 2", records: [7, 8, 9] },
      { slot: "trace data slot 3", records: [2 ** 40 + 10] },
    ]);
    const other: Chunk[] = [];
    consumeRing(layout.memory, ring, 1, reader(layout.memory, other));
    expect(other).toEqual(local);
  });

  it("writes only what is asked of a longer buffer", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 4, 1);
    const seen: Chunk[] = [];
    const producer = new RingProducer(layout.memory, ring, never);
    await producer.write(pairs([7, 8, 9, 10, 11]), 2);
    producer.finish();
    consumeRing(layout.memory, ring, 0, reader(layout.memory, seen));
    expect(seen.map((c) => c.records)).toEqual([[7, 8]]);
  });

  it("lets a generator fill each slot in place from where the last write stopped", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 4, 4, 1);
    const calls: [number, number][] = [];
    let next = 100;
    const local: Chunk[] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 0,
      consume: reader(layout.memory, local),
    });
    await producer.write(pairs([1]), 1);
    await producer.generate(9, (words, at, n) => {
      calls.push([at, n]);
      for (let i = 0; i < n; i++) words[at + 2 * i] = next++;
    });
    expect(calls).toEqual([
      [2, 3],
      [0, 4],
      [0, 2],
    ]);
    producer.finish();
    expect(local.map((c) => c.records)).toEqual([
      [1, 100, 101, 102],
      [103, 104, 105, 106],
      [107, 108],
    ]);
  });

  it("publishes nothing more at the end when the last slot was full", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 4, 2, 1);
    const local: Chunk[] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 0,
      consume: reader(layout.memory, local),
    });
    await producer.write(pairs([1, 2, 3, 4]), 4);
    producer.finish();
    expect(local.map((c) => c.records)).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });

  it("reuses a slot only once every consumer is past it", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 1, 2);
    const local: Chunk[] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 0,
      consume: reader(layout.memory, local),
    });
    await producer.write(pairs([1, 2]), 2);
    let done = false;
    const third = producer.write(pairs([3]), 1).then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(done, "both slots hold chunks consumer 1 has not read").toBe(false);
    expect(local).toHaveLength(2);

    // Consumer 1 reads chunk 0, then stops inside chunk 1.
    const seen: Chunk[] = [];
    const stop = new Error("stop");
    const read = reader(layout.memory, seen);
    expect(() =>
      consumeRing(layout.memory, ring, 1, (records, count) => {
        if (seen.length === 1) throw stop;
        read(records, count);
      }),
    ).toThrow(stop);
    await third;
    expect(local.map((c) => c.records)).toEqual([[1], [2], [3]]);
    expect(local[2]?.slot, "the third chunk went into slot 0 again").toBe("r data slot 0");
    expect(seen.map((c) => c.records)).toEqual([[1]]);
  });

  it("gives up waiting for a slot when the run fails", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 1, 1, 2);
    const failure = new Error("a worker died");
    let fail: (error: Error) => void = () => {};
    const failed = new Promise<never>((_, reject) => {
      fail = reject;
    });
    failed.catch(() => {});
    const producer = new RingProducer(layout.memory, ring, failed, {
      consumer: 0,
      consume: () => {},
    });
    await producer.write(pairs([1]), 1);
    const blocked = producer.write(pairs([2]), 1);
    fail(failure);
    await expect(blocked).rejects.toBe(failure);
  });

  it("stops every consumer when the producer aborts", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 2, 1);
    const producer = new RingProducer(layout.memory, ring, never);
    await producer.write(pairs([1, 2, 3]), 3);
    producer.abort();
    const seen: Chunk[] = [];
    expect(() => consumeRing(layout.memory, ring, 0, reader(layout.memory, seen))).toThrow(
      new RingAbortedError("the trace producer stopped"),
    );
    expect(new RingAbortedError("x").name).toBe("RingAbortedError");
    expect(seen).toEqual([]);
  });

  it("starts from a clean header whatever the memory held before", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 2, 1);
    new Int32Array(layout.memory.buffer, ring.header.offset, 64).fill(7);
    const producer = new RingProducer(layout.memory, ring, never);
    await producer.write(pairs([5]), 1);
    producer.finish();
    const seen: Chunk[] = [];
    consumeRing(layout.memory, ring, 0, reader(layout.memory, seen));
    expect(seen.map((c) => c.records)).toEqual([[5]]);
  });
});
