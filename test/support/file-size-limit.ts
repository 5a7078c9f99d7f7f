import { closeSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

/**
 * Whether the file system under `dir` refuses a write at 4 PiB with EFBIG,
 * as ext4 does past its largest file (16 TiB with 4 KiB blocks): a write
 * there fails every time, where a test needs one that does. A probe file is
 * written and removed.
 */
export function refusesPastMaxBytes(dir: string): boolean {
  const probe = join(dir, "max-bytes-probe");
  const fd = openSync(probe, "w");
  try {
    writeSync(fd, new Uint8Array(4096), 0, 4096, 2 ** 52);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EFBIG";
  } finally {
    closeSync(fd);
    rmSync(probe, { force: true });
  }
}
