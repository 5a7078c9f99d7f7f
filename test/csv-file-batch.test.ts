import { describe, expect, it } from "vitest";
import {
  batchStopError,
  chunksAcknowledged,
  chunkWrites,
  DirectWriteError,
} from "../src/csv/file-batch.js";
import type { VolumeLayout } from "../src/csv/layout.js";
import { ReservationConflictError } from "../src/csv/target-client.js";
import type { FileMap } from "../src/csv/volume.js";

// A node's chunks of a file as one batch of LUN writes, and what a batch's
// outcome means for them: a chunk is acknowledged only when every write of
// it is, and a stopped batch says which write stopped it and how many
// chunks were acknowledged.

const layout = { clusterBytes: 4096, dataOffset: 1 << 20 } as VolumeLayout;
// Clusters 10 and 11, then 40: the file's third cluster lies elsewhere on the LUN.
const file: FileMap = {
  name: "vm.vhd",
  size: 3 * 4096,
  extents: [
    { first: 10, count: 2 },
    { first: 40, count: 1 },
  ],
};

describe("a file's chunks as one batch", () => {
  it("maps each chunk to one write per extent it covers, in order", () => {
    const a = new Uint8Array(4096).fill(1);
    const b = new Uint8Array(8192).fill(2);
    const { writes, ends } = chunkWrites(layout, file, [
      { offset: 0, data: a },
      { offset: 4096, data: b },
    ]);
    expect(writes.map((w) => [w.lunOffset, w.data.length])).toEqual([
      [(1 << 20) + 10 * 4096, 4096],
      [(1 << 20) + 11 * 4096, 4096],
      [(1 << 20) + 40 * 4096, 4096],
    ]);
    // The second chunk's two writes are views of its own bytes, not copies.
    expect(writes[1]?.data.buffer).toBe(b.buffer);
    expect(writes[2]?.data.byteOffset).toBe(4096);
    expect(ends).toEqual([1, 3]);
  });

  it("acknowledges a chunk only when every write of it is", () => {
    expect(chunksAcknowledged([1, 3], [true, true, false])).toEqual([true, false]);
    expect(chunksAcknowledged([1, 3], [false, true, true])).toEqual([false, true]);
    expect(chunksAcknowledged([2, 3], [true, false, true])).toEqual([false, true]);
    expect(chunksAcknowledged([], [])).toEqual([]);
  });

  it("names the write that stopped a batch and the chunks acknowledged: an I/O error, or the fence's refusal", () => {
    // One chunk over the whole file: a write of clusters 10 and 11, and one of cluster 40.
    const { writes } = chunkWrites(layout, file, [{ offset: 0, data: new Uint8Array(3 * 4096) }]);
    const io = batchStopError(
      {
        at: 1,
        status: "failed",
        cause: "io",
        reason: "EIO: i/o error, write",
        code: "EIO",
        bytesWritten: 512,
      },
      0,
      writes,
      1,
      "lun.img",
    );
    expect(io).toBeInstanceOf(DirectWriteError);
    expect(io).toMatchObject({ acknowledged: 0, code: "EIO" });
    expect(io.message).toBe(
      `WRITE of 4096 bytes at ${(1 << 20) + 40 * 4096} on lun.img failed (EIO): EIO: i/o error, write; 0 of 1 chunks acknowledged; the batch stopped, no write issued after it on its thread; 512 of its bytes went out`,
    );
    const fenced = batchStopError(
      { at: 0, status: "refused", cause: "conflict", reason: "key 0x11 is not registered" },
      3,
      writes,
      5,
      "lun.img",
    );
    expect(fenced).toBeInstanceOf(ReservationConflictError);
    expect(fenced.message).toBe(
      `WRITE of 8192 bytes at ${(1 << 20) + 10 * 4096} on lun.img: key 0x11 is not registered; 3 of 5 chunks acknowledged; the batch stopped, no write issued after it on its thread`,
    );
  });
});
