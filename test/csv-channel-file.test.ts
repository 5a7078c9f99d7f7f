import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { CHANNEL_HEADER_BYTES, serveChannel } from "../src/storage/channel-file.js";

// The block file a pool worker uses for a VHD on the volume: every call is
// served on another thread. A worker thread drives it while this thread
// serves it from a MemoryFile; the same calls on a MemoryFile directly are
// the oracle.

type Op =
  | { kind: "write"; position: number; data: number[] }
  | { kind: "writev"; position: number; parts: number[][] }
  | { kind: "read"; position: number; length: number }
  | { kind: "size" }
  | { kind: "truncate"; length: number }
  | { kind: "sync" };

const dist = (path: string) =>
  pathToFileURL(join(import.meta.dirname, "..", "dist", "src", path)).href;

/** A small mailbox (4 KiB of data) so that calls are split across requests. */
const MAILBOX = CHANNEL_HEADER_BYTES + 4096;

async function throughChannel(ops: readonly Op[], failWrites = false) {
  const layout = new MemoryLayout();
  const mailbox = layout.allocate("mailbox", MAILBOX, 4096);
  const backing = new MemoryFile("backing", new Uint8Array(0), 1 << 20);
  const server = serveChannel(layout.memory, mailbox, {
    read: async (position, length) => {
      const out = new Uint8Array(length);
      return out.subarray(0, backing.read(out, position));
    },
    write: async (position, data) => {
      if (failWrites) throw new Error(`no path to the target at byte ${position}`);
      backing.write(data, position);
    },
    size: async () => backing.size(),
    truncate: async (length) => backing.truncate(length),
    sync: async () => {},
  });
  const worker = new Worker(join(import.meta.dirname, "support", "channel-worker.mjs"), {
    workerData: {
      channelModule: dist("storage/channel-file.js"),
      regionModule: dist("memory/region.js"),
      memory: layout.memory,
      mailbox: mailbox.toDescriptor(),
      ops,
    },
  });
  try {
    const results = (await new Promise((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    })) as { ok: boolean; n?: number; data?: number[]; name?: string; message?: string }[];
    return { results, contents: [...backing.contents()] };
  } finally {
    await worker.terminate();
    await server.stop();
  }
}

function direct(ops: readonly Op[]) {
  const file = new MemoryFile("oracle", new Uint8Array(0), 1 << 20);
  const results = ops.map((op) => {
    if (op.kind === "write") file.write(Uint8Array.from(op.data), op.position);
    else if (op.kind === "writev")
      file.writev(
        op.parts.map((p) => Uint8Array.from(p)),
        op.position,
      );
    else if (op.kind === "read") {
      const into = new Uint8Array(op.length);
      const n = file.read(into, op.position);
      return { ok: true, n, data: [...into.subarray(0, n)] };
    } else if (op.kind === "size") return { ok: true, n: file.size() };
    else if (op.kind === "truncate") file.truncate(op.length);
    return { ok: true };
  });
  return { results, contents: [...file.contents()] };
}

const bytes = fc.array(fc.nat(255), { maxLength: 9000 });
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("write" as const), position: fc.nat(20_000), data: bytes }),
  fc.record({
    kind: fc.constant("writev" as const),
    position: fc.nat(20_000),
    parts: fc.array(bytes, { maxLength: 3 }),
  }),
  fc.record({
    kind: fc.constant("read" as const),
    position: fc.nat(30_000),
    length: fc.nat(10_000),
  }),
  fc.record({ kind: fc.constant("size" as const) }),
  fc.record({ kind: fc.constant("truncate" as const), length: fc.nat(30_000) }),
  fc.record({ kind: fc.constant("sync" as const) }),
);

describe("ChannelFile", () => {
  it("does what a MemoryFile does, for random calls at odd offsets and lengths larger than its mailbox", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 12 }), async (ops) => {
        const got = await throughChannel(ops);
        const want = direct(ops);
        expect(got.results).toEqual(want.results);
        expect(got.contents).toEqual(want.contents);
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it("fails a call with the serving side's reason, and keeps serving", async () => {
    const { results } = await throughChannel(
      [{ kind: "write", position: 5000, data: [1, 2, 3] }, { kind: "size" }],
      true,
    );
    expect(results[0]).toEqual({
      ok: false,
      name: "ChannelError",
      message: "volume file: no path to the target at byte 5000",
    });
    expect(results[1]).toEqual({ ok: true, n: 0 });
  }, 60_000);
});
