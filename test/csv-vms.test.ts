import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCluster } from "../src/csv/bench-cluster.js";
import { controlNode, waitForControl } from "../src/csv/control-socket.js";
import { FileLun } from "../src/csv/lun.js";
import type { VmStarted, VmStopped } from "../src/csv/vm.js";
import { runVmScenario } from "../src/csv/vm-scenario.js";
import { copyFileOffVolume, verifyVmDisk } from "../src/csv/vm-verify.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { hvlab } from "./support/cli.js";

// VMs on the cluster with real node processes on loopback: the guest I/O
// workload on VHDs that live on the volume, moved between nodes.

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-vms-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("VMs on a Cluster Shared Volume", () => {
  it("runs a VM per node, live-migrates one (VHD handover) and quick-migrates the owner's (LUN move); nothing acknowledged is lost", async () => {
    const run = join(dir, "scenario");
    const r = await runVmScenario({
      nodes: 3,
      type: "dynamic",
      diskBytes: 4 << 20,
      rw: "randrw",
      bs: 4096,
      iodepth: 2,
      beforeMs: 600,
      afterMs: 600,
      heartbeatMs: 200,
      misses: 5,
      lunBytes: 64 << 20,
      dir: run,
    });
    // Both moves happened between different nodes; only the quick one moved the LUN.
    expect(r.live.from).not.toBe(r.live.to);
    expect(r.quick.from).not.toBe(r.quick.to);
    expect(r.live.lunMoveMs).toBeUndefined();
    expect(r.quick.lunMoveMs).toBeGreaterThan(0);
    expect(r.live.downtimeMs).toBeGreaterThanOrEqual(r.live.closeMs + r.live.openMs);
    expect(r.quick.downtimeMs).toBeGreaterThanOrEqual((r.quick.lunMoveMs ?? 0) + r.quick.closeMs);
    // Each VM ran on its node, and the moved ones on two nodes; every read passed its check.
    expect(r.runs).toHaveLength(5);
    for (const x of r.runs) {
      expect(x.reads + x.writes, `${x.vm} on node ${x.node}`).toBeGreaterThan(0);
      expect(x.verifyErrors, `${x.vm} on node ${x.node}`).toBe(0);
      expect(x.iops).toBeGreaterThan(0);
      expect(x.p99Us).toBeGreaterThanOrEqual(x.p50Us);
    }
    // The destination resumed with the source's acknowledged writes, read back at the end.
    expect(r.check).toEqual({ ok: true, problems: [] });
    expect(r.disks).toHaveLength(3);
    for (const d of r.disks) {
      expect(d.structure.ok, d.structure.problems[0]?.message).toBe(true);
      expect(d.acknowledgedBlocks).toBeGreaterThan(0);
      expect(d.intactBlocks).toBe(d.acknowledgedBlocks);
      expect(d.badOffsets).toEqual([]);
    }
    // The commands agree: hvlab csv check of the LUN, hvlab storage check of each VHD.
    expect(hvlab(["csv", "check", join(run, "cluster.lun")]).status).toBe(0);
    for (const d of r.disks) {
      const check = hvlab(["storage", "check", d.vhd, "--json"]);
      expect(check.status, check.stdout + check.stderr).toBe(0);
    }
    // Quick migration's failover wait is the LUN move measured here.
    const measured = join(run, "vms.json");
    writeFileSync(measured, JSON.stringify(r));
    const quick = hvlab(["quick-migrate", "--guest", "4MiB", "--failover-from", measured]);
    expect(quick.status, quick.stderr).toBe(0);
    expect(quick.stdout).toContain(`failover ${Math.round(r.quick.lunMoveMs ?? -1)} ms`);
    // Live migration's downtime takes the VHD handover measured here, on
    // top of the same rounds: the pause joins the switchover, nothing else.
    const alone = hvlab(["migrate", "--guest", "64MiB", "--json"]);
    const handed = hvlab(["migrate", "--guest", "64MiB", "--json", "--handover-from", measured]);
    expect(alone.status, alone.stderr).toBe(0);
    expect(handed.status, handed.stderr).toBe(0);
    const without = JSON.parse(alone.stdout) as MigrationJson;
    const withHandover = JSON.parse(handed.stdout) as MigrationJson;
    // The same passes; only stop-and-copy, which holds the switchover, is longer.
    expect(withHandover.rounds.length).toBe(without.rounds.length);
    expect(withHandover.rounds.slice(0, -1)).toEqual(without.rounds.slice(0, -1));
    expect(withHandover.rounds.at(-1)?.hvlab["bytes-sent"]).toBe(
      without.rounds.at(-1)?.hvlab["bytes-sent"],
    );
    expect(withHandover.summary.downtime - without.summary.downtime).toBeCloseTo(
      r.live.downtimeMs,
      6,
    );
    writeFileSync(measured, JSON.stringify({ ...r, live: { ...r.live, downtimeMs: "soon" } }));
    const badHandover = hvlab(["migrate", "--guest", "64MiB", "--handover-from", measured]);
    expect(badHandover.status).toBe(2);
    expect(badHandover.stderr).toMatch(/live.downtimeMs is missing or not 0 to 3600000 ms/);
    writeFileSync(measured, JSON.stringify({ ...r, quick: { ...r.quick, lunMoveMs: -1 } }));
    const bad = hvlab(["quick-migrate", "--guest", "4MiB", "--failover-from", measured]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/quick.lunMoveMs is missing or not 0 to 3600000 ms/);
  }, 240_000);

  it("refuses bad usage of hvlab csv vms with the error on its first line and exit code 2", () => {
    for (const [args, message] of [
      [["--nodes", "2"], /--nodes/],
      [["--bs", "1000"], /--bs 1000: not a multiple of 512/],
      [["--type", "differencing"], /--type must be one of fixed, dynamic/],
      [["--disk-size", "64MiB", "--lun-size", "64MiB"], /--lun-size/],
    ] as const) {
      const run = hvlab(["csv", "vms", ...args]);
      expect(run.status, run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
      // The error is the first line (a usage hint may follow).
      expect(run.stderr.split("\n")[0]).toMatch(message);
    }
  }, 120_000);

  it("leaves the volume and the VHD consistent when the source node is killed mid-handover", async () => {
    const run = mkdtempSync(join(dir, "kill-"));
    const lun = join(run, "cluster.lun");
    const file = new FdFile(lun, "wx+");
    file.truncate(64 << 20);
    await Volume.format(new FileLun(file, false), { clusterBytes: 65536, fileSlots: 64 });
    file.close();
    const control = (id: number) => join(run, `node-${id}.sock`);
    const cluster = await startCluster({
      lun,
      nodes: 3,
      heartbeatMs: 200,
      misses: 5,
      targetArgs: ["--no-sync"],
      nodeArgs: (id) => ["--control", control(id)],
    });
    const state = join(run, "vm.state");
    try {
      for (const id of cluster.nodes.keys()) await waitForControl(control(id), 60_000);
      const c = await Promise.any(
        [...cluster.nodes].map(async ([id, n]) => {
          await n.process.next((e) => e.event === "coordinator", 60_000);
          return id;
        }),
      );
      const [a, b] = [...cluster.nodes.keys()].filter((id) => id !== c);
      if (a === undefined || b === undefined) throw new Error("three nodes expected");
      const workload = { rw: "randwrite", bs: 4096, iodepth: 4, seed: 7 };
      await controlNode(control(b), "vm-prepare", undefined, 60_000);
      const started = (await controlNode(
        control(a),
        "vm-start",
        { vm: "vm", vhd: "vm.vhd", type: "dynamic", size: 4 << 20, ...workload },
        60_000,
      )) as VmStarted;
      expect(started.bytes).toBe(4 << 20);
      await sleep(300);
      // The node's storage path is cut under the VM: its VHD I/O goes redirected through the coordinator.
      await controlNode(control(a), "cut-path", { reason: "fault injection" });
      await sleep(400);
      await controlNode(control(a), "restore-path", undefined, 30_000);
      const status = (await controlNode(control(a), "query-status")) as {
        io: { redirectedWrites: number };
      };
      expect(status.io.redirectedWrites).toBeGreaterThan(0);
      await sleep(300);
      // The handover begins (stop asked on the source) and the source dies in it.
      const source = cluster.nodes.get(a)?.process;
      if (!source) throw new Error(`no node ${a}`);
      const stopping = controlNode(control(a), "vm-stop", { vm: "vm", state }, 10_000).catch(
        (error: Error) => error,
      );
      await sleep(5);
      process.kill(source.pid, "SIGKILL");
      await source.exited;
      await stopping;
      // The destination opens the VHD through the coordinator and runs on it.
      const resumed = (await controlNode(
        control(b),
        "vm-start",
        { vm: "vm", vhd: "vm.vhd", ...workload, seed: 8 },
        60_000,
      )) as VmStarted;
      expect(resumed.bytes).toBe(4 << 20);
      await sleep(500);
      const stopped = (await controlNode(
        control(b),
        "vm-stop",
        { vm: "vm", state },
        60_000,
      )) as VmStopped;
      expect(stopped.writes).toBeGreaterThan(0);
    } finally {
      await cluster.stop();
    }
    expect(existsSync(state)).toBe(true);
    const volumeCheck = hvlab(["csv", "check", lun]);
    expect(volumeCheck.status, volumeCheck.stdout + volumeCheck.stderr).toBe(0);
    const vhd = join(run, "vm.vhd");
    await copyFileOffVolume(lun, "vm.vhd", vhd);
    const storageCheck = hvlab(["storage", "check", vhd]);
    expect(storageCheck.status, storageCheck.stdout + storageCheck.stderr).toBe(0);
    // Every write the destination acknowledged reads back.
    const verified = verifyVmDisk(vhd, state);
    expect(verified.acknowledgedBlocks).toBeGreaterThan(0);
    expect(verified.intactBlocks).toBe(verified.acknowledgedBlocks);
  }, 240_000);
});

/** The part of `hvlab migrate --json` these tests read. */
interface MigrationJson {
  rounds: { hvlab: { "bytes-sent": number } }[];
  summary: { downtime: number };
}
