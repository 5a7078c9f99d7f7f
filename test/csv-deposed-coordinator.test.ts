import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode, type NodeEvent } from "../src/csv/node.js";
import { Op } from "../src/csv/protocol.js";
import { LunTarget } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { type NodeProcess, startNode } from "./support/csv-cluster.js";

// A coordinator deposed without hearing of it: nodes 1 and 2 both reach the
// target but not each other (a cluster-network partition). Node 1, a process
// of its own, coordinates; while it renews its lease at the target node 2
// leaves it the role. Node 1 is then stopped (SIGSTOP) past its lease, node 2
// preempts it, takes over and changes the volume, and node 1 is resumed: it
// must answer no open from its volume in memory, and must not take the role
// back from a node it cannot hear. Every wait is for an event or a reply,
// but one: a lease period in which node 2 must NOT take over, which only a
// process stalled for longer than that (1 s) could legitimately end.

const HEARTBEAT_MS = 100;
const MISSES = 10;

let dir: string;
let file: FdFile;
let target: LunTarget;
let one: NodeProcess | undefined;
let two: ClusterNode | undefined;
const twoEvents: NodeEvent[] = [];

/** `n` distinct free ports on 127.0.0.1 (all bound at once, then released). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  for (let i = 0; i < n; i++) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    servers.push(server);
  }
  const ports = servers.map((s) => {
    const address = s.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    return address.port;
  });
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/** Resolves with node 2's first event (past or future) that passes `test`. */
function twoSays(test: (e: NodeEvent) => boolean): Promise<NodeEvent> {
  return new Promise((resolve) => {
    const seen = twoEvents.find(test);
    if (seen) return resolve(seen);
    const poll = setInterval(() => {
      const e = twoEvents.find(test);
      if (e) {
        clearInterval(poll);
        resolve(e);
      }
    }, 5);
  });
}

/** Sends one metadata request over a logged-in node-protocol link, as a peer forwards it. */
async function ask(link: TargetClient, request: object): Promise<Record<string, unknown>> {
  const reply = await link.request(Op.metadata, new TextEncoder().encode(JSON.stringify(request)));
  return JSON.parse(new TextDecoder().decode(reply.payload)) as Record<string, unknown>;
}

/** Sends one metadata request to the node listening on `port` on a link of its own. */
async function forwardTo(port: number, request: object): Promise<Record<string, unknown>> {
  const link = await TargetClient.connect(port, "test-peer");
  try {
    return await ask(link, request);
  } finally {
    link.close();
  }
}

let targetPort: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-deposed-"));
  file = new FdFile(join(dir, "lun.img"), "wx+");
  file.truncate(32 << 20);
  await Volume.format(new FileLun(file, false), { clusterBytes: 4096 });
  target = new LunTarget(file, { durable: false });
  targetPort = await target.listen();
});

afterAll(async () => {
  if (one) {
    process.kill(one.pid, "SIGCONT");
    process.kill(one.pid, "SIGTERM");
    await one.exited;
  }
  two?.stop();
  await target?.close();
  file?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a coordinator deposed without hearing of it", () => {
  it("answers no open from its stale volume, and does not take the role back across the partition", async () => {
    // Each node's peer port is one nothing listens on: neither hears the other.
    const [port1, port2, nowhere1, nowhere2] = (await freePorts(4)) as [
      number,
      number,
      number,
      number,
    ];
    const heartbeat = [
      "--heartbeat-interval",
      String(HEARTBEAT_MS),
      "--heartbeat-misses",
      String(MISSES),
    ];
    const first = startNode(1, [port1, nowhere2], targetPort, heartbeat);
    one = first;
    const term1 = await first.next((e) => e.event === "coordinator");
    expect(await forwardTo(port1, { op: "create", name: "vm.vhd", size: 64 * 1024 })).toMatchObject(
      { ok: true, file: { size: 64 * 1024 } },
    );

    const second = new ClusterNode({
      id: 2,
      port: port2,
      targetPort,
      peers: new Map([[1, nowhere1]]),
      heartbeatMs: HEARTBEAT_MS,
      misses: MISSES,
      onEvent: (e) => twoEvents.push(e),
    });
    two = second;
    await second.start();
    // Node 2 hears of node 1's term from the lease sector alone.
    await twoSays((e) => e.event === "follow" && e.coordinator === 1 && e.epoch === term1.epoch);
    // Past its start-up grace it declares node 1 dead on the cluster network, but
    // leaves it the role for as long as the lease sector keeps changing: a lease
    // period more of watching, and node 2 has still not taken over.
    await twoSays((e) => e.event === "dead" && e.peer === 1);
    await sleep(HEARTBEAT_MS * MISSES);
    expect(twoEvents.filter((e) => e.event === "coordinator")).toEqual([]);

    // A peer's link to node 1, logged in now so that a request sent while node 1 is
    // stopped waits in its socket and is read in the first pass of its event loop
    // after SIGCONT, before the reply to any renewal it sends could come back.
    const peerLink = await TargetClient.connect(port1, "test-peer");
    const stoppedAt = Date.now();
    process.kill(first.pid, "SIGSTOP");
    const term2 = (await twoSays((e) => e.event === "coordinator")) as Extract<
      NodeEvent,
      { event: "coordinator" }
    >;
    expect(term2.atMs).toBeGreaterThanOrEqual(stoppedAt);
    expect(term2).toMatchObject({ node: 2, epoch: (term1.epoch ?? 0) + 1 });
    expect(await second.metadata({ op: "resize", name: "vm.vhd", size: 128 * 1024 })).toMatchObject(
      { size: 128 * 1024 },
    );
    expect(await second.metadata({ op: "create", name: "probe", size: 128 * 1024 })).toMatchObject({
      size: 128 * 1024,
    });

    // Node 1 wakes believing it coordinates, with an open already waiting. Its lease
    // ran out while it was stopped, so it must prove its term at the target first.
    const asked = ask(peerLink, { op: "open", name: "vm.vhd" });
    process.kill(first.pid, "SIGCONT");
    const stale = await asked;
    peerLink.close();
    expect(stale).toMatchObject({ ok: false, retry: true });
    expect(String(stale.error)).toMatch(/could not prove its term|is not the coordinator/);
    const fenced = await first.next((e) => e.event === "fenced");
    expect(String(fenced.reason)).toMatch(/lease renewal refused.*not registered/);
    expect(await forwardTo(port1, { op: "open", name: "probe" })).toMatchObject({
      ok: false,
      retry: true,
    });
    // It learns node 2's term from the lease sector, as node 2 learned its.
    await first.next((e) => e.event === "follow" && e.coordinator === 2 && e.epoch === term2.epoch);

    // The coordinator that holds the role answers with what it journaled.
    expect(await forwardTo(port2, { op: "open", name: "probe" })).toMatchObject({
      ok: true,
      file: { name: "probe", size: 128 * 1024 },
    });
    expect(await forwardTo(port2, { op: "open", name: "vm.vhd" })).toMatchObject({
      ok: true,
      file: { size: 128 * 1024 },
    });
    expect(second.state).toMatchObject({ role: "coordinator", epoch: term2.epoch });
    expect(first.events.filter((e) => e.event === "coordinator")).toEqual([term1]);
  }, 60_000);
});
