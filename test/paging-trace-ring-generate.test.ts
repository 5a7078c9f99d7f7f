import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { allocateRing, consumeRing, RingProducer } from "../src/paging/ring.js";

// The trace ring's generate path: records written straight into the slot in
// hand, published when it fills (or at the end), and only into a slot every
// consumer has read. Consumers run on the test's own thread; one whose
// callback throws stops where it is, which holds it back. Kept apart from
// paging-trace-ring.test.ts so that file's recorded mutation results stay
// valid (docs/testing.md, "In CI").

/** What a consumer saw of one chunk: its records, each word pair as one number. */
function collect(memory: WebAssembly.Memory, into: number[][]) {
  return (records: Region, count: number) => {
    const words = new Uint32Array(memory.buffer, records.offset, count * 2);
    into.push(
      Array.from(
        { length: count },
        (_, i) => (words[2 * i] ?? 0) + (words[2 * i + 1] ?? 0) * 2 ** 32,
      ),
    );
  };
}

const never = new Promise<never>(() => {});

/** A generator writing one record per call, numbered from 1. */
function numbered() {
  let next = 1;
  return (words: Uint32Array, at: number, n: number) => {
    for (let i = 0; i < n; i++) words[at + 2 * i] = next++;
  };
}

describe("a trace ring's generated records", () => {
  it("gathers small generated pieces into one slot until it is full", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 4, 4, 1);
    const local: number[][] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 0,
      consume: collect(layout.memory, local),
    });
    const one = numbered();
    await producer.generate(1, one);
    await producer.generate(1, one);
    expect(local, "nothing published before the slot fills").toEqual([]);
    producer.finish();
    expect(local).toEqual([[1, 2]]);
  });

  it("generates into a slot only once every consumer is past it", async () => {
    const layout = new MemoryLayout();
    const ring = allocateRing(layout, "r", 2, 1, 2);
    const local: number[][] = [];
    const producer = new RingProducer(layout.memory, ring, never, {
      consumer: 1,
      consume: collect(layout.memory, local),
    });
    const one = numbered();
    await producer.generate(2, one);
    let done = false;
    const third = producer.generate(1, one).then(() => {
      done = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(done, "consumer 0 has read neither slot").toBe(false);
    const seen: number[][] = [];
    const stop = new Error("stop");
    const read = collect(layout.memory, seen);
    expect(() =>
      consumeRing(layout.memory, ring, 0, (records, count) => {
        if (seen.length === 1) throw stop;
        read(records, count);
      }),
    ).toThrow(stop);
    await third;
    expect(seen).toEqual([[1]]);
    expect(local).toEqual([[1], [2], [3]]);
  });
});
