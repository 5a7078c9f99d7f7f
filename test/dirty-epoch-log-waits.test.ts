import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it, vi } from "vitest";
import { EpochDirtyLog } from "../src/dirty/epoch-log.js";
import { DirtyBitmapPair, EpochControl } from "../src/memory/dirty-bitmap-pair.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";

/*
 * How a flip waits for a writer that is inside a batch of the old epoch
 * (the writer's side is assembly/dirty.ts, epochFollow: it stores the new
 * epoch in its ack at the batch's end and notifies). The flip first polls
 * the ack for a short while, then blocks in Atomics.wait until the ack
 * changes or the deadline passes. Atomics.wait (ECMA-262, Atomics.wait and
 * its DoWait operation) answers "ok" when woken by a notify, "not-equal"
 * when the slot no longer holds the value, "timed-out" when the time ran
 * out; only a slot still unchanged at the deadline means the writer hung.
 *
 * Each test scripts one writer's timing exactly: through the clock the
 * flip reads, through the wait's return, or with a second thread that
 * wakes the flip with Atomics.notify.
 */

/** Writer 0 inside a batch of epoch 0: a flip to epoch 1 must wait for it. */
function logWithBusyWriter() {
  const layout = new MemoryLayout();
  const pair = DirtyBitmapPair.allocate(layout, "pair", 256, 1);
  const log = new EpochDirtyLog(layout.memory, pair, DirtyKernel.on(layout.memory));
  const slots = pair.slots(layout.memory);
  const ack = EpochControl.acks / 4;
  Atomics.store(slots, ack, 0);
  return { layout, pair, log, slots, ack };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a flip waiting for a writer", () => {
  it("sees an ack stored while it polls, without a notify, and does not block", () => {
    const { pair, log, slots, ack } = logWithBusyWriter();
    // The clock advances 1 us a read; the writer acknowledges epoch 1 at
    // 20 us, inside the 50 us the flip polls (POLL_MS) and without the
    // notify that would end an Atomics.wait: only the poll sees it before
    // the flip's 50 ms are out.
    let now = 0;
    vi.spyOn(performance, "now").mockImplementation(() => {
      now += 0.001;
      if (now >= 0.02) Atomics.store(slots, ack, 1);
      return now;
    });
    expect(log.flip(50)).toBe(pair.bitmaps[0]);
    expect(log.quietRetired()).toBe(pair.bitmaps[0]);
  });

  it("does not report a writer as hung when its ack lands just as the wait times out", () => {
    const { pair, log, slots, ack } = logWithBusyWriter();
    const outcomes: string[] = [];
    const wait = Atomics.wait.bind(Atomics);
    vi.spyOn(Atomics, "wait").mockImplementation(
      (array: Int32Array | BigInt64Array, index: number, value: number | bigint, ms?: number) => {
        const outcome = wait(array as Int32Array, index, value as number, ms);
        outcomes.push(outcome);
        // The writer's batch ends right after the wait gave up on it.
        if (outcome === "timed-out") Atomics.store(slots, ack, 1);
        return outcome;
      },
    );
    // Its clock reaches the deadline when the wait times out, so the flip
    // reads the slot once more before it gives up.
    let now = 0;
    vi.spyOn(performance, "now").mockImplementation(() => {
      now += outcomes.length > 0 ? 1000 : 0.001;
      return now;
    });
    expect(log.flip(20)).toBe(pair.bitmaps[0]);
    expect(outcomes).toEqual(["timed-out"]);
  });

  it("takes a wake-up that leaves the ack unchanged for no answer, and waits on", async () => {
    const { layout, pair, log, ack } = logWithBusyWriter();
    // A second thread notifies the writer's slot while the flip waits on it,
    // without storing (a notify that answers nothing), then acknowledges
    // epoch 1 for real 20 ms later.
    const thread = new Worker(
      `const { workerData, parentPort } = require("node:worker_threads");
       const slots = new Int32Array(workerData.buffer, workerData.offset, workerData.length);
       const pause = new Int32Array(new SharedArrayBuffer(4));
       parentPort.postMessage("ready");
       while (Atomics.notify(slots, workerData.ack, 1) === 0) Atomics.wait(pause, 0, 0, 1);
       parentPort.postMessage("woke the flip");
       Atomics.wait(pause, 0, 0, 20);
       Atomics.store(slots, workerData.ack, 1);
       Atomics.notify(slots, workerData.ack);
       parentPort.postMessage("acknowledged");`,
      {
        eval: true,
        workerData: {
          buffer: layout.memory.buffer,
          offset: pair.control.offset,
          length: EpochControl.acks / 4 + 1,
          ack,
        },
      },
    );
    const messages: string[] = [];
    const done = new Promise<void>((resolve, reject) => {
      thread.on("message", (m: string) => {
        messages.push(m);
        if (m === "acknowledged") resolve();
      });
      thread.on("error", reject);
    });
    await new Promise<void>((resolve) => thread.once("message", () => resolve()));
    try {
      // The flip blocks this thread until the real acknowledgement.
      expect(log.flip(10_000)).toBe(pair.bitmaps[0]);
      await done;
      expect(messages).toEqual(["ready", "woke the flip", "acknowledged"]);
    } finally {
      await thread.terminate();
    }
  });
});
