import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { runMigration } from "../src/migration/engine.js";
import { STREAM_THREADS_MIN_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationOptions } from "../src/migration/options.js";
import { receiveBatch, sendStream, streamSlotBytes } from "../src/migration/stream-pipeline.js";
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

describe("the hand-over between the stream's two threads", () => {
  it("a header refused in a batch fails the send, and no page of that batch reaches the destination", async () => {
    const alloc = 128;
    // Four packets: one batch (STREAM_BATCH_PACKETS is 64).
    const pages = alloc * 4;
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
      handover: source.allocate(`handover-${k}`, 4, 4),
    });
    const farRam = far.allocate("far-ram", pages * PAGE, 4096);
    const destination = {
      memory: "destination",
      receive: far.allocate("far-header", multifdHeaderBytes(alloc)).toDescriptor(),
      place: far.allocate("far-place", alloc * 4).toDescriptor(),
      ram: farRam.toDescriptor(),
      hashes: far.allocate("far-hashes", pages * 8, 8).toDescriptor(),
      scratch: far.allocate("far-scratch", MULTIFD_SCRATCH_BYTES, 8).toDescriptor(),
    };
    const sourceBytes = ram.bytes(source.memory);
    for (let i = 0; i < sourceBytes.length; i++) sourceBytes[i] = (i * 7 + 3) & 0xff;
    new Uint32Array(source.memory.buffer, list.offset, pages).set(
      Array.from({ length: pages }, (_, p) => p),
    );
    const farKernel = MultifdKernel.on(far.memory, far.allocate("far-kernel-scratch", 8, 8));
    const send = sendStream(
      {
        source: {
          memory: source.memory,
          kernel: MultifdKernel.on(source.memory, source.allocate("scratch", 8, 8)),
        },
        destinationMemory: far.memory,
        destinationRam: farRam,
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
        // The receiver here, on this thread: a refusal ends it before it
        // would wait for the sender's copy. The second packet's magic is
        // changed on the way.
        receive: async (task) => {
          const header = new DataView(source.memory.buffer, task.headers.offset + stride);
          header.setUint32(0, 0x11223345);
          return receiveBatch(source.memory, { memory: far.memory, kernel: farKernel }, task);
        },
      },
      0,
      pages,
      0,
    );
    await expect(send).rejects.toThrow(MultifdPacketError);
    await expect(send).rejects.toThrow(/bad magic/);
    expect(farRam.bytes(far.memory).every((b) => b === 0)).toBe(true);
  });
});
