import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiskBusyError } from "./errors.js";

/** Where hvlab keeps the lock files of pass-through disks. */
function lockDir(): string {
  const dir = join(tmpdir(), "hvlab-passthrough-locks");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Disks this process has locked, by real path, and the VM holding each. */
const held = new Map<string, string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when a block device appears in /proc/mounts (it is online to the host). */
function mounted(path: string): boolean {
  try {
    return readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .some((line) => line.split(" ")[0] === path);
  } catch {
    return false;
  }
}

/**
 * The exclusive hold of one VM on a pass-through disk: a raw file or a block
 * device that must be offline to the host (not mounted). Within a process a
 * second VM is refused; across processes a lock file created with O_EXCL,
 * holding the owner's PID, refuses a second hvlab (a lock whose PID is dead
 * is taken over).
 */
export class PassThroughLock {
  private constructor(
    readonly path: string,
    readonly vm: string,
    private readonly lockFile: string,
  ) {}

  /**
   * Takes the disk for `vm`.
   *
   * @throws DiskBusyError naming who holds it, or saying it is online to the host.
   */
  static acquire(path: string, vm: string): PassThroughLock {
    const real = realpathSync(path);
    const stat = statSync(real);
    if (!stat.isFile() && !stat.isBlockDevice()) {
      throw new DiskBusyError(`${path}: a pass-through disk is a raw file or a block device`);
    }
    if (stat.isBlockDevice() && mounted(real)) {
      throw new DiskBusyError(
        `${path}: the disk is online to the host (mounted); take it offline first`,
      );
    }
    const owner = held.get(real);
    if (owner !== undefined)
      throw new DiskBusyError(`${path}: pass-through disk already attached to VM '${owner}'`);
    const lockFile = join(lockDir(), `${Buffer.from(real).toString("base64url")}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(lockFile, "wx");
        writeSync(fd, `${process.pid} ${vm}\n`);
        closeSync(fd);
        held.set(real, vm);
        return new PassThroughLock(real, vm, lockFile);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
        const [pid, other] = readFileSync(lockFile, "utf8").trim().split(" ");
        if (alive(Number(pid))) {
          throw new DiskBusyError(
            `${path}: pass-through disk is held by VM '${other}' of process ${pid}`,
          );
        }
        unlinkSync(lockFile);
      }
    }
    throw new DiskBusyError(`${path}: could not take the pass-through lock`);
  }

  /** Gives the disk up. */
  release(): void {
    if (held.get(this.path) !== this.vm) return;
    held.delete(this.path);
    try {
      unlinkSync(this.lockFile);
    } catch {}
  }
}
