import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAckLogs } from "../src/csv/acks.js";
import type { NodeStatus } from "../src/csv/control.js";
import { ControlError, controlNode } from "../src/csv/control-socket.js";
import { hvlab } from "./support/cli.js";
import { freePort, type NodeProcess, startNode, verifyAcks } from "./support/csv-cluster.js";
import { startTarget, type TargetProcess } from "./support/csv-target.js";

// Redirected access through the commands: node 2's path is cut and restored
// on its control socket, node 3's by fault injection, while all three run a
// storm; then `hvlab csv check` passes and every acknowledged write reads back.

const HEARTBEAT = ["--heartbeat-interval", "200", "--heartbeat-misses", "5"];
/** Node processes load slowly on a shared machine; every wait below is for an event. */
const EVENT_MS = 120_000;

let dir: string;
let target: TargetProcess | undefined;
const nodes: NodeProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-redirected-cli-"));
});

afterAll(async () => {
  for (const n of nodes)
    if (n.child.exitCode === null && n.child.signalCode === null) process.kill(n.pid, "SIGKILL");
  await target?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Asks node status until `test` passes (the storm's progress is counted, not announced). */
async function statusUntil(
  socket: string,
  test: (s: NodeStatus) => boolean,
  what: string,
): Promise<NodeStatus> {
  const until = performance.now() + EVENT_MS;
  for (;;) {
    const status = (await controlNode(socket, "query-status")) as NodeStatus;
    if (test(status)) return status;
    if (performance.now() > until)
      throw new Error(`${what}: not within ${EVENT_MS} ms: ${JSON.stringify(status)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("csv redirected access through the commands", () => {
  it("cut and restore on the control socket and by fault injection, mid-storm: nothing acknowledged is lost, check passes", async () => {
    const lun = join(dir, "lun.img");
    expect(hvlab(["csv", "create", lun, "32MiB", "--cluster-size", "4KiB"]).status).toBe(0);
    target = await startTarget(lun, ["--no-sync"]);
    const ports = await Promise.all([1, 2, 3].map(() => freePort()));
    const logs = [1, 2, 3].map((id) => join(dir, `acks-${id}.jsonl`));
    const control = join(dir, "node-2.sock");
    const storm = (id: number) => [
      "--storm",
      "--files",
      "2",
      "--file-size",
      "64KiB",
      "--gap",
      "10",
      "--ack-log",
      logs[id - 1] ?? "",
      // Direct data goes over each node's own path to the LUN; a cut path cuts it too.
      "--lun",
      lun,
    ];
    nodes.push(startNode(1, ports, target.port, [...HEARTBEAT, ...storm(1)]));
    nodes.push(
      startNode(2, ports, target.port, [
        ...HEARTBEAT,
        ...storm(2),
        "--control",
        control,
        "--cluster-bandwidth",
        "100Mbit",
      ]),
    );
    await Promise.all(nodes.map((n) => n.next((e) => e.event === "listening")));
    const [, two] = nodes as [NodeProcess, NodeProcess];
    // Node 3 cuts its own path 3 s after it starts and restores it 3 s later.
    nodes.push(
      startNode(3, ports, target.port, [
        ...HEARTBEAT,
        ...storm(3),
        "--cut-path-after",
        "3000",
        "--restore-path-after",
        "6000",
      ]),
    );
    const three = nodes[2] as NodeProcess;

    await expect(controlNode(control, "cut-path", { reason: 42 })).rejects.toThrow(
      /reason must be a string/,
    );
    await expect(controlNode(control, "format-disk" as never)).rejects.toBeInstanceOf(ControlError);
    const before = await statusUntil(
      control,
      (s) => s.io.directWrites >= 5 && s.coordinator !== 0,
      "node 2 writing direct",
    );
    expect(before).toMatchObject({
      node: 2,
      path: "up",
      redirected: null,
      clusterBandwidth: 12_500_000,
    });

    await controlNode(control, "cut-path", { reason: "HBA pulled" });
    await two.next((e) => e.event === "redirected" && e.reason === "storage path cut (HBA pulled)");
    const cut = await statusUntil(
      control,
      (s) => s.io.redirectedWrites >= 5,
      "node 2 writing redirected",
    );
    expect(cut.path).toBe("cut");
    const directWhileCut = cut.io.directWrites;
    await controlNode(control, "restore-path");
    await two.next((e) => e.event === "direct");
    const restored = await statusUntil(
      control,
      (s) => s.io.directWrites >= directWhileCut + 5,
      "node 2 direct again",
    );
    expect(restored).toMatchObject({ path: "up", redirected: null });

    await three.next(
      (e) => e.event === "redirected" && e.reason === "storage path cut (fault injection)",
    );
    await three.next((e) => e.event === "direct");

    for (const n of nodes) process.kill(n.pid, "SIGTERM");
    await Promise.all(nodes.map((n) => n.exited));
    await target.stop();
    target = undefined;
    const check = hvlab(["csv", "check", lun, "--json"]);
    expect(JSON.parse(check.stdout).problems).toEqual([]);
    expect(check.status).toBe(0);
    // Node 2 alone acknowledged at least 15 writes above (5 direct, 5 redirected, 5 direct);
    // each block still on the volume holds its last acknowledged write.
    expect(readAckLogs(logs).length).toBeGreaterThanOrEqual(15);
    expect(await verifyAcks(lun, logs)).toBeGreaterThan(0);
  }, 600_000);
});
