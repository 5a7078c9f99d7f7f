import { writeSync } from "node:fs";
import { isatty } from "node:tty";
import type { Command } from "commander";
import { MAX_BLOCK_BYTES, MIN_BLOCK_BYTES } from "../../storage/format.js";
import type { CopyStats } from "../../storage/operations.js";
import { formatBytes } from "../../util/units.js";
import { sizeOption, UsageError } from "../options.js";

/**
 * Writes `text` to stdout with write(2): Node's stdout stream, which
 * console.log would create, costs the command's start-up several ms of CPU
 * (the stream and, for a pipe, the net module). A stdout that takes no more
 * for now (EAGAIN: a non-blocking pipe) gets the rest through the stream.
 */
export function writeOut(text: string): void {
  const bytes = Buffer.from(text);
  let done = 0;
  try {
    while (done < bytes.length) done += writeSync(1, bytes, done, bytes.length - done);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
    process.stdout.write(bytes.subarray(done));
  }
}

/** Prints `record` as JSON with `--json`, else the text `text` makes. */
export function print(json: boolean | undefined, record: unknown, text: () => string): void {
  writeOut(`${json ? JSON.stringify(record, null, 2) : text()}\n`);
}

/** Parses `--block-size`: a size between the VHD's bounds, a power of two. */
export function blockSizeOption(text: string): number {
  const bytes = sizeOption(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES)(text);
  if ((bytes & (bytes - 1)) !== 0)
    throw new UsageError(`--block-size must be a power of two, not ${bytes}`);
  return bytes;
}

/** One line saying what a copy (convert, merge, compact) did. */
export function copyText(what: string, s: CopyStats): string {
  return `${what}: ${formatBytes(s.size)} disk, ${formatBytes(s.bytesRead)} read, ${formatBytes(s.bytesWritten)} written, ${s.zeroChunks} zero chunks skipped`;
}

/**
 * Runs a copy with a progress bar in MiB on stderr. The bar's library is
 * loaded only when stderr is a terminal (the bar is not drawn otherwise):
 * a scripted `convert` does not pay for it at start-up.
 */
export async function withProgress<T>(
  title: string,
  run: (progress: (done: number, total: number) => void) => T | Promise<T>,
): Promise<T> {
  // isatty(2) asks without creating Node's stderr stream (see writeOut).
  if (!isatty(2)) return await run(() => {});
  const { startProgress } = await import("../progress.js");
  const bar = startProgress(title, 1);
  try {
    return await run((done, total) =>
      bar.update(Math.round(done / 1048576), "MiB", Math.max(1, Math.round(total / 1048576))),
    );
  } finally {
    bar.stop();
  }
}

/** Adds the `storage` command to `program`, with no subcommand yet. */
export function storageGroup(program: Command): Command {
  return program
    .command("storage")
    .description(
      "virtual hard disks: VHD fixed, dynamic and differencing images, as Hyper-V writes them",
    );
}
