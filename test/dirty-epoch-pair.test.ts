import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  EpochDirtyLog,
  EpochFlipTimeoutError,
  EpochUnsettledError,
} from "../src/dirty/epoch-log.js";
import { Guest, GuestConfigError } from "../src/guest/guest.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { DirtyBitmapPair, EpochControl } from "../src/memory/dirty-bitmap-pair.js";
import { RegionAllocationError, RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyPairOracle } from "../src/oracle/dirty.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * The epoch-swapped dirty log on one thread: marks and flips in any order
 * agree with the two-bitmap oracle, and the flip's handshake is checked step
 * by step (a writer inside a batch holds the flip back until it follows; a
 * writer that enters across a flip marks the new epoch). The same log under
 * real concurrency is tested through the pool in pool-epoch-harvest.test.ts.
 */

const layout = new MemoryLayout();
const kernel = DirtyKernel.on(layout.memory);
const cursor = layout.allocate("cursor", 8);
const out = layout.allocate("out", 2048 * 4);

function harvestRetired(log: EpochDirtyLog): number[] {
  kernel.resetCursor(cursor);
  const pages: number[] = [];
  for (let n = log.harvestPages(cursor, out); n > 0; n = log.harvestPages(cursor, out)) {
    pages.push(...new Uint32Array(layout.memory.buffer, out.offset, n));
  }
  return pages;
}

const operation = (pages: number, writers: number) =>
  fc.oneof(
    fc.record({
      kind: fc.constant("mark" as const),
      slot: fc.integer({ min: 0, max: writers - 1 }),
      first: fc.integer({ min: 0, max: pages - 1 }),
      count: fc.integer({ min: 1, max: 40 }),
      step: fc.integer({ min: 1, max: 97 }),
      batch: fc.integer({ min: 1, max: 8 }),
    }),
    fc.record({ kind: fc.constantFrom("flip" as const, "flip-into" as const) }),
  );

describe("epoch-swapped dirty log against the oracle", () => {
  it("harvests at each flip exactly the pages marked since the one before", () => {
    const scenario = fc
      .record({ pages: fc.integer({ min: 1, max: 3000 }), writers: fc.integer({ min: 1, max: 4 }) })
      .chain(({ pages, writers }) =>
        fc.record({
          pages: fc.constant(pages),
          writers: fc.constant(writers),
          ops: fc.array(operation(pages, writers), { maxLength: 30 }),
        }),
      );
    fc.assert(
      fc.property(scenario, ({ pages, writers, ops }) => {
        const local = new MemoryLayout();
        const k = DirtyKernel.on(local.memory);
        const pair = DirtyBitmapPair.allocate(local, "pair", pages, writers);
        const log = new EpochDirtyLog(local.memory, pair, k);
        const snapshot = DirtyBitmap.allocate(local, "snapshot", pages);
        const localCursor = local.allocate("cursor", 8);
        const localOut = local.allocate("out", 100 * 4);
        const oracle = new DirtyPairOracle(pages);
        for (const op of ops) {
          if (op.kind === "mark") {
            const count = Math.min(op.count, Math.floor((pages - 1 - op.first) / op.step) + 1);
            let expected = 0;
            for (let i = 0; i < count; i++) if (oracle.markPage(op.first + i * op.step)) expected++;
            expect(k.markPagesInPair(pair, op.slot, op.first, count, op.step, op.batch)).toBe(
              expected,
            );
          } else if (op.kind === "flip") {
            log.flip();
            k.resetCursor(localCursor);
            const seen: number[] = [];
            for (let n = log.harvestPages(localCursor, localOut); n > 0; ) {
              seen.push(...new Uint32Array(local.memory.buffer, localOut.offset, n));
              n = log.harvestPages(localCursor, localOut);
            }
            expect(seen).toEqual(oracle.flipAndHarvest());
          } else {
            const expected = oracle.flipAndHarvest();
            expect(log.harvestInto(snapshot)).toBe(expected.length);
            for (const page of expected) expect(k.testPage(snapshot, page)).toBe(true);
            expect(k.count(snapshot)).toBe(expected.length);
          }
          expect(log.epoch).toBe(oracle.epoch);
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("the flip's handshake", () => {
  it("waits for a writer inside a batch, which marks the old epoch until it follows", () => {
    const pair = DirtyBitmapPair.allocate(layout, "handshake", 1000, 2);
    const log = new EpochDirtyLog(layout.memory, pair, kernel);
    const [zero, one] = pair.bitmaps;
    // Writer 1 enters epoch 0 and is inside a batch; writer 0 is idle.
    expect(kernel.epochEnter(pair, 1)).toBe(0);
    const error = (() => {
      try {
        log.flip(20);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(EpochFlipTimeoutError);
    expect(error).toMatchObject({ writer: 1, epoch: 1, ack: 0 });
    expect(String(error)).toContain("writer 1 did not acknowledge within 20 ms");
    // The retired bitmap may still be marked: a plain harvest is refused.
    expect(() => log.harvestPages(cursor, out)).toThrow(EpochUnsettledError);
    expect(() => log.harvestPages(cursor, out)).toThrow("flip to epoch 1 was not acknowledged");
    // Still in its batch, the writer marks epoch 0's bitmap.
    expect(kernel.markPage(zero, 500)).toBe(true);
    // Between batches it follows the flip and acknowledges it: the flip
    // settles, and the retired bitmap holds the page.
    expect(kernel.epochFollow(pair, 1, 0)).toBe(1);
    expect(log.settle(0)).toBe(zero);
    expect(log.active).toBe(one);
    expect(harvestRetired(log)).toEqual([500]);
    // The writer now marks epoch 1's bitmap; it leaves, and the next flip does not wait.
    expect(kernel.markPage(one, 7)).toBe(true);
    kernel.epochLeave(pair, 1);
    expect(log.flip(0)).toBe(one);
    expect(harvestRetired(log)).toEqual([7]);
    expect(log.epoch).toBe(2);
  });

  it("lets a writer that enters after a flip mark the new epoch", () => {
    const pair = DirtyBitmapPair.allocate(layout, "enter-late", 200, 1);
    const log = new EpochDirtyLog(layout.memory, pair, kernel);
    log.flip(0);
    log.flip(0);
    log.flip(0);
    expect(kernel.epochEnter(pair, 0)).toBe(3);
    expect(log.active).toBe(pair.bitmaps[1]);
    // Following with no flip keeps the epoch and the ack.
    expect(kernel.epochFollow(pair, 0, 3)).toBe(3);
    const slots = pair.slots(layout.memory);
    expect(slots[EpochControl.acks / 4]).toBe(3);
    kernel.epochLeave(pair, 0);
    expect(slots[EpochControl.acks / 4]).toBe(-1);
  });

  it("counts epochs modulo 2^31, keeping the bitmaps alternating across the wrap", () => {
    const pair = DirtyBitmapPair.allocate(layout, "wrap", 100, 1);
    const log = new EpochDirtyLog(layout.memory, pair, kernel);
    const slots = pair.slots(layout.memory);
    slots[EpochControl.epoch / 4] = 0x7fffffff;
    expect(log.active).toBe(pair.bitmaps[1]);
    expect(log.flip(0)).toBe(pair.bitmaps[1]);
    expect(log.epoch).toBe(0);
    expect(log.active).toBe(pair.bitmaps[0]);
  });

  it("times out, naming the writer, on an ack slot that holds garbage", () => {
    const pair = DirtyBitmapPair.allocate(layout, "garbage", 100, 3);
    const log = new EpochDirtyLog(layout.memory, pair, kernel);
    pair.slots(layout.memory)[EpochControl.acks / 4 + 2] = 12345;
    expect(() => log.flip(10)).toThrow(
      "writer 2 did not acknowledge within 10 ms (its slot holds 12345)",
    );
  });
});

describe("a double-buffered guest on one thread", () => {
  it("marks through its pair and harvests what a single-bitmap guest harvests", async () => {
    const make = (doubleBuffered: boolean) =>
      new Guest(new MemoryLayout(), {
        bytes: 1024 ** 3,
        content: false,
        vcpus: 3,
        seed: 5,
        workload: { kind: "hotset" },
        doubleBuffered,
      });
    const single = make(false);
    const paired = make(true);
    const singleSnapshot = DirtyBitmap.allocate(single.layout, "snapshot", single.pages);
    const pairedSnapshot = DirtyBitmap.allocate(paired.layout, "snapshot", paired.pages);
    for (const writes of [5000, 1, 70_000]) {
      expect(await paired.write(writes)).toBe(await single.write(writes));
      expect(paired.harvest(pairedSnapshot)).toBe(single.harvest(singleSnapshot));
      expect(pairedSnapshot.region.bytes(paired.layout.memory)).toEqual(
        singleSnapshot.region.bytes(single.layout.memory),
      );
    }
    expect(paired.log?.epoch).toBe(3);
    expect(paired.log?.count()).toBe(0);
  });

  it("refuses a double-buffered log with ring tracking", () => {
    expect(
      () =>
        new Guest(new MemoryLayout(), {
          bytes: 1024 ** 3,
          content: false,
          vcpus: 1,
          seed: 5,
          workload: { kind: "uniform" },
          tracking: "ring",
          doubleBuffered: true,
        }),
    ).toThrow(GuestConfigError);
  });
});

describe("bad pairs and writers", () => {
  it("refuses writer slots, counts, steps and batches out of range with typed errors", () => {
    const pair = DirtyBitmapPair.allocate(layout, "bad-input", 100, 2);
    expect(() => kernel.epochEnter(pair, 2)).toThrow(RegionBoundsError);
    expect(() => kernel.epochEnter(pair, 2)).toThrow(
      "writer slot 2 is not a slot of this pair (0 to 1)",
    );
    expect(() => kernel.epochLeave(pair, -1)).toThrow(RegionBoundsError);
    expect(() => kernel.epochFollow(pair, 0.5, 0)).toThrow(RegionBoundsError);
    expect(() => kernel.markPagesInPair(pair, 0, 99, 2)).toThrow("last page 100");
    expect(() => kernel.markPagesInPair(pair, 0, 100, 1)).toThrow("first page 100");
    expect(() => kernel.markPagesInPair(pair, 0, 0, -1)).toThrow("page count");
    expect(() => kernel.markPagesInPair(pair, 0, 0, 2, 0)).toThrow("page step");
    expect(() => kernel.markPagesInPair(pair, 0, 0, 2, 1, 0)).toThrow("marking batch");
    expect(kernel.markPagesInPair(pair, 1, 0, 0)).toBe(0);
  });

  it("refuses pairs of unequal bitmaps, shared regions, bad writer counts and short control blocks", () => {
    const a = DirtyBitmap.allocate(layout, "pair-a", 100);
    const b = DirtyBitmap.allocate(layout, "pair-b", 101);
    const c = DirtyBitmap.allocate(layout, "pair-c", 100);
    const control = layout.allocate("pair-control", DirtyBitmapPair.controlBytes(4), 64);
    expect(() => new DirtyBitmapPair([a, b], control, 4)).toThrow("tracks 101 pages");
    expect(() => new DirtyBitmapPair([a, a], control, 4)).toThrow("overlapping regions");
    expect(() => new DirtyBitmapPair([a, c], control, 5)).toThrow(RegionBoundsError);
    expect(() => new DirtyBitmapPair([a, c], control, 0)).toThrow(RegionAllocationError);
    expect(() => DirtyBitmapPair.controlBytes(257)).toThrow("from 1 to 256");
    expect(() => DirtyBitmapPair.allocate(layout, "pair-bad", 0, 1)).toThrow(RegionAllocationError);
    const pair = new DirtyBitmapPair([a, c], control, 4);
    const again = DirtyBitmapPair.fromDescriptor(pair.toDescriptor());
    expect(again.pages).toBe(100);
    expect(again.control.offset).toBe(control.offset);
  });
});
