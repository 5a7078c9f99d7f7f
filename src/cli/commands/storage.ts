import { statSync } from "node:fs";
import type { Command } from "commander";
import { formatTable } from "../../report/table.js";
import { FdFile } from "../../storage/block-file.js";
import { checkVhdFile } from "../../storage/check.js";
import type { MapExtent } from "../../storage/disk-image.js";
import {
  DEFAULT_BLOCK_BYTES,
  MAX_BLOCK_BYTES,
  MAX_DISK_BYTES,
  MIN_BLOCK_BYTES,
} from "../../storage/format.js";
import { imageInfo } from "../../storage/info.js";
import { openImage } from "../../storage/open.js";
import {
  type CopyStats,
  compactImage,
  convertImage,
  mergeImage,
} from "../../storage/operations.js";
import { VhdImage } from "../../storage/vhd.js";
import { formatBytes } from "../../util/units.js";
import { sizeOption, UsageError } from "../options.js";
import { startProgress } from "../progress.js";

function print(json: boolean | undefined, record: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(record, null, 2) : text());
}

function blockSizeOption(text: string): number {
  const bytes = sizeOption(MIN_BLOCK_BYTES, MAX_BLOCK_BYTES)(text);
  if ((bytes & (bytes - 1)) !== 0)
    throw new UsageError(`--block-size must be a power of two, not ${bytes}`);
  return bytes;
}

/** qemu-img map --output=json's records. */
function qemuMap(extents: readonly MapExtent[]) {
  return extents.map((e) => ({
    start: e.start,
    length: e.length,
    depth: e.depth,
    present: e.data || e.depth > 0 || e.zero,
    zero: e.zero,
    data: e.data,
    ...(e.offset !== undefined ? { offset: e.offset } : {}),
  }));
}

function copyText(what: string, s: CopyStats): string {
  return `${what}: ${formatBytes(s.size)} disk, ${formatBytes(s.bytesRead)} read, ${formatBytes(s.bytesWritten)} written, ${s.zeroChunks} zero chunks skipped`;
}

function withProgress<T>(
  title: string,
  run: (progress: (done: number, total: number) => void) => T,
): T {
  const bar = startProgress(title, 1);
  try {
    return run((done, total) =>
      bar.update(Math.round(done / 1048576), "MiB", Math.max(1, Math.round(total / 1048576))),
    );
  } finally {
    bar.stop();
  }
}

/** Registers `hvlab storage`: VHD images (create, info, map, convert, merge, compact, check). */
export function registerStorage(program: Command): void {
  const storage = program
    .command("storage")
    .description(
      "virtual hard disks: VHD fixed, dynamic and differencing images, as Hyper-V writes them",
    );

  storage
    .command("create")
    .description(
      "create a VHD: SIZE bytes of --type fixed or dynamic, or a differencing disk on --parent",
    )
    .argument("<file>", "the new image")
    .argument(
      "[size]",
      "virtual size, e.g. 10GiB (up to 2040 GiB)",
      sizeOption(512, MAX_DISK_BYTES),
    )
    .option("--type <type>", "fixed or dynamic (a --parent makes it differencing)", "dynamic")
    .option(
      "--block-size <size>",
      "block size of a dynamic disk (power of two)",
      blockSizeOption,
      DEFAULT_BLOCK_BYTES,
    )
    .option("--parent <file>", "make a differencing disk on this VHD")
    .option("--json", "print the new image's info as JSON")
    .action(
      (
        file: string,
        size: number | undefined,
        flags: { type: string; blockSize: number; parent?: string; json?: boolean },
      ) => {
        if (flags.parent) {
          if (size !== undefined)
            throw new UsageError("a differencing disk takes its parent's size: give no SIZE");
          const parent = openImage(flags.parent);
          try {
            if (!(parent instanceof VhdImage))
              throw new UsageError(`--parent ${flags.parent} is not a VHD`);
            VhdImage.create(new FdFile(file, "wx+"), {
              type: "differencing",
              parent: {
                image: parent,
                path: flags.parent,
                mtimeMs: statSync(flags.parent).mtimeMs,
              },
              path: file,
              blockSize: parent.blockBytes || flags.blockSize,
            }).close();
          } finally {
            parent.close();
          }
        } else {
          if (size === undefined) throw new UsageError("give the SIZE of the disk, e.g. 10GiB");
          if (size % 512 !== 0)
            throw new UsageError(`SIZE must be a multiple of 512 bytes, not ${size}`);
          if (flags.type !== "fixed" && flags.type !== "dynamic") {
            throw new UsageError(`--type must be fixed or dynamic, not ${flags.type}`);
          }
          VhdImage.create(new FdFile(file, "wx+"), {
            type: flags.type,
            size,
            blockSize: flags.blockSize,
          }).close();
        }
        const info = imageInfo(file);
        print(
          flags.json,
          info,
          () => `created ${file}: ${info.vhd?.type} VHD of ${formatBytes(info["virtual-size"])}`,
        );
      },
    );

  storage
    .command("info")
    .description("describe an image (raw or VHD, detected from its bytes)")
    .argument("<file>")
    .option("--json", "print qemu-img info's keys as JSON")
    .action((file: string, flags: { json?: boolean }) => {
      const info = imageInfo(file);
      print(flags.json, info, () => {
        const rows: [string, string | number][] = [
          ["format", info.format],
          ["virtual size", `${formatBytes(info["virtual-size"])} (${info["virtual-size"]} bytes)`],
          ["disk size", formatBytes(info["actual-size"])],
        ];
        const v = info.vhd;
        if (v) {
          rows.push(
            ["type", v.type],
            [
              "creator",
              `${JSON.stringify(v.creator)} ${v.creatorVersion} on ${JSON.stringify(v.creatorOs)}`,
            ],
          );
          rows.push(
            ["uuid", v.uuid],
            [
              "geometry",
              `${v.geometry.cylinders}/${v.geometry.heads}/${v.geometry.sectorsPerTrack}`,
            ],
          );
          if (info["cluster-size"]) rows.push(["block size", formatBytes(info["cluster-size"])]);
          if (v.totalBlocks !== undefined)
            rows.push(["blocks", `${v.allocatedBlocks} of ${v.totalBlocks} allocated`]);
          if (v.parent) rows.push(["parent", `${v.parent.path} (${v.parent.uuid})`]);
          for (const note of v.notes) rows.push(["note", note]);
        }
        return formatTable({ columns: ["field", "value"], rows });
      });
    });

  storage
    .command("map")
    .description("list the image's extents: where data is stored and what reads as zeros")
    .argument("<file>")
    .option("--json", "print qemu-img map --output=json's records")
    .action((file: string, flags: { json?: boolean }) => {
      const image = openImage(file);
      try {
        const records = qemuMap(image.map());
        print(flags.json, records, () =>
          formatTable({
            columns: ["start", "length", "depth", "data", "zero", "offset"],
            rows: records.map((r) => [
              r.start,
              r.length,
              r.depth,
              String(r.data),
              String(r.zero),
              r.offset ?? null,
            ]),
          }),
        );
      } finally {
        image.close();
      }
    });

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
    .option("--json", "print what was copied as JSON")
    .action(
      (src: string, dst: string, flags: { to: string; blockSize: number; json?: boolean }) => {
        if (!["raw", "fixed", "dynamic"].includes(flags.to))
          throw new UsageError(`--to must be raw, fixed or dynamic, not ${flags.to}`);
        const stats = withProgress("convert", (progress) =>
          convertImage(src, dst, { to: flags.to as "raw", blockSize: flags.blockSize, progress }),
        );
        print(flags.json, { src, dst, to: flags.to, ...stats }, () =>
          copyText(`${src} -> ${dst}`, stats),
        );
      },
    );

  storage
    .command("merge")
    .description("fold a differencing disk into its parent")
    .argument("<child>")
    .option("--json", "print what was merged as JSON")
    .action((child: string, flags: { json?: boolean }) => {
      const stats = withProgress("merge", (progress) => mergeImage(child, { progress }));
      print(flags.json, { child, ...stats }, () => copyText(`${child} -> ${stats.parent}`, stats));
    });

  storage
    .command("compact")
    .description("rewrite a dynamic or differencing VHD without its empty blocks")
    .argument("<file>")
    .option("--json", "print the sizes before and after as JSON")
    .action((file: string, flags: { json?: boolean }) => {
      const stats = withProgress("compact", (progress) => compactImage(file, { progress }));
      print(
        flags.json,
        { file, ...stats },
        () =>
          `${copyText(file, stats)}; file ${formatBytes(stats.before)} -> ${formatBytes(stats.after)}`,
      );
    });

  storage
    .command("check")
    .description(
      "verify a VHD's structure and report every problem with its offset (exit 1 on errors)",
    )
    .argument("<file>")
    .option("--json", "print the report as JSON")
    .action((file: string, flags: { json?: boolean }) => {
      const report = checkVhdFile(file);
      print(flags.json, report, () =>
        report.problems.length === 0
          ? `${file}: no problems found${report.totalBlocks !== undefined ? ` (${report.allocatedBlocks} of ${report.totalBlocks} blocks allocated)` : ""}`
          : report.problems
              .map(
                (p) => `${p.severity}: ${p.offset >= 0 ? `offset ${p.offset}: ` : ""}${p.message}`,
              )
              .join("\n"),
      );
      if (!report.ok)
        throw new Error(
          `${file}: ${report.problems.filter((p) => p.severity === "error").length} errors`,
        );
    });
}
