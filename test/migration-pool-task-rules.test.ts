import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { runMigration } from "../src/migration/engine.js";
import type { MigrationOptions } from "../src/migration/options.js";
import { STREAM_QUEUE_BYTES, StreamQueue, StreamState } from "../src/migration/stream-queue.js";
import type { ChannelTask } from "../src/migration/task-types.js";
import { handlers } from "../src/migration/tasks.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import { KernelContext } from "../src/wasm/context.js";
import { compileAllKernels } from "../src/wasm/loader.js";
import { MULTIFD_SCRATCH_BYTES, multifdHeaderBytes } from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES, PAGE_SCRATCH_BYTES } from "../src/wasm/page.js";
import { xorshiftBytes } from "./support/xorshift.js";

/*
 * The migration domain's pool tasks (src/migration/tasks.ts), called on this
 * thread with the kernel context a pool worker builds (src/pool/worker.ts):
 * verification's page hashing, a multifd channel's two ends (the
 * destination's side in a peer memory named as the task says), and a sweep
 * point. The oracles are independent: XXH3-64 in plain TypeScript
 * (src/oracle/xxh3.ts), the source's bytes for what lands on the
 * destination, and a sweep point's run made directly.
 */

const PAGE_SHIFT = 12;
const PAGE = 2 ** PAGE_SHIFT;
const modules = compileAllKernels();

/** A region's bytes in a memory. */
function bytesOf(memory: WebAssembly.Memory, region: Region): Uint8Array {
  return new Uint8Array(memory.buffer, region.offset, region.byteLength);
}

/** Guest RAM of `pages` pages with xorshift bytes; the pages listed in `zero` all zeros. */
function filledRam(layout: MemoryLayout, pages: number, zero: readonly number[] = []): Region {
  const ram = layout.allocate("ram", pages * PAGE, 4096);
  const bytes = bytesOf(layout.memory, ram);
  bytes.set(xorshiftBytes(pages * 7 + 3, pages * PAGE));
  for (const page of zero) bytes.fill(0, page * PAGE, (page + 1) * PAGE);
  return ram;
}

describe("migration.hash-pages", () => {
  // Verification hashes pages [0, count) of RAM into a u64 table, one XXH3-64
  // per page (QEMU's migration hash checks are per page; docs/migration.md
  // "Verification"), and nothing past `count`.
  it("writes XXH3-64 of each of the first count pages, in page order, and no more", async () => {
    const layout = new MemoryLayout();
    const ram = filledRam(layout, 6);
    const out = layout.allocate("hashes", 6 * 8, 8);
    const scratch = layout.allocate("scratch", PAGE_SCRATCH_BYTES);
    const context = new KernelContext({ memory: layout.memory, modules });
    const result = await handlers["migration.hash-pages"](context, {
      type: "migration.hash-pages",
      ram: ram.toDescriptor(),
      pageShift: PAGE_SHIFT,
      count: 5,
      out: out.toDescriptor(),
      scratch: scratch.toDescriptor(),
    });
    expect(result).toBeUndefined();
    const table = new BigUint64Array(layout.memory.buffer, out.offset, 6);
    const ramBytes = bytesOf(layout.memory, ram);
    for (let page = 0; page < 5; page++) {
      expect(table[page], `page ${page}`).toBe(
        xxh3Long(ramBytes.subarray(page * PAGE, (page + 1) * PAGE)),
      );
    }
    expect(table[5]).toBe(0n);
  });
});

/** A channel task over `pages` pages of source RAM, the destination in a peer memory. */
function channelRig(pages: number, packetPages: number, zero: readonly number[] = []) {
  const source = new MemoryLayout();
  const far = new MemoryLayout();
  const ram = filledRam(source, pages, zero);
  const list = source.allocate("list", pages * 4, 4);
  new Uint32Array(source.memory.buffer, list.offset, pages).set(
    Array.from({ length: pages }, (_, i) => pages - 1 - i),
  );
  const farRam = far.allocate("far-ram", pages * PAGE, 4096);
  const task: ChannelTask = {
    type: "migration.channel",
    ram: ram.toDescriptor(),
    pageShift: PAGE_SHIFT,
    list: list.toDescriptor(),
    listStart: 0,
    count: pages,
    packetPages,
    packetNum: 40,
    packet: source.allocate("packet", multifdHeaderBytes(packetPages), 4096).toDescriptor(),
    sent: source.allocate("sent", packetPages * 8, 8).toDescriptor(),
    stats: source.allocate("stats", ENCODE_STATS_BYTES, 8).toDescriptor(),
    scratch: source.allocate("scratch", 64, 8).toDescriptor(),
    zeroPages: true,
    destination: {
      memory: "far",
      receive: far.allocate("receive", multifdHeaderBytes(packetPages), 4096).toDescriptor(),
      place: far.allocate("place", packetPages * 4, 4).toDescriptor(),
      ram: farRam.toDescriptor(),
      hashes: far.allocate("far-hashes", pages * 8, 8).toDescriptor(),
      scratch: far.allocate("far-scratch", MULTIFD_SCRATCH_BYTES, 8).toDescriptor(),
    },
  };
  const context = new KernelContext({
    memory: source.memory,
    modules,
    peers: { far: far.memory },
  });
  return { source, far, ram, farRam, task, context };
}

describe("migration.channel", () => {
  // A channel runs QEMU's multifd send and receive threads for its slice
  // (migration/multifd.c): every page of the slice lands in the
  // destination's RAM (the peer memory the task names), zero pages counted as
  // zero (multifd_send_zero_page_detect), in packets of at most packetPages.
  it("moves the slice into the destination's RAM and counts pages and packets", async () => {
    const pages = 10;
    const r = channelRig(pages, 4, [2, 7]);
    const result = await handlers["migration.channel"](r.context, r.task);
    expect(result.consumed).toBe(pages);
    expect(result.packets).toBe(3);
    expect(result.counts.normal).toBe(8);
    expect(result.counts.zero).toBe(2);
    expect(bytesOf(r.far.memory, r.farRam)).toEqual(bytesOf(r.source.memory, r.ram));
  });

  // The destination's side lives in the memory the task names: a worker
  // handed no such memory refuses, naming it.
  it("refuses a destination memory the worker was not handed, naming it", () => {
    const r = channelRig(2, 4);
    const task = { ...r.task, destination: { ...r.task.destination, memory: "elsewhere" } };
    expect(() => handlers["migration.channel"](r.context, task)).toThrow(
      "worker was not handed a memory named 'elsewhere'",
    );
  });
});

describe("migration.stream-receive", () => {
  // The destination's stream thread takes batches until the wave is sent
  // and none is left (src/migration/stream-queue.ts): a wave sent with no
  // batch written gives it nothing to receive, and it returns at once.
  it("returns 0 batches for a wave sent empty, and refuses an unknown destination memory", async () => {
    const r = channelRig(2, 4);
    const queueRegion = r.source.allocate("stream-queue", STREAM_QUEUE_BYTES, 8);
    const queue = new StreamQueue(r.source.memory, queueRegion);
    queue.reset();
    queue.end(StreamState.sent);
    const task = {
      type: "migration.stream-receive" as const,
      ram: r.task.ram,
      pageShift: PAGE_SHIFT,
      packetPages: 4,
      headerStride: multifdHeaderBytes(4),
      slots: [],
      queue: queueRegion.toDescriptor(),
      destination: r.task.destination,
    };
    expect(await handlers["migration.stream-receive"](r.context, task)).toBe(0);
    const elsewhere = { ...task, destination: { ...task.destination, memory: "elsewhere" } };
    expect(() => handlers["migration.stream-receive"](r.context, elsewhere)).toThrow(
      "worker was not handed a memory named 'elsewhere'",
    );
  });
});

describe("migration.sweep-point", () => {
  // A sweep point is one whole migration run on a worker; only its summary
  // comes back (docs/migration.md "Sweeps"), the same summary the run gives
  // on any thread for the same options (virtual time, seeded guest).
  it("replies with just the summary of the point's migration", async () => {
    const options = {
      guestBytes: 1024 ** 2,
      content: false,
      vcpus: 1,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
      latencyMs: 0,
      policy: "xen",
    } as const satisfies MigrationOptions;
    const context = new KernelContext({ memory: new MemoryLayout().memory, modules });
    const reply = await handlers["migration.sweep-point"](context, {
      type: "migration.sweep-point",
      options,
    });
    expect(Object.keys(reply)).toEqual(["summary"]);
    expect(reply.summary.policy).toBe("xen");
    expect(reply.summary.mode).toBe("metadata");
    const direct = await runMigration(options);
    expect(reply.summary).toEqual(direct.summary);
  });
});
