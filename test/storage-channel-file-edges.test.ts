import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { CHANNEL_HEADER_BYTES, ChannelError, ChannelFile } from "../src/storage/channel-file.js";

// The worker's end of the channel at the mailbox's edges: a call of exactly
// the mailbox's data size is one request and a whole number of them no
// more; a last piece shorter than the mailbox asks only for what is left;
// the mailbox is left idle (state 0) between calls, as the layout in
// src/storage/channel-file.ts says; a failure is a ChannelError by name.
// The serving end runs in a worker thread (test/support/channel-server-worker.mjs),
// which records every request.

const dist = (path: string) =>
  pathToFileURL(join(import.meta.dirname, "..", "dist", "src", path)).href;
const DATA = 512;

async function served(contents: Uint8Array, failFrom = Number.POSITIVE_INFINITY) {
  const layout = new MemoryLayout();
  const mailbox = layout.allocate("mailbox", CHANNEL_HEADER_BYTES + DATA, 4096);
  const worker = new Worker(join(import.meta.dirname, "support", "channel-server-worker.mjs"), {
    workerData: {
      channelModule: dist("storage/channel-file.js"),
      regionModule: dist("memory/region.js"),
      blockFileModule: dist("storage/block-file.js"),
      memory: layout.memory,
      mailbox: mailbox.toDescriptor(),
      contents: [...contents],
      failFrom,
    },
  });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
    });
  expect(await next()).toBe("serving");
  return {
    file: new ChannelFile("volume file", layout.memory, mailbox),
    /** The mailbox's state word: 0 idle, 1 posted, 2 replied. */
    state: () => Atomics.load(new Int32Array(layout.memory.buffer, mailbox.offset, 1), 0),
    async report(): Promise<{ requests: unknown[][]; contents: number[] }> {
      const reply = next();
      worker.postMessage("report");
      return (await reply) as { requests: unknown[][]; contents: number[] };
    },
    async close(): Promise<void> {
      const stopped = next();
      worker.postMessage("stop");
      await stopped;
      await worker.terminate();
    },
  };
}

function pattern(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 11 + seed) & 0xff);
}

describe("ChannelFile at the mailbox's edges", () => {
  it("writes exactly the mailbox's size in one request, and twice its size in two", async () => {
    const s = await served(new Uint8Array(0));
    try {
      s.file.write(pattern(DATA, 1), 0);
      s.file.write(pattern(2 * DATA, 2), DATA);
      const { requests, contents } = await s.report();
      expect(requests).toEqual([
        ["write", 0, DATA],
        ["write", DATA, DATA],
        ["write", 2 * DATA, DATA],
      ]);
      expect(contents).toEqual([...pattern(DATA, 1), ...pattern(2 * DATA, 2)]);
    } finally {
      await s.close();
    }
  });

  it("asks for only what is left in a read's last piece", async () => {
    const stored = pattern(2000, 3);
    const s = await served(stored);
    try {
      const into = new Uint8Array(1300);
      expect(s.file.read(into, 100)).toBe(1300);
      expect(into).toEqual(stored.subarray(100, 1400));
      expect((await s.report()).requests).toEqual([
        ["read", 100, DATA],
        ["read", 100 + DATA, DATA],
        ["read", 100 + 2 * DATA, 1300 - 2 * DATA],
      ]);
    } finally {
      await s.close();
    }
  });

  it("leaves the mailbox idle after every call, answered or failed", async () => {
    const s = await served(pattern(100, 4), 50);
    try {
      expect(s.state()).toBe(0);
      s.file.size();
      expect(s.state()).toBe(0);
      s.file.read(new Uint8Array(10), 0);
      expect(s.state()).toBe(0);
      s.file.write(pattern(10, 5), 0);
      expect(s.state()).toBe(0);
      s.file.truncate(20);
      expect(s.state()).toBe(0);
      s.file.sync();
      expect(s.state()).toBe(0);
      expect(() => s.file.write(pattern(10, 6), 60)).toThrow(ChannelError);
      expect(s.state()).toBe(0);
    } finally {
      await s.close();
    }
  });

  it("fails as a ChannelError, by name", async () => {
    const s = await served(new Uint8Array(0), 0);
    try {
      let error: unknown;
      try {
        s.file.write(pattern(4, 7), 8);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ChannelError);
      expect((error as Error).name).toBe("ChannelError");
      expect(String(error)).toBe("ChannelError: volume file: no path to the target at byte 8");
    } finally {
      await s.close();
    }
  });
});
