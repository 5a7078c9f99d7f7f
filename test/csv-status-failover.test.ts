import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLun } from "../src/csv/lun.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { hvlabAsync } from "./support/cli.js";
import { freePort, type NodeProcess, startNode } from "./support/csv-cluster.js";
import { startTarget, type TargetProcess } from "./support/csv-target.js";

// Short heartbeats (100 ms, 5 misses) keep the test quick.
const HEARTBEAT = ["--heartbeat-interval", "100", "--heartbeat-misses", "5"];

let dir: string;
let target: TargetProcess | undefined;
const nodes: NodeProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-status-"));
});

afterAll(async () => {
  for (const n of nodes) if (n.child.exitCode === null) process.kill(n.pid, "SIGKILL");
  await target?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("hvlab csv status and failover", () => {
  it("report a running cluster and move its coordinator on purpose, with a new epoch on the volume", async () => {
    const lun = join(dir, "a.lun");
    expect((await hvlabAsync(["csv", "create", lun, "16MiB", "--cluster-size", "4KiB"])).code).toBe(
      0,
    );
    target = await startTarget(lun, ["--no-sync"]);
    const ports = await Promise.all([1, 2, 3].map(() => freePort()));
    const list = ports.map((p, i) => `${i + 1}=${p}`).join(",");
    for (const id of [1, 2, 3])
      nodes.push(
        startNode(id, ports, target.port, [
          ...HEARTBEAT,
          "--storm",
          "--files",
          "2",
          "--file-size",
          "16KiB",
          "--gap",
          "5",
          "--ack-log",
          join(dir, `ack-${id}.jsonl`),
        ]),
      );
    const first = await Promise.race(nodes.map((n) => n.next((e) => e.event === "coordinator")));
    await new Promise((r) => setTimeout(r, 500));

    const before = await hvlabAsync([
      "csv",
      "status",
      "--nodes",
      list,
      "--target-port",
      String(target.port),
      "--json",
    ]);
    expect(before.stderr).toBe("");
    expect(before.code).toBe(0);
    const s = JSON.parse(before.stdout);
    expect(s).toMatchObject({ coordinator: first.node, epoch: first.epoch, unreachable: [] });
    expect(s.nodes.map((n: { node: number }) => n.node)).toEqual([1, 2, 3]);
    const owner = s.nodes.find((n: { node: number }) => n.node === first.node);
    expect(owner).toMatchObject({ role: "coordinator", mode: "direct", members: [1, 2, 3] });
    for (const n of s.nodes) {
      expect(n.pid).toBe(nodes[n.node - 1]?.pid);
      expect(n.io.metadataOps).toBeGreaterThan(0);
      if (n.node !== first.node) expect(n.role).toBe("node");
    }
    // The target's view agrees: three registrations, the coordinator's key holds type 5.
    expect(s.target).toMatchObject({ holder: owner.key, type: 5 });
    expect(s.target.keys).toHaveLength(3);

    const to = first.node === 3 ? 1 : 3;
    const moved = await hvlabAsync([
      "csv",
      "failover",
      "--nodes",
      list,
      "--to",
      String(to),
      "--json",
    ]);
    expect(moved.stderr).toBe("");
    const reply = JSON.parse(moved.stdout);
    expect(reply).toMatchObject({ ok: true, from: first.node, to, epoch: (first.epoch ?? 0) + 1 });
    expect(reply.pauseMs).toBeGreaterThan(0);
    const taken = await (nodes[to - 1] as NodeProcess).next(
      (e) => e.event === "coordinator" && e.handedOverBy === first.node,
    );
    expect(taken.epoch).toBe(reply.epoch);

    // Metadata goes on through the new coordinator.
    await new Promise((r) => setTimeout(r, 500));
    const after = JSON.parse(
      (
        await hvlabAsync([
          "csv",
          "status",
          "--nodes",
          list,
          "--target-port",
          String(target.port),
          "--json",
        ])
      ).stdout,
    );
    expect(after).toMatchObject({ coordinator: to, epoch: reply.epoch });
    const newOwner = after.nodes.find((n: { node: number }) => n.node === to);
    expect(after.target.holder).toBe(newOwner.key);
    for (const n of after.nodes) {
      const was = s.nodes.find((o: { node: number }) => o.node === n.node);
      expect(n.io.metadataOps).toBeGreaterThan(was.io.metadataOps);
      expect(n.role).toBe(n.node === to ? "coordinator" : "node");
    }
    // The old coordinator was not fenced: it handed over.
    expect(nodes[first.node - 1]?.events.filter((e) => e.event === "fenced")).toEqual([]);

    // A node that does not answer is listed, not waited for.
    const dead = await freePort();
    const partial = await hvlabAsync(["csv", "status", "--nodes", `${list},9=${dead}`, "--json"]);
    expect(partial.code).toBe(0);
    expect(JSON.parse(partial.stdout).unreachable).toMatchObject([{ node: 9, port: dead }]);
    const none = await hvlabAsync(["csv", "status", "--nodes", `9=${dead}`]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no node of the cluster answered/);

    for (const n of nodes) process.kill(n.pid, "SIGTERM");
    await Promise.all(nodes.map((n) => n.exited));
    await target.stop();
    target = undefined;
    const check = await hvlabAsync(["csv", "check", lun, "--json"]);
    expect(JSON.parse(check.stdout).problems).toEqual([]);
    const volume = await Volume.open(new FileLun(new FdFile(lun, "r"), false), { replay: false });
    expect(volume.epochs().find((t) => t.epoch === reply.epoch)).toMatchObject({ node: to });
  }, 120_000);

  it("refuses bad usage with exit code 2", async () => {
    const bad = await hvlabAsync(["csv", "status", "--nodes", "1=x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/is not id=port/);
    const notMember = await hvlabAsync(["csv", "failover", "--nodes", "1=7001", "--to", "2"]);
    expect(notMember.code).toBe(2);
    expect(notMember.stderr).toMatch(/--to 2 is not one of --nodes/);
  });
});
