import { describe, expect, it } from "vitest";
import { Guest, type GuestOptions } from "../src/guest/guest.js";
import type { RunWorkloadTask } from "../src/guest/task-types.js";
import { handlers } from "../src/guest/tasks.js";
import type { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { EpochControl } from "../src/memory/dirty-bitmap-pair.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { GATE_BYTES, GateSlot, StartGate } from "../src/pool/gate.js";
import { KernelContext } from "../src/wasm/context.js";
import { compileAllKernels } from "../src/wasm/loader.js";

/*
 * The guest's pool task, `workload.run`, called on this thread with the
 * kernel context a pool worker builds (src/pool/worker.ts): the handler a
 * worker calls, given the task `Guest.write` sends for one vCPU (its
 * workload descriptor, the dirty bitmap, and its RAM, ring or slot of a
 * bitmap pair when the guest has them). The oracle is a twin guest, built
 * with the same options and seed, whose vCPUs write on this thread
 * (`Guest.write` without a pool): the same writes, so the same pages dirty,
 * the same RAM bytes and the same ring entries.
 */

const MiB = 1024 ** 2;

function options(over: Partial<GuestOptions> = {}): GuestOptions {
  return { bytes: MiB, content: false, vcpus: 1, seed: 11, workload: { kind: "uniform" }, ...over };
}

/** A guest and a worker's kernel context over its memory. */
function guestOnWorker(over: Partial<GuestOptions>) {
  const layout = new MemoryLayout();
  const guest = new Guest(layout, options(over));
  const context = new KernelContext({ memory: layout.memory, modules: compileAllKernels() });
  return { layout, guest, context };
}

/** vCPU 0's task as `Guest.write` builds it for the pool. */
function taskOf(guest: Guest, count: number, gate?: RunWorkloadTask["gate"]): RunWorkloadTask {
  const target = guest.vcpuTargets[0];
  if (!target) throw new Error("the guest has no vCPU");
  return {
    type: "workload.run",
    descriptor: target.descriptor.toDescriptor(),
    bitmap: target.bitmap.toDescriptor(),
    count,
    ...(target.ram ? { ram: target.ram.toDescriptor() } : {}),
    ...(target.ring ? { ring: target.ring.toDescriptor() } : {}),
    ...(target.pair
      ? { pair: { pair: target.pair.pair.toDescriptor(), slot: target.pair.slot } }
      : {}),
    ...(gate ? { gate } : {}),
  };
}

/** The dirty pages of a bitmap, one page at a time. */
function dirtyPages(guest: Guest, bitmap: DirtyBitmap): number[] {
  const pages: number[] = [];
  for (let page = 0; page < bitmap.pages; page++) {
    if (guest.dirty.testPage(bitmap, page)) pages.push(page);
  }
  return pages;
}

/** Runs a handler, measuring the call's own wall time around it. */
async function timed<T>(run: () => T | Promise<T>): Promise<{ result: T; wallNs: bigint }> {
  const started = process.hrtime.bigint();
  const result = await run();
  return { result, wallNs: process.hrtime.bigint() - started };
}

describe("workload.run on a worker's kernel context", () => {
  it("writes what the vCPU writes on this thread and counts the pages it found clean", async () => {
    const { guest, context } = guestOnWorker({});
    const twin = new Guest(new MemoryLayout(), options());
    const { result, wallNs } = await timed(() =>
      handlers["workload.run"](context, taskOf(guest, 150)),
    );
    const expected = await twin.write(150);
    // 150 uniform writes over 256 pages: about 112 find their page clean.
    expect(expected).toBeGreaterThan(80);
    expect(result.newlyDirty).toBe(expected);
    expect(dirtyPages(guest, guest.bitmap)).toEqual(dirtyPages(twin, twin.bitmap));
    // The writing time is a part of the call's wall time.
    expect(result.elapsedNs).toBeGreaterThanOrEqual(0);
    expect(BigInt(result.elapsedNs)).toBeLessThanOrEqual(wallNs);
  });

  it("writes the guest's RAM in content mode", async () => {
    const { guest, layout, context } = guestOnWorker({ content: true });
    const twinLayout = new MemoryLayout();
    const twin = new Guest(twinLayout, options({ content: true }));
    const result = await handlers["workload.run"](context, taskOf(guest, 90));
    expect(result.newlyDirty).toBe(await twin.write(90));
    const ram = guest.ram;
    const twinRam = twin.ram;
    if (!ram || !twinRam) throw new Error("a content-mode guest has RAM");
    const bytes = new Uint8Array(layout.memory.buffer, ram.offset, ram.byteLength);
    const twinBytes = new Uint8Array(twinLayout.memory.buffer, twinRam.offset, twinRam.byteLength);
    // Written, and byte for byte as on this thread.
    expect(bytes.some((b) => b !== 0)).toBe(true);
    expect(Buffer.compare(bytes, twinBytes)).toBe(0);
  });

  it("logs in the vCPU's dirty ring when tracking by rings", async () => {
    const { guest, context } = guestOnWorker({ tracking: "ring", ringEntries: 4096 });
    const twin = new Guest(new MemoryLayout(), options({ tracking: "ring", ringEntries: 4096 }));
    const result = await handlers["workload.run"](context, taskOf(guest, 120));
    // In ring mode the count is of the writes logged in the ring; the
    // bitmap stays clean until the rings are drained into it.
    expect(result.newlyDirty).toBe(await twin.write(120));
    expect(dirtyPages(guest, guest.bitmap)).toEqual([]);
    expect(guest.drainRings()).toBe(twin.drainRings());
    expect(guest.ringOverflow()).toBe(0);
    expect(dirtyPages(guest, guest.bitmap)).toEqual(dirtyPages(twin, twin.bitmap));
    expect(dirtyPages(guest, guest.bitmap).length).toBeGreaterThan(50);
  });

  it("marks the current epoch's bitmap of the pair, as its writer slot", async () => {
    const { guest, layout, context } = guestOnWorker({ doubleBuffered: true });
    const twinLayout = new MemoryLayout();
    const twin = new Guest(twinLayout, options({ doubleBuffered: true }));
    const pair = guest.pair;
    const twinPair = twin.pair;
    if (!pair || !twinPair) throw new Error("a double-buffered guest has a pair");
    // Epoch 1 marks bitmap 1 (epoch & 1), not the task's `bitmap`, which is
    // the pair's bitmap 0: only a task that carries the pair marks it.
    Atomics.store(pair.slots(layout.memory), EpochControl.epoch / 4, 1);
    Atomics.store(twinPair.slots(twinLayout.memory), EpochControl.epoch / 4, 1);
    const result = await handlers["workload.run"](context, taskOf(guest, 100));
    expect(result.newlyDirty).toBe(await twin.write(100));
    expect(dirtyPages(guest, pair.bitmaps[0])).toEqual([]);
    const marked = dirtyPages(guest, pair.bitmaps[1]);
    expect(marked.length).toBeGreaterThan(50);
    expect(marked).toEqual(dirtyPages(twin, twinPair.bitmaps[1]));
  });

  it("passes its start gate before it writes", async () => {
    const { guest, layout, context } = guestOnWorker({});
    const gate = layout.allocate("task-gate", GATE_BYTES, 8);
    new StartGate(layout.memory, gate).reset(1);
    const result = await handlers["workload.run"](context, taskOf(guest, 10, gate.toDescriptor()));
    const slots = new Int32Array(layout.memory.buffer, gate.offset, GATE_BYTES / 4);
    expect(Atomics.load(slots, GateSlot.arrived)).toBe(1);
    expect(Atomics.load(slots, GateSlot.open)).toBe(1);
    expect(result.newlyDirty).toBeGreaterThan(0);
  });
});
