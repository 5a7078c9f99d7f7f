import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { expect } from "vitest";
import { readAckLogs, verifyAcks as verifyAckRecords } from "../../src/csv/acks.js";
import { FileLun } from "../../src/csv/lun.js";
import { FdFile } from "../../src/storage/block-file.js";

/** A free TCP port on 127.0.0.1 (bound and released: the caller takes it at once). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** One event line of a node. */
export interface NodeEventLine {
  readonly event: string;
  readonly node: number;
  readonly epoch?: number;
  readonly atMs?: number;
  readonly [key: string]: unknown;
}

/** A running `hvlab csv node`. */
export class NodeProcess {
  readonly events: NodeEventLine[] = [];
  private readonly waiters: {
    test: (e: NodeEventLine) => boolean;
    resolve: (e: NodeEventLine) => void;
  }[] = [];
  readonly exited: Promise<void>;
  stderr = "";
  /** Called with every event line of this node. */
  readonly listeners = new Set<(event: NodeEventLine, from: NodeProcess) => void>();

  constructor(
    readonly id: number,
    readonly child: ChildProcess,
  ) {
    if (!child.stdout) throw new Error("node has no stdout");
    createInterface({ input: child.stdout }).on("line", (line) => {
      let event: NodeEventLine;
      try {
        event = JSON.parse(line);
      } catch {
        return;
      }
      this.events.push(event);
      for (const listener of this.listeners) listener(event, this);
      for (const w of [...this.waiters]) {
        if (w.test(event)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(event);
        }
      }
    });
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
    this.exited.then(() => {
      for (const listener of this.listeners) listener({ event: "exit", node: id }, this);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Resolves with the first event (past or future) that passes `test`. */
  next(test: (e: NodeEventLine) => boolean): Promise<NodeEventLine> {
    const seen = this.events.find(test);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }
}

/** Starts node `id` of a cluster whose nodes listen on `ports` (ports[i] is node i + 1's). */
export function startNode(
  id: number,
  ports: readonly number[],
  targetPort: number,
  args: readonly string[],
): NodeProcess {
  const peers = ports
    .map((port, i) => [i + 1, port] as const)
    .filter(([peer]) => peer !== id)
    .map(([peer, port]) => `${peer}=${port}`)
    .join(",");
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, "..", "..", "bin", "hvlab.js"),
      "csv",
      "node",
      "--id",
      String(id),
      "--port",
      String(ports[id - 1]),
      "--target-port",
      String(targetPort),
      "--json",
      ...(peers ? ["--peers", peers] : []),
      ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  return new NodeProcess(id, child);
}

/**
 * Every acknowledged write reads back (or a later write of the same block
 * does), for files that still exist; returns how many blocks were checked.
 * The check is the one `hvlab csv bench` runs (src/csv/acks.ts); a lost
 * block fails the calling test with the first few named.
 */
export async function verifyAcks(lunPath: string, logs: string[]): Promise<number> {
  const lun = new FileLun(new FdFile(lunPath, "r"), false);
  try {
    const check = await verifyAckRecords(lun, readAckLogs(logs));
    expect(check.lost, "acknowledged writes that do not read back").toEqual([]);
    expect(check.intact).toBe(check.checked);
    return check.checked;
  } finally {
    lun.close();
  }
}

/**
 * Waits until `test` holds, evaluated now and again after every event line
 * of every node in `nodes` (and every exit); fails after `timeoutMs` with
 * `what` and the state `describe` gives, so a timeout names who did not answer.
 */
export function until(
  nodes: () => Iterable<NodeProcess>,
  test: () => boolean,
  what: string,
  timeoutMs: number,
  describe: () => string = () => "",
): Promise<void> {
  if (test()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const watched = new Set<NodeProcess>();
    const done = () => {
      clearTimeout(timer);
      for (const n of watched) n.listeners.delete(check);
    };
    const check = () => {
      for (const n of nodes())
        if (!watched.has(n)) {
          watched.add(n);
          n.listeners.add(check);
        }
      if (test()) {
        done();
        resolve();
      }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${what}: not within ${timeoutMs} ms; ${describe()}`));
    }, timeoutMs);
    check();
  });
}
