import { describe, expect, it } from "vitest";
import { type BatchIo, runFencedBatch } from "../src/csv/fenced-batch.js";
import { batchStopError, chunkWrites, DirectWriteError } from "../src/csv/file-batch.js";
import type { VolumeLayout } from "../src/csv/layout.js";
import { type Board, BoardState } from "../src/csv/registration-board.js";
import { ReservationConflictError } from "../src/csv/target-client.js";

// What a stopped batch of direct writes tells its caller (docs/csv.md, "The
// fence for direct writes"): the write it stopped at, why, and how many
// chunks were acknowledged; and what the thread running the batch reports
// of a failed pwrite.

const layout = { clusterBytes: 4096, dataOffset: 1 << 20 } as VolumeLayout;
const lunOffset = (cluster: number) => (1 << 20) + cluster * 4096;

describe("the error of a stopped batch", () => {
  // A write whose pwrite failed without an errno name, and before any of its
  // bytes went out: the message says neither.
  it("names a failed write, and no errno or partial write it does not have", () => {
    const { writes } = chunkWrites(
      layout,
      { name: "vm.vhd", size: 8192, extents: [{ first: 5, count: 2 }] },
      [
        { offset: 0, data: new Uint8Array(4096) },
        { offset: 4096, data: new Uint8Array(4096) },
      ],
    );
    const error = batchStopError(
      { at: 1, status: "failed", cause: "io", reason: "short write" },
      1,
      writes,
      2,
      "lun.img",
    );
    expect(error).toBeInstanceOf(DirectWriteError);
    expect(error).toMatchObject({ acknowledged: 1, code: undefined });
    expect(error.message).toBe(
      `WRITE of 4096 bytes at ${lunOffset(6)} on lun.img failed: short write; 1 of 2 chunks acknowledged; the batch stopped, no write issued after it on its thread`,
    );
  });

  // Even a stop that names no write of the list gives the caller its error
  // (a write of nothing), not a TypeError in its place.
  it("still gives the stop's error when the stop names no write of the list", () => {
    const conflict = batchStopError(
      { at: 0, status: "refused", cause: "conflict", reason: "key 0x11 is not registered" },
      0,
      [],
      0,
      "lun.img",
    );
    expect(conflict).toBeInstanceOf(ReservationConflictError);
    expect(conflict.message).toBe(
      "WRITE of 0 bytes at 0 on lun.img: key 0x11 is not registered; 0 of 0 chunks acknowledged; the batch stopped, no write issued after it on its thread",
    );
  });

  // The error names its kind when printed.
  it("is a DirectWriteError by name for an I/O failure", () => {
    expect(String(new DirectWriteError("EIO", 0, "EIO"))).toBe("DirectWriteError: EIO");
  });
});

// Nothing is reserved: every key may write.
const open: Board = {
  state: BoardState.online,
  prGeneration: 0,
  sequence: 1,
  lunBytes: 1 << 20,
  type: 0,
  holderKey: 0n,
  keys: [],
};
const writes = (n: number) =>
  Array.from({ length: n }, (_, k) => ({
    buffer: 0,
    bufferOffset: 8 * k,
    length: 8,
    lunOffset: 8 * k,
  }));

describe("a fenced batch's report of its thread", () => {
  // BatchStop: `code` is the errno name and `bytesWritten` a count; a thrown
  // value that carries neither as such reports neither.
  it("reports a failed pwrite's code and bytes written only when they are an errno name and a count", () => {
    const io: BatchIo = {
      readBoard: () => open,
      pwrite: () => {
        throw Object.assign(new Error("device went away"), { code: 5, bytesWritten: "4" });
      },
    };
    const outcome = runFencedBatch(io, 0x11n, [new Uint8Array(16)], writes(2));
    expect(outcome).toStrictEqual({
      acknowledged: 0,
      boardReads: 1,
      stop: { at: 0, status: "failed", reason: "device went away", cause: "io" },
    });
  });

  // The acknowledgement counter is optional: a thread without one runs the batch to its end.
  it("runs to its end on a thread that counts no acknowledgements", () => {
    const lun = new Uint8Array(24);
    const io: BatchIo = { readBoard: () => open, pwrite: (data, at) => lun.set(data, at) };
    const buffer = Uint8Array.from({ length: 24 }, (_, i) => i + 1);
    expect(runFencedBatch(io, 0x11n, [buffer], writes(3))).toEqual({
      acknowledged: 3,
      boardReads: 4,
    });
    expect(lun).toEqual(buffer);
  });
});
