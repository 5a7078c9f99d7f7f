import { describe, expect, it } from "vitest";
import type { LunWrite } from "../src/csv/io-thread.js";
import type { BatchResult } from "../src/csv/io-threads.js";
import { type BatchLun, PathCutError, StoragePath } from "../src/csv/storage-path.js";

// A batch on a node's storage path: cutting the path halts the LUN's I/O
// threads (no write of a running batch goes out after the cut), and a batch
// that was running when the path was cut is acknowledged in none of its
// writes, as a single write in flight is not.

/** A LUN that takes batches, whose batch lands when the test says. */
function batchLun() {
  const calls: string[] = [];
  let land: (r: BatchResult) => void = () => {};
  const lun: BatchLun = {
    name: "lun",
    bytes: 1 << 20,
    read: async () => new Uint8Array(0),
    write: async () => {},
    flush: async () => {},
    writeBatch: (writes: readonly LunWrite[]) => {
      calls.push(`batch of ${writes.length}`);
      return new Promise<BatchResult>((resolve) => {
        land = resolve;
      });
    },
    halt: () => calls.push("halt"),
    resume: () => calls.push("resume"),
  };
  return { lun, calls, land: (r: BatchResult) => land(r) };
}

const writes: LunWrite[] = [
  { lunOffset: 0, data: new Uint8Array(4096) },
  { lunOffset: 4096, data: new Uint8Array(4096) },
];
const allAcknowledged: BatchResult = { acknowledged: [true, true], stops: [], boardReads: 3 };

describe("a batch on a node's storage path", () => {
  it("passes a batch through while the path is up", async () => {
    const { lun, calls, land } = batchLun();
    const path = new StoragePath(lun);
    expect(path.batches).toBe(true);
    const done = path.writeBatch(writes);
    land(allAcknowledged);
    await expect(done).resolves.toEqual(allAcknowledged);
    expect(calls).toEqual(["batch of 2"]);
  });

  it("halts the LUN's threads when cut: the running batch is acknowledged in none of its writes", async () => {
    const { lun, calls, land } = batchLun();
    const path = new StoragePath(lun);
    const done = path.writeBatch(writes);
    path.cutOff("HBA unplugged");
    expect(calls).toEqual(["batch of 2", "halt"]);
    land(allAcknowledged);
    await expect(done).rejects.toThrow(
      new PathCutError("WRITE batch of 2 writes on lun: the storage path is cut (HBA unplugged)"),
    );
    // Nothing goes out while cut; restored, the threads write again.
    await expect(path.writeBatch(writes)).rejects.toBeInstanceOf(PathCutError);
    expect(calls).toEqual(["batch of 2", "halt"]);
    path.restore();
    expect(calls).toEqual(["batch of 2", "halt", "resume"]);
  });

  it("refuses a batch on a LUN that takes one write at a time", async () => {
    const path = new StoragePath({
      name: "target",
      bytes: 1 << 20,
      read: async () => new Uint8Array(0),
      write: async () => {},
      flush: async () => {},
    });
    expect(path.batches).toBe(false);
    await expect(path.writeBatch(writes)).rejects.toThrow(
      new TypeError("target takes one write at a time, not batches"),
    );
  });
});
