import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { WorkloadOracle } from "../src/oracle/workload.js";
import { DESCRIPTOR_BYTES, Descriptor, WorkloadKernel } from "../src/wasm/workload.js";
import { WORKLOAD_KINDS, WorkloadError } from "../src/workload/spec.js";

const MiB = 1024 ** 2;

const workloadArb = fc.record({
  kind: fc.constantFrom(...WORKLOAD_KINDS),
  megabytes: fc.integer({ min: 1, max: 16 }),
  extraPages: fc.integer({ min: 0, max: 63 }),
  hotFraction: fc.double({ min: 0, max: 1, noNaN: true }),
  hotPagesShare: fc.double({ min: 0.001, max: 1, noNaN: true }),
  stride: fc.integer({ min: 1, max: 5000 }),
  zipfExponent: fc.double({ min: 0.1, max: 3, noNaN: true }),
  seed: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  vcpus: fc.integer({ min: 1, max: 3 }),
  writes: fc.integer({ min: 0, max: 700 }),
  content: fc.boolean(),
});

describe("workload kernel against the oracle", () => {
  it("writes the same pages (and bytes, in content mode) as the BigInt oracle", () => {
    fc.assert(
      fc.property(workloadArb, (w) => {
        // Odd guest sizes: whole megabytes plus a few pages.
        const pages = w.megabytes * 256 + w.extraPages;
        const hotPages = Math.max(1, Math.floor(pages * w.hotPagesShare));
        const guest = new Guest(new MemoryLayout(), {
          bytes: pages * 4096,
          content: w.content,
          vcpus: w.vcpus,
          seed: w.seed,
          workload: {
            kind: w.kind,
            hotFraction: w.hotFraction,
            hotPages,
            hotBase: pages - hotPages,
            stride: w.stride,
            zipfExponent: w.zipfExponent,
          },
        });
        void guest.write(w.writes);
        const expectedPages = new Set<number>();
        const expectedRam = new Map<number, bigint>();
        for (let vcpu = 0; vcpu < w.vcpus; vcpu++) {
          const oracle = new WorkloadOracle(guest.workload, w.seed, vcpu, w.content);
          const share = Math.floor(w.writes / w.vcpus) + (vcpu < w.writes % w.vcpus ? 1 : 0);
          for (let i = 0; i < share; i++) {
            const write = oracle.write();
            expect(write.page).toBeGreaterThanOrEqual(0);
            expect(write.page).toBeLessThan(pages);
            expectedPages.add(write.page);
            if (write.offset !== undefined && write.value !== undefined) {
              expectedRam.set(write.page * 4096 + write.offset, write.value);
            }
          }
        }
        expect(guest.dirty.count(guest.bitmap)).toBe(expectedPages.size);
        // Each vCPU's descriptor counts every write it made (its share of the total).
        const counted = guest.vcpuTargets.map(({ descriptor }) =>
          new DataView(
            guest.layout.memory.buffer,
            descriptor.offset,
            DESCRIPTOR_BYTES,
          ).getBigUint64(Descriptor.writes, true),
        );
        expect(counted.reduce((a, b) => a + b, 0n)).toBe(BigInt(w.writes));
        for (const page of expectedPages)
          expect(guest.dirty.testPage(guest.bitmap, page)).toBe(true);
        if (guest.ram) {
          const view = new DataView(
            guest.layout.memory.buffer,
            guest.ram.offset,
            guest.ram.byteLength,
          );
          for (const [at, value] of expectedRam) expect(view.getBigUint64(at, true)).toBe(value);
        }
      }),
      { numRuns: 150 },
    );
  });

  it("marks the bitmap of the pair's epoch: bitmap 0 in even epochs, bitmap 1 in odd", () => {
    const guest = new Guest(new MemoryLayout(), {
      bytes: 256 * 4096,
      content: false,
      vcpus: 1,
      seed: 5,
      doubleBuffered: true,
      workload: { kind: "uniform" },
    });
    const pair = guest.pair;
    if (!pair) throw new Error("no bitmap pair");
    void guest.write(100);
    const [even, odd] = pair.bitmaps;
    expect(guest.dirty.count(even)).toBeGreaterThan(0);
    expect(guest.dirty.count(odd)).toBe(0);
    const epoch = new Int32Array(guest.layout.memory.buffer, pair.control.offset, 1);
    Atomics.store(epoch, 0, 1);
    const before = guest.dirty.count(even);
    void guest.write(100);
    expect(guest.dirty.count(odd)).toBeGreaterThan(0);
    expect(guest.dirty.count(even)).toBe(before);
  });

  it("is reproducible from the seed, and different seeds differ", async () => {
    const run = async (seed: number) => {
      const guest = new Guest(new MemoryLayout(), {
        bytes: 64 * MiB,
        content: false,
        vcpus: 2,
        seed,
        workload: { kind: "zipf" },
      });
      await guest.write(5000);
      return [...guest.bitmap.region.bytes(guest.layout.memory)];
    };
    expect(await run(3)).toEqual(await run(3));
    expect(await run(3)).not.toEqual(await run(4));
  });

  it("puts the hot set's share of writes inside the hot set", async () => {
    const guest = new Guest(new MemoryLayout(), {
      bytes: 1024 * MiB,
      content: false,
      vcpus: 1,
      seed: 9,
      workload: { kind: "hotset", hotPages: 1024, hotBase: 4096, hotFraction: 0.75 },
    });
    const oracle = new WorkloadOracle(guest.workload, 9, 0, false);
    let inside = 0;
    const n = 20_000;
    for (let i = 0; i < n; i++) {
      const { page } = oracle.write();
      if (page >= 4096 && page < 5120) inside++;
    }
    // 75 % aimed at the set, plus the uniform rest's 1024/262144 chance of landing there.
    const expected = 0.75 + 0.25 * (1024 / 262_144);
    expect(Math.abs(inside / n - expected)).toBeLessThan(0.015);
  });

  it("refuses workloads that do not fit the guest", () => {
    const make = (workload: object) =>
      new Guest(new MemoryLayout(), {
        bytes: 4 * MiB,
        content: false,
        vcpus: 1,
        seed: 1,
        workload: workload as never,
      });
    expect(() => make({ kind: "bursty" })).toThrow(WorkloadError);
    expect(() => make({ kind: "hotset", hotPages: 2000 })).toThrow(
      "does not fit a guest of 1024 pages",
    );
    expect(() => make({ kind: "hotset", hotFraction: 1.5 })).toThrow("hot fraction");
    expect(() => make({ kind: "sequential", stride: 0 })).toThrow("stride");
    expect(() => make({ kind: "zipf", zipfExponent: -1 })).toThrow("zipf exponent");
  });

  it("refuses a corrupted descriptor before the kernel runs", () => {
    const layout = new MemoryLayout();
    const guest = new Guest(layout, {
      bytes: 4 * MiB,
      content: true,
      vcpus: 1,
      seed: 1,
      workload: { kind: "hotset" },
    });
    const target = guest.vcpuTargets[0];
    if (!target) throw new Error("no vCPU");
    const kernel = WorkloadKernel.on(layout.memory);
    const view = new DataView(layout.memory.buffer, target.descriptor.offset, DESCRIPTOR_BYTES);
    view.setUint32(Descriptor.hotBase, 1_000_000, true);
    expect(() => kernel.run(target, 10)).toThrow("hot set outside the guest");
    view.setUint32(Descriptor.hotBase, 0, true);
    view.setUint32(Descriptor.lastPage, 5_000_000, true);
    expect(() => kernel.run(target, 10)).toThrow("covers 5000001 pages");
    view.setUint32(Descriptor.lastPage, 1023, true);
    view.setUint32(Descriptor.kind, 9, true);
    expect(() => kernel.run(target, 10)).toThrow("unknown kind 9");
    view.setUint32(Descriptor.kind, 1, true);
    expect(() => kernel.run({ ...target, ram: undefined } as never, 10)).toThrow("no guest RAM");
    expect(() => kernel.run(target, -1)).toThrow("write count");
    expect(guest.dirty.count(guest.bitmap)).toBe(0);
  });
});
