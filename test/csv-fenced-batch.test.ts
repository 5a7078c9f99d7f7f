import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type BatchIo, type BatchWrite, runFencedBatch } from "../src/csv/fenced-batch.js";
import { type Board, BoardState } from "../src/csv/registration-board.js";
import { ReservationType } from "../src/csv/reservations.js";

// A batch of a node's direct writes on its I/O thread: each write checked
// against the registration board before its bytes go out, acknowledged only
// on a board read that began after it landed, one read serving as one
// write's after-check and the next one's before-check; the batch stops at
// the first write not acknowledged and issues none after it.

const KEY = 0x11n;
const board = (keys: bigint[]): Board => ({
  state: BoardState.online,
  prGeneration: keys.length,
  sequence: 1,
  lunBytes: 1 << 20,
  type: ReservationType.writeExclusiveRegistrantsOnly,
  holderKey: 0x99n,
  keys,
});
const registered = board([KEY, 0x99n]);
const preempted = board([0x99n]);

/** `n` writes of 4 bytes each, write k at LUN offset 4k from buffer offset 4k. */
function writes(n: number): BatchWrite[] {
  return Array.from({ length: n }, (_, k) => ({
    buffer: 0,
    bufferOffset: 4 * k,
    length: 4,
    lunOffset: 4 * k,
  }));
}

type Step = { op: "read"; preempted: boolean } | { op: "write"; at: number };

/**
 * A thread whose board is preempted at step `preemptAt` of its run (every
 * board read and every pwrite is a step; the PREEMPT lands just before the
 * step of that number), recording every step; `failAt` makes that write's
 * pwrite throw EIO after writing 2 of its bytes.
 */
function thread(preemptAt: number, failAt = -1) {
  const steps: Step[] = [];
  const landed: number[] = [];
  const counted: number[] = [];
  const lun = new Uint8Array(1 << 12);
  const io: BatchIo = {
    readBoard: () => {
      const isPreempted = steps.length >= preemptAt;
      steps.push({ op: "read", preempted: isPreempted });
      return isPreempted ? preempted : registered;
    },
    pwrite: (data, at) => {
      const k = at / 4;
      steps.push({ op: "write", at: k });
      if (k === failAt) {
        lun.set(data.subarray(0, 2), at);
        throw Object.assign(new Error("EIO: i/o error, write"), { code: "EIO", bytesWritten: 2 });
      }
      lun.set(data, at);
      landed.push(k);
    },
    acknowledged: (n) => counted.push(n),
  };
  return { io, steps, landed, counted, lun };
}

const data = Uint8Array.from({ length: 64 }, (_, i) => i + 1);

describe("a fenced batch", () => {
  it("writes every write in order, acknowledges them all, and reads the board once per write and once more", () => {
    const t = thread(Number.POSITIVE_INFINITY);
    const outcome = runFencedBatch(t.io, KEY, [data], writes(5));
    expect(outcome).toEqual({ acknowledged: 5, boardReads: 6 });
    expect(t.steps.map((s) => s.op)).toEqual([
      "read",
      "write",
      "read",
      "write",
      "read",
      "write",
      "read",
      "write",
      "read",
      "write",
      "read",
    ]);
    expect(t.landed).toEqual([0, 1, 2, 3, 4]);
    expect(t.counted).toEqual([1, 2, 3, 4, 5]);
    expect(t.lun.subarray(0, 20)).toEqual(data.subarray(0, 20));
  });

  it("does not acknowledge a write the key was preempted under, and issues none after it", () => {
    // Steps: read 0, write 0, read 1, write 1, read 2 ...: preempted while write 1 ran.
    const t = thread(4);
    const outcome = runFencedBatch(t.io, KEY, [data], writes(5));
    expect(outcome.acknowledged).toBe(1);
    expect(outcome.stop).toEqual({
      at: 1,
      status: "unacknowledged",
      cause: "conflict",
      reason:
        "key 0x11 is not registered (PRgeneration 1): the LUN is reserved; the key was preempted while the write ran, so it is not acknowledged",
    });
    // Write 1's bytes landed (a fence cannot take them back); none after it went out.
    expect(t.landed).toEqual([0, 1]);
    expect(t.counted).toEqual([1]);
    expect(t.lun.subarray(8, 20).every((b) => b === 0)).toBe(true);
  });

  it("refuses every write of a batch whose key is preempted before its first", () => {
    const t = thread(0);
    const outcome = runFencedBatch(t.io, KEY, [data], writes(3));
    expect(outcome).toEqual({
      acknowledged: 0,
      boardReads: 1,
      stop: {
        at: 0,
        status: "refused",
        cause: "conflict",
        reason: "key 0x11 is not registered (PRgeneration 1): the LUN is reserved",
      },
    });
    expect(t.landed).toEqual([]);
  });

  it("stops at a write whose pwrite fails: the ones before acknowledged, its part reported, none after issued", () => {
    const t = thread(Number.POSITIVE_INFINITY, 2);
    const outcome = runFencedBatch(t.io, KEY, [data], writes(5));
    expect(outcome).toEqual({
      acknowledged: 2,
      boardReads: 3,
      stop: {
        at: 2,
        status: "failed",
        cause: "io",
        reason: "EIO: i/o error, write",
        code: "EIO",
        bytesWritten: 2,
      },
    });
    expect(t.landed).toEqual([0, 1]);
    expect(t.counted).toEqual([1, 2]);
    expect(t.steps.filter((s) => s.op === "write").map((s) => (s as { at: number }).at)).toEqual([
      0, 1, 2,
    ]);
    expect(t.lun.subarray(12, 20).every((b) => b === 0)).toBe(true);
  });

  it("refuses the writes when the board cannot be read, and stops when the node halts the path", () => {
    const unreadable = runFencedBatch(
      {
        readBoard: () => {
          throw new Error("CRC-32C at offset 4092 does not match");
        },
        pwrite: () => expect.unreachable("a write went out on an unreadable board"),
      },
      KEY,
      [data],
      writes(2),
    );
    expect(unreadable.stop).toMatchObject({
      at: 0,
      status: "refused",
      reason: "the registration board is unreadable (CRC-32C at offset 4092 does not match)",
    });
    let halted: string | undefined;
    const t = thread(Number.POSITIVE_INFINITY);
    const outcome = runFencedBatch(
      {
        ...t.io,
        pwrite: (d, at) => {
          t.io.pwrite(d, at);
          halted = "the storage path is cut";
        },
        halted: () => halted,
      },
      KEY,
      [data],
      writes(4),
    );
    expect(outcome).toMatchObject({
      acknowledged: 1,
      stop: { at: 1, status: "refused", cause: "halted", reason: "the storage path is cut" },
    });
    expect(t.landed).toEqual([0]);
  });

  it("over every moment a PREEMPT can land, acknowledges only writes a later read saw allowed, and issues none once a read saw the key gone", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 30 }), (n, at) => {
        const t = thread(at);
        const outcome = runFencedBatch(t.io, KEY, [data], writes(n));
        // The acknowledged writes are a prefix, each followed by a read that found the key registered.
        for (let k = 0; k < outcome.acknowledged; k++) {
          const wrote = t.steps.findIndex((s) => s.op === "write" && s.at === k);
          const next = t.steps[wrote + 1];
          expect(next).toEqual({ op: "read", preempted: false });
        }
        // No write went out after a read that saw the key preempted.
        const firstSeen = t.steps.findIndex((s) => s.op === "read" && s.preempted);
        if (firstSeen >= 0) expect(t.steps.slice(firstSeen + 1)).toEqual([]);
        // At most one write landed and was not acknowledged: the one the PREEMPT came under.
        expect(t.landed.length - outcome.acknowledged).toBeLessThanOrEqual(1);
        if (outcome.stop === undefined) expect(outcome.acknowledged).toBe(n);
        else expect(outcome.stop.at).toBe(outcome.acknowledged);
        expect(t.counted).toEqual(Array.from({ length: outcome.acknowledged }, (_, k) => k + 1));
      }),
      { numRuns: 500 },
    );
  });
});
