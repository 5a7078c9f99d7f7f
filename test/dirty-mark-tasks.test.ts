import { describe, expect, it } from "vitest";
import { handlers } from "../src/dirty/tasks.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { DirtyBitmapPair, EPOCH_IDLE, EpochControl } from "../src/memory/dirty-bitmap-pair.js";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { GATE_BYTES, GateSlot, StartGate } from "../src/pool/gate.js";
import { KernelContext } from "../src/wasm/context.js";
import { compileAllKernels } from "../src/wasm/loader.js";

/*
 * The dirty domain's pool tasks, run on this thread with the kernel context
 * a worker builds (src/pool/worker.ts): the same handler a worker calls, so
 * each marking rule is checked where a test sees it. A task marks pages
 * first, first + step, ... as a vCPU's writes would set bits of KVM's dirty
 * log (Linux Documentation/virt/kvm/api.rst, KVM_GET_DIRTY_LOG: one bit per
 * page of the slot), and reports how many it found clean: the pages it made
 * dirty, which a harvest later counts once each.
 */

const PAGES = 200;

function setup(pages = PAGES) {
  const layout = new MemoryLayout();
  const context = new KernelContext({ memory: layout.memory, modules: compileAllKernels() });
  const bitmap = DirtyBitmap.allocate(layout, "task-bitmap", pages);
  const gate = layout.allocate("task-gate", GATE_BYTES, 8);
  return { layout, context, bitmap, gate };
}

/** The dirty pages of a bitmap, read one page at a time (the oracle). */
function dirtyPages(context: KernelContext, bitmap: DirtyBitmap): number[] {
  const pages: number[] = [];
  for (let page = 0; page < bitmap.pages; page++) {
    if (context.dirty.testPage(bitmap, page)) pages.push(page);
  }
  return pages;
}

/** first, first + step, ... (count of them). */
function strided(first: number, count: number, step: number): number[] {
  return Array.from({ length: count }, (_, i) => first + i * step);
}

/** Runs a handler, measuring the call's own wall time around it. */
async function timed<T>(run: () => T | Promise<T>): Promise<{ result: T; wallNs: bigint }> {
  const started = process.hrtime.bigint();
  const result = await run();
  return { result, wallNs: process.hrtime.bigint() - started };
}

describe("dirty.mark-pages on a worker's kernel context", () => {
  it("marks first, first + step, ... and counts the pages it found clean", async () => {
    const { context, bitmap } = setup();
    const markPages = handlers["dirty.mark-pages"];
    const task = {
      type: "dirty.mark-pages" as const,
      bitmap: bitmap.toDescriptor(),
      first: 7,
      count: 12,
      step: 3,
    };
    const { result, wallNs } = await timed(() => markPages(context, task));
    expect(result.newlyDirty).toBe(12);
    expect(dirtyPages(context, bitmap)).toEqual(strided(7, 12, 3));
    // Its marking time is a part of the call's wall time.
    expect(result.elapsedNs).toBeGreaterThanOrEqual(0);
    expect(BigInt(result.elapsedNs)).toBeLessThanOrEqual(wallNs);
    // The same pages again are all dirty already: none is counted twice.
    const again = await markPages(context, task);
    expect(again.newlyDirty).toBe(0);
    // Overlapping them in part counts only the pages that were clean:
    // 1 to 39 holds 7, 10, ..., 37 (11 of the 39).
    const overlap = await markPages(context, { ...task, first: 1, count: 39, step: 1 });
    expect(overlap.newlyDirty).toBe(39 - 11);
    expect(dirtyPages(context, bitmap)).toEqual([...strided(1, 39, 1), 40]);
  });

  it("takes a range ending on the bitmap's last page, and a count of 0 anywhere", async () => {
    const { context, bitmap } = setup();
    const markPages = handlers["dirty.mark-pages"];
    const base = { type: "dirty.mark-pages" as const, bitmap: bitmap.toDescriptor() };
    // 10, 15, ..., 195: the last one is page PAGES - 5.
    const last = await markPages(context, { ...base, first: 10, count: 38, step: 5 });
    expect(last.newlyDirty).toBe(38);
    expect(dirtyPages(context, bitmap).at(-1)).toBe(195);
    // Exactly to page PAGES - 1: 199 - 3 x 40 = 79.
    expect((await markPages(context, { ...base, first: 79, count: 4, step: 40 })).newlyDirty).toBe(
      4,
    );
    // One page: its step leads nowhere, however long.
    expect((await markPages(context, { ...base, first: 1, count: 1, step: 400 })).newlyDirty).toBe(
      1,
    );
    // Nothing to mark: no page is checked, not even one past the end, and
    // no step is asked of it.
    for (const step of [1, 0]) {
      const none = await markPages(context, { ...base, first: PAGES + 1, count: 0, step });
      expect(none.newlyDirty).toBe(0);
    }
    expect(dirtyPages(context, bitmap)).toEqual(
      [...strided(10, 38, 5), 1, 79, 119, 159, 199].sort((a, b) => a - b),
    );
  });

  it("refuses a range past the bitmap's end or a step below 1, before its gate, marking nothing", () => {
    const { layout, context, bitmap, gate } = setup();
    const markPages = handlers["dirty.mark-pages"];
    // A gate its one task would open on arrival: a refused task never arrives.
    new StartGate(layout.memory, gate).reset(1);
    const base = {
      type: "dirty.mark-pages" as const,
      bitmap: bitmap.toDescriptor(),
      gate: gate.toDescriptor(),
    };
    const refusals: [{ first: number; count: number; step: number }, string][] = [
      // 10 + 2 x 95 = 200: one page past the last (199).
      [{ first: 10, count: 3, step: 95 }, "mark-pages: pages 10..200 pass the bitmap's end"],
      [{ first: 199, count: 2, step: 1 }, "mark-pages: pages 199..200 pass the bitmap's end"],
      [{ first: 200, count: 1, step: 1 }, "mark-pages: pages 200..200 pass the bitmap's end"],
      // Inside the bitmap, but one page over and over.
      [{ first: 5, count: 3, step: 0 }, "mark-pages: page step must be at least 1, not 0"],
      [{ first: 5, count: 3, step: -1 }, "mark-pages: page step must be at least 1, not -1"],
    ];
    for (const [range, message] of refusals) {
      const refused = () => markPages(context, { ...base, ...range });
      expect(refused).toThrow(RangeError);
      expect(refused).toThrow(message);
      // The task's own check, not the kernel wrapper's page check.
      expect(refused).not.toThrow(RegionBoundsError);
    }
    expect(dirtyPages(context, bitmap)).toEqual([]);
    const slots = new Int32Array(layout.memory.buffer, gate.offset, GATE_BYTES / 4);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(0);
  });

  it("passes its start gate before it marks", async () => {
    const { layout, context, bitmap, gate } = setup();
    new StartGate(layout.memory, gate).reset(1);
    const result = await handlers["dirty.mark-pages"](context, {
      type: "dirty.mark-pages",
      bitmap: bitmap.toDescriptor(),
      first: 0,
      count: 64,
      step: 1,
      gate: gate.toDescriptor(),
    });
    const slots = new Int32Array(layout.memory.buffer, gate.offset, GATE_BYTES / 4);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(1);
    expect(Atomics.load(slots, GateSlot.open)).toBe(1);
    expect(result.newlyDirty).toBe(64);
  });
});

describe("dirty.mark-pages-in-pair on a worker's kernel context", () => {
  function pairSetup(writers: number) {
    const { layout, context, gate } = setup();
    const pair = DirtyBitmapPair.allocate(layout, "task-pair", PAGES, writers);
    return { layout, context, gate, pair };
  }

  it("marks the bitmap of the current epoch as its writer slot, then leaves idle", async () => {
    const { layout, context, pair } = pairSetup(2);
    const [even, odd] = pair.bitmaps;
    const markInPair = handlers["dirty.mark-pages-in-pair"];
    const task = {
      type: "dirty.mark-pages-in-pair" as const,
      pair: pair.toDescriptor(),
      slot: 1,
      first: 3,
      count: 20,
      step: 4,
      batch: 8,
    };
    const { result, wallNs } = await timed(() => markInPair(context, task));
    expect(result.newlyDirty).toBe(20);
    expect(result.elapsedNs).toBeGreaterThanOrEqual(0);
    expect(BigInt(result.elapsedNs)).toBeLessThanOrEqual(wallNs);
    // Epoch 0 marks bitmap 0 (epoch & 1), and the other stays clean.
    expect(dirtyPages(context, even)).toEqual(strided(3, 20, 4));
    expect(dirtyPages(context, odd)).toEqual([]);
    const slots = pair.slots(layout.memory);
    expect(Atomics.load(slots, EpochControl.acks / 4 + 1)).toBe(EPOCH_IDLE | 0);
    // After a flip to epoch 1 the same pages land in bitmap 1, clean there.
    Atomics.store(slots, EpochControl.epoch / 4, 1);
    expect((await markInPair(context, task)).newlyDirty).toBe(20);
    expect(dirtyPages(context, odd)).toEqual(strided(3, 20, 4));
    // And again: dirty already, none counted.
    expect((await markInPair(context, task)).newlyDirty).toBe(0);
  });

  it("refuses a slot or a page outside the pair before its gate", async () => {
    const { layout, context, gate, pair } = pairSetup(2);
    new StartGate(layout.memory, gate).reset(1);
    const markInPair = handlers["dirty.mark-pages-in-pair"];
    const base = {
      type: "dirty.mark-pages-in-pair" as const,
      pair: pair.toDescriptor(),
      gate: gate.toDescriptor(),
      step: 1,
    };
    expect(() => markInPair(context, { ...base, slot: 2, first: 0, count: 1 })).toThrow(
      "writer slot 2 is not a slot of this pair (0 to 1)",
    );
    expect(() => markInPair(context, { ...base, slot: 0, first: 199, count: 2 })).toThrow(
      "last page 200 is not a page of this bitmap (0 to 199)",
    );
    const slots = new Int32Array(layout.memory.buffer, gate.offset, GATE_BYTES / 4);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(0);
    expect(dirtyPages(context, pair.bitmaps[0])).toEqual([]);
    // The same task inside the pair passes the gate and marks.
    const taken = await markInPair(context, { ...base, slot: 1, first: 198, count: 2 });
    expect(taken.newlyDirty).toBe(2);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(1);
  });
});
