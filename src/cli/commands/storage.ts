import { statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import type { Command } from "commander";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { FdFile } from "../../storage/block-file.js";
import { checkVhdFile } from "../../storage/check.js";
import type { MapExtent } from "../../storage/disk-image.js";
import type { VhdType } from "../../storage/format.js";
import { DEFAULT_BLOCK_BYTES, MAX_DISK_BYTES } from "../../storage/format.js";
import { imageInfo } from "../../storage/info.js";
import {
  type HotplugEvent,
  type IoDisk,
  runStorageIo,
  type StorageIoReport,
} from "../../storage/io-run.js";
import { IO_MODES, type IoMode, type IoSpec } from "../../storage/io-spec.js";
import { openImage } from "../../storage/open.js";
import { compactImage, mergeImage } from "../../storage/operations.js";
import { VhdImage } from "../../storage/vhd.js";
import { NO_HOT_ADD_GUESTS, VirtualMachine } from "../../storage/vm.js";
import { makeTemporaryDir, removeTemporary } from "../../util/temporary.js";
import { formatBytes } from "../../util/units.js";
import {
  checkOutputFlags,
  integerOption,
  numberOption,
  sizeOption,
  UsageError,
} from "../options.js";
import { startProgress } from "../progress.js";
import { registerConvert } from "./storage-convert.js";
import { blockSizeOption, copyText, print, storageGroup, withProgress } from "./storage-shared.js";

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

/** Registers `hvlab storage`: VHD images (create, info, map, convert, merge, compact, check). */
export function registerStorage(program: Command): void {
  const storage = storageGroup(program);

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

  registerConvert(storage);

  storage
    .command("merge")
    .description(
      "fold a differencing disk into its parent, then empty the child (as qemu-img commit does) or delete it",
    )
    .argument("<child>")
    .option("--delete", "delete the child after merging (as Hyper-V's Merge-VHD does)")
    .option("--json", "print what was merged as JSON")
    .action(async (child: string, flags: { json?: boolean; delete?: boolean }) => {
      const stats = await withProgress("merge", (progress) =>
        mergeImage(child, { progress, child: flags.delete ? "deleted" : "emptied" }),
      );
      print(
        flags.json,
        { ...stats, child, childAfter: stats.child },
        () => `${copyText(`${child} -> ${stats.parent}`, stats)}; child ${stats.child}`,
      );
    });

  storage
    .command("compact")
    .description("rewrite a dynamic or differencing VHD without its empty blocks")
    .argument("<file>")
    .option("--json", "print the sizes before and after as JSON")
    .action(async (file: string, flags: { json?: boolean }) => {
      const stats = await withProgress("compact", (progress) => compactImage(file, { progress }));
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

  registerStorageIo(storage);

  storage
    .command("bench")
    .description(
      "the storage benchmarks (as hvlab bench storage): VHD I/O against raw files, convert against qemu-img, kernels against oracles",
    )
    .option(
      "--time <ms>",
      "timing per implementation in milliseconds",
      integerOption(10, 600_000),
      500,
    )
    .option("--quick", "small sizes and short timing (a smoke run, not for figures)")
    .option("--direct", "direct I/O (O_DIRECT) for every file case: around the host's page cache")
    .option("--json", "print {suite, machine, conditions, results} as JSON")
    .option("--csv", "print one row per case and implementation as CSV")
    .action(
      async (flags: {
        time: number;
        quick?: boolean;
        direct?: boolean;
        json?: boolean;
        csv?: boolean;
      }) => {
        checkOutputFlags(flags);
        // The benchmark harness, its suites and its schemas load here, not at
        // start-up: every other storage command (convert, check, ...) would pay for them.
        const [{ runSuite }, { loadSuite }, { resultTable }] = await Promise.all([
          import("../../bench/harness.js"),
          import("../../bench/suites.js"),
          import("./bench.js"),
        ]);
        const progress = startProgress("bench storage", 1);
        const result = await runSuite(await loadSuite("storage"), {
          timeMs: flags.quick ? Math.min(flags.time, 50) : flags.time,
          quick: flags.quick === true,
          direct: flags.direct === true,
          onProgress: (done, total, label) => progress.update(done, label, total),
        }).finally(() => progress.stop());
        if (flags.json) console.log(JSON.stringify(result, null, 2));
        else if (flags.csv)
          process.stdout.write(toCsv(recordsToTable(result.results.map((r) => ({ ...r })))));
        else {
          console.log(formatTable(resultTable(result)));
          console.log(
            result.conditions?.pageCache === false
              ? "(direct I/O (O_DIRECT): the host's page cache is not in play)"
              : "(buffered I/O: the host's page cache is in play)",
          );
        }
      },
    );
}

interface IoFlags {
  types: string;
  file?: string[];
  size: number;
  dir?: string;
  rw: string;
  rwmixread: number;
  bs: number;
  iodepth: number;
  zipf?: number;
  runtime: number;
  seed: number;
  verify?: boolean;
  direct?: boolean;
  threads?: number;
  json?: boolean;
  csv?: boolean;
}

const DISK_TYPES = ["raw", "fixed", "dynamic", "differencing"];

function addIoOptions(command: Command): Command {
  return command
    .option(
      "--types <list>",
      `new disks to create, one per type: ${DISK_TYPES.join(", ")}`,
      "fixed,dynamic,differencing,raw",
    )
    .option("--file <path...>", "run on existing images instead (raw or VHD)")
    .option(
      "--size <size>",
      "size of each new disk",
      sizeOption(1 << 20, MAX_DISK_BYTES),
      256 * 1024 * 1024,
    )
    .option("--dir <dir>", "where new disks go (default: a new temporary directory, removed after)")
    .option("--rw <mode>", `fio's rw: ${IO_MODES.join(", ")}`, "randrw")
    .option("--rwmixread <percent>", "reads in a mixed workload", integerOption(0, 100), 70)
    .option("--bs <size>", "block size, 512 B to 1 MiB", sizeOption(512, 1 << 20), 4096)
    .option("--iodepth <n>", "requests queued per disk", integerOption(1, 1024), 8)
    .option(
      "--zipf <s>",
      "Zipf offsets with exponent s (fio's random_distribution=zipf:s)",
      numberOption(0.01, 10),
    )
    .option(
      "--runtime <ms>",
      "run time per disk in milliseconds",
      integerOption(1, 3_600_000),
      2000,
    )
    .option("--seed <n>", "seed of offsets and data", integerOption(0, 2 ** 31 - 1), 1)
    .option("--verify", "write a header on every block and check every read")
    .option(
      "--direct",
      "direct I/O around the host's page cache (fio's direct=1; O_DIRECT, Linux; refused where the file system has none, as tmpfs)",
    )
    .option("--threads <n>", "pool workers (default: one per disk)", integerOption(1, 64))
    .option("--json", "print the report as JSON")
    .option("--csv", "print one row per disk as CSV");
}

function ioSetup(flags: IoFlags): { disks: IoDisk[]; spec: IoSpec; cleanup: () => void } {
  checkOutputFlags(flags);
  if (!(IO_MODES as readonly string[]).includes(flags.rw))
    throw new UsageError(`--rw must be one of ${IO_MODES.join(", ")}`);
  if (flags.bs % 512 !== 0) throw new UsageError(`--bs must be a multiple of 512, not ${flags.bs}`);
  const spec: IoSpec = {
    rw: flags.rw as IoMode,
    rwmixread: flags.rwmixread,
    bs: flags.bs,
    iodepth: flags.iodepth,
    runtimeMs: flags.runtime,
    seed: flags.seed,
    verify: flags.verify ?? false,
    direct: flags.direct ?? false,
    ...(flags.zipf !== undefined ? { zipf: flags.zipf } : {}),
  };
  const dir = flags.dir ?? makeTemporaryDir("storage-io");
  const cleanup = () => {
    if (!flags.dir) removeTemporary(dir);
  };
  if (flags.file) {
    return { disks: flags.file.map((path, i) => ({ name: `disk${i}`, path })), spec, cleanup };
  }
  const types = flags.types.split(",").map((t) => t.trim());
  for (const t of types)
    if (!DISK_TYPES.includes(t))
      throw new UsageError(`--types: unknown disk type '${t}' (${DISK_TYPES.join(", ")})`);
  const size = Math.floor(flags.size / 2 ** 20) * 2 ** 20;
  const disks = types.map((type) => ({
    name: type,
    path: join(dir, `${type}.${type === "raw" ? "img" : "vhd"}`),
    create: { type: type as VhdType | "raw", size },
  }));
  return { disks, spec, cleanup };
}

function printIo(report: StorageIoReport, flags: { json?: boolean; csv?: boolean }): void {
  const rows = report.disks.map((d) => ({
    disk: d.disk,
    format: d.format,
    reads: d.reads,
    writes: d.writes,
    iops: Math.round(d.iops),
    "MB/s": Number(d.mbps.toFixed(2)),
    "p50 us": d.p50Us,
    "p99 us": d.p99Us,
    "p99.9 us": d.p999Us,
    failed: d.failed,
    "verify errors": d.verifyErrors,
  }));
  if (flags.json) {
    console.log(JSON.stringify(report, null, 2));
    return;
  }
  if (flags.csv) {
    process.stdout.write(toCsv(recordsToTable(rows)));
    return;
  }
  console.log(formatTable(recordsToTable(rows)));
  if (report.events.length > 0) {
    console.log("");
    console.log(
      formatTable(
        recordsToTable(
          report.events.map((e) => ({
            change: e.kind,
            disk: e.disk,
            slot: e.slot,
            "at ms": Math.round(e.atMs),
            "took ms": Number(e.tookMs.toFixed(1)),
            "failed in flight": e.failedInFlight ?? null,
            "done after removal": e.completedAfterRemoval ?? null,
            "file unchanged":
              e.unchangedAfterRemoval === undefined ? null : String(e.unchangedAfterRemoval),
            "acked writes intact":
              e.acknowledgedBlocks === undefined
                ? null
                : `${e.acknowledgedIntact}/${e.acknowledgedBlocks}`,
          })),
        ),
      ),
    );
  }
  const io = report.pageCache
    ? "buffered I/O: the host's page cache is in play"
    : "direct I/O (O_DIRECT): around the host's page cache";
  console.log(`(${io}; ${report.spec.rw}, bs ${report.spec.bs}, iodepth ${report.spec.iodepth})`);
}

/** Registers `hvlab storage io` and `hvlab storage hotplug`. */
export function registerStorageIo(storage: Command): void {
  addIoOptions(
    storage
      .command("io")
      .description(
        "a guest I/O workload in the style of fio on every disk at once, on pool workers",
      ),
  ).action(async (flags: IoFlags) => {
    const { disks, spec, cleanup } = ioSetup(flags);
    const bar = startProgress("io", flags.runtime);
    try {
      const report = await runStorageIo(disks, spec, {
        ...(flags.threads ? { threads: flags.threads } : {}),
        onProgress: (ms, done) =>
          bar.update(Math.min(flags.runtime, Math.round(ms)), `${done} I/Os`),
      });
      bar.stop();
      printIo(report, flags);
      const bad = report.disks.reduce((n, d) => n + d.verifyErrors, 0);
      if (bad > 0) throw new Error(`${bad} reads failed verification`);
    } finally {
      bar.stop();
      cleanup();
    }
  });

  addIoOptions(
    storage
      .command("hotplug")
      .description(
        "hot add and hot remove SCSI disks while the guest does I/O; check what happens to I/O in flight",
      ),
  )
    .option(
      "--add-at <ms>",
      "hot add a new disk this long after the start",
      integerOption(0, 3_600_000),
    )
    .option("--add-type <type>", "type of the disk hot added", "dynamic")
    .option(
      "--remove-at <ms>",
      "hot remove the first disk this long after the start",
      integerOption(0, 3_600_000),
    )
    .option(
      "--guest <os>",
      `the guest OS (${NO_HOT_ADD_GUESTS.join(" and ")} refuse hot add)`,
      "windows-server-2008-r2",
    )
    .action(
      async (
        flags: IoFlags & { addAt?: number; addType: string; removeAt?: number; guest: string },
      ) => {
        const { disks, spec, cleanup } = ioSetup({ ...flags, verify: true });
        if (!DISK_TYPES.includes(flags.addType))
          throw new UsageError(`--add-type must be one of ${DISK_TYPES.join(", ")}`);
        const events: HotplugEvent[] = [];
        const first = disks[0];
        const addAt = flags.addAt ?? Math.round(flags.runtime / 4);
        const removeAt = flags.removeAt ?? Math.round(flags.runtime / 2);
        const dir = dirname(first?.path ?? tmpdir());
        events.push({
          kind: "add",
          atMs: addAt,
          disk: {
            name: `hot-${flags.addType}`,
            path: join(dir, `hot-${flags.addType}.vhd`),
            create: {
              type: flags.addType as VhdType,
              size: Math.floor(flags.size / 2 ** 20) * 2 ** 20,
            },
          },
        });
        if (first) events.push({ kind: "remove", atMs: removeAt, disk: first });
        const bar = startProgress("hotplug", flags.runtime);
        try {
          const report = await runStorageIo(disks, spec, {
            events,
            vm: new VirtualMachine("vm1", flags.guest),
            ...(flags.threads ? { threads: flags.threads } : {}),
            onProgress: (ms, done) =>
              bar.update(Math.min(flags.runtime, Math.round(ms)), `${done} I/Os`),
          });
          bar.stop();
          printIo(report, flags);
        } finally {
          bar.stop();
          cleanup();
        }
      },
    );
}
