/**
 * Dirty-tracking benchmarks: harvest + iterate over a large bitmap, marking
 * pages from the workload generators on one and two workers, and the bitmap
 * against per-vCPU dirty rings. Every case is verified before it is timed.
 */
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { ParallelHarvester } from "../src/bench/parallel-harvest.js";
import { EpochDirtyLog } from "../src/dirty/epoch-log.js";
import { Guest } from "../src/guest/guest.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../src/memory/dirty-bitmap-pair.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { harvestOneByOne, iterateOneByOne } from "../src/oracle/dirty.js";
import { WorkloadOracle } from "../src/oracle/workload.js";
import { KernelPool } from "../src/pool/pool.js";
import { formatBytes } from "../src/util/units.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Fills a bitmap with `fraction` of its pages dirty, uniformly at random (seeded). */
function fillRandom(bytes: Uint8Array, pages: number, fraction: number, seed: number): void {
  bytes.fill(0);
  let state = seed >>> 0 || 1;
  const target = Math.round(pages * fraction);
  let set = 0;
  while (set < target) {
    // xorshift32: only a fast source of positions for the fixture.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const page = Math.floor(((state >>> 0) / 2 ** 32) * pages);
    const byte = page >>> 3;
    const bit = 1 << (page & 7);
    if (((bytes[byte] ?? 0) & bit) === 0) {
      bytes[byte] = (bytes[byte] ?? 0) | bit;
      set++;
    }
  }
}

export const suite: BenchSuite = {
  name: "dirty",
  description: "dirty-page tracking: harvest + iterate, generator marking, bitmap against ring",
  async setup({ quick }) {
    const layout = new MemoryLayout();
    const dirty = DirtyKernel.on(layout.memory);
    const bandwidth = BandwidthKernel.on(layout.memory);
    const memory = layout.memory;
    const cases: BenchCase[] = [];

    // --- harvest + iterate ------------------------------------------------
    const guestBytes = quick ? 16 * GiB : TiB;
    const pages = guestBytes / 4096;
    const bitmap = DirtyBitmap.allocate(layout, "bitmap", pages);
    const snapshot = DirtyBitmap.allocate(layout, "snapshot", pages);
    const pristine = layout.allocate("pristine", bitmap.region.byteLength);
    const cursor = layout.allocate("cursor", 8);
    const batch = layout.allocate("batch", 64 * 1024 * 4);
    const oracleOut = new Uint32Array(Math.ceil(pages * 0.5) + 1);
    const bitmapBytes = () => bitmap.region.bytes(memory);
    // The epoch-swapped pair: `bitmap` is its bitmap 0, so every case reads the
    // same freshly copied bytes; two writer slots, as for two vCPUs, idle here
    // (the flip's wait for running writers is tested, not timed).
    const pair = new DirtyBitmapPair(
      [bitmap, DirtyBitmap.allocate(layout, "bitmap-odd-epochs", pages)],
      layout.allocate("epoch-control", DirtyBitmapPair.controlBytes(2), 64),
      2,
    );
    pair.reset(memory);
    const log = new EpochDirtyLog(memory, pair, dirty);
    const harvestPool = new KernelPool(layout, { threads: 2, domains: ["bench"] });
    const onWorkers = (shares: number, onCaller: boolean) =>
      new ParallelHarvester(layout, harvestPool, {
        shares,
        onCaller,
        name: `bench-harvest-${shares}-${onCaller}`,
      });
    const oneWorker = onWorkers(1, false);
    const twoWorkers = onWorkers(2, false);
    const callerAndWorker = onWorkers(2, true);
    // Back to epoch 0 (bitmap 0 active) with the pristine bits: the next flip retires them.
    const refill = () => {
      bandwidth.copy(bitmap.region, 0, pristine, 0, pristine.byteLength);
      pair.reset(memory);
    };
    // Reads and emits without clearing: the floor under any one-pass harvest.
    const pristineBitmap = new DirtyBitmap(pristine, pages);

    // Timed runs fold only each batch's last page number (the kernels' work,
    // not a JavaScript consumer's, is measured); verification sums them all.
    let thorough = false;
    const pageView = new Uint32Array(memory.buffer, batch.offset, batch.byteLength / 4);
    const consume = (n: number, sum: number): number => {
      if (!thorough) return (sum ^ (pageView[n - 1] ?? 0)) >>> 0;
      let total = sum;
      for (let i = 0; i < n; i++) total = (total + (pageView[i] ?? 0)) % 2 ** 32;
      return total;
    };
    // Runs a batch kernel from a reset cursor until it reports nothing more,
    // consuming each batch of page numbers.
    const drain = (next: () => number): { count: number; sum: number } => {
      dirty.resetCursor(cursor);
      let count = 0;
      let sum = 0;
      for (let n = next(); n > 0; n = next()) {
        count += n;
        sum = consume(n, sum);
      }
      return { count, sum };
    };
    const hvlabHarvestIterate = (): { count: number; sum: number } => {
      const count = dirty.harvest(bitmap, snapshot);
      return { count, sum: drain(() => dirty.iterate(snapshot, cursor, batch)).sum };
    };
    const hvlabOnePass = (): { count: number; sum: number } =>
      drain(() => dirty.harvestPages(bitmap, cursor, batch));
    const hvlabOnePassPaused = (): { count: number; sum: number } =>
      drain(() => dirty.harvestPagesQuiet(bitmap, cursor, batch));
    const hvlabEpochOneThread = (): { count: number; sum: number } => {
      const retired = log.flip();
      return drain(() => dirty.harvestPagesQuiet(retired, cursor, batch));
    };
    const hvlabEpochOn = (harvester: ParallelHarvester) => async () => {
      const retired = log.flip();
      const result = await harvester.harvest(retired, thorough ? "sum" : "last");
      return { count: result.pages, sum: result.checksum };
    };
    const hvlabEpochOneWorker = hvlabEpochOn(oneWorker);
    const hvlabEpochTwoWorkers = hvlabEpochOn(twoWorkers);
    const hvlabEpochCallerAndWorker = hvlabEpochOn(callerAndWorker);
    const iterateFloor = (): { count: number; sum: number } =>
      drain(() => dirty.iterate(pristineBitmap, cursor, batch));
    const oracleHarvestIterate = (): { count: number; sum: number } => {
      const count = harvestOneByOne(bitmapBytes(), snapshot.region.bytes(memory), pages);
      const n = iterateOneByOne(snapshot.region.bytes(memory), pages, oracleOut);
      let sum = 0;
      if (thorough) for (let i = 0; i < n; i++) sum = (sum + (oracleOut[i] ?? 0)) % 2 ** 32;
      else sum = oracleOut[n - 1] ?? 0;
      assert(n === count, "oracle iterate disagrees with its harvest");
      return { count, sum };
    };

    for (const fraction of [0.001, 0.01, 0.5]) {
      cases.push({
        case: `harvest+iterate ${formatBytes(guestBytes)} guest (${formatBytes(bitmap.region.byteLength)} bitmap), ${fraction * 100}% dirty`,
        bytesPerOp: bitmap.region.byteLength,
        beforeEach: () => {
          fillRandom(pristine.bytes(memory), pages, fraction, 7);
          refill();
        },
        beforeEachCall: refill,
        verify: async () => {
          thorough = true;
          fillRandom(pristine.bytes(memory), pages, fraction, 7);
          refill();
          const theirs = oracleHarvestIterate();
          assert(theirs.count === Math.round(pages * fraction), `oracle harvested ${theirs.count}`);
          for (const [name, run] of [
            ["harvest + iterate", hvlabHarvestIterate],
            ["one pass", hvlabOnePass],
            ["one pass, paused", hvlabOnePassPaused],
            ["epoch flip + one pass, 1 thread", hvlabEpochOneThread],
            ["epoch flip + one pass, 1 pool worker", hvlabEpochOneWorker],
            ["epoch flip + one pass, 2 pool workers", hvlabEpochTwoWorkers],
            ["epoch flip + one pass, caller + 1 pool worker", hvlabEpochCallerAndWorker],
            ["iterate only (floor)", iterateFloor],
          ] as const) {
            refill();
            const ours = await run();
            // The floor reads the pristine copy and clears nothing.
            if (run !== iterateFloor) {
              assert(dirty.count(bitmap) === 0, `${name} left dirty bits behind`);
            }
            assert(
              ours.count === theirs.count && ours.sum === theirs.sum,
              `${name}: kernel (${ours.count}, ${ours.sum}) != oracle (${theirs.count}, ${theirs.sum})`,
            );
          }
          thorough = false;
        },
        impls: [
          { impl: "hvlab harvest + iterate", fn: hvlabHarvestIterate },
          { impl: "hvlab one pass (harvestPages)", fn: hvlabOnePass },
          { impl: "hvlab one pass, vCPUs paused", fn: hvlabOnePassPaused },
          { impl: "hvlab epoch flip + one pass, 1 thread", fn: hvlabEpochOneThread },
          { impl: "hvlab epoch flip + one pass, 1 pool worker", fn: hvlabEpochOneWorker },
          { impl: "hvlab epoch flip + one pass, 2 pool workers", fn: hvlabEpochTwoWorkers },
          {
            impl: "hvlab epoch flip + one pass, caller + 1 pool worker",
            fn: hvlabEpochCallerAndWorker,
          },
          { impl: "floor: iterate only (read + emit, no clear)", fn: iterateFloor },
          { impl: "oracle (one page at a time)", fn: oracleHarvestIterate },
          { impl: "memory read (bound)", fn: () => bandwidth.read(pristine) },
        ],
      });
    }

    // --- marking from the workload generators -----------------------------
    const markGuestBytes = quick ? 4 * GiB : 64 * GiB;
    const marksPerCall = quick ? 100_000 : 2_000_000;
    const markLayout = new MemoryLayout();
    const pool = new KernelPool(markLayout, { threads: 2, domains: ["guest"] });
    const guests = new Map<string, Guest>();
    for (const kind of ["uniform", "hotset", "zipf"] as const) {
      for (const vcpus of [1, 2]) {
        guests.set(
          `${kind}/${vcpus}`,
          new Guest(markLayout, {
            name: `${kind}-${vcpus}`,
            bytes: markGuestBytes,
            content: false,
            vcpus,
            workload: { kind },
            seed: 11,
          }),
        );
      }
    }
    for (const kind of ["uniform", "hotset", "zipf"] as const) {
      const one = guests.get(`${kind}/1`);
      const two = guests.get(`${kind}/2`);
      if (!one || !two) throw new Error("guest missing");
      const oracle = new WorkloadOracle(one.workload, 11, 0, false);
      const oracleCalls = kind === "uniform" ? marksPerCall : Math.min(marksPerCall, 200_000);
      cases.push({
        case: `${kind} writes, metadata mode, ${formatBytes(markGuestBytes)} guest`,
        opsPerCall: oracleCalls,
        verify: async () => {
          // The kernel's first writes mark exactly the pages the oracle picks.
          const probe = new Guest(new MemoryLayout(), {
            bytes: markGuestBytes,
            content: false,
            vcpus: 1,
            workload: { kind },
            seed: 11,
          });
          await probe.write(1000);
          const check = new WorkloadOracle(probe.workload, 11, 0, false);
          const expected = new Set<number>();
          for (let i = 0; i < 1000; i++) expected.add(check.write().page);
          assert(
            probe.dirty.count(probe.bitmap) === expected.size,
            "kernel and oracle marked different counts",
          );
          for (const page of expected) {
            assert(probe.dirty.testPage(probe.bitmap, page), `oracle page ${page} not marked`);
          }
        },
        impls: [
          { impl: "hvlab 1 worker", fn: async () => one.write(oracleCalls, pool) },
          { impl: "hvlab 2 workers", fn: async () => two.write(oracleCalls, pool) },
          {
            impl: "oracle (BigInt, one write at a time)",
            fn: () => {
              for (let i = 0; i < oracleCalls; i++) oracle.write();
            },
          },
        ],
      });
    }

    // --- bitmap against dirty ring ---------------------------------------
    const ringLayout = new MemoryLayout();
    const ringDirty = DirtyKernel.on(ringLayout.memory);
    const patterns = [
      {
        label: "sparse: 4,096 uniform writes",
        bytes: quick ? 16 * GiB : TiB,
        writes: 4096,
        workload: { kind: "uniform" as const },
      },
      {
        label: "dense: 262,144 writes to a 256-page hot set",
        bytes: 64 * GiB,
        writes: 262_144,
        workload: { kind: "hotset" as const, hotPages: 256, hotFraction: 1 },
      },
    ];
    for (const [index, pattern] of patterns.entries()) {
      const viaBitmap = new Guest(ringLayout, {
        name: `b${index}`,
        bytes: pattern.bytes,
        content: false,
        vcpus: 1,
        workload: pattern.workload,
        seed: 5,
      });
      const viaRing = new Guest(ringLayout, {
        name: `r${index}`,
        bytes: pattern.bytes,
        content: false,
        vcpus: 1,
        workload: pattern.workload,
        seed: 5,
        tracking: "ring",
        ringEntries: 4096,
      });
      const snap = DirtyBitmap.allocate(ringLayout, `snap${index}`, viaBitmap.pages);
      const ringOut = ringLayout.allocate(`ring-out${index}`, 4096 * 4);
      const target = viaRing.vcpuTargets[0]?.ring;
      if (!target) throw new Error("ring missing");
      let overflowSeen = 0;
      const collectRing = (): number => {
        // Harvest the ring as KVM's user space does; only when pushes overflowed
        // since the last collection is the fallback bitmap harvested too.
        let taken = 0;
        let n = ringDirty.ringHarvest(target, ringOut);
        while (n > 0) {
          taken += n;
          n = ringDirty.ringHarvest(target, ringOut);
        }
        const overflow = ringDirty.ringOverflow(target);
        if (overflow !== overflowSeen) {
          overflowSeen = overflow;
          taken += ringDirty.harvest(viaRing.bitmap, snap);
        }
        return taken;
      };
      cases.push({
        case: `${pattern.label} into a ${formatBytes(pattern.bytes)} guest, then collect`,
        opsPerCall: pattern.writes,
        verify: async () => {
          await viaBitmap.write(pattern.writes);
          await viaRing.write(pattern.writes);
          const ringPages = new Set<number>();
          let n = ringDirty.ringHarvest(target, ringOut);
          while (n > 0) {
            for (const page of new Uint32Array(ringLayout.memory.buffer, ringOut.offset, n))
              ringPages.add(page);
            n = ringDirty.ringHarvest(target, ringOut);
          }
          ringDirty.harvest(viaRing.bitmap, snap);
          const cursorRegion: Region = ringLayout.allocate(`verify-cursor${index}`, 8);
          const out = ringLayout.allocate(`verify-out${index}`, 4096 * 4);
          ringDirty.resetCursor(cursorRegion);
          for (
            let m = ringDirty.iterate(snap, cursorRegion, out);
            m > 0;
            m = ringDirty.iterate(snap, cursorRegion, out)
          ) {
            for (const page of new Uint32Array(ringLayout.memory.buffer, out.offset, m))
              ringPages.add(page);
          }
          const bitmapPages = ringDirty.harvest(viaBitmap.bitmap, snap);
          assert(
            bitmapPages === ringPages.size,
            `bitmap saw ${bitmapPages} pages, ring ${ringPages.size}`,
          );
          overflowSeen = ringDirty.ringOverflow(target);
        },
        impls: [
          {
            impl: "hvlab bitmap",
            fn: async () => {
              await viaBitmap.write(pattern.writes);
              return ringDirty.harvest(viaBitmap.bitmap, snap);
            },
          },
          {
            impl: "hvlab ring (4,096 entries)",
            fn: async () => {
              await viaRing.write(pattern.writes);
              return collectRing();
            },
          },
        ],
      });
    }
    return {
      cases,
      teardown: async () => {
        await pool.close();
        await harvestPool.close();
      },
    };
  },
};
