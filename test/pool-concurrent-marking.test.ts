import { afterAll, describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { GATE_BYTES, GateSlot, StartGate } from "../src/pool/gate.js";
import { KernelPool } from "../src/pool/pool.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * Workers mark pages in the same bitmap at the same moment (a start gate
 * built on Atomics.wait/notify releases them together, no sleeps). Atomic
 * marking loses no update and counts no page twice: the pages each worker
 * found clean add up to exactly the pages dirty at the end.
 */

const layout = new MemoryLayout();
const pool = new KernelPool(layout, { threads: 2, domains: ["dirty"] });
afterAll(() => pool.close());

describe("concurrent marking through the pool", () => {
  it("loses no update when workers mark interleaved pages of the same words", async () => {
    const pages = 1 << 20;
    const bitmap = DirtyBitmap.allocate(layout, "shared-bitmap", pages);
    const gate = layout.allocate("gate", GATE_BYTES, 8);
    new StartGate(layout.memory, gate).reset();
    // Worker i marks pages i, i + 2, i + 4, ...: every word is written by both.
    const tasks = [0, 1].map((first) =>
      pool.run({
        type: "dirty.mark-pages",
        bitmap: bitmap.toDescriptor(),
        first,
        count: pages / 2,
        step: 2,
        gate: gate.toDescriptor(),
      }),
    );
    await new StartGate(layout.memory, gate).openWhenArrived(2);
    const results = await Promise.all(tasks);
    const dirty = DirtyKernel.on(layout.memory);
    expect(dirty.count(bitmap)).toBe(pages);
    expect(results.reduce((sum, r) => sum + r.newlyDirty, 0)).toBe(pages);
  });

  it("counts each page once when workers race to mark the same pages", async () => {
    const pages = 1 << 18;
    const bitmap = DirtyBitmap.allocate(layout, "contended-bitmap", pages);
    const gate = layout.allocate("gate2", GATE_BYTES, 8);
    new StartGate(layout.memory, gate).reset();
    const tasks = [0, 1, 2, 3].map(() =>
      pool.run({
        type: "dirty.mark-pages",
        bitmap: bitmap.toDescriptor(),
        first: 0,
        count: pages,
        step: 1,
        gate: gate.toDescriptor(),
      }),
    );
    // Two threads: the first two tasks run at once; the gate opens when both arrived.
    await new StartGate(layout.memory, gate).openWhenArrived(2);
    const results = await Promise.all(tasks);
    expect(results.reduce((sum, r) => sum + r.newlyDirty, 0)).toBe(pages);
    expect(DirtyKernel.on(layout.memory).count(bitmap)).toBe(pages);
  });

  it.each([
    // Several vCPUs writing one address race for the last word, as on real
    // hardware, so guest bytes are compared with one vCPU; dirty pages with two.
    [1, true],
    [2, false],
  ])(
    "runs %i vCPU(s) on workers exactly as on this thread (content %s)",
    async (vcpus, content) => {
      const make = () =>
        new Guest(new MemoryLayout(), {
          bytes: 256 * 1024 ** 2,
          content,
          vcpus,
          seed: 21,
          workload: { kind: "hotset" },
        });
      const inline = make();
      const pooled = make();
      const pooledPool = new KernelPool(pooled.layout, { threads: 2, domains: ["guest"] });
      try {
        await inline.write(100_000);
        await pooled.write(100_000, pooledPool);
      } finally {
        await pooledPool.close();
      }
      expect(pooled.bitmap.region.bytes(pooled.layout.memory)).toEqual(
        inline.bitmap.region.bytes(inline.layout.memory),
      );
      const ram = (g: Guest) => (g.ram ? g.ram.bytes(g.layout.memory) : new Uint8Array());
      expect(Buffer.compare(ram(pooled), ram(inline))).toBe(0);
    },
  );

  it("refuses a pool of no threads", () => {
    expect(() => new KernelPool(layout, { threads: 0, domains: ["dirty"] })).toThrow(
      "pool threads",
    );
  });
});

describe("a start gate that knows how many workers it expects", () => {
  it("is opened by the last to arrive, with no opener; short of them it stays shut", () => {
    const region = layout.allocate("self-opening gate", GATE_BYTES, 8);
    const gate = new StartGate(layout.memory, region);
    const slots = new Int32Array(layout.memory.buffer, region.offset, GATE_BYTES / 4);
    gate.reset(2);
    // The first of two arrives and, nobody opening, times out.
    expect(() => gate.arriveAndWait(20)).toThrow("start gate never opened");
    expect(Atomics.load(slots, GateSlot.open)).toBe(0);
    // The second arrives, opens and passes at once.
    gate.arriveAndWait(20);
    expect(Atomics.load(slots, GateSlot.open)).toBe(1);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(2);
  });
});
