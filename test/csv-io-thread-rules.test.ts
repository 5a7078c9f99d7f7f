import { join } from "node:path";
import type { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it } from "vitest";
import {
  BatchArgumentError,
  controlWords,
  type IoThreadRequest,
  LunIoThread,
  type LunWrite,
  MAX_BATCH_WRITES,
  packBatch,
} from "../src/csv/io-thread.js";
import { LunIoThreads } from "../src/csv/io-threads.js";
import { pageAlignedBytes } from "../src/storage/direct-file.js";
import { ReservedLun, sectorWrites } from "./support/csv-reserved-lun.js";
import { descriptorsOn } from "./support/descriptors.js";
import { refusesPastMaxBytes } from "./support/file-size-limit.js";
import { fileTempDir } from "./support/temp.js";

// The rules of a node's I/O threads that run on the node's own thread:
// how a batch's arguments are checked and laid out for the thread (shared
// memory passed as it is, the rest copied once into one page-aligned shared
// buffer, as O_DIRECT wants a request's memory aligned: open(2), "O_DIRECT"),
// the control words the node shares with its threads, how the class that
// drives a thread decodes its replies and its end, and how a group splits a
// batch into contiguous parts and puts their outcomes back in the batch's
// order. The fencing itself runs in the thread (fenced-batch.ts, tested on
// its own); here it is seen only through the outcomes the threads return.
// The threads run the compiled worker (npm run build first).

const KEY = 0x21n;
/** A key the board does not list: the LUN refuses its writes. */
const STRANGER = 0x31n;
const LUN_BYTES = 1 << 20;
const dir = fileTempDir("csv-io-thread-rules");

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let luns = 0;
/** A zeroed LUN of LUN_BYTES with KEY registered, closed after the test. */
function reservedLun(): ReservedLun {
  const lun = new ReservedLun(join(dir, `lun-${++luns}`), LUN_BYTES, KEY);
  cleanups.push(() => lun.close());
  return lun;
}

/** A thread on `lun` (buffered), closed after the test. */
function threadOn(lun: ReservedLun, control?: Int32Array, slot?: number): LunIoThread {
  const thread = new LunIoThread(lun.path, lun.board, false, lun.bytes, control, slot);
  cleanups.push(() => thread.close());
  return thread;
}

/** `count` threads on `lun` (buffered), closed after the test. */
function groupOn(lun: ReservedLun, count: number, lunBytes = lun.bytes): LunIoThreads {
  const threads = new LunIoThreads(lun.path, lun.board, false, lunBytes, count);
  cleanups.push(() => threads.close());
  return threads;
}

/** What `run` throws. */
function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  throw new Error("nothing was thrown");
}

/** What `promise` rejects with. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("the promise was fulfilled");
}

/** The BatchArgumentError `run` throws, as name and message. */
function argumentError(run: () => unknown): { name: string; message: string } {
  const error = thrown(run);
  expect(error).toBeInstanceOf(BatchArgumentError);
  return { name: error.name, message: error.message };
}

const refused = (message: string) => ({ name: "BatchArgumentError", message });

describe("a batch's arguments, checked before anything is issued", () => {
  const one = (): LunWrite[] => [{ lunOffset: 0, data: new Uint8Array(8) }];

  it("is refused with a BatchArgumentError, a RangeError that says its name", () => {
    const error = new BatchArgumentError("batch write 3: why");
    expect(error).toBeInstanceOf(RangeError);
    expect(String(error)).toBe("BatchArgumentError: batch write 3: why");
  });

  it("takes a key from 0 to 2^64 - 1 as a bigint, and nothing else", () => {
    expect(() => packBatch(0n, one(), LUN_BYTES)).not.toThrow();
    expect(() => packBatch(2n ** 64n - 1n, one(), LUN_BYTES)).not.toThrow();
    expect(argumentError(() => packBatch(-1n, one(), LUN_BYTES))).toEqual(
      refused("batch key must be a 64-bit bigint, not -1"),
    );
    expect(argumentError(() => packBatch(2n ** 64n, one(), LUN_BYTES))).toEqual(
      refused("batch key must be a 64-bit bigint, not 18446744073709551616"),
    );
    // A number compares with bigints as its value does: only its type refuses it.
    expect(argumentError(() => packBatch(17 as unknown as bigint, one(), LUN_BYTES))).toEqual(
      refused("batch key must be a 64-bit bigint, not 17"),
    );
    // The key is checked first: a bad key with no writes names the key.
    expect(argumentError(() => packBatch(-1n, [], LUN_BYTES))).toEqual(
      refused("batch key must be a 64-bit bigint, not -1"),
    );
  });

  it(`holds 1 to ${MAX_BATCH_WRITES} writes`, () => {
    expect(MAX_BATCH_WRITES).toBe(4096);
    const byte = (k: number): LunWrite => ({ lunOffset: k, data: Uint8Array.of(k & 0xff) });
    const full = Array.from({ length: 4096 }, (_, k) => byte(k));
    expect(packBatch(KEY, full, LUN_BYTES).table.length).toBe(4 * 4096);
    expect(argumentError(() => packBatch(KEY, [...full, byte(4096)], LUN_BYTES))).toEqual(
      refused("a batch holds 1 to 4096 writes, not 4097"),
    );
    expect(argumentError(() => packBatch(KEY, [], LUN_BYTES))).toEqual(
      refused("a batch holds 1 to 4096 writes, not 0"),
    );
    expect(
      argumentError(() => packBatch(KEY, "writes" as unknown as LunWrite[], LUN_BYTES)),
    ).toEqual(refused("a batch holds 1 to 4096 writes, not string"));
    expect(
      argumentError(() => packBatch(KEY, undefined as unknown as LunWrite[], LUN_BYTES)),
    ).toEqual(refused("a batch holds 1 to 4096 writes, not undefined"));
  });

  it("takes for each write's data a Uint8Array of 1 byte or more, naming the first write that is not", () => {
    const good: LunWrite = { lunOffset: 0, data: Uint8Array.of(1) };
    expect(() =>
      packBatch(KEY, [good, { lunOffset: 1, data: Buffer.of(2) }], LUN_BYTES),
    ).not.toThrow();
    const bad = (data: unknown): LunWrite => ({ lunOffset: 8, data: data as Uint8Array });
    const dataError = (i: number) =>
      refused(`batch write ${i}: data must be a Uint8Array of 1 byte or more`);
    expect(argumentError(() => packBatch(KEY, [bad(new Uint8Array(0))], LUN_BYTES))).toEqual(
      dataError(0),
    );
    expect(argumentError(() => packBatch(KEY, [good, bad([1, 2, 3])], LUN_BYTES))).toEqual(
      dataError(1),
    );
    expect(
      argumentError(() =>
        packBatch(KEY, [good, good, bad(new DataView(new ArrayBuffer(8)))], LUN_BYTES),
      ),
    ).toEqual(dataError(2));
    // No write at all in its place.
    expect(
      argumentError(() => packBatch(KEY, [good, null as unknown as LunWrite], LUN_BYTES)),
    ).toEqual(dataError(1));
    // The first bad write is named, whatever is wrong with the ones after it.
    expect(
      argumentError(() =>
        packBatch(
          KEY,
          [good, bad(new Uint8Array(0)), { lunOffset: -1, data: Uint8Array.of(1) }],
          LUN_BYTES,
        ),
      ),
    ).toEqual(dataError(1));
  });

  it("takes for each write a whole LUN offset from 0 whose bytes end at the LUN's end or before", () => {
    const eight = (lunOffset: number): LunWrite => ({ lunOffset, data: new Uint8Array(8) });
    // Its last byte the LUN's last byte.
    expect(packBatch(KEY, [eight(LUN_BYTES - 8)], LUN_BYTES).table[3]).toBe(LUN_BYTES - 8);
    const fitError = (i: number, at: string) =>
      refused(`batch write ${i}: 8 bytes at ${at} do not fit the LUN's 1048576 bytes`);
    expect(argumentError(() => packBatch(KEY, [eight(LUN_BYTES - 7)], LUN_BYTES))).toEqual(
      fitError(0, "1048569"),
    );
    expect(argumentError(() => packBatch(KEY, [eight(0), eight(-1)], LUN_BYTES))).toEqual(
      fitError(1, "-1"),
    );
    expect(argumentError(() => packBatch(KEY, [eight(0.5)], LUN_BYTES))).toEqual(
      fitError(0, "0.5"),
    );
    expect(argumentError(() => packBatch(KEY, [eight(Number.NaN)], LUN_BYTES))).toEqual(
      fitError(0, "NaN"),
    );
    expect(
      argumentError(() => packBatch(KEY, [eight(0), eight(8), eight(LUN_BYTES)], LUN_BYTES)),
    ).toEqual(fitError(2, "1048576"));
  });

  it("is the same check as a thread's, without a thread: LunIoThread.check", () => {
    expect(LunIoThread.check(KEY, one(), LUN_BYTES)).toBeUndefined();
    expect(argumentError(() => LunIoThread.check(KEY, one(), 7))).toEqual(
      refused("batch write 0: 8 bytes at 0 do not fit the LUN's 7 bytes"),
    );
  });
});

describe("a batch laid out for its thread", () => {
  it("passes shared memory as it is and copies the rest, in order, into one page-aligned shared buffer", () => {
    const wasm = pageAlignedBytes(8192, true);
    const small = new SharedArrayBuffer(100);
    const writes: LunWrite[] = [
      { lunOffset: 100, data: Uint8Array.of(1, 2, 3) },
      { lunOffset: 0, data: wasm.subarray(4096, 4106).fill(0xaa) },
      // A Buffer from Node's pool: ordinary memory at an offset into it.
      { lunOffset: 200, data: Buffer.of(4, 5) },
      { lunOffset: 300, data: new Uint8Array(small, 50, 5).fill(0xbb) },
      { lunOffset: 400, data: wasm.subarray(0, 7).fill(0xcc) },
      { lunOffset: 500, data: Uint8Array.of(0, 0, 6, 7, 8, 9, 0).subarray(2, 6) },
    ];
    const { buffers, table } = packBatch(KEY, writes, LUN_BYTES);
    // Buffers numbered as the batch first names them: the copies' first (write 0), then each shared buffer once.
    expect(buffers).toHaveLength(3);
    const [copies, first, second] = buffers as [Uint8Array, Uint8Array, Uint8Array];
    expect([...copies]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(copies.buffer).toBeInstanceOf(SharedArrayBuffer);
    // Memory of its own from WebAssembly's page allocator: one 64 KiB page, from its start.
    expect(copies.byteOffset).toBe(0);
    expect(copies.buffer.byteLength).toBe(65536);
    expect(first.buffer).toBe(wasm.buffer);
    expect([first.byteOffset, first.length]).toEqual([0, 65536]);
    expect(second.buffer).toBe(small);
    expect([second.byteOffset, second.length]).toEqual([0, 100]);
    // Buffer, buffer offset, length and LUN offset of each write.
    expect([...table]).toEqual(
      [
        [0, 0, 3, 100],
        [1, 4096, 10, 0],
        [0, 3, 2, 200],
        [2, 50, 5, 300],
        [1, 0, 7, 400],
        [0, 5, 4, 500],
      ].flat(),
    );
    // Copied once, at packing: later changes to the caller's ordinary memory do not reach the thread; its shared memory is the thread's.
    (writes[0] as LunWrite).data.fill(0xee);
    wasm[4096] = 0x11;
    expect(copies[0]).toBe(1);
    expect(first[4096]).toBe(0x11);
  });

  it("copies nothing when every write is in shared memory", () => {
    const memory = new SharedArrayBuffer(64);
    const { buffers, table } = packBatch(
      KEY,
      [
        { lunOffset: 0, data: new Uint8Array(memory, 8, 8) },
        { lunOffset: 8, data: new Uint8Array(memory, 0, 8) },
      ],
      LUN_BYTES,
    );
    expect(buffers).toHaveLength(1);
    expect(buffers[0]?.buffer).toBe(memory);
    expect([...table]).toEqual([0, 8, 8, 0, 0, 0, 8, 8]);
  });
});

describe("the control words a node shares with its I/O threads", () => {
  it("are the halt word, the stop word and one acknowledgement count per thread, in shared memory, all zero", () => {
    for (const threads of [1, 3, 64]) {
      const words = controlWords(threads);
      expect(words.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(words.length).toBe(2 + threads);
      expect(words.buffer.byteLength).toBe(4 * (2 + threads));
      expect(words.every((w) => w === 0)).toBe(true);
    }
  });

  it("a thread raises and lowers the halt word for halt and resume, and counts acknowledgements in its own slot", async () => {
    const lun = reservedLun();
    const words = controlWords(3);
    const thread = threadOn(lun, words, 4);
    thread.halt();
    expect([...words]).toEqual([1, 0, 0, 0, 0]);
    thread.resume();
    expect([...words]).toEqual([0, 0, 0, 0, 0]);
    // What the node reads is its own slot's count, not another thread's.
    words[2] = 5;
    words[4] = 9;
    expect(thread.acknowledgedSoFar).toBe(9);
    words.fill(0);
    const writes = sectorWrites(3, 1);
    await expect(thread.write(KEY, writes)).resolves.toEqual({ acknowledged: 3, boardReads: 4 });
    expect([...words]).toEqual([0, 0, 0, 0, 3]);
    expect(lun.holds(writes)).toEqual([true, true, true]);
  });

  it("a thread given no control words has words of its own, and counts its acknowledgements there", async () => {
    const lun = reservedLun();
    const thread = threadOn(lun);
    await expect(thread.write(KEY, sectorWrites(2, 1))).resolves.toEqual({
      acknowledged: 2,
      boardReads: 3,
    });
    expect(thread.acknowledgedSoFar).toBe(2);
  });
});

/**
 * The thread's Worker. A thread built from this project's worker answers
 * with an error only for a request it cannot run, and ends only when told
 * to: a test that needs either speaks to the Worker itself, as a faulty or
 * dying thread would, to see what the class makes of it.
 */
function workerOf(thread: LunIoThread): Worker {
  return (thread as unknown as { worker: Worker }).worker;
}

/** Message ports keeping this process alive: a Worker kept referenced counts as one. */
const alivePorts = () => process.getActiveResourcesInfo().filter((r) => r === "MessagePort").length;

describe("a node's I/O thread, as the node sees it", () => {
  it("keeps the node's process alive while a batch is in hand, and not while idle", async () => {
    const lun = reservedLun();
    const thread = threadOn(lun);
    await thread.write(KEY, sectorWrites(1, 1));
    const idle = alivePorts();
    const first = thread.write(KEY, sectorWrites(1, 2));
    const second = thread.write(KEY, sectorWrites(200, 3));
    expect(alivePorts()).toBe(idle + 1);
    await expect(first).resolves.toEqual({ acknowledged: 1, boardReads: 2 });
    // One batch still in hand.
    expect(alivePorts()).toBe(idle + 1);
    await expect(second).resolves.toEqual({ acknowledged: 200, boardReads: 201 });
    expect(alivePorts()).toBe(idle);
  });

  it("rejects a batch the thread could not run with the thread's word for why, and keeps serving", async () => {
    const lun = reservedLun();
    const thread = threadOn(lun);
    await thread.ready;
    const worker = workerOf(thread);
    const post = worker.postMessage.bind(worker);
    // A request naming a buffer the batch does not carry: the thread cannot run it.
    worker.postMessage = (request: IoThreadRequest) => {
      worker.postMessage = post;
      post({ ...request, table: Float64Array.of(7, 0, 1, 0) });
    };
    const error = await rejection(thread.write(KEY, sectorWrites(1, 1)));
    expect(error.message).toBe(
      "I/O thread: Cannot read properties of undefined (reading 'subarray')",
    );
    expect(lun.contents().every((b) => b === 0)).toBe(true);
    const writes = sectorWrites(2, 5);
    await expect(thread.write(KEY, writes)).resolves.toEqual({ acknowledged: 2, boardReads: 3 });
    expect(lun.holds(writes)).toEqual([true, true]);
  });

  it("ignores a reply for a batch no longer in hand", async () => {
    const lun = reservedLun();
    const thread = threadOn(lun);
    const worker = workerOf(thread);
    const post = worker.postMessage.bind(worker);
    // The same request twice: the thread answers it twice, and the second answer has no batch.
    worker.postMessage = (request: IoThreadRequest) => {
      worker.postMessage = post;
      post(request);
      post(request);
    };
    // What the node's handling of a reply throws, kept here rather than ending the process.
    const thrownByReplies: unknown[] = [];
    const emit = worker.emit.bind(worker);
    worker.emit = (event: string | symbol, ...args: unknown[]) => {
      try {
        return emit(event, ...args);
      } catch (error) {
        thrownByReplies.push(error);
        return true;
      }
    };
    await expect(thread.write(KEY, sectorWrites(1, 1))).resolves.toEqual({
      acknowledged: 1,
      boardReads: 2,
    });
    // Answered after the second answer to the first.
    await expect(thread.write(KEY, sectorWrites(1, 2, 512))).resolves.toEqual({
      acknowledged: 1,
      boardReads: 2,
    });
    expect(thrownByReplies).toEqual([]);
  });

  it("a thread that ends on its own: the batch in hand and every later one rejected, saying it exited", async () => {
    const lun = reservedLun();
    const thread = threadOn(lun);
    await thread.ready;
    // As a thread that ends with its work unanswered.
    workerOf(thread).postMessage("close");
    const exited = "the I/O thread exited (code 0)";
    expect((await rejection(thread.write(KEY, sectorWrites(1, 1)))).message).toBe(exited);
    expect((await rejection(thread.write(KEY, sectorWrites(1, 1)))).message).toBe(exited);
    // Closing a thread that has ended settles at once.
    await thread.close();
    expect(lun.contents().every((b) => b === 0)).toBe(true);
  });

  it("a thread that cannot open the LUN: `ready` and every batch rejected with its error, which stays its error once it has ended", async () => {
    const lun = reservedLun();
    const missing = join(dir, "no-such-lun");
    const thread = new LunIoThread(missing, lun.board, false, LUN_BYTES);
    const why = `ENOENT: no such file or directory, open '${missing}'`;
    expect((await rejection(thread.ready)).message).toBe(why);
    // Closed, its worker has exited: the first error is still the one given.
    await thread.close();
    expect((await rejection(thread.write(KEY, sectorWrites(1, 1)))).message).toBe(why);
  });

  it("a thread that cannot open the LUN and is never asked whether it is ready leaves no rejection unhandled", async () => {
    const unhandled: unknown[] = [];
    const seen = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", seen);
    try {
      const lun = reservedLun();
      const thread = new LunIoThread(join(dir, "no-such-lun"), lun.board, false, LUN_BYTES);
      // A batch in hand when it fails is rejected with the thread's error.
      expect((await rejection(thread.write(KEY, sectorWrites(1, 1)))).message).toMatch(/^ENOENT: /);
      await thread.close();
      // Node reports a rejection nobody handled once the microtasks of its turn have run.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("unhandledRejection", seen);
    }
    expect(unhandled).toEqual([]);
  });

  it("close raises the halt word, rejects the batch in hand and every later one; a bad batch is still refused for its arguments", async () => {
    const lun = reservedLun();
    const words = controlWords(1);
    const thread = threadOn(lun, words, 2);
    await thread.ready;
    const inHand = thread.write(KEY, sectorWrites(1000, 1));
    const closing = thread.close();
    expect(words[0]).toBe(1);
    const closed = "the I/O thread is closed";
    expect((await rejection(inHand)).message).toBe(closed);
    await closing;
    // Closed twice: settles as well.
    await thread.close();
    expect((await rejection(thread.write(KEY, sectorWrites(1, 1)))).message).toBe(closed);
    const bad = await rejection(thread.write(KEY, []));
    expect(bad).toBeInstanceOf(BatchArgumentError);
    expect(bad.message).toBe("a batch holds 1 to 4096 writes, not 0");
    // Its descriptors of the LUN closed with it.
    expect(descriptorsOn(lun.path)).toBe(0);
  });
});

describe("a node's I/O threads (a group)", () => {
  it("takes 1 to 64 threads, a whole number", () => {
    const lun = reservedLun();
    for (const count of [0, 65, 1.5, Number.NaN])
      expect(thrown(() => new LunIoThreads(lun.path, lun.board, false, LUN_BYTES, count))).toEqual(
        new RangeError(`I/O threads must be a whole number from 1 to 64, not ${count}`),
      );
    expect(groupOn(lun, 1).size).toBe(1);
  });

  it("runs 64 threads, one write each", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 64);
    expect(threads.size).toBe(64);
    const writes = sectorWrites(64, 1);
    const result = await threads.write(KEY, writes);
    // One part per thread, of one write: two board reads each.
    expect(result).toEqual({
      acknowledged: Array.from({ length: 64 }, () => true),
      stops: [],
      boardReads: 128,
    });
    expect(threads.acknowledgedSoFar).toBe(64);
    expect(lun.holds(writes).every(Boolean)).toBe(true);
    // The count is the batch's: the next, of one write, counts 1, not the threads it left idle.
    await threads.write(KEY, sectorWrites(1, 2, 64 * 512));
    expect(threads.acknowledgedSoFar).toBe(1);
  });

  it("splits a batch into contiguous parts, one per thread, the longer parts where the division rounds up", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 4);
    const writes = sectorWrites(10, 1);
    // Parts 0..2, 2..5, 5..7 and 7..10: one board read more than writes, each.
    await expect(threads.write(KEY, writes)).resolves.toEqual({
      acknowledged: Array.from({ length: 10 }, () => true),
      stops: [],
      boardReads: 14,
    });
    expect(threads.acknowledgedSoFar).toBe(10);
    expect(lun.holds(writes).every(Boolean)).toBe(true);
    // Refused from the first write of each part: where each part begins.
    lun.preempt(KEY);
    const result = await threads.write(KEY, sectorWrites(10, 20));
    expect(result.acknowledged).toEqual(Array.from({ length: 10 }, () => false));
    expect(result.stops.map((s) => [s.at, s.status])).toEqual([
      [0, "refused"],
      [2, "refused"],
      [5, "refused"],
      [7, "refused"],
    ]);
    expect(result.boardReads).toBe(4);
    expect(lun.holds(writes).every(Boolean)).toBe(true);
  });

  it("uses no more threads than the batch has writes", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 4);
    const writes = sectorWrites(3, 1);
    await expect(threads.write(KEY, writes)).resolves.toEqual({
      acknowledged: [true, true, true],
      stops: [],
      boardReads: 6,
    });
    expect(threads.acknowledgedSoFar).toBe(3);
    expect(lun.holds(writes)).toEqual([true, true, true]);
  });

  it.skipIf(!refusesPastMaxBytes(dir))(
    "puts a part's outcome back at its writes' places in the batch: acknowledged up to its stop, the stop at its index",
    async () => {
      // A write past the largest file the file system holds fails (EFBIG); the others land.
      const far = 2 ** 52;
      const lun = reservedLun();
      const threads = groupOn(lun, 1, far + LUN_BYTES);
      const writes = sectorWrites(4, 1);
      const failing = { lunOffset: far, data: (writes[2] as LunWrite).data };
      const result = await threads.write(KEY, [
        writes[0] as LunWrite,
        writes[1] as LunWrite,
        failing,
        writes[3] as LunWrite,
      ]);
      expect(result).toEqual({
        acknowledged: [true, true, false, false],
        stops: [
          {
            at: 2,
            status: "failed",
            cause: "io",
            code: "EFBIG",
            reason: "EFBIG: file too large, write",
          },
        ],
        boardReads: 3,
      });
      expect(lun.holds(writes)).toEqual([true, true, false, false]);
    },
  );

  it("checks every part before it sends any: a bad write issues nothing on any thread", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    const writes = sectorWrites(4, 1);
    // The bad write is the second thread's part's second: named by its place in the batch.
    const bad = [...writes.slice(0, 3), { lunOffset: 3 * 512, data: new Uint8Array(0) }];
    const error = await rejection(threads.write(KEY, bad));
    expect(error).toBeInstanceOf(BatchArgumentError);
    expect(error.message).toBe("batch write 3: data must be a Uint8Array of 1 byte or more");
    // Each thread runs what it is sent in order: once this batch is done, anything sent before it has landed.
    const later = sectorWrites(2, 9, 8192);
    await expect(threads.write(KEY, later)).resolves.toEqual({
      acknowledged: [true, true],
      stops: [],
      boardReads: 4,
    });
    expect(lun.holds(later)).toEqual([true, true]);
    expect(
      lun
        .contents()
        .subarray(0, 8192)
        .every((b) => b === 0),
    ).toBe(true);
  });

  // Each thread takes up to MAX_BATCH_WRITES of a batch: the group, that many for each of its parts.
  it("takes as many writes as its threads take together, and refuses one more", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    const error = await rejection(threads.write(KEY, sectorWrites(2 * 4096 + 1, 1)));
    expect(error).toBeInstanceOf(BatchArgumentError);
    expect(error.message).toBe("a batch holds 1 to 8192 writes, not 8193");
    // The LUN holds 2,048 sectors: the writes past them go round to its start again.
    const writes = sectorWrites(4097, 1).map((w, k) => ({ ...w, lunOffset: (k % 2048) * 512 }));
    const result = await threads.write(KEY, writes);
    expect(result.acknowledged.every(Boolean)).toBe(true);
    expect(result.acknowledged.length).toBe(4097);
  });

  it("refuses a batch that is not a list of writes, or is empty, before any thread is asked", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    for (const [writes, message] of [
      [[], "a batch holds 1 or more writes, not 0"],
      ["writes", "a batch holds 1 or more writes, not string"],
      [undefined, "a batch holds 1 or more writes, not undefined"],
    ] as const) {
      const error = await rejection(threads.write(KEY, writes as unknown as LunWrite[]));
      expect(error).toBeInstanceOf(BatchArgumentError);
      expect(error.message).toBe(message);
    }
  });

  it("runs batches one at a time, in order, a refused batch not holding up the next", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    // Each batch's second part writes where the other's first part does.
    const before = sectorWrites(2, 1);
    const after = sectorWrites(2, 7).reverse();
    const first = threads.write(KEY, before);
    const refusedBatch = threads.write(KEY, []);
    const second = threads.write(KEY, after);
    await expect(first).resolves.toMatchObject({ acknowledged: [true, true] });
    expect(await rejection(refusedBatch)).toBeInstanceOf(BatchArgumentError);
    await expect(second).resolves.toMatchObject({ acknowledged: [true, true] });
    expect(lun.holds(after)).toEqual([true, true]);
  });

  it("a batch's stop word is its own: the batch after one that stopped runs whole", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    const stranger = await threads.write(STRANGER, sectorWrites(4, 1));
    expect(stranger.acknowledged).toEqual([false, false, false, false]);
    expect(stranger.stops.map((s) => s.at)).toEqual([0, 2]);
    const writes = sectorWrites(4, 5);
    await expect(threads.write(KEY, writes)).resolves.toEqual({
      acknowledged: [true, true, true, true],
      stops: [],
      boardReads: 6,
    });
    expect(lun.holds(writes)).toEqual([true, true, true, true]);
  });

  it("halted, refuses every part's first write until resumed", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 2);
    threads.halt();
    const halted = await threads.write(KEY, sectorWrites(4, 1));
    const stop = (at: number) => ({
      at,
      status: "refused",
      cause: "halted",
      reason: "the node halted its direct writes",
    });
    expect(halted).toEqual({
      acknowledged: [false, false, false, false],
      stops: [stop(0), stop(2)],
      boardReads: 2,
    });
    expect(lun.contents().every((b) => b === 0)).toBe(true);
    threads.resume();
    const writes = sectorWrites(4, 5);
    await expect(threads.write(KEY, writes)).resolves.toMatchObject({
      acknowledged: [true, true, true, true],
      stops: [],
    });
    expect(lun.holds(writes)).toEqual([true, true, true, true]);
  });

  it("closed, every thread has closed its descriptors and a batch is refused", async () => {
    const lun = reservedLun();
    const threads = groupOn(lun, 3);
    await threads.write(KEY, sectorWrites(3, 1));
    expect(descriptorsOn(lun.path)).toBe(3);
    await threads.close();
    expect(descriptorsOn(lun.path)).toBe(0);
    expect((await rejection(threads.write(KEY, sectorWrites(3, 1)))).message).toBe(
      "the I/O thread is closed",
    );
  });
});
