import { afterAll, describe, expect, it } from "vitest";
import { ParallelHarvester, shareBounds } from "../src/bench/parallel-harvest.js";
import { EpochDirtyLog } from "../src/dirty/epoch-log.js";
import { Guest } from "../src/guest/guest.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../src/memory/dirty-bitmap-pair.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { GATE_BYTES, GateSlot, StartGate } from "../src/pool/gate.js";
import { KernelPool } from "../src/pool/pool.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * The epoch-swapped dirty log under real concurrency: workers mark while this
 * thread flips and harvests. The workers start together through a start gate
 * (Atomics, no sleeps) and every flip waits with Atomics for the workers'
 * acks, so whatever the interleaving, the outcome is fixed: every page marked
 * is harvested exactly once, at the flip after its mark or the one after
 * that, and none is lost.
 */

const layout = new MemoryLayout();
const pool = new KernelPool(layout, { threads: 2, domains: ["dirty", "bench"] });
afterAll(() => pool.close());
const kernel = DirtyKernel.on(layout.memory);
const cursor = layout.allocate("cursor", 8);
const out = layout.allocate("out", 16_384 * 4);

/** Lets the event loop run (task replies arrive) without a timer. */
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("epoch-swapped harvest while workers mark", () => {
  it("harvests every page exactly once while two workers mark pages of the same words", async () => {
    const pages = 1 << 22;
    const pair = DirtyBitmapPair.allocate(layout, "raced-pair", pages, 2);
    const log = new EpochDirtyLog(layout.memory, pair, kernel);
    const gateRegion = layout.allocate("raced-gate", GATE_BYTES, 8);
    const gate = new Int32Array(layout.memory.buffer, gateRegion.offset, 2);
    new StartGate(layout.memory, gateRegion).reset();
    // Writer i marks pages i, i + 2, ...: both write every word, in batches of 64.
    const tasks = [0, 1].map((slot) =>
      pool.run({
        type: "dirty.mark-pages-in-pair",
        pair: pair.toDescriptor(),
        slot,
        first: slot,
        count: pages / 2,
        step: 2,
        batch: 64,
        gate: gateRegion.toDescriptor(),
      }),
    );
    // Open the gate from this thread without leaving it, then flip and harvest
    // back to back from before the writers' first mark until every page has
    // come out: the flips interleave with the whole marking.
    for (let arrived = Atomics.load(gate, GateSlot.arrived); arrived < 2; ) {
      expect(Atomics.wait(gate, GateSlot.arrived, arrived, 30_000)).not.toBe("timed-out");
      arrived = Atomics.load(gate, GateSlot.arrived);
    }
    Atomics.store(gate, GateSlot.open, 1);
    Atomics.notify(gate, GateSlot.open);
    const times = new Uint8Array(pages);
    let harvested = 0;
    const deadline = performance.now() + 30_000;
    while (harvested < pages && performance.now() < deadline) {
      log.flip();
      kernel.resetCursor(cursor);
      for (let n = log.harvestPages(cursor, out); n > 0; n = log.harvestPages(cursor, out)) {
        for (const page of new Uint32Array(layout.memory.buffer, out.offset, n)) {
          times[page] = (times[page] ?? 0) + 1;
        }
        harvested += n;
      }
    }
    const results = await Promise.all(tasks);
    expect(results.reduce((sum, r) => sum + r.newlyDirty, 0)).toBe(pages);
    expect(harvested).toBe(pages);
    let once = 0;
    for (let page = 0; page < pages; page++) if (times[page] === 1) once++;
    expect(once).toBe(pages);
    log.flip();
    expect(log.count()).toBe(0);
  });

  it("loses no write of vCPUs running on the workers while the guest is harvested", async () => {
    const make = (doubleBuffered: boolean) =>
      new Guest(new MemoryLayout(), {
        bytes: 4 * 1024 ** 3,
        content: false,
        vcpus: 2,
        seed: 33,
        workload: { kind: "uniform" },
        doubleBuffered,
      });
    const reference = make(false);
    const writes = 400_000;
    await reference.write(writes);
    const guest = make(true);
    const guestPool = new KernelPool(guest.layout, { threads: 2, domains: ["guest"] });
    try {
      const snapshot = DirtyBitmap.allocate(guest.layout, "snapshot", guest.pages);
      const union = DirtyBitmap.allocate(guest.layout, "union", guest.pages);
      let done = false;
      let harvested = 0;
      const writing = guest.write(writes, guestPool).finally(() => {
        done = true;
      });
      while (!done) {
        harvested += guest.harvest(snapshot);
        guest.dirty.merge(union, snapshot);
        await yieldToEventLoop();
      }
      await writing;
      harvested += guest.harvest(snapshot);
      guest.dirty.merge(union, snapshot);
      // Each vCPU's stream is seeded: the pages written are the reference's.
      expect(union.region.bytes(guest.layout.memory)).toEqual(
        reference.bitmap.region.bytes(reference.layout.memory),
      );
      // A page written again after it was harvested is harvested again.
      expect(harvested).toBeGreaterThanOrEqual(reference.dirty.count(reference.bitmap));
      expect(guest.log?.count()).toBe(0);
    } finally {
      await guestPool.close();
    }
  });
});

describe("harvest split over the pool's workers", () => {
  it("harvests what one thread harvests, in shares of whole 16-word steps", async () => {
    const pages = 64 * 1000 + 37;
    const bitmap = DirtyBitmap.allocate(layout, "split-bitmap", pages);
    const harvester = new ParallelHarvester(layout, pool, { shares: 2, batchPages: 1100 });
    let state = 99;
    let marked = 0;
    for (let i = 0; i < 3000; i++) {
      state = (state * 1103515245 + 12345) >>> 0;
      if (kernel.markPage(bitmap, state % pages)) marked++;
    }
    const copy = bitmap.region.bytes(layout.memory).slice();
    kernel.resetCursor(cursor);
    let sum = 0;
    let count = 0;
    for (let n = kernel.harvestPagesQuiet(bitmap, cursor, out); n > 0; ) {
      for (const page of new Uint32Array(layout.memory.buffer, out.offset, n))
        sum = (sum + page) >>> 0;
      count += n;
      n = kernel.harvestPagesQuiet(bitmap, cursor, out);
    }
    expect(count).toBe(marked);
    bitmap.region.bytes(layout.memory).set(copy);
    const split = await harvester.harvest(bitmap, "sum");
    expect(split.pages).toBe(marked);
    expect(split.checksum).toBe(sum);
    expect(split.shares).toHaveLength(2);
    expect(kernel.count(bitmap)).toBe(0);
  });

  it("cuts bitmaps into whole steps, fewer shares than asked when small", () => {
    // 63 steps: 32 to the first share, 31 (the last partial) to the second.
    expect(shareBounds(1000, 2)).toEqual([
      [0, 512],
      [512, 488],
    ]);
    expect(shareBounds(10, 2)).toEqual([[0, 10]]);
    expect(shareBounds(2 ** 22, 2)).toEqual([
      [0, 2 ** 21],
      [2 ** 21, 2 ** 21],
    ]);
    expect(() => new ParallelHarvester(layout, pool, { shares: 0 })).toThrow("harvest shares");
    expect(() => new ParallelHarvester(layout, pool, { batchPages: 10 })).toThrow("harvest batch");
  });
});
