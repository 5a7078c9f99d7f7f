import { existsSync, rmSync, statSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import { checkVolume } from "../../csv/check.js";
import { serveControl } from "../../csv/control-socket.js";
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
import { ClusterNode, DEFAULT_CLUSTER_BANDWIDTH, type PeerAddress } from "../../csv/node.js";
import { runStorm } from "../../csv/storm.js";
import { SUPERBLOCK_MAGIC } from "../../csv/superblock.js";
import { LunTarget } from "../../csv/target.js";
import { Volume } from "../../csv/volume.js";
import { formatTable } from "../../report/table.js";
import { FdFile } from "../../storage/block-file.js";
import {
  checkExposure,
  describeSecurity,
  isLoopback,
  TransportError,
  type TransportFlags,
  type TransportSecurity,
} from "../../transport/secure.js";
import { formatBytes } from "../../util/units.js";
import { integerOption, numberOption, sizeOption, UsageError } from "../options.js";
import { addTransportOptions, transportSecurityOf } from "../transport-options.js";
import { registerCsvCluster } from "./csv-cluster.js";
import { registerCsvVms } from "./csv-vms.js";
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

  const target = csv
    .command("target")
    .description(
      "serve a LUN to csv nodes over loopback TCP (framed, checksummed block I/O with SCSI-3 persistent reservations) until SIGTERM",
    )
    .argument("<lun>", "the LUN: a file or a block device")
    .option(
      "--port <n>",
      "TCP port to listen on (0: any free port, printed)",
      integerOption(0, 65535),
      0,
    )
    .option(
      "--host <address>",
      "address to listen on; beyond loopback it needs --tls-creds or --tls-psk (or --insecure)",
      "127.0.0.1",
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
    .option(
      "--socket <path>",
      "also listen on this Unix socket (mode 0600) for nodes on this host: no TCP stack on the data path",
    )
    .option(
      "--registrations <file>",
      "publish the persistent reservations here for nodes doing direct I/O on the LUN (csv node --lun) (default: the LUN's path + .registrations when the LUN is a file)",
    )
    .option(
      "--no-registrations",
      "publish no registration board: nodes reach the LUN through the target only",
    )
    .option("--json", "print the listening record as one JSON line");
  addTransportOptions(target);
  target.action(
    async (
      path: string,
      flags: {
        port: number;
        throttle: number;
        latency: number;
        handshakeTimeout: number;
        idleTimeout: number;
        sync: boolean;
        host: string;
        socket?: string;
        registrations?: string | false;
        json?: boolean;
      } & TransportFlags,
    ) => {
      if (!existsSync(path)) throw new UsageError(`no LUN at ${path}`);
      const registrations =
        flags.registrations === false
          ? undefined
          : (flags.registrations ??
            (statSync(path).isFile() ? `${path}.registrations` : undefined));
      if (flags.socket !== undefined && existsSync(flags.socket))
        throw new UsageError(`--socket ${flags.socket}: the path exists already`);
      const security = listenerSecurity(flags, flags.host, "server");
      const file = new FdFile(path, "r+");
      let target: LunTarget;
      try {
        target = new LunTarget(file, {
          security,
          onRefused: (reason, peer) =>
            console.error(`hvlab: csv target: refused ${peer}: ${reason}`),
          ...(Number.isFinite(flags.throttle) ? { throttleBytesPerSecond: flags.throttle } : {}),
          latencyMs: flags.latency,
          handshakeTimeoutMs: flags.handshakeTimeout,
          idleTimeoutMs: flags.idleTimeout,
          durable: flags.sync,
          ...(registrations !== undefined ? { registrations } : {}),
        });
      } catch (error) {
        file.close();
        // The only file the target creates is the board: an unwritable place is the user's to fix.
        throw new UsageError(`--registrations ${registrations}: ${(error as Error).message}`);
      }
      let port: number;
      try {
        port = await target.listen(flags.port, flags.host);
      } catch (error) {
        file.close();
        throw new UsageError(
          `cannot listen on ${flags.host}:${flags.port}: ${(error as Error).message}`,
        );
      }
      if (flags.socket !== undefined)
        try {
          await target.listenLocal(flags.socket);
        } catch (error) {
          await target.close();
          file.close();
          throw new UsageError(`--socket ${flags.socket}: ${(error as Error).message}`);
        }
      const record = {
        event: "listening",
        lun: path,
        host: flags.host,
        port,
        ...(flags.socket !== undefined ? { socket: flags.socket } : {}),
        ...(registrations !== undefined ? { registrations } : {}),
        pid: process.pid,
        bytes: target.bytes,
        transport: describeSecurity(security),
        insecure: security.kind === "plain" && security.insecure,
      };
      warnInsecure(security, flags.host, "csv target");
      console.log(
        flags.json
          ? JSON.stringify(record)
          : `serving ${path} (${formatBytes(target.bytes)}) on ${flags.host}:${port} over ${describeSecurity(security)}, pid ${process.pid}`,
      );
      await new Promise<void>((resolve) => {
        process.once("SIGTERM", resolve);
        process.once("SIGINT", resolve);
      });
      await target.close();
      file.close();
    },
  );

  const node = csv
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
      "TCP port this node listens on for peers",
      integerOption(1, 65535),
    )
    .option(
      "--host <address>",
      "address this node listens on; beyond loopback it needs --tls-creds or --tls-psk (or --insecure)",
      "127.0.0.1",
    )
    .requiredOption("--target-port <n>", "the target's TCP port", integerOption(1, 65535))
    .option("--target-host <address>", "the target's address", "127.0.0.1")
    .option(
      "--target-socket <path>",
      "the target's Unix socket (csv target --socket) when it runs on this host: the data path goes there",
    )
    .option(
      "--lun <path>",
      "this node's own path to the LUN the target serves: file data is read and written there directly, fenced by the target's registration board (default: data goes through the target)",
    )
    .option(
      "--lun-direct",
      "open --lun with O_DIRECT: unbuffered I/O around the host's page cache, as Hyper-V's on a CSV (needs a file system that takes it)",
    )
    .option(
      "--registrations <file>",
      "the target's registration board (csv target --registrations; default: the --lun path + .registrations)",
    )
    .option(
      "--peers <list>",
      "the other nodes as id=port or id=host:port, comma-separated (e.g. 2=7002,3=7003)",
      peerAddressesOption,
      new Map<number, PeerAddress>(),
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
    .option(
      "--cluster-bandwidth <rate>",
      "bandwidth of this node's cluster-network link, which carries redirected I/O: 1Gbit (1 GbE), 10Gbit, 100MiB (per second)",
      clusterBandwidthOption,
      DEFAULT_CLUSTER_BANDWIDTH,
    )
    .option(
      "--control <socket>",
      "listen for control commands on this Unix socket (JSON lines as QMP: query-status, cut-path, restore-path, backup-begin, backup-end)",
    )
    .option(
      "--cut-path-after <ms>",
      "fault injection: cut this node's storage path this long after start (its I/O goes redirected)",
      integerOption(0, 86_400_000),
    )
    .option(
      "--restore-path-after <ms>",
      "fault injection: restore the path this long after start (back to direct I/O)",
      integerOption(0, 86_400_000),
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
    .option("--json", "print events as JSON lines");
  addTransportOptions(node);
  node.action(
    async (
      flags: {
        id: number;
        port: number;
        host: string;
        targetPort: number;
        targetHost: string;
        targetSocket?: string;
        lun?: string;
        lunDirect?: boolean;
        registrations?: string;
        clusterBandwidth: number;
        control?: string;
        cutPathAfter?: number;
        restorePathAfter?: number;
        peers: Map<number, PeerAddress>;
        heartbeatInterval: number;
        heartbeatMisses: number;
        storm?: boolean;
        files: number;
        fileSize: number;
        gap: number;
        ackLog?: string;
        json?: boolean;
      } & TransportFlags,
    ) => {
      if (flags.peers.has(flags.id))
        throw new UsageError(`--peers names this node (${flags.id}) itself`);
      if (flags.lunDirect && flags.lun === undefined)
        throw new UsageError("--lun-direct needs --lun PATH (the node's own path to the LUN)");
      if (flags.storm && !flags.ackLog) throw new UsageError("--storm needs --ack-log FILE");
      if (
        flags.restorePathAfter !== undefined &&
        (flags.cutPathAfter === undefined || flags.restorePathAfter <= flags.cutPathAfter)
      )
        throw new UsageError("--restore-path-after needs a --cut-path-after before it");
      const listen = listenerSecurity(flags, flags.host, "server");
      // The connecting side's credentials: the same directory or key file, without the listener's authz list.
      const { tlsAuthz: _authz, ...connectFlags } = flags;
      const connect = transportSecurityOf(connectFlags, "client");
      warnInsecure(listen, flags.host, "csv node");
      const node = new ClusterNode({
        id: flags.id,
        port: flags.port,
        host: flags.host,
        targetPort: flags.targetPort,
        targetHost: flags.targetHost,
        ...(flags.targetSocket !== undefined ? { targetSocket: flags.targetSocket } : {}),
        ...(flags.lun !== undefined ? { lun: flags.lun } : {}),
        ...(flags.lunDirect ? { lunDirect: true } : {}),
        ...(flags.registrations !== undefined ? { registrations: flags.registrations } : {}),
        peers: flags.peers,
        heartbeatMs: flags.heartbeatInterval,
        misses: flags.heartbeatMisses,
        clusterBandwidth: flags.clusterBandwidth,
        security: { listen, connect },
        onEvent: (event) =>
          console.log(flags.json ? JSON.stringify(event) : Object.values(event).join(" ")),
      });
      await node.start();
      const control = flags.control ? await serveControl(flags.control, node) : undefined;
      const faults = [
        flags.cutPathAfter !== undefined &&
          setTimeout(() => node.cutPath("fault injection"), flags.cutPathAfter),
        flags.restorePathAfter !== undefined &&
          setTimeout(() => void node.restorePath().catch(() => {}), flags.restorePathAfter),
      ];
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
      for (const timer of faults) if (timer) clearTimeout(timer);
      control?.close();
      await Promise.race([node.vms.close(), new Promise((r) => setTimeout(r, 2000))]);
      node.stop();
    },
  );
  registerCsvCluster(csv);
  registerCsvVms(csv);
}

/** --cluster-bandwidth: a rate, not unlimited (a link has one). */
function clusterBandwidthOption(text: string): number {
  const rate = bandwidthOption(text);
  if (!Number.isFinite(rate) || rate <= 0)
    throw new InvalidArgumentError(`"${text}" is no link rate: give e.g. 1Gbit or 100MiB`);
  return rate;
}

/** The listening side's security, refused beyond loopback without TLS unless --insecure. */
function listenerSecurity(flags: TransportFlags, host: string, role: "server"): TransportSecurity {
  const security = transportSecurityOf(flags, role);
  try {
    checkExposure(host, security, "read and write the shared LUN");
  } catch (error) {
    if (error instanceof TransportError) throw new UsageError(error.message);
    throw error;
  }
  return security;
}

function warnInsecure(security: TransportSecurity, host: string, who: string): void {
  if (security.kind === "plain" && security.insecure && !isLoopback(host))
    console.error(
      `hvlab: ${who}: --insecure: listening on ${host} without TLS; anyone who reaches it can read and write the shared LUN`,
    );
}

/** Parses --peers: id=port or id=host:port pairs (an IPv6 host in brackets). */
function peerAddressesOption(text: string): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>();
  for (const item of text.split(",")) {
    const m = /^\s*(\d+)\s*=\s*(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?(\d+)\s*$/.exec(item);
    const id = Number(m?.[1]);
    const host = m?.[2]?.replace(/^\[|\]$/g, "");
    const port = Number(m?.[3]);
    if (!m || id < 1 || id > 16 || port < 1 || port > 65535)
      throw new InvalidArgumentError(
        `"${item}" is not id=port or id=host:port (id 1 to 16, port 1 to 65535)`,
      );
    if (peers.has(id)) throw new InvalidArgumentError(`node ${id} is listed twice`);
    peers.set(id, host === undefined ? port : { host, port });
  }
  return peers;
}
