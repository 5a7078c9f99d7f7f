import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import {
  BatchArgumentError,
  LunIoThread,
  type LunWrite,
  MAX_BATCH_WRITES,
} from "../src/csv/io-thread.js";
import { LunIoThreads } from "../src/csv/io-threads.js";
import { BoardPublisher } from "../src/csv/registration-board.js";
import { PersistentReservations, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { pageAlignedBytes } from "../src/storage/direct-file.js";
import { refusesPastMaxBytes } from "./support/file-size-limit.js";

// A node's I/O thread on a real LUN file and a real registration board: a
// batch of writes runs back to back there, fenced by the board, and comes
// back once. The thread runs the compiled worker (npm run build first).

const KEY = 0x11n;
const LUN_BYTES = 16 << 20;
const dir = mkdtempSync(join(tmpdir(), "hvlab-csv-iothread-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A LUN of zeros with node-1 registered under KEY and node-2 holding the reservation, published. */
class Cluster {
  private static count = 0;
  readonly lun = join(dir, `lun-${++Cluster.count}`);
  readonly board = `${this.lun}.registrations`;
  readonly reservations = new PersistentReservations();
  readonly publisher: BoardPublisher;

  constructor() {
    const fd = openSync(this.lun, "w");
    ftruncateSync(fd, LUN_BYTES);
    closeSync(fd);
    this.publisher = new BoardPublisher(this.board, LUN_BYTES);
    this.out("node-1", ServiceAction.register, 0n, KEY);
    this.out("node-2", ServiceAction.register, 0n, 0x99n);
    this.out("node-2", ServiceAction.reserve, 0x99n, 0n);
    this.publisher.publish(this.reservations);
  }

  out(who: string, action: number, key: bigint, serviceKey: bigint): void {
    const outcome = this.reservations.out(who, {
      action,
      type: ReservationType.writeExclusiveRegistrantsOnly,
      key,
      serviceKey,
    });
    expect(outcome).toEqual({ status: "good" });
  }

  /** node-2 preempts KEY, and the target publishes it before it answers. */
  preempt(): void {
    this.out("node-2", ServiceAction.preempt, 0x99n, KEY);
    this.publisher.publish(this.reservations);
  }

  bytes(): Buffer {
    return readFileSync(this.lun);
  }
}

const open: { cluster: Cluster; thread: LunIoThread | LunIoThreads }[] = [];
afterEach(async () => {
  for (const { cluster, thread } of open.splice(0)) {
    await thread.close();
    cluster.publisher.close(cluster.reservations);
  }
});

function start(): { cluster: Cluster; thread: LunIoThread } {
  const cluster = new Cluster();
  const thread = new LunIoThread(cluster.lun, cluster.board, false, LUN_BYTES);
  open.push({ cluster, thread });
  return { cluster, thread };
}

/** `count` writes of `bytes` each, back to back from LUN offset 0, write k filled with k + 1. */
function numbered(count: number, bytes: number, shared = true): LunWrite[] {
  return Array.from({ length: count }, (_, k) => {
    const data = shared ? pageAlignedBytes(bytes, true) : new Uint8Array(bytes);
    data.fill((k % 255) + 1);
    return { lunOffset: k * bytes, data };
  });
}

describe("a node's I/O thread", () => {
  it("writes a batch back to back, fenced, and answers once with every write acknowledged", async () => {
    const { cluster, thread } = start();
    // Shared memory goes as it is; ordinary memory is copied into shared memory once.
    const writes = [...numbered(3, 4096), ...numbered(3, 4096, false)].map((w, k) => ({
      lunOffset: k * 4096,
      data: w.data.fill(k + 1),
    }));
    const outcome = await thread.write(KEY, writes);
    expect(outcome).toEqual({ acknowledged: 6, boardReads: 7 });
    const lun = cluster.bytes();
    for (let k = 0; k < 6; k++)
      expect(lun.subarray(k * 4096, (k + 1) * 4096).every((b) => b === k + 1)).toBe(true);
    expect(lun.subarray(6 * 4096).every((b) => b === 0)).toBe(true);
  });

  it("refuses a whole batch, writing nothing, when the key was preempted before it", async () => {
    const { cluster, thread } = start();
    cluster.preempt();
    const outcome = await thread.write(KEY, numbered(4, 4096));
    expect(outcome).toEqual({
      acknowledged: 0,
      boardReads: 1,
      stop: {
        at: 0,
        status: "refused",
        cause: "conflict",
        reason: "key 0x11 is not registered (PRgeneration 3): the LUN is reserved",
      },
    });
    expect(cluster.bytes().every((b) => b === 0)).toBe(true);
  });

  it("a PREEMPT published while the batch runs: the rest refused, none acknowledged after it, nothing written after the write it came under", async () => {
    const { cluster, thread } = start();
    const count = 4096;
    const writes = numbered(count, 4096);
    const batch = thread.write(KEY, writes);
    // The event loop is free while the thread writes: watch its shared counter, then preempt.
    const deadline = performance.now() + 10_000;
    while (thread.acknowledgedSoFar < 3 && performance.now() < deadline) {
      /* spin: the thread writes meanwhile */
    }
    cluster.preempt();
    const outcome = await batch;
    expect(outcome.acknowledged).toBeGreaterThanOrEqual(3);
    expect(outcome.acknowledged).toBeLessThan(count);
    // The write the PREEMPT came under landed unacknowledged; the board read after it said so.
    expect(outcome.stop).toMatchObject({
      at: outcome.acknowledged,
      status: "unacknowledged",
      cause: "conflict",
    });
    const lun = cluster.bytes();
    for (let k = 0; k <= outcome.acknowledged; k++)
      expect(lun[k * 4096], `write ${k}`).toBe((k % 255) + 1);
    // Not one byte of any write after it.
    expect(lun.subarray((outcome.acknowledged + 1) * 4096).every((b) => b === 0)).toBe(true);
  });

  it("reports a write that fails: the ones before acknowledged, none after it issued", async () => {
    // /dev/full refuses every write with ENOSPC.
    const cluster = new Cluster();
    const thread = new LunIoThread("/dev/full", cluster.board, false, LUN_BYTES);
    open.push({ cluster, thread });
    const outcome = await thread.write(KEY, numbered(3, 4096));
    expect(outcome).toMatchObject({
      acknowledged: 0,
      stop: { at: 0, status: "failed", cause: "io", code: "ENOSPC" },
    });
  });

  it("stops before the next write once the node halts it, and writes again once resumed", async () => {
    const { cluster, thread } = start();
    thread.halt();
    const halted = await thread.write(KEY, numbered(2, 4096));
    expect(halted).toMatchObject({
      acknowledged: 0,
      stop: { at: 0, status: "refused", cause: "halted" },
    });
    expect(cluster.bytes().every((b) => b === 0)).toBe(true);
    thread.resume();
    await expect(thread.write(KEY, numbered(2, 4096))).resolves.toEqual({
      acknowledged: 2,
      boardReads: 3,
    });
  });

  it("refuses bad arguments before anything is issued, and keeps serving", async () => {
    const { cluster, thread } = start();
    const one = numbered(1, 4096);
    const bad: [unknown, unknown, string][] = [
      [KEY, [], "a batch holds 1 to 4096 writes, not 0"],
      [
        KEY,
        Array.from({ length: MAX_BATCH_WRITES + 1 }, () => one[0]),
        "a batch holds 1 to 4096 writes, not 4097",
      ],
      [KEY, "writes", "a batch holds 1 to 4096 writes, not string"],
      [
        KEY,
        [{ lunOffset: -4096, data: one[0]?.data }],
        "batch write 0: 4096 bytes at -4096 do not fit the LUN's 16777216 bytes",
      ],
      [
        KEY,
        [...one, { lunOffset: LUN_BYTES - 4095, data: one[0]?.data }],
        "batch write 1: 4096 bytes at 16773121 do not fit the LUN's 16777216 bytes",
      ],
      [
        KEY,
        [{ lunOffset: 0.5, data: one[0]?.data }],
        "batch write 0: 4096 bytes at 0.5 do not fit the LUN's 16777216 bytes",
      ],
      [
        KEY,
        [{ lunOffset: 0, data: [1, 2, 3] }],
        "batch write 0: data must be a Uint8Array of 1 byte or more",
      ],
      [
        KEY,
        [{ lunOffset: 0, data: new Uint8Array(0) }],
        "batch write 0: data must be a Uint8Array of 1 byte or more",
      ],
      [-1n, one, "batch key must be a 64-bit bigint, not -1"],
      [1n << 64n, one, "batch key must be a 64-bit bigint, not 18446744073709551616"],
      [17, one, "batch key must be a 64-bit bigint, not 17"],
    ];
    for (const [key, writes, message] of bad)
      await expect(thread.write(key as bigint, writes as LunWrite[])).rejects.toThrow(
        new BatchArgumentError(message),
      );
    expect(cluster.bytes().every((b) => b === 0)).toBe(true);
    await expect(thread.write(KEY, one)).resolves.toEqual({ acknowledged: 1, boardReads: 2 });
  });

  it("refuses batches once closed", async () => {
    const { thread } = start();
    await thread.close();
    await expect(thread.write(KEY, numbered(1, 4096))).rejects.toThrow("the I/O thread is closed");
  });
});

describe("a node's I/O threads", () => {
  function group(count: number, lun?: string): { cluster: Cluster; threads: LunIoThreads } {
    const cluster = new Cluster();
    const threads = new LunIoThreads(lun ?? cluster.lun, cluster.board, false, LUN_BYTES, count);
    open.push({ cluster, thread: threads });
    return { cluster, threads };
  }

  it("splits a batch into contiguous parts, one per thread, and acknowledges every write", async () => {
    const { cluster, threads } = group(4);
    const result = await threads.write(KEY, numbered(10, 4096));
    expect(result).toEqual({
      acknowledged: Array.from({ length: 10 }, () => true),
      stops: [],
      // Parts of 2, 3, 2 and 3 writes: one board read more than writes, each.
      boardReads: 14,
    });
    const lun = cluster.bytes();
    for (let k = 0; k < 10; k++)
      expect(lun.subarray(k * 4096, (k + 1) * 4096).every((b) => b === k + 1)).toBe(true);
  });

  it("a PREEMPT while the parts run: each part stops at the write it came under, nothing after it written, none acknowledged past it", async () => {
    const { cluster, threads } = group(4);
    const count = 4 * 1024;
    // The threads' word that their descriptors are open arrives as messages,
    // which the spin below would hold back: wait for it first.
    await threads.ready;
    const batch = threads.write(KEY, numbered(count, 4096));
    // The parts are sent once the batch's turn comes, in a microtask: let it run, then watch.
    await new Promise((r) => setImmediate(r));
    const deadline = performance.now() + 10_000;
    while (threads.acknowledgedSoFar < 8 && performance.now() < deadline) {
      /* spin: the threads write meanwhile */
    }
    cluster.preempt();
    const result = await batch;
    const lun = cluster.bytes();
    expect(result.acknowledged.filter(Boolean).length).toBeGreaterThanOrEqual(8);
    expect(result.acknowledged.filter(Boolean).length).toBeLessThan(count);
    expect(result.stops.length).toBe(4);
    // A part whose PREEMPT came under a write stopped with that write unacknowledged.
    expect(result.stops.some((s) => s.status === "unacknowledged")).toBe(true);
    for (let part = 0; part < 4; part++) {
      const from = part * 1024;
      const stop = result.stops[part];
      // The write the PREEMPT came under landed unacknowledged; or the part saw the stop before its next write.
      expect(stop?.at).toBeGreaterThanOrEqual(from);
      expect(["unacknowledged", "refused"]).toContain(stop?.status);
      const at = stop?.at as number;
      for (let k = from; k < at; k++) expect(result.acknowledged[k], `write ${k}`).toBe(true);
      for (let k = at; k < from + 1024; k++)
        expect(result.acknowledged[k], `write ${k}`).toBe(false);
      const firstUnwritten = stop?.status === "unacknowledged" ? at + 1 : at;
      for (let k = from; k < firstUnwritten; k++)
        expect(lun[k * 4096], `write ${k}`).toBe((k % 255) + 1);
      expect(
        lun.subarray(firstUnwritten * 4096, (from + 1024) * 4096).every((b) => b === 0),
        `part ${part} wrote past its stop`,
      ).toBe(true);
    }
  });

  it("a part that fails stops the others before their next write; nothing is acknowledged that did not land", async () => {
    // /dev/full refuses every write with ENOSPC.
    const { threads } = group(3, "/dev/full");
    const result = await threads.write(KEY, numbered(9, 4096));
    expect(result.acknowledged).toEqual(Array.from({ length: 9 }, () => false));
    expect(result.stops.map((s) => s.at)).toEqual([0, 3, 6]);
    expect(result.stops.some((s) => s.cause === "io" && s.code === "ENOSPC")).toBe(true);
    for (const s of result.stops)
      if (s.cause === "halted") expect(s.reason).toBe("another part of the batch stopped");
      else expect(s).toMatchObject({ status: "failed", code: "ENOSPC" });
  });

  it.skipIf(!refusesPastMaxBytes(dir))(
    "a part that fails midway stops the other parts before their next write, and they report what they acknowledged",
    async () => {
      // Part 1 writes past the largest file the file system holds (EFBIG); parts 0 and 2 write below.
      const far = 2 ** 52;
      const cluster = new Cluster();
      const threads = new LunIoThreads(cluster.lun, cluster.board, false, far + LUN_BYTES, 3);
      open.push({ cluster, thread: threads });
      // Every thread started and holding its descriptors before the batch that is timed.
      await threads.write(KEY, numbered(3, 4096));
      const per = 4000;
      const low = numbered(per, 4096);
      const high = low.map((w, k) => ({ lunOffset: far + k * 4096, data: w.data }));
      const again = low.map((w, k) => ({ lunOffset: (per + k) * 4096, data: w.data }));
      const result = await threads.write(KEY, [...low, ...high, ...again]);
      expect(result.stops[1]).toMatchObject({
        at: per,
        status: "failed",
        cause: "io",
        code: "EFBIG",
      });
      expect(result.acknowledged.slice(per, 2 * per).some(Boolean)).toBe(false);
      // The other parts stopped on the stop word, long before their ends.
      for (const [part, stop] of [result.stops[0], result.stops[2]].entries()) {
        expect(stop, `part ${2 * part}`).toMatchObject({
          cause: "halted",
          reason: "another part of the batch stopped",
        });
        const from = 2 * part * per;
        const acked = result.acknowledged.slice(from, from + per).filter(Boolean).length;
        expect(stop?.at).toBe(from + acked);
        expect(acked).toBeLessThan(per);
      }
      // What they acknowledged landed; nothing after their stops.
      const lun = cluster.bytes();
      for (const [k, ok] of result.acknowledged.entries()) {
        if (k >= per && k < 2 * per) continue;
        const at = (k < per ? k : k - per) * 4096;
        if (ok) expect(lun[at], `write ${k}`).toBe(((k % per) % 255) + 1);
      }
    },
  );

  it("refuses bad arguments before any part is issued", async () => {
    const { cluster, threads } = group(2);
    const good = numbered(3, 4096);
    await expect(
      threads.write(KEY, [...good, { lunOffset: LUN_BYTES, data: good[0]?.data as Uint8Array }]),
    ).rejects.toThrow(
      new BatchArgumentError(
        "batch write 3: 4096 bytes at 16777216 do not fit the LUN's 16777216 bytes",
      ),
    );
    await expect(threads.write(KEY, [])).rejects.toThrow(
      new BatchArgumentError("a batch holds 1 or more writes, not 0"),
    );
    expect(cluster.bytes().every((b) => b === 0)).toBe(true);
    expect(() => new LunIoThreads(cluster.lun, cluster.board, false, LUN_BYTES, 0)).toThrow(
      new RangeError("I/O threads must be a whole number from 1 to 64, not 0"),
    );
  });
});
