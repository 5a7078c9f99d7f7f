import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { packageRoot } from "../util/package-root.js";

/**
 * Copies up to `length` bytes from `fdIn` at `offsetIn` to `fdOut` at
 * `offsetOut` inside the kernel and returns how many it copied (fewer at
 * the end of the input, 0 past it); throws an error whose `code` is the
 * errno's name. Linux's copy_file_range(2).
 */
export type RangeCopier = (
  fdIn: number,
  offsetIn: number,
  fdOut: number,
  offsetOut: number,
  length: number,
) => number;

/**
 * The errors copy_file_range(2) gives when it cannot copy between these two
 * files at all (a kernel without it, file systems that will not, a file
 * that is not a regular one): the copy goes on with reads and writes.
 * Any other error (EIO, ENOSPC, ...) is the copy's failure.
 */
const NOT_HERE = new Set(["ENOSYS", "EXDEV", "EOPNOTSUPP", "EINVAL", "EBADF", "EPERM"]);

/** Whether `error` says copy_file_range cannot serve these files, so that reads and writes must. */
export function copyRangeUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && NOT_HERE.has(code);
}

/** A copier, or why there is none. */
export interface LoadedCopier {
  readonly copier: RangeCopier | undefined;
  readonly why: string;
}

/** Loads the copy_range addon from `path`; a missing or broken file gives no copier, and says why. */
export function loadCopier(path: string): LoadedCopier {
  if (process.platform !== "linux")
    return { copier: undefined, why: `copy_file_range(2) is Linux's, this is ${process.platform}` };
  if (!existsSync(path))
    return { copier: undefined, why: `the copy_range addon is not built (${path})` };
  try {
    const addon = createRequire(import.meta.url)(path) as { copyFileRange?: unknown };
    return typeof addon.copyFileRange === "function"
      ? { copier: addon.copyFileRange as RangeCopier, why: "copy_file_range(2)" }
      : { copier: undefined, why: `${path} has no copyFileRange` };
  } catch (error) {
    return {
      copier: undefined,
      why: `${path} did not load: ${(error as Error).message.split("\n")[0]}`,
    };
  }
}

let loaded: LoadedCopier | undefined;

/**
 * The copy_range addon's copier (native/copy_range.c, built by npm run
 * build where node-gyp and a compiler are), or undefined, with the reason,
 * where there is none: another platform, a failed or skipped build.
 */
export function nativeCopier(): LoadedCopier {
  loaded ??= loadCopier(join(packageRoot(), "native", "build", "Release", "copy_range.node"));
  return loaded;
}

/**
 * Copies `length` bytes with `copier`, call after call until done or the
 * input ends; returns the bytes copied.
 */
export function copyRange(
  copier: RangeCopier,
  fdIn: number,
  offsetIn: number,
  fdOut: number,
  offsetOut: number,
  length: number,
): number {
  let done = 0;
  while (done < length) {
    const n = copier(fdIn, offsetIn + done, fdOut, offsetOut + done, length - done);
    if (n === 0) break;
    done += n;
  }
  return done;
}
