import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAckLogs } from "../src/csv/acks.js";
import { FileLun } from "../src/csv/lun.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { hvlab } from "./support/cli.js";
import {
  freePort,
  type NodeEventLine,
  type NodeProcess,
  startNode,
  until,
  verifyAcks,
} from "./support/csv-cluster.js";
import { startTarget, type TargetProcess } from "./support/csv-target.js";

// Sixteen node processes on one volume; the coordinator is killed (SIGKILL by
// PID) twenty times while every node runs a storm of metadata operations and
// data writes. Afterwards `hvlab csv check` passes, every acknowledged write
// reads back, and the terms in the volume's epoch log never overlap.
//
// Every wait is for an event the nodes print, bounded by a deadline drawn
// from the heartbeat settings; nothing sleeps and hopes. The heartbeat is
// 250 ms with 4 misses (a 1 s threshold): short enough for twenty failovers
// in about a minute, long enough that a node starved of CPU on a shared
// machine is not declared dead by mistake every time. A mistaken death is
// safe anyway (the fence holds), and the checks below hold either way.

const COUNT = 16;
const KILLS = 20;
/** Acknowledged writes the storm adds under each term before its coordinator is killed. */
const ACKS_PER_TERM = 10;
const HEARTBEAT_MS = 250;
const MISSES = 4;
const THRESHOLD_MS = HEARTBEAT_MS * MISSES;
/** Sixteen node processes starting at once on a loaded machine may take minutes to load their modules (about 1 s of CPU each). */
const START_MS = 240_000;
/** Detection (a threshold), the new coordinator's takeover and journal replay, with room for a machine so loaded that nodes starve. */
const FAILOVER_MS = THRESHOLD_MS * 120;

let dir: string;
let target: TargetProcess | undefined;
const nodes = new Map<number, NodeProcess>();
const retired: NodeProcess[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-kills-"));
});

afterAll(async () => {
  for (const n of [...nodes.values(), ...retired])
    if (n.child.exitCode === null && n.child.signalCode === null) process.kill(n.pid, "SIGKILL");
  await target?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The highest epoch a node has taken or followed. */
function epochOf(n: NodeProcess): number {
  let epoch = 0;
  for (const e of n.events)
    if ((e.event === "coordinator" || e.event === "follow") && (e.epoch ?? 0) > epoch)
      epoch = e.epoch ?? 0;
  return epoch;
}

/** Every coordinator announcement of every process so far. */
function terms(): NodeEventLine[] {
  return [...retired, ...nodes.values()]
    .flatMap((n) => n.events.filter((e) => e.event === "coordinator"))
    .sort((a, b) => (a.epoch ?? 0) - (b.epoch ?? 0));
}

function latest(): NodeEventLine | undefined {
  return terms().at(-1);
}

describe("csv coordinator kills", () => {
  it(`${COUNT} nodes; the coordinator is killed ${KILLS} times during a storm; check passes, every acknowledged write reads back, epochs never overlap`, async () => {
    const lun = join(dir, "kills.lun");
    expect(
      hvlab(["csv", "create", lun, "64MiB", "--cluster-size", "4KiB", "--files", "1024"]).status,
    ).toBe(0);
    target = await startTarget(lun, ["--no-sync"]);
    const targetPort = target.port;
    const ports = await Promise.all(Array.from({ length: COUNT }, () => freePort()));
    const logs = ports.map((_, i) => join(dir, `acks-${i + 1}.jsonl`));
    const start = (id: number) =>
      startNode(id, ports, targetPort, [
        // Data goes over each node's own path to the LUN, fenced by the target's board.
        "--lun",
        lun,
        "--heartbeat-interval",
        String(HEARTBEAT_MS),
        "--heartbeat-misses",
        String(MISSES),
        "--storm",
        "--files",
        "2",
        "--file-size",
        "16KiB",
        "--gap",
        "40",
        "--ack-log",
        logs[id - 1] ?? "",
      ]);
    for (let id = 1; id <= COUNT; id++) nodes.set(id, start(id));
    const live = () => nodes.values();
    // What each node last said, for a deadline's message: who did not answer, and why.
    const views = () =>
      [...nodes.values()]
        .map((n) => {
          const last = n.events.at(-1);
          const state =
            n.child.exitCode !== null || n.child.signalCode !== null
              ? `exited ${n.child.exitCode ?? n.child.signalCode}`
              : n.events.some((e) => e.event === "listening")
                ? `epoch ${epochOf(n)}`
                : "loading";
          const err = n.stderr.trim().split("\n").at(-1);
          return `node ${n.id} ${state}${last ? ` (last: ${JSON.stringify(last)})` : ""}${err ? ` stderr: ${err}` : ""}`;
        })
        .join("; ");
    await until(
      live,
      () => [...nodes.values()].every((n) => n.events.some((e) => e.event === "listening")),
      `all ${COUNT} nodes listening`,
      START_MS,
      () =>
        [...nodes.values()]
          .filter((n) => !n.events.some((e) => e.event === "listening"))
          .map((n) => `node ${n.id} silent: ${n.stderr.trim()}`)
          .join("; "),
    );
    // One term that every listening node follows (a restarted node joins when it has loaded).
    const converged = () => {
      const top = latest();
      return (
        top !== undefined &&
        [...nodes.values()]
          .filter((n) => n.events.some((e) => e.event === "listening"))
          .every((n) => epochOf(n) === top.epoch)
      );
    };
    await until(live, converged, "every node following one coordinator", START_MS, views);
    const firstEpoch = latest()?.epoch ?? 0;

    // The storm is under way in every term before it ends: each kill waits for
    // ACKS_PER_TERM more acknowledged writes in the logs (the writes are counted,
    // not announced, so the logs are read once a heartbeat until they have grown).
    let acked = 0;
    const stormed = async (k: number) => {
      const want = acked + ACKS_PER_TERM;
      const deadline = performance.now() + FAILOVER_MS;
      for (;;) {
        acked = readAckLogs(logs).length;
        if (acked >= want) return;
        if (performance.now() > deadline)
          throw new Error(
            `kill ${k + 1}: ${acked} acknowledged writes, not ${want}, within ${FAILOVER_MS} ms; ${views()}`,
          );
        await new Promise((r) => setTimeout(r, HEARTBEAT_MS));
      }
    };
    const killed: { node: number; epoch: number }[] = [];
    for (let k = 0; k < KILLS; k++) {
      await stormed(k);
      const term = latest() as NodeEventLine;
      const victim = nodes.get(term.node) as NodeProcess;
      process.kill(victim.pid, "SIGKILL");
      await victim.exited;
      killed.push({ node: term.node, epoch: term.epoch ?? 0 });
      retired.push(victim);
      nodes.delete(term.node);
      await until(
        live,
        () => (latest()?.epoch ?? 0) > (term.epoch ?? 0),
        `kill ${k + 1}: a coordinator after node ${term.node}'s epoch ${term.epoch}`,
        FAILOVER_MS,
        views,
      );
      const next = latest() as NodeEventLine;
      expect(next.node, `kill ${k + 1}: the next term is another node's`).not.toBe(term.node);
      // The killed node comes back (a new process, a new key) and finds the role taken.
      nodes.set(term.node, start(term.node));
      // The storm runs under the new term before the next kill: every node follows it.
      await until(
        live,
        converged,
        `kill ${k + 1}: every node following the new term`,
        FAILOVER_MS,
        views,
      );
    }

    for (const n of nodes.values()) process.kill(n.pid, "SIGTERM");
    await Promise.all([...nodes.values()].map((n) => n.exited));
    await target.stop();
    target = undefined;

    const check = hvlab(["csv", "check", lun, "--json"]);
    const report = JSON.parse(check.stdout);
    expect(report.problems).toEqual([]);
    expect(check.status).toBe(0);

    // The epoch log: one term per epoch announced, rising, each by the node that announced it;
    // a killed process's term is followed by another node's.
    const lunFile = new FileLun(new FdFile(lun, "r"), false);
    try {
      const log = (await Volume.open(lunFile, { replay: false })).epochs();
      for (let i = 1; i < log.length; i++) {
        const [a, b] = [log[i - 1], log[i]];
        expect(b?.epoch, "epochs rise").toBeGreaterThan(a?.epoch ?? 0);
        expect(b?.firstGeneration, "terms do not overlap").toBeGreaterThan(a?.firstGeneration ?? 0);
      }
      const byEpoch = new Map(log.map((t) => [t.epoch, t]));
      for (const t of terms())
        expect(byEpoch.get(t.epoch ?? -1)?.node, `epoch ${t.epoch}`).toBe(t.node);
      for (const { node, epoch } of killed) {
        const after = log.find((t) => t.epoch > epoch);
        expect(after, `a term after killed epoch ${epoch}`).toBeDefined();
        expect(after?.node, `the term after node ${node}'s killed epoch ${epoch}`).not.toBe(node);
      }
      expect(log.at(-1)?.epoch).toBeGreaterThanOrEqual(firstEpoch + KILLS);
    } finally {
      lunFile.close();
    }
    expect(readAckLogs(logs).length).toBeGreaterThanOrEqual(KILLS * ACKS_PER_TERM);
    expect(await verifyAcks(lun, logs)).toBeGreaterThan(0);
  }, 900_000);
});
