import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { runMigration } from "../src/migration/engine.js";
import { STREAM_THREADS_MIN_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationOptions } from "../src/migration/options.js";
import {
  receiveBatch,
  STREAM_BATCH_PACKETS,
  type StreamSender,
  type StreamSplit,
  type StreamWait,
  sendStream,
  serveStream,
  streamSlotBytes,
} from "../src/migration/stream-pipeline.js";
import {
  STREAM_QUEUE_BYTES,
  STREAM_SLOTS,
  StreamQueue,
  StreamState,
} from "../src/migration/stream-queue.js";
import type { StreamReceiveTask } from "../src/migration/task-types.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import {
  MULTIFD_SCRATCH_BYTES,
  MultifdKernel,
  MultifdPacketError,
  multifdHeaderBytes,
} from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES } from "../src/wasm/page.js";

// One stream with its sender on this thread and its receiver on a pool
// worker, a ring of batches between them (src/migration/stream-pipeline.ts,
// src/migration/stream-queue.ts), for guests from
// STREAM_THREADS_MIN_PAGES pages: the same pages, counts and verification
// as the multifd path, every page of the destination equal to the source's.

const PAGE = 4096;
const guestBytes = STREAM_THREADS_MIN_PAGES * PAGE;

const base: MigrationOptions = {
  guestBytes,
  content: true,
  workload: { kind: "uniform" },
  writesPerSecond: 0,
  maxBandwidth: Number.POSITIVE_INFINITY,
  deviceStateBytes: 4096,
  zeroFraction: 0.25,
  seed: 31,
};

describe("one stream on two threads", () => {
  it("moves every page, counts as one channel of multifd does, and verifies", async () => {
    const one = await runMigration(base);
    const multifd = await runMigration({ ...base, multifdChannels: 1 });
    expect(one.summary.status).toBe("completed");
    expect(one.summary.verified).toBe(true);
    expect(one.summary.normal + one.summary.duplicate).toBe(guestBytes / PAGE);
    // A quarter of the image is zero pages, sent as such.
    expect(one.summary.duplicate).toBeGreaterThan(0.2 * (guestBytes / PAGE));
    expect(one.summary.normal).toBe(multifd.summary.normal);
    expect(one.summary.duplicate).toBe(multifd.summary.duplicate);
  });

  it("verifies a guest that writes while it is sent, over several rounds", async () => {
    const result = await runMigration({
      ...base,
      writesPerSecond: 20_000,
      maxBandwidth: 2e9,
      downtimeLimitMs: 300,
    });
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect(result.rounds.length).toBeGreaterThan(1);
  });

  it("fails the run on one wrong byte of the destination, naming the page", async () => {
    const page = STREAM_THREADS_MIN_PAGES - 3;
    const result = await runMigration({
      ...base,
      beforeVerify: (ram) => {
        ram[page * PAGE + 17] = (ram[page * PAGE + 17] ?? 0) ^ 0x04;
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(new RegExp(`destination page ${page} differs`));
  });
});

/**
 * A stream's two ends over two memories, as a migration has them, with the
 * destination's thread played on this one: `pages` pages of a patterned
 * source RAM listed in order, packets of `alloc` pages.
 */
function streamRig(alloc: number, pages: number) {
  const source = new MemoryLayout();
  const far = new MemoryLayout();
  const ram = source.allocate("ram", pages * PAGE, 4096);
  const list = source.allocate("list", pages * 4);
  const hashes = source.allocate("hashes", pages * 8, 8);
  const stats = source.allocate("stats", ENCODE_STATS_BYTES);
  const queue = source.allocate("queue", STREAM_QUEUE_BYTES, 8);
  const stride = Math.ceil(multifdHeaderBytes(alloc) / 8) * 8;
  const bytes = streamSlotBytes(alloc, stride);
  const slots = Array.from({ length: STREAM_SLOTS }, (_, k) => ({
    headers: source.allocate(`headers-${k}`, bytes.headers, 4096),
    sent: source.allocate(`sent-${k}`, bytes.sent, 8),
    wire: source.allocate(`wire-${k}`, bytes.wire, 8),
    accepted: far.allocate(`accepted-${k}`, bytes.accepted, 8),
  }));
  const farRam = far.allocate("far-ram", pages * PAGE, 4096);
  const farHashes = far.allocate("far-hashes", pages * 8, 8);
  const destination = {
    memory: "destination",
    receive: far.allocate("far-header", multifdHeaderBytes(alloc)).toDescriptor(),
    place: far.allocate("far-place", alloc * 4).toDescriptor(),
    ram: farRam.toDescriptor(),
    hashes: farHashes.toDescriptor(),
    scratch: far.allocate("far-scratch", MULTIFD_SCRATCH_BYTES, 8).toDescriptor(),
  };
  const sourceBytes = ram.bytes(source.memory);
  for (let i = 0; i < sourceBytes.length; i++) sourceBytes[i] = (i * 7 + 3 + (i >> 12)) & 0xff;
  new Uint32Array(source.memory.buffer, list.offset, pages).set(
    Array.from({ length: pages }, (_, p) => p),
  );
  const farEnd = {
    memory: far.memory,
    kernel: MultifdKernel.on(far.memory, far.allocate("far-kernel-scratch", 8, 8)),
  };
  const sender = (receive: StreamSender["receive"]): StreamSender => ({
    source: {
      memory: source.memory,
      kernel: MultifdKernel.on(source.memory, source.allocate("scratch", 8, 8)),
    },
    local: {
      end: {
        memory: far.memory,
        kernel: MultifdKernel.on(far.memory, far.allocate("local-scratch", 8, 8)),
      },
      destination: {
        ...destination,
        receive: far.allocate("local-header", multifdHeaderBytes(alloc)).toDescriptor(),
        scratch: far.allocate("local-kernel-scratch", 8, 8).toDescriptor(),
      },
    },
    ram,
    pageShift: 12,
    list,
    alloc,
    headerStride: stride,
    slots,
    queue,
    stats,
    hashes,
    zeroPages: true,
    destination,
    receive,
  });
  /** The destination's thread played on this one: waits without blocking. */
  const asyncWait: StreamWait = (q, seen) => q.waitAsync(seen, 1000);
  const serveFar = (task: StreamReceiveTask) => serveStream(source.memory, farEnd, task, asyncWait);
  /** Every page landed once and equal, and both sides' tables hold each page's XXH3-64. */
  const expectAllLanded = () => {
    const sent = ram.bytes(source.memory);
    const landed = farRam.bytes(far.memory);
    expect(Buffer.from(landed).equals(Buffer.from(sent))).toBe(true);
    const theirs = new BigUint64Array(far.memory.buffer, farHashes.offset, pages);
    const ours = new BigUint64Array(source.memory.buffer, hashes.offset, pages);
    for (const page of new Set([0, 1, pages >> 1, pages - 1].filter((p) => p < pages))) {
      expect(theirs[page]).toBe(xxh3Long(sent.subarray(page * PAGE, (page + 1) * PAGE)));
    }
    expect(Buffer.from(theirs.buffer, theirs.byteOffset, theirs.byteLength)).toEqual(
      Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength),
    );
  };
  return { source, far, farRam, stride, slots, farEnd, sender, serveFar, expectAllLanded };
}

/** Lets the other "thread" (a promise chain on this one) run. */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("the ring of batches between the stream's two threads", () => {
  it("a header refused in a batch fails the send, and no page of that batch reaches the destination", async () => {
    const alloc = 128;
    // Four packets: one batch (STREAM_BATCH_PACKETS is 16).
    const pages = alloc * 4;
    const rig = streamRig(alloc, pages);
    const send = sendStream(
      // The second packet's magic is changed on the way.
      rig.sender(async (task) => {
        const slot = rig.slots[0];
        if (!slot) throw new Error("no slot 0");
        new DataView(rig.source.memory.buffer, slot.headers.offset + rig.stride).setUint32(
          0,
          0x11223345,
        );
        return rig.serveFar(task);
      }),
      0,
      pages,
      0,
    );
    await expect(send).rejects.toThrow(MultifdPacketError);
    await expect(send).rejects.toThrow(/bad magic/);
    expect(rig.farRam.bytes(rig.far.memory).every((b) => b === 0)).toBe(true);
  });

  it("with the destination's thread holding a batch, the sender receives the waiting ones itself, then waits for the slot; every page arrives once, hashed", async () => {
    const alloc = 4;
    const batches = STREAM_SLOTS + 5;
    const pages = alloc * STREAM_BATCH_PACKETS * batches - 3;
    const rig = streamRig(alloc, pages);
    const split: StreamSplit = { remote: 0, local: 0 };
    let heldUntilLocal = -1;
    const receive = async (task: StreamReceiveTask): Promise<number> => {
      const queue = new StreamQueue(rig.source.memory, new Region(task.queue));
      const first = queue.claim();
      // Held until the sender has received every other batch of the full
      // ring itself and must wait for this one's slot.
      while (split.local < STREAM_SLOTS - 1) await tick();
      heldUntilLocal = split.local;
      receiveBatch(rig.source.memory, rig.farEnd, task, first % STREAM_SLOTS, queue);
      queue.finish(first, true);
      return 1 + (await rig.serveFar(task));
    };
    const result = await sendStream(rig.sender(receive), 0, pages, 7, split);
    expect(result.consumed).toBe(pages);
    expect(result.packets).toBe(Math.ceil(pages / alloc));
    expect(heldUntilLocal).toBe(STREAM_SLOTS - 1);
    expect(split.remote).toBeGreaterThanOrEqual(1);
    expect(split.local + split.remote).toBe(batches);
    rig.expectAllLanded();
  });

  it("every batch is received exactly once, whichever thread takes it and however long it holds it", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 9 }),
        fc.integer({ min: 1, max: STREAM_BATCH_PACKETS * 3 * 9 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 16 }),
        async (alloc, pages, holds) => {
          const rig = streamRig(alloc, pages);
          const split: StreamSplit = { remote: 0, local: 0 };
          // The destination's thread: each batch it claims is held a number
          // of turns of the other thread before it is received.
          const receive = async (task: StreamReceiveTask): Promise<number> => {
            const queue = new StreamQueue(rig.source.memory, new Region(task.queue));
            let received = 0;
            for (let turn = 0; ; turn++) {
              const batch = queue.claim();
              if (batch < 0) {
                if (queue.state() !== StreamState.sending) return received;
                await tick();
                continue;
              }
              for (let h = holds[turn % holds.length] ?? 0; h > 0; h--) await tick();
              receiveBatch(rig.source.memory, rig.farEnd, task, batch % STREAM_SLOTS, queue);
              queue.finish(batch, true);
              received++;
            }
          };
          const result = await sendStream(rig.sender(receive), 0, pages, 0, split);
          expect(result.consumed).toBe(pages);
          expect(split.local + split.remote).toBe(
            Math.ceil(Math.ceil(pages / alloc) / STREAM_BATCH_PACKETS),
          );
          rig.expectAllLanded();
        },
      ),
      { numRuns: 25 },
    );
  });
});
