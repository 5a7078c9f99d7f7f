import { describe, expect, it } from "vitest";
import {
  EpochDirtyLog,
  EpochFlipTimeoutError,
  EpochUnsettledError,
} from "../src/dirty/epoch-log.js";
import { DirtyBitmapPair, EpochControl } from "../src/memory/dirty-bitmap-pair.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * The harvester's side of the epoch log when a writer does not follow: a
 * flip times out with the writer named, the retired bitmap is refused until
 * the flip settles, and a fresh log (no flip yet) is settled.
 */

function makeLog(writers: number) {
  const layout = new MemoryLayout();
  const kernel = DirtyKernel.on(layout.memory);
  const pair = DirtyBitmapPair.allocate(layout, "pair", 256, writers);
  return { layout, kernel, pair, log: new EpochDirtyLog(layout.memory, pair, kernel) };
}

describe("epoch log: a writer that does not acknowledge", () => {
  it("a fresh log is settled: its retired bitmap is the harvester's", () => {
    const { log, pair } = makeLog(1);
    expect(log.quietRetired()).toBe(pair.bitmaps[1]);
  });

  it("counts the dirty pages of both bitmaps", () => {
    const { log, kernel, pair } = makeLog(1);
    const [zero, one] = pair.bitmaps;
    if (!zero || !one) throw new Error("a pair has two bitmaps");
    kernel.markPage(zero, 3);
    kernel.markPage(zero, 9);
    kernel.markPage(one, 200);
    expect(log.count()).toBe(3);
  });

  it("times out naming the writer, then refuses the retired bitmap until it settles", () => {
    const { log, layout, pair } = makeLog(2);
    const slots = pair.slots(layout.memory);
    // Writer 1 is inside a batch of epoch 0 and stays there.
    Atomics.store(slots, EpochControl.acks / 4 + 1, 0);
    let thrown: unknown;
    try {
      log.flip(20);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(EpochFlipTimeoutError);
    expect(thrown).toMatchObject({ name: "EpochFlipTimeoutError", writer: 1, epoch: 1, ack: 0 });
    expect(() => log.quietRetired()).toThrow(EpochUnsettledError);
    expect(() => log.quietRetired()).toThrow(
      expect.objectContaining({ name: "EpochUnsettledError", epoch: 1 }),
    );
    // The writer follows: the flip settles and the old bitmap is retired.
    Atomics.store(slots, EpochControl.acks / 4 + 1, 1);
    expect(log.settle(20)).toBe(pair.bitmaps[0]);
    expect(log.quietRetired()).toBe(pair.bitmaps[0]);
  });
});
