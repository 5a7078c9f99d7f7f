import { describe, expect, it } from "vitest";
import type { Lun } from "../src/csv/lun.js";
import { PathCutError, StoragePath } from "../src/csv/storage-path.js";
import { memoryLun } from "./support/csv.js";

// A node's storage path to a LUN that takes one write at a time (docs/csv.md
// "Redirected access", "The path"): while cut, every read, write and flush
// fails before it leaves; a read or write in flight when the path is cut
// fails when it comes back, so nothing is acknowledged through a cut path.
// The PathCutError names the request, the LUN and why the path was cut.

/** A LUN that counts its calls and runs `during` as each request reaches it. */
class WatchedLun implements Lun {
  readonly calls: string[] = [];
  during: () => void = () => {};

  constructor(private readonly inner: Lun) {}

  get name(): string {
    return this.inner.name;
  }

  get bytes(): number {
    return this.inner.bytes;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    this.calls.push(`read ${offset}+${length}`);
    this.during();
    return this.inner.read(offset, length);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.calls.push(`write ${offset}+${data.length}`);
    this.during();
    return this.inner.write(offset, data);
  }

  flush(): Promise<void> {
    this.calls.push("flush");
    this.during();
    return this.inner.flush();
  }
}

function rig() {
  const { lun: inner, file } = memoryLun(64 * 1024, "/dev/sdb");
  const lun = new WatchedLun(inner);
  return { lun, file, path: new StoragePath(lun) };
}

describe("a storage path that is up", () => {
  // The path is the LUN to its caller: same name and size, and its I/O lands.
  it("shows the LUN's name and size and carries reads, writes and flushes", async () => {
    const { lun, path } = rig();
    expect(path.name).toBe("/dev/sdb");
    expect(path.bytes).toBe(64 * 1024);
    expect(path.cut).toBeUndefined();
    expect(path.batches).toBe(false);
    await path.write(4096, Uint8Array.of(1, 2, 3));
    await path.flush();
    await expect(path.read(4095, 5)).resolves.toEqual(Uint8Array.of(0, 1, 2, 3, 0));
    expect(lun.calls).toEqual(["write 4096+3", "flush", "read 4095+5"]);
  });
});

describe("a storage path that is cut", () => {
  // Nothing leaves a cut path: the LUN sees no call, and each refusal
  // names the request so the node can send it again redirected.
  it("fails every read, write and flush before it reaches the LUN", async () => {
    const { lun, file, path } = rig();
    path.cutOff("HBA unplugged");
    expect(path.cut).toBe("HBA unplugged");
    await expect(path.read(512, 8)).rejects.toThrow(
      new PathCutError(
        "READ of 8 bytes at 512 on /dev/sdb: the storage path is cut (HBA unplugged)",
      ),
    );
    await expect(path.write(1024, new Uint8Array(16).fill(7))).rejects.toThrow(
      new PathCutError(
        "WRITE of 16 bytes at 1024 on /dev/sdb: the storage path is cut (HBA unplugged)",
      ),
    );
    await expect(path.flush()).rejects.toThrow(
      new PathCutError("FLUSH on /dev/sdb: the storage path is cut (HBA unplugged)"),
    );
    expect(lun.calls).toEqual([]);
    expect(
      file
        .contents()
        .subarray(1024, 1040)
        .every((b) => b === 0),
    ).toBe(true);
  });

  // A read or write that was on its way when the path was cut is not
  // acknowledged through the cut path, even though the LUN served it.
  it("fails a read or write that was in flight when the path was cut", async () => {
    const { lun, path } = rig();
    lun.during = () => path.cutOff("iSCSI session lost");
    await expect(path.write(0, new Uint8Array(4))).rejects.toThrow(
      new PathCutError(
        "WRITE of 4 bytes at 0 on /dev/sdb: the storage path is cut (iSCSI session lost)",
      ),
    );
    path.restore();
    await expect(path.read(2048, 32)).rejects.toThrow(
      new PathCutError(
        "READ of 32 bytes at 2048 on /dev/sdb: the storage path is cut (iSCSI session lost)",
      ),
    );
    expect(lun.calls).toEqual(["write 0+4", "read 2048+32"]);
  });

  // Restoring a path to a LUN without I/O threads (nothing to resume)
  // brings the I/O back.
  it("carries I/O again once restored", async () => {
    const { lun, path } = rig();
    path.cutOff("HBA unplugged");
    path.restore();
    expect(path.cut).toBeUndefined();
    await path.write(0, Uint8Array.of(5));
    await path.flush();
    await expect(path.read(0, 1)).resolves.toEqual(Uint8Array.of(5));
    expect(lun.calls).toEqual(["write 0+1", "flush", "read 0+1"]);
  });

  // The error says what it is, so a log line or a caller that looks at
  // `name` tells a cut path from a failing LUN.
  it("is reported as a PathCutError", async () => {
    const { path } = rig();
    path.cutOff("HBA unplugged");
    const error = await path.flush().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PathCutError);
    expect((error as Error).name).toBe("PathCutError");
    expect(String(error)).toMatch(/^PathCutError: FLUSH on \/dev\/sdb/);
  });
});
