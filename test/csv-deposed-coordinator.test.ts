import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode, type NodeEvent } from "../src/csv/node.js";
import { Op } from "../src/csv/protocol.js";
import { LunTarget } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { freePort } from "./support/csv-cluster.js";

// A coordinator deposed without hearing of it: nodes 1 and 2 both reach the
// target but not each other (a cluster-network partition, or one process
// whose timers stalled past the threshold), so node 2 preempts node 1's
// reservation and takes over while node 1 still holds its volume in memory.

const HEARTBEAT_MS = 50;
const MISSES = 4;

let dir: string;
let file: FdFile;
let target: LunTarget;
const nodes: ClusterNode[] = [];
const events: NodeEvent[] = [];

async function until(what: string, test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-deposed-"));
  file = new FdFile(join(dir, "lun.img"), "wx+");
  file.truncate(32 << 20);
  await Volume.format(new FileLun(file, false), { clusterBytes: 4096 });
  target = new LunTarget(file, { durable: false });
  const targetPort = await target.listen();
  // Each node's peer port is one nothing listens on: neither hears the other.
  const [port1, port2, nowhere1, nowhere2] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const node = (id: number, port: number, peerPort: number) =>
    new ClusterNode({
      id,
      port,
      targetPort,
      peers: new Map([[3 - id, peerPort]]),
      heartbeatMs: HEARTBEAT_MS,
      misses: MISSES,
      onEvent: (e) => events.push(e),
    });
  nodes.push(node(1, port1, nowhere2), node(2, port2, nowhere1));
});

afterAll(async () => {
  for (const n of nodes) n.stop();
  await target?.close();
  file?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Sends one metadata request to `node` over the node protocol, as a peer forwards it. */
async function forwardTo(node: ClusterNode, request: object): Promise<Record<string, unknown>> {
  const link = await TargetClient.connect(node.options.port, "test-peer");
  try {
    const reply = await link.request(
      Op.metadata,
      new TextEncoder().encode(JSON.stringify(request)),
    );
    return JSON.parse(new TextDecoder().decode(reply.payload)) as Record<string, unknown>;
  } finally {
    link.close();
  }
}

describe("a coordinator deposed without hearing of it", () => {
  it("answers no open from its stale volume: it checks its reservation, steps down and says retry", async () => {
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    await one.start();
    await until("node 1 coordinating", () => one.state.role === "coordinator");
    await one.metadata({ op: "create", name: "vm.vhd", size: 64 * 1024 });
    await two.start();
    await until("node 2 taking over", () => two.state.role === "coordinator");
    // Node 1 heard nothing: it still believes it coordinates.
    expect(one.state.role).toBe("coordinator");
    const grown = await two.metadata({ op: "resize", name: "vm.vhd", size: 128 * 1024 });
    expect(grown?.size).toBe(128 * 1024);
    const made = await two.metadata({ op: "create", name: "probe", size: 128 * 1024 });
    expect(made?.size).toBe(128 * 1024);

    // Before answering from memory, node 1 finds its key preempted at the target.
    const stale = await forwardTo(one, { op: "open", name: "vm.vhd" });
    expect(stale).toMatchObject({ ok: false, retry: true });
    expect(String(stale.error)).toMatch(/reservation/i);
    expect(one.state.role).toBe("node");
    expect(events).toContainEqual(expect.objectContaining({ event: "fenced", node: 1 }));
    // The coordinator that holds the role answers with what it journaled.
    expect(await forwardTo(two, { op: "open", name: "probe" })).toMatchObject({
      ok: true,
      file: { name: "probe", size: 128 * 1024 },
    });
    expect(await forwardTo(two, { op: "open", name: "vm.vhd" })).toMatchObject({
      ok: true,
      file: { size: 128 * 1024 },
    });
  }, 60_000);
});
