import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { FdFile } from "../storage/block-file.js";
import { packageRoot } from "../util/package-root.js";
import { freeLoopbackPort } from "../util/ports.js";

/*
 * A cluster on this machine for `hvlab csv bench`: the target and N node
 * processes, each started as `hvlab csv ... --json` so that what is
 * measured is the same program a user runs by hand, with its sockets and
 * its process boundaries. Every process is stopped by its PID.
 */

/** One JSON event line a node printed (see NodeEvent in node.ts). */
export interface NodeEventLine {
  readonly event: string;
  readonly node: number;
  readonly epoch?: number;
  readonly atMs?: number;
  readonly [key: string]: unknown;
}

/** A child process of the cluster, with what it printed. */
export class ClusterProcess {
  readonly events: NodeEventLine[] = [];
  private readonly waiters: { test: (e: NodeEventLine) => boolean; wake: () => void }[] = [];
  readonly exited: Promise<void>;
  stderr = "";

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    if (child.stdout)
      createInterface({ input: child.stdout }).on("line", (line) => {
        let event: NodeEventLine;
        try {
          event = JSON.parse(line) as NodeEventLine;
        } catch {
          return;
        }
        this.events.push(event);
        for (const w of [...this.waiters])
          if (w.test(event)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.wake();
          }
      });
    child.stderr?.on("data", (d: Buffer) => {
      if (this.stderr.length < 4096) this.stderr += d.toString();
    });
    this.exited = once(child, "exit").then(() => {});
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first event (printed already or later) that passes `test`, within `timeoutMs`. */
  async next(test: (e: NodeEventLine) => boolean, timeoutMs: number): Promise<NodeEventLine> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const seen = this.events.find(test);
      if (seen) return seen;
      const left = deadline - performance.now();
      if (left <= 0 || !this.running)
        throw new Error(
          `${this.name} (pid ${this.pid}) printed no such event within ${timeoutMs} ms${this.stderr ? `: ${this.stderr.trim().split("\n")[0]}` : ""}`,
        );
      await Promise.race([
        new Promise<void>((wake) => this.waiters.push({ test, wake })),
        sleep(Math.min(left, 250)),
        this.exited,
      ]);
    }
  }

  /** SIGTERM by PID, then SIGKILL if it has not ended within `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) return;
    process.kill(this.pid, "SIGTERM");
    await Promise.race([this.exited, sleep(graceMs)]);
    if (this.running) {
      process.kill(this.pid, "SIGKILL");
      await this.exited;
    }
  }
}

function hvlab(name: string, args: readonly string[]): ClusterProcess {
  const child = spawn(process.execPath, [join(packageRoot(), "bin", "hvlab.js"), ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new ClusterProcess(name, child);
}

/** How {@link startCluster} sets the cluster up. */
export interface ClusterSetup {
  readonly lun: string;
  readonly nodes: number;
  readonly heartbeatMs: number;
  readonly misses: number;
  /** Extra arguments of every `hvlab csv node` (a workload), by node id. */
  readonly nodeArgs: (id: number) => readonly string[];
  /** Extra arguments of `hvlab csv target`. */
  readonly targetArgs?: readonly string[];
  /** Whether nodes do direct I/O on the LUN over their own path (`--lun`; default) or through the target. */
  readonly direct?: boolean;
}

/** A running cluster: the target and its nodes, by id. */
export interface RunningCluster {
  readonly target: ClusterProcess;
  readonly targetPort: number;
  /** Node id to its process and port. */
  readonly nodes: ReadonlyMap<number, { readonly process: ClusterProcess; readonly port: number }>;
  /** Starts node `id` again (after it was killed), on the same port, and waits until it listens. */
  restart(id: number): Promise<ClusterProcess>;
  /** Stops every process still running, by PID. */
  stop(): Promise<void>;
}

/** Starts `hvlab csv target` on the LUN and `nodes` node processes, and waits until each listens. */
export async function startCluster(setup: ClusterSetup): Promise<RunningCluster> {
  // Checked here: a LUN that cannot be opened fails now, not in a child.
  new FdFile(setup.lun, "r+").close();
  const target = hvlab("csv target", [
    "csv",
    "target",
    setup.lun,
    "--json",
    ...(setup.targetArgs ?? []),
  ]);
  const nodes = new Map<number, { process: ClusterProcess; port: number }>();
  const stop = async () => {
    await Promise.all([...nodes.values()].map((n) => n.process.stop()));
    await target.stop();
  };
  try {
    const listening = await target.next((e) => e.event === "listening", 60_000);
    const targetPort = Number(listening.port);
    const ports: number[] = [];
    for (let id = 1; id <= setup.nodes; id++) ports.push(await freeLoopbackPort());
    const launch = (id: number) => {
      const peers = ports
        .map((port, i) => `${i + 1}=${port}`)
        .filter((_, i) => i + 1 !== id)
        .join(",");
      const node = hvlab(`csv node ${id}`, [
        "csv",
        "node",
        "--id",
        String(id),
        "--port",
        String(ports[id - 1]),
        "--target-port",
        String(targetPort),
        "--heartbeat-interval",
        String(setup.heartbeatMs),
        "--heartbeat-misses",
        String(setup.misses),
        "--json",
        // The node's own path to the LUN: its data I/O goes there, fenced by the target's board.
        ...(setup.direct === false ? [] : ["--lun", setup.lun]),
        ...(peers ? ["--peers", peers] : []),
        ...setup.nodeArgs(id),
      ]);
      nodes.set(id, { process: node, port: ports[id - 1] ?? 0 });
      return node;
    };
    for (let id = 1; id <= setup.nodes; id++) launch(id);
    await Promise.all(
      [...nodes.values()].map((n) => n.process.next((e) => e.event === "listening", 60_000)),
    );
    const restart = async (id: number) => {
      await nodes.get(id)?.process.stop();
      const node = launch(id);
      await node.next((e) => e.event === "listening", 60_000);
      return node;
    };
    return { target, targetPort, nodes, restart, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
