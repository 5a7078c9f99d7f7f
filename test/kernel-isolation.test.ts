import { afterAll, describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout, STATIC_AREA_BYTES } from "../src/memory/layout.js";
import { KernelPool } from "../src/pool/pool.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import { DirtyKernel } from "../src/wasm/dirty.js";
import { compileKernel, instantiateKernel, kernelNames } from "../src/wasm/loader.js";

/*
 * Several modules, and every worker's instance of them, share one memory.
 * Instantiating a module writes only its own static slot, and a wrapper
 * refuses any access outside the region it was handed.
 */

const layout = new MemoryLayout();
const pool = new KernelPool(layout, { threads: 2, domains: ["dirty"] });
afterAll(() => pool.close());

function snapshotOf(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes);
}

describe("kernel isolation on one shared memory", () => {
  it("instantiating every module again, here and in workers, disturbs nothing held", async () => {
    const guard = layout.allocate("held-state", 1024 * 1024);
    const held = guard.bytes(layout.memory);
    for (let i = 0; i < held.length; i++) held[i] = (i * 131 + 7) & 0xff;
    // Each module's first instantiation writes its constants into its slot;
    // every later one, on this thread or a worker, must change nothing.
    for (const name of kernelNames()) instantiateKernel(compileKernel(name), layout.memory);
    const before = snapshotOf(held);
    const staticBefore = snapshotOf(new Uint8Array(layout.memory.buffer, 0, STATIC_AREA_BYTES));
    for (const name of kernelNames()) instantiateKernel(compileKernel(name), layout.memory);
    // Workers instantiate their own kernels on first use.
    const bitmap = DirtyBitmap.allocate(layout, "worker-bitmap", 256);
    await Promise.all(
      [0, 1, 2, 3].map((i) =>
        pool.run({
          type: "dirty.mark-pages",
          bitmap: bitmap.toDescriptor(),
          first: i,
          count: 10,
          step: 4,
        }),
      ),
    );
    expect(held).toEqual(before);
    expect(new Uint8Array(layout.memory.buffer, 0, STATIC_AREA_BYTES)).toEqual(staticBefore);
  });

  it("a wrapper never lets a kernel write outside its region", () => {
    const bandwidth = BandwidthKernel.on(layout.memory);
    const dirty = DirtyKernel.on(layout.memory);
    const left = layout.allocate("canary-left", 64);
    const target = layout.allocate("target", 100);
    const right = layout.allocate("canary-right", 64);
    left.bytes(layout.memory).fill(0xaa);
    right.bytes(layout.memory).fill(0xbb);
    expect(() => bandwidth.fill(target, 1, 0, 101)).toThrow(RegionBoundsError);
    expect(() => bandwidth.fill(target, 1, 0, 101)).toThrow("region 'target'");
    expect(() => bandwidth.fill(target, 1, 99, 2)).toThrow(RegionBoundsError);
    expect(() => bandwidth.copy(target, 50, left, 0, 64)).toThrow("copy target");
    expect(() => bandwidth.read(target, 0, 1000)).toThrow(RegionBoundsError);
    const bitmap = new DirtyBitmap(target, 768);
    expect(() => dirty.markPage(bitmap, 768)).toThrow(RegionBoundsError);
    expect(() => dirty.markRange(bitmap, 0, 769)).toThrow(RegionBoundsError);
    // What is allowed reaches exactly the region's edges and no further.
    bandwidth.fill(target, 0xff);
    dirty.markRange(bitmap, 0, 768);
    expect([...left.bytes(layout.memory)].every((b) => b === 0xaa)).toBe(true);
    expect([...right.bytes(layout.memory)].every((b) => b === 0xbb)).toBe(true);
    expect(() => new DirtyBitmap(target, 769)).toThrow("needs 104");
  });

  it("a worker refuses a task naming pages outside its bitmap", async () => {
    const bitmap = DirtyBitmap.allocate(layout, "task-bitmap", 100);
    await expect(
      pool.run({
        type: "dirty.mark-pages",
        bitmap: bitmap.toDescriptor(),
        first: 90,
        count: 20,
        step: 1,
      }),
    ).rejects.toThrow("pass the bitmap's end");
    await expect(pool.run({ type: "no.such-task" } as never)).rejects.toThrow("unknown task type");
  });
});
