import type { Command } from "commander";
import { DEFAULT_BLOCK_BYTES } from "../../storage/format.js";
import { type ConvertTarget, convertImage } from "../../storage/operations.js";
import { UsageError } from "../options.js";
import { blockSizeOption, copyText, print, storageGroup, withProgress } from "./storage-shared.js";

const TARGETS: readonly ConvertTarget[] = ["raw", "fixed", "dynamic"];

/**
 * Adds `convert` to the `storage` command. It has a module of its own, with
 * only what a conversion needs, because it is timed as a whole command
 * against `qemu-img convert`: what it loads is part of its time.
 */
export function registerConvert(storage: Command): void {
  storage
    .command("convert")
    .description(
      "convert between raw and every VHD type (the source's format detected), skipping all-zero blocks",
    )
    .argument("<src>")
    .argument("<dst>")
    .requiredOption("--to <format>", "raw, fixed or dynamic")
    .option(
      "--block-size <size>",
      "block size of a dynamic destination",
      blockSizeOption,
      DEFAULT_BLOCK_BYTES,
    )
    .option(
      "--flush",
      "fdatasync the destination before exiting (default: left to the page cache, as qemu-img convert's cache=unsafe)",
    )
    .option("--json", "print what was copied as JSON")
    .action(
      async (
        src: string,
        dst: string,
        flags: { to: string; blockSize: number; flush?: boolean; json?: boolean },
      ) => {
        const to = TARGETS.find((t) => t === flags.to);
        if (!to) throw new UsageError(`--to must be raw, fixed or dynamic, not ${flags.to}`);
        const stats = await withProgress("convert", (progress) =>
          convertImage(src, dst, {
            to,
            blockSize: flags.blockSize,
            progress,
            flush: flags.flush === true,
          }),
        );
        print(flags.json, { src, dst, to: flags.to, ...stats }, () =>
          copyText(`${src} -> ${dst}`, stats),
        );
      },
    );
}

/** Registers `hvlab storage` with `convert` alone: the command line of `hvlab storage convert`. */
export function registerStorageConvert(program: Command): void {
  registerConvert(storageGroup(program));
}
