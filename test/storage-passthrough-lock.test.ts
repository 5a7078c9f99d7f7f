import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskBusyError } from "../src/storage/errors.js";
import { PassThroughLock } from "../src/storage/passthrough-lock.js";
import { testTempDir } from "./support/temp.js";

// A pass-through disk belongs to one VM at a time (Hyper-V takes the disk
// offline to the host and gives it to one VM): within this process a second
// VM is refused, across processes a lock file holding the owner's PID.

/** The lock file hvlab keeps for the disk at `path`. */
const lockFileOf = (path: string) =>
  join(
    tmpdir(),
    "hvlab-passthrough-locks",
    `${Buffer.from(realpathSync(path)).toString("base64url")}.lock`,
  );

function disk(): string {
  const path = join(testTempDir("storage-passthrough-"), "disk.img");
  writeFileSync(path, new Uint8Array(4096));
  return path;
}

/** A PID no process has: one of a process that has ended. */
const deadPid = () => spawnSync(process.execPath, ["-e", ""]).pid;

describe("pass-through locks", () => {
  it("refuse what is neither a raw file nor a block device", () => {
    const dir = testTempDir("storage-passthrough-");
    expect(() => PassThroughLock.acquire(dir, "vm1")).toThrow(
      new DiskBusyError(`${dir}: a pass-through disk is a raw file or a block device`),
    );
  });

  it("give a disk to one VM of this process, and to the next once released", () => {
    const path = disk();
    const lock = PassThroughLock.acquire(path, "vm1");
    expect(lock.vm).toBe("vm1");
    expect(readFileSync(lockFileOf(path), "utf8")).toBe(`${process.pid} vm1\n`);
    expect(() => PassThroughLock.acquire(path, "vm2")).toThrow(
      new DiskBusyError(`${path}: pass-through disk already attached to VM 'vm1'`),
    );
    lock.release();
    expect(existsSync(lockFileOf(path))).toBe(false);
    const next = PassThroughLock.acquire(path, "vm2");
    // A lock given up before does not give up the next holder's.
    lock.release();
    expect(readFileSync(lockFileOf(path), "utf8")).toBe(`${process.pid} vm2\n`);
    expect(() => PassThroughLock.acquire(path, "vm3")).toThrow(/already attached to VM 'vm2'/);
    next.release();
  });

  it("refuse a disk another live process holds, naming its VM and PID", () => {
    const path = disk();
    writeFileSync(lockFileOf(path), `${process.ppid} other-vm\n`);
    try {
      expect(() => PassThroughLock.acquire(path, "vm1")).toThrow(
        new DiskBusyError(
          `${path}: pass-through disk is held by VM 'other-vm' of process ${process.ppid}`,
        ),
      );
    } finally {
      rmSync(lockFileOf(path), { force: true });
    }
  });

  it("take over the lock of a process that has ended", () => {
    const path = disk();
    writeFileSync(lockFileOf(path), `${deadPid()} gone-vm\n`);
    const lock = PassThroughLock.acquire(path, "vm1");
    expect(readFileSync(lockFileOf(path), "utf8")).toBe(`${process.pid} vm1\n`);
    lock.release();
    expect(existsSync(lockFileOf(path))).toBe(false);
  });
});
