/*
 * Disks for the guest I/O run's tests: a new raw file of 1 MiB in a test's
 * folder, made by the run itself, and sequential verified writes to it.
 */
import { join } from "node:path";
import type { IoDisk } from "../../src/storage/io-run.js";
import type { IoSpec } from "../../src/storage/io-spec.js";

export const MiB = 1024 * 1024;

/** A raw disk of 1 MiB at `dir`/`name`.img, made when the run starts it. */
export function rawDisk(dir: string, name: string): IoDisk {
  return { name, path: join(dir, `${name}.img`), create: { type: "raw", size: MiB } };
}

/** Sequential 4 KiB writes, two in flight, each block verified, for `runtimeMs`. */
export function sequentialWrites(runtimeMs: number, seed: number): IoSpec {
  return { rw: "write", rwmixread: 0, bs: 4096, iodepth: 2, runtimeMs, seed, verify: true };
}
