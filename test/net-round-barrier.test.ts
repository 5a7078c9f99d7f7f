import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ROUND_BARRIER_BYTES, RoundBarrier } from "../src/net/round-barrier.js";

/*
 * The barrier between receive rounds of processors that share rings: the
 * last of the round's processors to arrive runs the serial step and
 * releases the others; one that waits too long says how many arrived.
 * The other processor here is a worker thread arriving by the barrier's
 * layout (Int32 slots: arrived, generation, expected), as a pool worker's
 * barrier does on the same memory.
 */

const layout = new MemoryLayout();
const region = layout.allocate("barrier", ROUND_BARRIER_BYTES);

describe("round barrier", () => {
  it("takes a region of 64 bytes aligned to 4, and refuses a shorter or unaligned one", () => {
    expect(ROUND_BARRIER_BYTES).toBe(64);
    expect(() => new RoundBarrier(layout.memory, region)).not.toThrow();
    expect(
      () =>
        new RoundBarrier(layout.memory, { name: "b", offset: region.offset + 4, byteLength: 64 }),
    ).not.toThrow();
    expect(
      () =>
        new RoundBarrier(layout.memory, { name: "short", offset: region.offset, byteLength: 63 }),
    ).toThrow(new RangeError("round barrier 'short' needs 64 bytes aligned to 4"));
    expect(
      () =>
        new RoundBarrier(layout.memory, { name: "odd", offset: region.offset + 2, byteLength: 64 }),
    ).toThrow(new RangeError("round barrier 'odd' needs 64 bytes aligned to 4"));
  });

  it("takes 1 to 256 processors", () => {
    const b = new RoundBarrier(layout.memory, region);
    for (const n of [1, 2, 256]) expect(() => b.reset(n)).not.toThrow();
    for (const n of [0, -1, 257, 1.5, Number.NaN]) {
      expect(() => b.reset(n), `${n}`).toThrow(
        new RangeError(`a round barrier takes 1 to 256 processors, not ${n}`),
      );
    }
  });

  it("with one processor runs the serial step at once, round after round, even after one that threw", () => {
    const b = new RoundBarrier(layout.memory, region);
    b.reset(1);
    let serial = 0;
    for (let round = 0; round < 3; round++) b.arrive(() => serial++, 1);
    expect(serial).toBe(3);
    expect(() =>
      b.arrive(() => {
        throw new Error("serial step failed");
      }, 1),
    ).toThrow("serial step failed");
    b.arrive(() => serial++, 1);
    expect(serial).toBe(4);
  });

  it("says how many processors arrived when the others do not, after its timeout", () => {
    const b = new RoundBarrier(layout.memory, region);
    b.reset(3);
    const t0 = performance.now();
    expect(() => b.arrive(() => expect.fail("not the last"), 40)).toThrow(
      new Error("round barrier: 1 of 3 processors arrived"),
    );
    expect(performance.now() - t0).toBeGreaterThanOrEqual(35);
  });

  it("the last of two processors runs the serial step and releases the first", async () => {
    const b = new RoundBarrier(layout.memory, region);
    b.reset(2);
    // The first processor: arrives, then waits for the generation to move.
    const worker = new Worker(
      `const { workerData, parentPort } = require("node:worker_threads");
       const s = new Int32Array(workerData.buffer, workerData.offset, 3);
       const generation = Atomics.load(s, 1);
       Atomics.add(s, 0, 1);
       parentPort.postMessage("arrived");
       const r = Atomics.wait(s, 1, generation, 10000);
       parentPort.postMessage(r + " " + Atomics.load(s, 0));`,
      { eval: true, workerData: { buffer: layout.memory.buffer, offset: region.offset } },
    );
    const messages: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      worker.on("message", (m: string) => {
        messages.push(m);
        if (messages.length === 2) resolve();
      });
      worker.on("error", reject);
    });
    await new Promise<void>((resolve) => worker.once("message", () => resolve()));
    let serial = 0;
    b.arrive(() => serial++, 5000);
    await done;
    await worker.terminate();
    expect(serial).toBe(1);
    // Released (not timed out), with the arrivals cleared for the next round.
    expect(messages[1]).toMatch(/^(ok|not-equal) 0$/);
  });
});
