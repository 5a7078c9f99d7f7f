import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import {
  CHANNEL_HEADER_BYTES,
  ChannelError,
  ChannelFile,
  ChannelOp,
  serveChannel,
} from "../src/storage/channel-file.js";

// The channel's mailbox as src/storage/channel-file.ts lays it out, one end
// at a time on the test's thread: the serving end answered by requests
// written into the mailbox by hand, word by word; the worker's end (which
// blocks on Atomics.wait until it is answered) served by a worker thread
// that records every request it is handed.

const dist = (path: string) =>
  pathToFileURL(join(import.meta.dirname, "..", "dist", "src", path)).href;

/** 512 bytes of data: the smallest mailbox, so that calls are split. */
const MAILBOX = CHANNEL_HEADER_BYTES + 512;

interface Reply {
  status: number;
  length: number;
  value: number;
  reason: string;
  data: Uint8Array;
}

/** Posts one request into `mailbox` by hand and waits for the serving end's reply. */
async function post(
  memory: WebAssembly.Memory,
  mailbox: Region,
  request: { op: number; position: number; length?: number; data?: Uint8Array },
): Promise<Reply> {
  const at = mailbox.offset;
  const words = new Int32Array(memory.buffer, at, 4);
  const numbers = new Float64Array(memory.buffer, at + 16, 2);
  const data = new Uint8Array(memory.buffer, at + CHANNEL_HEADER_BYTES, mailbox.byteLength - 256);
  if (request.data) data.set(request.data);
  Atomics.store(words, 1, request.op);
  Atomics.store(words, 2, request.length ?? request.data?.length ?? 0);
  numbers[0] = request.position;
  Atomics.store(words, 0, 1);
  Atomics.notify(words, 0);
  while (Atomics.load(words, 0) === 1) {
    const w = Atomics.waitAsync(words, 0, 1, 1000);
    if (w.async) await w.value;
  }
  const length = Atomics.load(words, 2);
  const reply = {
    status: Atomics.load(words, 3),
    length,
    value: numbers[1] ?? Number.NaN,
    reason: new TextDecoder().decode(
      new Uint8Array(memory.buffer, at + 32, Math.min(length, 224)).slice(),
    ),
    data: data.slice(0, length),
  };
  Atomics.store(words, 0, 0);
  return reply;
}

/** A mailbox and a record of what the handler was asked, with a handler's answers given. */
function served(answers: { read?: Uint8Array; size?: number; fail?: string } = {}) {
  const layout = new MemoryLayout();
  const mailbox = layout.allocate("mailbox", MAILBOX, 4096);
  const calls: unknown[][] = [];
  const failing = async () => {
    if (answers.fail !== undefined) throw new Error(answers.fail);
  };
  const server = serveChannel(layout.memory, mailbox, {
    read: async (position, length) => {
      calls.push(["read", position, length]);
      await failing();
      return answers.read ?? new Uint8Array(length).fill(7);
    },
    write: async (position, data) => {
      calls.push(["write", position, data]);
      await failing();
    },
    size: async () => {
      calls.push(["size"]);
      await failing();
      return answers.size ?? 0;
    },
    truncate: async (length) => {
      calls.push(["truncate", length]);
      await failing();
    },
    sync: async () => {
      calls.push(["sync"]);
      await failing();
    },
  });
  return { memory: layout.memory, mailbox, calls, server };
}

describe("serveChannel, the serving end", () => {
  it("hands each operation to its handler with the request's position and length", async () => {
    const s = served({ size: 123_456_789_012 });
    try {
      const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 13) & 0xff);
      const write = await post(s.memory, s.mailbox, {
        op: ChannelOp.write,
        position: 4096,
        data: bytes,
      });
      expect(write.status).toBe(0);
      const size = await post(s.memory, s.mailbox, { op: ChannelOp.size, position: 0 });
      expect(size.status).toBe(0);
      expect(size.value).toBe(123_456_789_012);
      expect(
        (await post(s.memory, s.mailbox, { op: ChannelOp.truncate, position: 777 })).status,
      ).toBe(0);
      expect((await post(s.memory, s.mailbox, { op: ChannelOp.sync, position: 0 })).status).toBe(0);
      expect(s.calls).toEqual([["write", 4096, bytes], ["size"], ["truncate", 777], ["sync"]]);
    } finally {
      await s.server.stop();
    }
  });

  it("passes a write exactly its length of the mailbox's bytes, as a copy of its own", async () => {
    const s = served();
    try {
      const bytes = Uint8Array.from({ length: 512 }, (_, i) => (i * 5 + 1) & 0xff);
      // The whole data area, then a request that says 10 of them.
      await post(s.memory, s.mailbox, { op: ChannelOp.write, position: 0, data: bytes });
      await post(s.memory, s.mailbox, { op: ChannelOp.write, position: 9, length: 10 });
      expect(s.calls[0]).toEqual(["write", 0, bytes]);
      expect(s.calls[1]).toEqual(["write", 9, bytes.subarray(0, 10)]);
      // The mailbox is reused by the next request: what the handler got must not change with it.
      await post(s.memory, s.mailbox, {
        op: ChannelOp.write,
        position: 0,
        data: new Uint8Array(512),
      });
      expect(s.calls[1]).toEqual(["write", 9, bytes.subarray(0, 10)]);
    } finally {
      await s.server.stop();
    }
  });

  it("replies to a read with the handler's bytes and their count, cut to the mailbox", async () => {
    const short = served({ read: Uint8Array.of(9, 8, 7) });
    try {
      const reply = await post(short.memory, short.mailbox, {
        op: ChannelOp.read,
        position: 1000,
        length: 100,
      });
      expect(reply.status).toBe(0);
      expect(reply.length).toBe(3);
      expect([...reply.data]).toEqual([9, 8, 7]);
      expect(short.calls).toEqual([["read", 1000, 100]]);
    } finally {
      await short.server.stop();
    }
    const long = served({ read: Uint8Array.from({ length: 600 }, (_, i) => i & 0xff) });
    try {
      const reply = await post(long.memory, long.mailbox, {
        op: ChannelOp.read,
        position: 0,
        length: 512,
      });
      expect(reply.length).toBe(512);
      expect([...reply.data]).toEqual(Array.from({ length: 512 }, (_, i) => i & 0xff));
    } finally {
      await long.server.stop();
    }
  });

  it("refuses a position that is not a byte offset and a length past the mailbox, before the handler", async () => {
    const s = served();
    try {
      for (const position of [-1, 0.5, 2 ** 53, Number.NaN]) {
        const reply = await post(s.memory, s.mailbox, { op: ChannelOp.sync, position });
        expect(reply.status).toBe(1);
        expect(reply.reason).toBe(`position ${position} is not a byte offset`);
      }
      const tooLong = await post(s.memory, s.mailbox, {
        op: ChannelOp.read,
        position: 0,
        length: 513,
      });
      expect(tooLong.status).toBe(1);
      expect(tooLong.reason).toBe("length 513 exceeds the mailbox");
      expect(s.calls).toEqual([]);
      // Their near sides are taken.
      expect(
        (await post(s.memory, s.mailbox, { op: ChannelOp.sync, position: 2 ** 53 - 1 })).status,
      ).toBe(0);
      expect(
        (await post(s.memory, s.mailbox, { op: ChannelOp.read, position: 0, length: 512 })).status,
      ).toBe(0);
      expect(s.calls).toEqual([["sync"], ["read", 0, 512]]);
    } finally {
      await s.server.stop();
    }
  });

  it("fails an unknown operation by its number, and a handler's error with its message, cut to 224 bytes", async () => {
    const s = served();
    try {
      for (const op of [0, 6]) {
        const reply = await post(s.memory, s.mailbox, { op, position: 0 });
        expect(reply.status).toBe(1);
        expect(reply.reason).toBe(`unknown operation ${op}`);
        expect(reply.length).toBe(`unknown operation ${op}`.length);
      }
    } finally {
      await s.server.stop();
    }
    const long = "x".repeat(230);
    const failing = served({ fail: long });
    try {
      const reply = await post(failing.memory, failing.mailbox, {
        op: ChannelOp.size,
        position: 0,
      });
      expect(reply.status).toBe(1);
      expect(reply.length).toBe(224);
      expect(reply.reason).toBe("x".repeat(224));
    } finally {
      await failing.server.stop();
    }
  });

  it("clears the failure of the request before, and answers each request once", async () => {
    const s = served();
    try {
      expect((await post(s.memory, s.mailbox, { op: 9, position: 0 })).status).toBe(1);
      expect((await post(s.memory, s.mailbox, { op: ChannelOp.sync, position: 0 })).status).toBe(0);
      expect(s.calls).toEqual([["sync"]]);
    } finally {
      await s.server.stop();
    }
  });

  it("answers nothing once stopped", async () => {
    const s = served();
    await s.server.stop();
    const words = new Int32Array(s.memory.buffer, s.mailbox.offset, 4);
    Atomics.store(words, 1, ChannelOp.sync);
    Atomics.store(words, 0, 1);
    Atomics.notify(words, 0);
    const w = Atomics.waitAsync(words, 0, 1, 200);
    expect(w.async ? await w.value : w.value).toBe("timed-out");
    expect(s.calls).toEqual([]);
  });
});

/** A mailbox served by a worker thread over a file in memory holding `contents`. */
async function workerServed(contents: Uint8Array, failFrom = Number.POSITIVE_INFINITY) {
  const layout = new MemoryLayout();
  const mailbox = layout.allocate("mailbox", MAILBOX, 4096);
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
    memory: layout.memory,
    mailbox,
    /** The requests served since the last report, and the file's bytes. */
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

describe("ChannelFile, the worker's end", () => {
  it("splits a write into requests of the mailbox's size, and sends an empty one as one request", async () => {
    const w = await workerServed(new Uint8Array(0));
    try {
      const data = Uint8Array.from({ length: 1300 }, (_, i) => (i * 7) & 0xff);
      w.file.write(data, 10);
      w.file.write(new Uint8Array(0), 5000);
      const { requests, contents } = await w.report();
      expect(requests).toEqual([
        ["write", 10, 512],
        ["write", 522, 512],
        ["write", 1034, 276],
        ["write", 5000, 0],
      ]);
      // The empty write still reaches the file, which a write past its end grows with zeros.
      expect(contents).toEqual([...new Uint8Array(10), ...data, ...new Uint8Array(5000 - 1310)]);
    } finally {
      await w.close();
    }
  });

  it("splits a read the same way and stops at the first short reply, saying how many bytes it read", async () => {
    const stored = Uint8Array.from({ length: 1000 }, (_, i) => (i * 3 + 1) & 0xff);
    const w = await workerServed(stored);
    try {
      const into = new Uint8Array(1500).fill(0xee);
      expect(w.file.read(into, 0)).toBe(1000);
      expect(into.subarray(0, 1000)).toEqual(stored);
      expect(into.subarray(1000)).toEqual(new Uint8Array(500).fill(0xee));
      const tail = new Uint8Array(2000);
      expect(w.file.read(tail, 600)).toBe(400);
      expect(tail.subarray(0, 400)).toEqual(stored.subarray(600));
      const exact = new Uint8Array(1024);
      expect(w.file.read(exact, 0)).toBe(1000);
      expect(w.file.read(new Uint8Array(0), 0)).toBe(0);
      expect((await w.report()).requests).toEqual([
        ["read", 0, 512],
        ["read", 512, 512],
        ["read", 600, 512],
        ["read", 0, 512],
        ["read", 512, 512],
      ]);
    } finally {
      await w.close();
    }
  });

  it("asks the size, truncates to a length and syncs, each one request", async () => {
    const w = await workerServed(new Uint8Array(700));
    try {
      expect(w.file.size()).toBe(700);
      w.file.truncate(300);
      w.file.sync();
      expect(w.file.size()).toBe(300);
      const { requests, contents } = await w.report();
      expect(requests).toEqual([["size"], ["truncate", 300], ["sync"], ["size"]]);
      expect(contents).toEqual([...new Uint8Array(300)]);
    } finally {
      await w.close();
    }
  });

  it("fails a call with the serving end's reason after its name, and the next call goes through", async () => {
    const w = await workerServed(new Uint8Array(0), 4096);
    try {
      expect(() => w.file.write(Uint8Array.of(1, 2), 4096)).toThrow(
        new ChannelError("volume file: no path to the target at byte 4096"),
      );
      w.file.write(Uint8Array.of(1, 2), 0);
      expect(w.file.size()).toBe(2);
      expect((await w.report()).requests).toEqual([["write", 4096, 2], ["write", 0, 2], ["size"]]);
    } finally {
      await w.close();
    }
  });

  it("refuses every call once closed, without a request", async () => {
    const w = await workerServed(new Uint8Array(10));
    try {
      w.file.close();
      const closed = new ChannelError("volume file is closed");
      expect(() => w.file.size()).toThrow(closed);
      expect(() => w.file.read(new Uint8Array(1), 0)).toThrow(closed);
      expect(() => w.file.write(new Uint8Array(1), 0)).toThrow(closed);
      expect(() => w.file.truncate(0)).toThrow(closed);
      expect(() => w.file.sync()).toThrow(closed);
      expect((await w.report()).requests).toEqual([]);
    } finally {
      await w.close();
    }
  });

  it("gives up on a request no one answers, naming the operation, the byte and the wait", () => {
    const layout = new MemoryLayout();
    const mailbox = layout.allocate("mailbox", MAILBOX, 4096);
    const file = new ChannelFile("volume file", layout.memory, mailbox, 50);
    expect(() => file.truncate(8192)).toThrow(
      new ChannelError(
        `volume file: no answer to request ${ChannelOp.truncate} at byte 8192 within 50 ms`,
      ),
    );
  });

  it("needs a mailbox of at least its header and 512 bytes of data", () => {
    const layout = new MemoryLayout();
    const small = layout.allocate("small mailbox", MAILBOX - 1, 4096);
    expect(() => new ChannelFile("volume file", layout.memory, small)).toThrow(
      "region 'small mailbox': channel mailbox at [0, 768) is past the end (767 bytes)",
    );
    const enough = layout.allocate("mailbox", MAILBOX, 4096);
    expect(() => new ChannelFile("volume file", layout.memory, enough)).not.toThrow();
  });
});
