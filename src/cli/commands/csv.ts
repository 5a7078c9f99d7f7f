import { existsSync, rmSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import { checkVolume } from "../../csv/check.js";
import {
  DEFAULT_CLUSTER_BYTES,
  DEFAULT_FILE_SLOTS,
  DEFAULT_JOURNAL_SECTORS,
  MAX_CLUSTER_BYTES,
  MAX_FILE_SLOTS,
  MAX_JOURNAL_SECTORS,
  MAX_VOLUME_BYTES,
  MIN_CLUSTER_BYTES,
  MIN_FILE_SLOTS,
  MIN_JOURNAL_SECTORS,
} from "../../csv/layout.js";
import { FileLun } from "../../csv/lun.js";
import { ClusterNode } from "../../csv/node.js";
import { runStorm } from "../../csv/storm.js";
import { SUPERBLOCK_MAGIC } from "../../csv/superblock.js";
import { LunTarget } from "../../csv/target.js";
import { Volume } from "../../csv/volume.js";
import { formatTable } from "../../report/table.js";
import { FdFile } from "../../storage/block-file.js";
import { formatBytes } from "../../util/units.js";
import { integerOption, numberOption, sizeOption, UsageError } from "../options.js";
import { registerCsvCluster } from "./csv-cluster.js";
import { peersOption } from "./csv-options.js";
import { parseBandwidth } from "./migrate.js";

function print(json: boolean | undefined, record: unknown, text: () => string): void {
  console.log(json ? JSON.stringify(record, null, 2) : text());
}

function clusterOption(text: string): number {
  const bytes = sizeOption(MIN_CLUSTER_BYTES, MAX_CLUSTER_BYTES)(text);
  if ((bytes & (bytes - 1)) !== 0)
    throw new UsageError(`--cluster-size must be a power of two, not ${bytes}`);
  return bytes;
}

function bandwidthOption(text: string): number {
  try {
    return parseBandwidth(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** Opens a LUN by path: a file or a block device. */
function openLun(path: string, mode: "r" | "r+"): FileLun {
  if (!existsSync(path)) throw new UsageError(`no LUN at ${path}`);
  return new FileLun(new FdFile(path, mode));
}

/** Registers `hvlab csv`: cluster shared volumes on one LUN. */
export function registerCsv(program: Command): void {
  const csv = program
    .command("csv")
    .description(
      "cluster shared volumes: one LUN used by up to 16 node processes, a coordinator for metadata, direct and redirected I/O",
    );

  csv
    .command("create")
    .description(
      "format a cluster shared volume on a LUN (a file, created with SIZE if missing, or a block device)",
    )
    .argument("<lun>", "the LUN: a file or a block device")
    .argument("[size]", "size of a new LUN file, e.g. 1GiB", sizeOption(1 << 20, MAX_VOLUME_BYTES))
    .option(
      "--cluster-size <size>",
      "allocation unit of the data area (power of two, 4KiB to 1MiB)",
      clusterOption,
      DEFAULT_CLUSTER_BYTES,
    )
    .option(
      "--files <n>",
      `file-table slots (${MIN_FILE_SLOTS} to ${MAX_FILE_SLOTS})`,
      integerOption(MIN_FILE_SLOTS, MAX_FILE_SLOTS),
      DEFAULT_FILE_SLOTS,
    )
    .option(
      "--journal-sectors <n>",
      `journal size in 512-byte sectors (${MIN_JOURNAL_SECTORS} to ${MAX_JOURNAL_SECTORS})`,
      integerOption(MIN_JOURNAL_SECTORS, MAX_JOURNAL_SECTORS),
      DEFAULT_JOURNAL_SECTORS,
    )
    .option("--label <text>", "volume label (up to 32 bytes of UTF-8)", "")
    .option("--force", "format over an existing cluster shared volume")
    .option("--json", "print the new volume's layout as JSON")
    .action(
      async (
        path: string,
        size: number | undefined,
        flags: {
          clusterSize: number;
          files: number;
          journalSectors: number;
          label: string;
          force?: boolean;
          json?: boolean;
        },
      ) => {
        if (new TextEncoder().encode(flags.label).length > 32)
          throw new UsageError("--label is longer than 32 bytes");
        let file: FdFile;
        let created = false;
        if (existsSync(path)) {
          if (size !== undefined)
            throw new UsageError(`${path} exists: give no SIZE (the volume takes the LUN's size)`);
          file = new FdFile(path, "r+");
        } else {
          if (size === undefined)
            throw new UsageError(
              `${path} does not exist: give the SIZE of a new LUN file, e.g. 1GiB`,
            );
          file = new FdFile(path, "wx+");
          created = true;
          file.truncate(size);
        }
        const lun = new FileLun(file);
        try {
          const head = new Uint8Array(8);
          file.read(head, 0);
          if (!flags.force && new TextDecoder("latin1").decode(head) === SUPERBLOCK_MAGIC)
            throw new UsageError(
              `${path} already holds a cluster shared volume; --force formats over it`,
            );
          if (lun.bytes < 1 << 20)
            throw new UsageError(`${path} holds ${lun.bytes} bytes; a volume needs at least 1 MiB`);
          let volume: Volume;
          try {
            volume = await Volume.format(lun, {
              clusterBytes: flags.clusterSize,
              fileSlots: flags.files,
              journalSectors: flags.journalSectors,
              label: flags.label,
            });
          } catch (error) {
            if (created) rmSync(path, { force: true });
            if (error instanceof RangeError || (error as Error).name === "VolumeFormatError")
              throw new UsageError(
                `cannot lay out a volume on ${path}: ${(error as Error).message}`,
              );
            throw error;
          }
          const record = { lun: path, uuid: volume.uuid, label: volume.label, ...volume.layout };
          print(
            flags.json,
            record,
            () =>
              `created a cluster shared volume on ${path}: ${formatBytes(volume.layout.volumeBytes)}, ${volume.layout.dataClusters} clusters of ${formatBytes(volume.layout.clusterBytes)}, ${volume.layout.fileSlots} file slots`,
          );
        } finally {
          lun.close();
        }
      },
    );

  csv
    .command("check")
    .description(
      "verify a volume: no cluster owned twice, bitmap equal to the file table, journal empty or replayable, epochs that never overlap, every file readable (exit 1 on problems)",
    )
    .argument("<lun>")
    .option("--json", "print the report as JSON")
    .action(async (path: string, flags: { json?: boolean }) => {
      const lun = openLun(path, "r");
      try {
        const report = await checkVolume(lun);
        print(flags.json, report, () => {
          if (!report.ok)
            return report.problems
              .map((p) => `error: ${p.offset >= 0 ? `offset ${p.offset}: ` : ""}${p.message}`)
              .join("\n");
          return formatTable({
            columns: ["field", "value"],
            rows: [
              ["generation", report.generation ?? 0],
              ["epoch", `${report.epoch} (node ${report.coordinator})`],
              ["terms in the epoch log", report.terms ?? 0],
              ["journal", report.journal ? JSON.stringify(report.journal) : "?"],
              ["files", report.files ?? 0],
              ["clusters used", `${report.usedClusters} of ${report.dataClusters}`],
              ["result", "no problems found"],
            ],
          });
        });
        if (!report.ok) throw new Error(`${path}: ${report.problems.length} problems`);
      } finally {
        lun.close();
      }
    });

  csv
    .command("target")
    .description(
      "serve a LUN to csv nodes over loopback TCP (framed, checksummed block I/O with SCSI-3 persistent reservations) until SIGTERM",
    )
    .argument("<lun>", "the LUN: a file or a block device")
    .option(
      "--port <n>",
      "TCP port on 127.0.0.1 (0: any free port, printed)",
      integerOption(0, 65535),
      0,
    )
    .option(
      "--throttle <rate>",
      "bandwidth of the storage path: 8Gbit (Fibre Channel), 100MiB (per second) or unlimited",
      bandwidthOption,
      Number.POSITIVE_INFINITY,
    )
    .option(
      "--latency <ms>",
      "added to every READ and WRITE (0 to 10000 ms)",
      numberOption(0, 10_000),
      0,
    )
    .option(
      "--handshake-timeout <ms>",
      "a connection must log in within this time",
      integerOption(10, 600_000),
      5000,
    )
    .option(
      "--idle-timeout <ms>",
      "a connection silent this long is closed",
      integerOption(10, 86_400_000),
      300_000,
    )
    .option("--no-sync", "FLUSH does not call fdatasync (scratch LUNs)")
    .option("--json", "print the listening record as one JSON line")
    .action(
      async (
        path: string,
        flags: {
          port: number;
          throttle: number;
          latency: number;
          handshakeTimeout: number;
          idleTimeout: number;
          sync: boolean;
          json?: boolean;
        },
      ) => {
        if (!existsSync(path)) throw new UsageError(`no LUN at ${path}`);
        const file = new FdFile(path, "r+");
        const target = new LunTarget(file, {
          ...(Number.isFinite(flags.throttle) ? { throttleBytesPerSecond: flags.throttle } : {}),
          latencyMs: flags.latency,
          handshakeTimeoutMs: flags.handshakeTimeout,
          idleTimeoutMs: flags.idleTimeout,
          durable: flags.sync,
        });
        let port: number;
        try {
          port = await target.listen(flags.port);
        } catch (error) {
          file.close();
          throw new UsageError(
            `cannot listen on 127.0.0.1:${flags.port}: ${(error as Error).message}`,
          );
        }
        const record = {
          event: "listening",
          lun: path,
          host: "127.0.0.1",
          port,
          pid: process.pid,
          bytes: target.bytes,
        };
        console.log(
          flags.json
            ? JSON.stringify(record)
            : `serving ${path} (${formatBytes(target.bytes)}) on 127.0.0.1:${port}, pid ${process.pid}`,
        );
        await new Promise<void>((resolve) => {
          process.once("SIGTERM", resolve);
          process.once("SIGINT", resolve);
        });
        await target.close();
        file.close();
      },
    );

  csv
    .command("node")
    .description(
      "run one cluster node: register with the target, heartbeat the peers, follow or become the coordinator, forward metadata, do direct I/O; until SIGTERM",
    )
    .requiredOption(
      "--id <n>",
      "this node's number (1 to 16; the lowest live node becomes coordinator)",
      integerOption(1, 16),
    )
    .requiredOption(
      "--port <n>",
      "TCP port on 127.0.0.1 this node listens on for peers",
      integerOption(1, 65535),
    )
    .requiredOption(
      "--target-port <n>",
      "the target's TCP port on 127.0.0.1",
      integerOption(1, 65535),
    )
    .option(
      "--peers <list>",
      "the other nodes as id=port, comma-separated (e.g. 2=7002,3=7003)",
      peersOption,
      new Map<number, number>(),
    )
    .option(
      "--heartbeat-interval <ms>",
      "time between heartbeats (the cluster service's SameSubnetDelay, 1000 ms)",
      integerOption(10, 60_000),
      1000,
    )
    .option(
      "--heartbeat-misses <n>",
      "heartbeats missed before a peer is dead (SameSubnetThreshold, 5)",
      integerOption(1, 100),
      5,
    )
    .option("--storm", "run a storm of metadata operations and data writes")
    .option("--files <n>", "storm: files this node keeps", integerOption(1, 64), 4)
    .option(
      "--file-size <size>",
      "storm: size a file is created with and grows by",
      sizeOption(4096, 1 << 30),
      65536,
    )
    .option("--gap <ms>", "storm: pause between operations", integerOption(0, 60_000), 0)
    .option("--ack-log <file>", "storm: log every acknowledged write here (JSON lines)")
    .option("--json", "print events as JSON lines")
    .action(
      async (flags: {
        id: number;
        port: number;
        targetPort: number;
        peers: Map<number, number>;
        heartbeatInterval: number;
        heartbeatMisses: number;
        storm?: boolean;
        files: number;
        fileSize: number;
        gap: number;
        ackLog?: string;
        json?: boolean;
      }) => {
        if (flags.peers.has(flags.id))
          throw new UsageError(`--peers names this node (${flags.id}) itself`);
        if (flags.storm && !flags.ackLog) throw new UsageError("--storm needs --ack-log FILE");
        const node = new ClusterNode({
          id: flags.id,
          port: flags.port,
          targetPort: flags.targetPort,
          peers: flags.peers,
          heartbeatMs: flags.heartbeatInterval,
          misses: flags.heartbeatMisses,
          onEvent: (event) =>
            console.log(flags.json ? JSON.stringify(event) : Object.values(event).join(" ")),
        });
        await node.start();
        const stop = new AbortController();
        const storm =
          flags.storm && flags.ackLog
            ? runStorm(node, {
                files: flags.files,
                fileBytes: flags.fileSize,
                ackLog: flags.ackLog,
                gapMs: flags.gap,
                signal: stop.signal,
              })
            : Promise.resolve();
        await new Promise<void>((resolve) => {
          process.once("SIGTERM", resolve);
          process.once("SIGINT", resolve);
        });
        stop.abort();
        await Promise.race([storm, new Promise((r) => setTimeout(r, 2000))]);
        node.stop();
      },
    );

  registerCsvCluster(csv);
}
