import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { runMigration } from "../src/migration/engine.js";
import { STREAM_THREADS_MIN_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationOptions } from "../src/migration/options.js";
import {
  receiveBatch,
  STREAM_BATCH_PACKETS,
  type StreamSender,
  type StreamSplit,
  sendStream,
  streamSlotBytes,
} from "../src/migration/stream-pipeline.js";
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
// worker (src/migration/stream-pipeline.ts), for guests from
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
  const stride = Math.ceil(multifdHeaderBytes(alloc) / 8) * 8;
  const bytes = streamSlotBytes(alloc, stride);
  const slot = (k: number) => ({
    headers: source.allocate(`headers-${k}`, bytes.headers, 4096),
    sent: source.allocate(`sent-${k}`, bytes.sent, 8),
    accepted: far.allocate(`accepted-${k}`, bytes.accepted, 8),
  });
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
  const farKernel = MultifdKernel.on(far.memory, far.allocate("far-kernel-scratch", 8, 8));
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
    slots: [slot(0), slot(1)],
    stats,
    hashes,
    zeroPages: true,
    destination,
    receive,
  });
  /** Receives a batch as the destination's thread would, with its own kernel. */
  const receiveFar = (task: StreamReceiveTask) =>
    receiveBatch(source.memory, { memory: far.memory, kernel: farKernel }, task);
  return { source, far, ram, farRam, hashes, farHashes, stride, sender, receiveFar };
}

describe("the hand-over between the stream's two threads", () => {
  it("a header refused in a batch fails the send, and no page of that batch reaches the destination", async () => {
    const alloc = 128;
    // Four packets: one batch (STREAM_BATCH_PACKETS is 32).
    const pages = alloc * 4;
    const rig = streamRig(alloc, pages);
    const send = sendStream(
      // The second packet's magic is changed on the way.
      rig.sender(async (task) => {
        const header = new DataView(rig.source.memory.buffer, task.headers.offset + rig.stride);
        header.setUint32(0, 0x11223345);
        return rig.receiveFar(task);
      }),
      0,
      pages,
      0,
    );
    await expect(send).rejects.toThrow(MultifdPacketError);
    await expect(send).rejects.toThrow(/bad magic/);
    expect(rig.farRam.bytes(rig.far.memory).every((b) => b === 0)).toBe(true);
  });

  it("a batch that finds the destination's thread busy is received on the sender's, and every page arrives once, hashed", async () => {
    const alloc = 4;
    const batches = 5;
    const pages = alloc * STREAM_BATCH_PACKETS * batches - 3;
    const rig = streamRig(alloc, pages);
    const split: StreamSplit = { remote: 0, local: 0 };
    // The destination's thread stays busy with its first batch until the
    // sender has received one itself, then answers at once.
    let first = true;
    const receive = async (task: StreamReceiveTask): Promise<undefined> => {
      rig.receiveFar(task);
      while (first && split.local === 0) {
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      first = false;
      return undefined;
    };
    const result = await sendStream(rig.sender(receive), 0, pages, 7, split);
    expect(result.consumed).toBe(pages);
    expect(result.packets).toBe(Math.ceil(pages / alloc));
    expect(split.local).toBeGreaterThanOrEqual(1);
    expect(split.remote).toBeGreaterThanOrEqual(1);
    expect(split.local + split.remote).toBe(batches);
    const sent = rig.ram.bytes(rig.source.memory);
    const landed = rig.farRam.bytes(rig.far.memory);
    expect(Buffer.from(landed).equals(Buffer.from(sent))).toBe(true);
    // Each side's table holds every page's XXH3-64, and they agree.
    const theirs = new BigUint64Array(rig.far.memory.buffer, rig.farHashes.offset, pages);
    const ours = new BigUint64Array(rig.source.memory.buffer, rig.hashes.offset, pages);
    for (const page of [0, 1, alloc * STREAM_BATCH_PACKETS, pages - 1]) {
      expect(theirs[page]).toBe(xxh3Long(sent.subarray(page * PAGE, (page + 1) * PAGE)));
    }
    expect([...theirs]).toEqual([...ours]);
  });
});
