import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { Region } from "../src/memory/region.js";
import {
  STREAM_QUEUE_BYTES,
  STREAM_SLOTS,
  StreamQueue,
  StreamState,
} from "../src/migration/stream-queue.js";

// The ring of batches between a stream's two threads, in shared memory
// (src/migration/stream-queue.ts, docs/migration.md): the wave's state, who
// received each batch, and the waits on its one signal word.

const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
const blockAt = (offset: number, byteLength = STREAM_QUEUE_BYTES) =>
  new Region({ name: "stream-queue", offset, byteLength });
/** A fresh queue at `offset` of the page. */
const queueAt = (offset: number) => {
  const queue = new StreamQueue(memory, blockAt(offset));
  queue.reset();
  return queue;
};

describe("a stream queue's control block", () => {
  // Shorter than its words, it would overlap whatever follows it.
  it("is refused when the region is shorter than the block, naming it", () => {
    expect(() => new StreamQueue(memory, blockAt(0, STREAM_QUEUE_BYTES - 4))).toThrow(
      new RangeError(
        `stream queue 'stream-queue' at 0 (${STREAM_QUEUE_BYTES - 4} bytes): needs ${STREAM_QUEUE_BYTES} bytes, 4-byte aligned`,
      ),
    );
  });

  // Its words are 32-bit atomics: the block must start on a 4-byte boundary.
  it("is refused when the region is not 4-byte aligned, naming it", () => {
    expect(() => new StreamQueue(memory, blockAt(6))).toThrow(
      /stream queue 'stream-queue' at 6 .*4-byte aligned/,
    );
  });
});

describe("a wave's state", () => {
  it("is sending from a reset until the sender ends it as sent", () => {
    const queue = queueAt(128);
    expect(queue.state()).toBe(StreamState.sending);
    queue.end(StreamState.sent);
    expect(queue.state()).toBe(StreamState.sent);
  });

  // A failure stands: the sender's end of the wave does not hide it, and a
  // thread failing after the wave was sent still stops the others.
  it("keeps a failure over the sender's end of the wave, and takes one after it", () => {
    const failedFirst = queueAt(256);
    failedFirst.end(StreamState.failed);
    failedFirst.end(StreamState.sent);
    expect(failedFirst.state()).toBe(StreamState.failed);
    const sentFirst = queueAt(384);
    sentFirst.end(StreamState.sent);
    sentFirst.end(StreamState.failed);
    expect(sentFirst.state()).toBe(StreamState.failed);
  });
});

describe("who received the batches", () => {
  // Only batches the destination's thread received count as remote; every
  // received batch frees its slot for the batch a ring later.
  it("counts the destination thread's batches apart from the sender's", () => {
    const queue = queueAt(512);
    for (let b = 0; b < 3; b++) queue.write(4);
    expect([queue.claim(), queue.claim(), queue.claim(), queue.claim()]).toEqual([0, 1, 2, -1]);
    expect(queue.slotFree(STREAM_SLOTS)).toBe(false);
    queue.finish(0, false);
    expect(queue.remote).toBe(0);
    queue.finish(1, true);
    queue.finish(2, true);
    expect(queue.remote).toBe(2);
    expect(queue.slotFree(STREAM_SLOTS)).toBe(true);
  });
});

describe("the destination thread's blocking wait", () => {
  // The thread sleeps on the signal word until the other thread changes
  // something (here: receives a batch after a pause of its own); it does
  // not return before.
  it("returns only once the other thread changed the queue", async () => {
    const queue = queueAt(640);
    const dist = (path: string) =>
      pathToFileURL(join(import.meta.dirname, "..", "dist", "src", path)).href;
    const seen = queue.seen();
    const worker = new Worker(join(import.meta.dirname, "support", "stream-queue-worker.mjs"), {
      workerData: {
        queueModule: dist("migration/stream-queue.js"),
        regionModule: dist("memory/region.js"),
        memory,
        queue: blockAt(640).toDescriptor(),
        pauseMs: 50,
      },
    });
    const exited = new Promise((resolve, reject) => {
      worker.once("exit", resolve);
      worker.once("error", reject);
    });
    queue.waitBlocking(seen, 30_000);
    expect(queue.seen()).not.toBe(seen);
    expect(queue.remote).toBe(1);
    await exited;
  });
});
