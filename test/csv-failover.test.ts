import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLun } from "../src/csv/lun.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { hvlab } from "./support/cli.js";
import { freePort, type NodeProcess, startNode, verifyAcks } from "./support/csv-cluster.js";
import { startTarget, type TargetProcess } from "./support/csv-target.js";

// Short heartbeats (100 ms, 5 misses) keep the failovers quick; the
// defaults are the cluster service's 1 s and 5 misses.
const HEARTBEAT = ["--heartbeat-interval", "100", "--heartbeat-misses", "5"];

let dir: string;
let target: TargetProcess | undefined;
const nodes = new Map<number, NodeProcess>();

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-failover-"));
});

afterAll(async () => {
  for (const n of nodes.values()) if (n.child.exitCode === null) process.kill(n.pid, "SIGKILL");
  await target?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("csv failover", () => {
  it("a paused coordinator resumed after the threshold finds its writes refused and steps down", async () => {
    const lun = join(dir, "paused.lun");
    expect(hvlab(["csv", "create", lun, "16MiB", "--cluster-size", "4KiB"]).status).toBe(0);
    target = await startTarget(lun, ["--no-sync"]);
    const ports = await Promise.all([1, 2, 3].map(() => freePort()));
    const logs = ports.map((_, i) => join(dir, `paused-${i + 1}.jsonl`));
    const three = [1, 2, 3].map((id) =>
      startNode(id, ports, (target as TargetProcess).port, [
        // Data goes over each node's own path to the LUN, fenced by the target's board.
        "--lun",
        lun,
        ...HEARTBEAT,
        "--storm",
        "--files",
        "2",
        "--file-size",
        "16KiB",
        "--gap",
        "10",
        "--ack-log",
        logs[id - 1] ?? "",
      ]),
    );
    for (const n of three) nodes.set(100 + n.id, n);
    await Promise.all(three.map((n) => n.next((e) => e.event === "listening")));
    await new Promise((r) => setTimeout(r, 2000));
    const terms = three.flatMap((n) => n.events.filter((e) => e.event === "coordinator"));
    const last = terms.reduce((a, b) => ((b.epoch ?? 0) > (a.epoch ?? 0) ? b : a));
    const old = three.find((n) => n.id === last.node) as NodeProcess;
    process.kill(old.pid, "SIGSTOP");
    const successor = await Promise.race(
      three
        .filter((n) => n !== old)
        .map((n) => n.next((e) => e.event === "coordinator" && (e.epoch ?? 0) > (last.epoch ?? 0))),
    );
    const resumedAt = Date.now();
    process.kill(old.pid, "SIGCONT");
    const fenced = await old.next((e) => e.event === "fenced");
    expect(fenced.atMs ?? 0).toBeGreaterThanOrEqual(resumedAt - 50);
    // It never claims the role back, and the successor keeps it.
    await new Promise((r) => setTimeout(r, 1500));
    expect(
      old.events.filter((e) => e.event === "coordinator" && (e.epoch ?? 0) > (last.epoch ?? 0)),
    ).toEqual([]);
    for (const n of three) process.kill(n.pid, "SIGTERM");
    await Promise.all(three.map((n) => n.exited));
    await (target as TargetProcess).stop();
    target = undefined;
    const check = hvlab(["csv", "check", lun, "--json"]);
    const report = JSON.parse(check.stdout);
    expect(report.problems).toEqual([]);
    // Stopping the nodes one by one may hand the role on again; what must hold is
    // that the successor's term is on the volume and the fenced node never got one after.
    expect(report.epoch).toBeGreaterThanOrEqual(successor.epoch ?? 0);
    const volume = await Volume.open(new FileLun(new FdFile(lun, "r"), false), { replay: false });
    const later = volume.epochs().filter((t) => t.epoch > (last.epoch ?? 0));
    expect(later[0]).toMatchObject({ epoch: successor.epoch, node: successor.node });
    const resumedTerms = later.filter((t) => t.node === old.id && t.takenAtMs < resumedAt + 1500);
    expect(resumedTerms).toEqual([]);
    expect(await verifyAcks(lun, logs)).toBeGreaterThan(10);
  }, 120_000);
});
