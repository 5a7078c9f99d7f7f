import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { FdFile } from "../storage/block-file.js";
import { makeTemporaryDir, removeTemporary } from "../util/temporary.js";
import { type AckCheck, readAckLogs, verifyAcks } from "./acks.js";
import { startCluster } from "./bench-cluster.js";
import { checkVolume, type VolumeProblem } from "./check.js";
import type { NodeStatus } from "./control.js";
import { NodeControl, requestFailover } from "./control-client.js";
import { controlNode } from "./control-socket.js";
import { formatLunFile } from "./format-lun.js";
import { FileLun } from "./lun.js";
import { Op } from "./protocol.js";
import { TargetClient } from "./target-client.js";
import {
  type CounterSample,
  metadataResumedAt,
  type TimelinePoint,
  timelineOf,
} from "./timeline.js";

/*
 * `hvlab csv bench`: a cluster scenario. It formats a volume, starts the
 * target and N nodes (each running the storm of metadata operations and
 * 4 KiB direct writes), samples every node's I/O counters over its control
 * socket, kills the coordinator with SIGKILL by its PID, waits for a
 * survivor to take over, then moves the role once more on purpose (a
 * planned failover), and finally checks the volume and every write the
 * nodes saw acknowledged.
 *
 * The pause is measured from the kill to the first metadata operation a
 * survivor completes after it: data writes to extents a node already holds
 * go on without the coordinator (direct I/O), but each node's workload
 * stalls at its next metadata operation until a new coordinator answers.
 */

/** Largest cluster: CSV's 16 nodes. */
export const MAX_BENCH_NODES = 16;

/** How {@link runCsvBench} runs. */
export interface CsvBenchOptions {
  /** Node processes (2 to 16). */
  readonly nodes: number;
  readonly heartbeatMs: number;
  readonly misses: number;
  /** Workload before the kill, ms. */
  readonly beforeMs: number;
  /** Workload after the new coordinator took over, ms (the planned move falls in its middle). */
  readonly afterMs: number;
  /** Timeline interval, ms (100). */
  readonly intervalMs: number;
  /** How often each node's counters are read, ms. */
  readonly pollMs: number;
  /** Files each node keeps, and the size they are created with and grow by. */
  readonly files: number;
  readonly fileBytes: number;
  /** LUN bytes. */
  readonly lunBytes: number;
  /** Also move the role on purpose after the failover (`hvlab csv failover`). */
  readonly planned: boolean;
  /**
   * Cut one node's storage path for the middle third of the time before
   * the kill (`cut-path` on its control socket), so that the timeline shows
   * its I/O going redirected through the coordinator and back (default on).
   */
  readonly cutPath?: boolean;
  /** Where the LUN and the ack logs go (kept); default a temporary folder, removed. */
  readonly dir?: string;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** A moment the timeline marks. */
export interface TimelineMark {
  readonly ms: number;
  readonly what: string;
}

/** What {@link runCsvBench} measured. */
export interface CsvBenchResult {
  readonly nodes: number;
  readonly heartbeatMs: number;
  readonly misses: number;
  /** heartbeat interval x misses: how long a silent peer takes to be declared dead. */
  readonly thresholdMs: number;
  readonly intervalMs: number;
  readonly pollMs: number;
  readonly workload: { readonly files: number; readonly fileBytes: number };
  readonly killed: {
    readonly node: number;
    readonly pid: number;
    readonly epoch: number;
    readonly atMs: number;
  };
  readonly successor: {
    readonly node: number;
    readonly epoch: number;
    /** When it announced the new term, ms from the start. */
    readonly atMs: number;
    readonly preempted: string | null;
  };
  /** Kill to the new term, ms. */
  readonly takeoverMs: number;
  /** Kill to the first metadata operation a survivor completed, ms (within {@link pollMs}). */
  readonly pauseMs: number;
  /** pauseMs / thresholdMs (target: at most 2). */
  readonly pauseOverThreshold: number;
  readonly planned: {
    readonly from: number;
    readonly to: number;
    readonly epoch: number;
    readonly atMs: number;
    /** The old coordinator's view: release to the new term, ms. */
    readonly pauseMs: number;
  } | null;
  /**
   * A VM's disk handed from one node to another as live migration does it
   * (close on A: a FLUSH at the target; open on B: a metadata open through
   * the coordinator; the LUN does not move), median of 5, ms; null without
   * the planned move.
   */
  readonly vhdHandoverMs: number | null;
  /**
   * The node whose storage path was cut mid-run: when (ms from the start),
   * and the writes it sent through the coordinator meanwhile; null when
   * no path was cut.
   */
  readonly redirected: {
    readonly node: number;
    readonly cutAtMs: number;
    readonly restoredAtMs: number;
    readonly redirectedWrites: number;
    readonly redirectedBytes: number;
  } | null;
  readonly marks: readonly TimelineMark[];
  readonly perNode: readonly {
    readonly node: number;
    readonly writes: number;
    readonly bytesWritten: number;
    readonly metadataOps: number;
    readonly metadataRetries: number;
    readonly killed: boolean;
  }[];
  readonly timeline: readonly TimelinePoint[];
  readonly check: {
    readonly ok: boolean;
    readonly problems: readonly VolumeProblem[];
    readonly epoch: number;
  };
  readonly acks: AckCheck & { readonly logged: number };
  readonly durationMs: number;
}

/** The bench LUN's geometry: 4 KiB clusters, so that small files spread over many extents. */
const BENCH_LUN_GEOMETRY = { clusterBytes: 4096, fileSlots: 1024 } as const;

/**
 * Times the storage handover of live migration: the source node closes the
 * VM's VHD (its writes made durable: FLUSH at the target) and the
 * destination opens it through the coordinator (a forwarded metadata open).
 * Connects as a peer of the coordinator on `port`, as the destination node
 * would; the VHD file is created first, outside the timing.
 */
async function measureVhdHandover(port: number, targetPort: number): Promise<number> {
  const peer = await TargetClient.connect(port, `bench-${process.pid}`);
  const source = await TargetClient.connect(targetPort, `bench-source-${process.pid}`);
  const ask = async (request: object) => {
    const reply = await peer.request(
      Op.metadata,
      new TextEncoder().encode(JSON.stringify(request)),
    );
    const r = JSON.parse(new TextDecoder().decode(reply.payload)) as {
      ok?: unknown;
      error?: unknown;
    };
    if (r.ok !== true) throw new Error(`metadata ${JSON.stringify(request)}: ${String(r.error)}`);
  };
  try {
    await ask({ op: "create", name: "vm-migrating.vhd", size: 1 << 20 });
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await source.flush();
      await ask({ op: "open", name: "vm-migrating.vhd" });
      times.push(performance.now() - t);
    }
    return times.sort((a, b) => a - b)[2] ?? 0;
  } finally {
    peer.close();
    source.close();
  }
}

/** The first of `waits` to resolve; when all fail, the first one's error (not an AggregateError). */
async function first<T>(waits: readonly Promise<T>[]): Promise<T> {
  try {
    return await Promise.any(waits);
  } catch (error) {
    throw error instanceof AggregateError && error.errors[0] instanceof Error
      ? error.errors[0]
      : error;
  }
}

/** Runs the cluster scenario; every process it started is stopped before it returns. */
export async function runCsvBench(options: CsvBenchOptions): Promise<CsvBenchResult> {
  if (!Number.isInteger(options.nodes) || options.nodes < 2 || options.nodes > MAX_BENCH_NODES)
    throw new RangeError(`a failover needs 2 to ${MAX_BENCH_NODES} nodes, not ${options.nodes}`);
  const log = options.log ?? (() => {});
  const dir = options.dir ?? makeTemporaryDir("csv-bench");
  const thresholdMs = options.heartbeatMs * options.misses;
  try {
    const lun = join(dir, "cluster.lun");
    await formatLunFile(lun, options.lunBytes, BENCH_LUN_GEOMETRY);
    const ackLog = (id: number) => join(dir, `acks-node-${id}.jsonl`);
    const controlSocket = (id: number) => join(dir, `node-${id}.sock`);
    log(
      `  starting the target and ${options.nodes} nodes (heartbeat ${options.heartbeatMs} ms x ${options.misses})...`,
    );
    const cluster = await startCluster({
      lun,
      nodes: options.nodes,
      heartbeatMs: options.heartbeatMs,
      misses: options.misses,
      targetArgs: ["--no-sync"],
      nodeArgs: (id) => [
        "--storm",
        "--files",
        String(options.files),
        "--file-size",
        String(options.fileBytes),
        "--ack-log",
        ackLog(id),
        "--control",
        controlSocket(id),
      ],
    });
    const samples: CounterSample[] = [];
    const latest = new Map<number, NodeStatus>();
    const killedNodes = new Set<number>();
    const controls = new Map([...cluster.nodes].map(([id, n]) => [id, new NodeControl(n.port)]));
    let polling = true;
    const t0 = performance.now();
    const wall0 = Date.now();
    const now = () => performance.now() - t0;
    const poller = (async () => {
      while (polling) {
        const tick = performance.now();
        await Promise.all(
          [...controls].map(async ([id, control]) => {
            if (killedNodes.has(id)) return;
            try {
              const s = await control.status(Math.max(200, options.pollMs * 5));
              latest.set(id, s);
              samples.push({
                node: id,
                ms: now(),
                writes: s.io.writes,
                metadataOps: s.io.metadataOps,
                redirectedWrites: s.io.redirectedWrites,
              });
            } catch {
              // A node busy or gone misses this sample; the timeline shows the gap.
            }
          }),
        );
        await sleep(Math.max(0, options.pollMs - (performance.now() - tick)));
      }
    })();
    const marks: TimelineMark[] = [];
    let result: Omit<CsvBenchResult, "check" | "acks" | "perNode" | "timeline" | "durationMs">;
    try {
      const firstTerm = await first(
        [...cluster.nodes.values()].map((n) =>
          n.process.next((e) => e.event === "coordinator", 60_000 + 4 * thresholdMs),
        ),
      );
      marks.push({
        ms: (firstTerm.atMs ?? wall0) - wall0,
        what: `node ${firstTerm.node} coordinator (epoch ${firstTerm.epoch})`,
      });
      log(`  node ${firstTerm.node} is coordinator; workload for ${options.beforeMs} ms...`);
      let redirected: CsvBenchResult["redirected"] = null;
      if (options.cutPath ?? true) {
        // The highest-numbered node other than the coordinator loses its path for the middle
        // third: its data I/O goes through the coordinator, then back to the target.
        const cutNode = Math.max(
          ...[...cluster.nodes.keys()].filter((id) => id !== firstTerm.node),
        );
        await sleep(options.beforeMs / 3);
        const before = latest.get(cutNode)?.io;
        const reason = "csv bench: storage path cut mid-run";
        await controlNode(controlSocket(cutNode), "cut-path", { reason });
        const cutAtMs = now();
        marks.push({ ms: cutAtMs, what: `node ${cutNode} path cut: redirected I/O` });
        log(`  cut node ${cutNode}'s storage path: its I/O goes through the coordinator...`);
        await sleep(options.beforeMs / 3);
        // A loaded machine may leave the node no write in that time: the path stays cut until
        // one has gone redirected (bounded), so the timeline has something to show.
        const until = performance.now() + 10_000 + 20 * thresholdMs;
        while (
          (latest.get(cutNode)?.io.redirectedWrites ?? 0) <= (before?.redirectedWrites ?? 0) &&
          performance.now() < until
        )
          await sleep(options.pollMs);
        await controlNode(controlSocket(cutNode), "restore-path");
        const restoredAtMs = now();
        const after = (await controls.get(cutNode)?.status(10_000))?.io;
        marks.push({ ms: restoredAtMs, what: `node ${cutNode} path restored: direct I/O` });
        redirected = {
          node: cutNode,
          cutAtMs,
          restoredAtMs,
          redirectedWrites: (after?.redirectedWrites ?? 0) - (before?.redirectedWrites ?? 0),
          redirectedBytes: (after?.redirectedBytes ?? 0) - (before?.redirectedBytes ?? 0),
        };
        await sleep(options.beforeMs / 3);
      } else await sleep(options.beforeMs);
      const owner = [...latest.values()].reduce<NodeStatus | undefined>(
        (best, s) => (best === undefined || s.epoch > best.epoch ? s : best),
        undefined,
      );
      const victim = owner && cluster.nodes.get(owner.coordinator);
      if (!owner || !victim) throw new Error("no node reported a coordinator before the kill");
      const killedEpoch = owner.epoch;
      killedNodes.add(owner.coordinator);
      controls.get(owner.coordinator)?.close();
      const killAtMs = now();
      process.kill(victim.process.pid, "SIGKILL");
      marks.push({ ms: killAtMs, what: `node ${owner.coordinator} killed (SIGKILL)` });
      log(
        `  killed the coordinator, node ${owner.coordinator} (pid ${victim.process.pid}); waiting for a survivor...`,
      );
      const survivors = [...cluster.nodes].filter(([id]) => id !== owner.coordinator);
      const term = await first(
        survivors.map(([, n]) =>
          n.process.next(
            (e) => e.event === "coordinator" && (e.epoch ?? 0) > killedEpoch,
            60_000 + 20 * thresholdMs,
          ),
        ),
      );
      const termAtMs = (term.atMs ?? Date.now()) - wall0;
      marks.push({ ms: termAtMs, what: `node ${term.node} coordinator (epoch ${term.epoch})` });
      log(
        `  node ${term.node} took over in epoch ${term.epoch}; workload for ${options.afterMs} ms...`,
      );
      let planned: CsvBenchResult["planned"] = null;
      let vhdHandoverMs: number | null = null;
      if (options.planned) {
        await sleep(options.afterMs / 2);
        const to = survivors.map(([id]) => id).find((id) => id !== term.node);
        const port = cluster.nodes.get(term.node)?.port;
        if (to !== undefined && port !== undefined) {
          const atMs = now();
          const reply = await requestFailover(port, to, 10_000 + 4 * thresholdMs);
          if (!reply.ok) throw new Error(`the planned failover was refused: ${reply.error}`);
          planned = {
            from: reply.from,
            to: reply.to,
            epoch: reply.epoch,
            atMs,
            pauseMs: reply.pauseMs,
          };
          marks.push({ ms: atMs, what: `moved to node ${to} (epoch ${reply.epoch})` });
          log(`  moved the role to node ${to} on purpose in ${reply.pauseMs.toFixed(1)} ms`);
          const owner = cluster.nodes.get(to);
          if (owner) vhdHandoverMs = await measureVhdHandover(owner.port, cluster.targetPort);
        }
        await sleep(options.afterMs / 2);
      } else await sleep(options.afterMs);
      // No metadata operation can complete before the new term opens; one
      // that shows up earlier was answered by the killed coordinator just
      // before it died (and sampled late), so the search starts one poll
      // before the new term.
      const resumed = metadataResumedAt(
        samples,
        survivors.map(([id]) => id),
        Math.max(killAtMs, termAtMs - options.pollMs),
      );
      if (resumed === undefined)
        throw new Error("no survivor completed a metadata operation after the kill");
      result = {
        nodes: options.nodes,
        heartbeatMs: options.heartbeatMs,
        misses: options.misses,
        thresholdMs,
        intervalMs: options.intervalMs,
        pollMs: options.pollMs,
        workload: { files: options.files, fileBytes: options.fileBytes },
        killed: {
          node: owner.coordinator,
          pid: victim.process.pid,
          epoch: killedEpoch,
          atMs: killAtMs,
        },
        successor: {
          node: term.node,
          epoch: term.epoch ?? 0,
          atMs: termAtMs,
          preempted: typeof term.preempted === "string" ? term.preempted : null,
        },
        takeoverMs: termAtMs - killAtMs,
        pauseMs: resumed - killAtMs,
        pauseOverThreshold: (resumed - killAtMs) / thresholdMs,
        planned,
        vhdHandoverMs,
        redirected,
        marks,
      };
    } finally {
      polling = false;
      await poller;
      for (const c of controls.values()) c.close();
      await cluster.stop();
    }
    const durationMs = now();
    log("  checking the volume and every acknowledged write...");
    const file = new FdFile(lun, "r");
    let check: CsvBenchResult["check"];
    let acks: CsvBenchResult["acks"];
    try {
      const report = await checkVolume(new FileLun(file, false));
      check = { ok: report.ok, problems: report.problems.slice(0, 10), epoch: report.epoch ?? 0 };
      const logged = readAckLogs([...cluster.nodes.keys()].map(ackLog));
      acks = { ...(await verifyAcks(new FileLun(file, false), logged)), logged: logged.length };
    } finally {
      file.close();
    }
    const perNode = [...cluster.nodes.keys()].map((id) => {
      const s = latest.get(id);
      return {
        node: id,
        writes: s?.io.writes ?? 0,
        bytesWritten: s?.io.bytesWritten ?? 0,
        metadataOps: s?.io.metadataOps ?? 0,
        metadataRetries: s?.io.metadataRetries ?? 0,
        killed: killedNodes.has(id),
      };
    });
    return {
      ...result,
      perNode,
      timeline: timelineOf(samples, options.intervalMs, durationMs),
      check,
      acks,
      durationMs,
    };
  } finally {
    if (options.dir === undefined) removeTemporary(dir);
  }
}
