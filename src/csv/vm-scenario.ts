import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { FdFile } from "../storage/block-file.js";
import { makeTemporaryDir, removeTemporary } from "../util/temporary.js";
import { type RunningCluster, startCluster } from "./bench-cluster.js";
import { checkVolume, type VolumeProblem } from "./check.js";
import { requestFailover } from "./control-client.js";
import { controlNode, waitForControl } from "./control-socket.js";
import { formatLunFile } from "./format-lun.js";
import { FileLun } from "./lun.js";
import type { VmStarted, VmStopped } from "./vm.js";
import { copyFileOffVolume, type VmDiskCheck, verifyVmDisk } from "./vm-verify.js";

/** How {@link runVmScenario} runs. */
export interface VmScenarioOptions {
  /** Nodes, each starting one VM (3 to 8: a live and a quick migration need three). */
  readonly nodes: number;
  /** VHD type and size of every VM's disk. */
  readonly type: "fixed" | "dynamic";
  readonly diskBytes: number;
  /** The guest workload (verify mode always). */
  readonly rw: string;
  readonly bs: number;
  readonly iodepth: number;
  /** Time before the migrations, and after them, ms. */
  readonly beforeMs: number;
  readonly afterMs: number;
  readonly heartbeatMs: number;
  readonly misses: number;
  readonly lunBytes: number;
  readonly dir?: string;
  readonly log?: (line: string) => void;
}

/** One VM's figures on one node. */
export interface VmRun extends VmStopped {
  readonly node: number;
}

/** A VM moved from one node to another. */
export interface VmMove {
  readonly vm: string;
  readonly from: number;
  readonly to: number;
  /** Stop asked on the source to the first I/O due on the destination: the VM's storage blackout, ms. */
  readonly downtimeMs: number;
  /** The VHD closed on the source (removal asked to closed), ms. */
  readonly closeMs: number;
  /** FLUSH of the source's writes at the target, ms. */
  readonly flushMs: number;
  /** The VHD opened on the destination through the coordinator, ms. */
  readonly openMs: number;
  /** On the destination, start asked to the first I/O due (the open, the worker opening the VHD over its mailbox), ms. */
  readonly resumeMs: number;
  /** The LUN moved (quick migration only): release on the source to the new term on the destination, ms. */
  readonly lunMoveMs?: number;
  /** The LUN move as the old coordinator measured it (FAILOVER's pauseMs). */
  readonly lunMovePauseMs?: number;
}

/** What {@link runVmScenario} measured. */
export interface VmScenarioResult {
  readonly nodes: number;
  readonly type: "fixed" | "dynamic";
  readonly diskBytes: number;
  readonly spec: { readonly rw: string; readonly bs: number; readonly iodepth: number };
  readonly thresholdMs: number;
  /** Every VM's run on every node it ran on. */
  readonly runs: readonly VmRun[];
  /** Live migration: the VHD handed over, no LUN move. */
  readonly live: VmMove;
  /** Quick migration: the VM saved, the LUN moved (disk resource offline, online), the VM restored. */
  readonly quick: VmMove;
  readonly check: { readonly ok: boolean; readonly problems: readonly VolumeProblem[] };
  readonly disks: readonly VmDiskCheck[];
  readonly durationMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The LUN's geometry: 64 KiB clusters, so a VM's disk lies in few extents. */
const VM_LUN_GEOMETRY = { clusterBytes: 65536, fileSlots: 64 } as const;

/**
 * VMs on a Cluster Shared Volume: starts the target and N node processes,
 * one VM per node with its VHD created on the volume through the
 * coordinator, runs the guest workload (verify mode) on all of them, then
 * live-migrates a plain node's VM to another plain node (VHD handed over,
 * the LUN stays) and quick-migrates the coordinator's VM, whose node owns
 * the volume, to the first of them (the LUN moves: the coordinator role,
 * with its reservation, goes along),
 * runs on, stops every VM, stops every process by PID, and checks the
 * volume and every VHD (structure, and every acknowledged block).
 */
export async function runVmScenario(options: VmScenarioOptions): Promise<VmScenarioResult> {
  if (!Number.isInteger(options.nodes) || options.nodes < 3 || options.nodes > 8)
    throw new RangeError(`the VM scenario needs 3 to 8 nodes, not ${options.nodes}`);
  const log = options.log ?? (() => {});
  const dir = options.dir ?? makeTemporaryDir("csv-vms");
  const began = performance.now();
  mkdirSync(dir, { recursive: true });
  const lun = join(dir, "cluster.lun");
  const control = (id: number) => join(dir, `node-${id}.sock`);
  const state = (vm: string) => join(dir, `${vm}.state`);
  await formatLunFile(lun, options.lunBytes, VM_LUN_GEOMETRY);
  log(`  starting the target and ${options.nodes} nodes...`);
  const cluster = await startCluster({
    lun,
    nodes: options.nodes,
    heartbeatMs: options.heartbeatMs,
    misses: options.misses,
    targetArgs: ["--no-sync"],
    nodeArgs: (id) => ["--control", control(id)],
  });
  const runs: VmRun[] = [];
  const ask = async (id: number, command: "vm-prepare" | "vm-start" | "vm-stop", args?: object) =>
    await controlNode(control(id), command, args as Record<string, unknown>, 60_000);
  const spec = { rw: options.rw, bs: options.bs, iodepth: options.iodepth };
  const vmOf = (id: number) => `vm${id}`;
  const start = async (id: number, vm: string, create: boolean, from?: string) =>
    (await ask(id, "vm-start", {
      vm,
      vhd: `${vm}.vhd`,
      ...(create ? { type: options.type, size: options.diskBytes } : {}),
      ...spec,
      seed: Number(vm.slice(2)),
      ...(from ? { state: from } : {}),
    })) as VmStarted;
  const stop = async (id: number, vm: string) => {
    const r = (await ask(id, "vm-stop", { vm, state: state(vm) })) as VmStopped;
    runs.push({ node: id, ...r });
    return r;
  };
  try {
    for (const id of cluster.nodes.keys()) await waitForControl(control(id), 60_000);
    const c = await firstCoordinator(
      cluster,
      Math.max(30_000, options.heartbeatMs * options.misses * 20),
    );
    const [a, b] = [...cluster.nodes.keys()].filter((id) => id !== c);
    if (a === undefined || b === undefined) throw new RangeError("fewer than three nodes");
    log(`  starting ${options.nodes} VMs, their VHDs created on the volume...`);
    await Promise.all(
      [...cluster.nodes.keys()].map(async (id) => {
        await ask(id, "vm-prepare");
        await start(id, vmOf(id), true);
      }),
    );
    await sleep(options.beforeMs);
    log(`  live migration of ${vmOf(a)} from node ${a} to node ${b} (VHD handover)...`);
    const live = await move(a, b, vmOf(a));
    log(
      `  quick migration of ${vmOf(c)} from node ${c}, the volume's owner, to node ${a} (LUN move)...`,
    );
    const quick = await move(c, a, vmOf(c), cluster);
    await sleep(options.afterMs);
    const where = new Map<string, number>();
    for (const id of cluster.nodes.keys()) where.set(vmOf(id), id);
    where.set(vmOf(a), b);
    where.set(vmOf(c), a);
    await Promise.all([...where].map(([vm, id]) => stop(id, vm)));
    await cluster.stop();
    const lunFile = new FdFile(lun, "r");
    const report = await (async () => {
      try {
        return await checkVolume(new FileLun(lunFile, false));
      } finally {
        lunFile.close();
      }
    })();
    const disks: VmDiskCheck[] = [];
    for (const vm of where.keys()) {
      const copy = join(dir, `${vm}.vhd`);
      await copyFileOffVolume(lun, `${vm}.vhd`, copy);
      disks.push(verifyVmDisk(copy, state(vm)));
    }
    return {
      nodes: options.nodes,
      type: options.type,
      diskBytes: options.diskBytes,
      spec,
      thresholdMs: options.heartbeatMs * options.misses,
      runs: runs.sort((a, b) => a.vm.localeCompare(b.vm) || a.node - b.node),
      live,
      quick,
      check: { ok: report.ok, problems: report.problems },
      disks,
      durationMs: performance.now() - began,
    };
  } finally {
    await cluster.stop();
    if (!options.dir) removeTemporary(dir);
  }

  async function move(from: number, to: number, vm: string, lunMove?: RunningCluster) {
    await ask(to, "vm-prepare");
    const t0 = performance.now();
    const stopped = await stop(from, vm);
    let lunMoveMs: number | undefined;
    let lunMovePauseMs: number | undefined;
    if (lunMove) {
      const port = lunMove.nodes.get(from)?.port ?? 0;
      const t = performance.now();
      const reply = await requestFailover(port, to, 30_000);
      if (!reply.ok) throw new Error(`moving the LUN from node ${from} to ${to}: ${reply.error}`);
      lunMoveMs = performance.now() - t;
      lunMovePauseMs = reply.pauseMs;
    }
    const started = await start(to, vm, false, state(vm));
    const downtimeMs = performance.now() - t0;
    return {
      vm,
      from,
      to,
      downtimeMs,
      closeMs: stopped.closeMs,
      flushMs: stopped.flushMs,
      openMs: started.openMs,
      resumeMs: started.startMs,
      ...(lunMoveMs !== undefined ? { lunMoveMs } : {}),
      ...(lunMovePauseMs !== undefined ? { lunMovePauseMs } : {}),
    };
  }
}

/** The first node to say it coordinates. */
async function firstCoordinator(cluster: RunningCluster, timeoutMs: number): Promise<number> {
  return await Promise.any(
    [...cluster.nodes].map(async ([id, n]) => {
      await n.process.next((e) => e.event === "coordinator", timeoutMs);
      return id;
    }),
  );
}
