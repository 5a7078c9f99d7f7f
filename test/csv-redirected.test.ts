import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode, type NodeEvent } from "../src/csv/node.js";
import { MAX_REDIRECTED_BYTES } from "../src/csv/redirected-io.js";
import { LunTarget } from "../src/csv/target.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { freePort } from "./support/csv-cluster.js";

// Redirected access in one process: a target and two nodes over loopback.
// Node 1 coordinates; node 2's path is cut and restored while it writes, and
// its cluster-network link is throttled so the bandwidth can be seen.

const HEARTBEAT_MS = 50;
const MISSES = 4;
/** The cluster-network links: 1 MiB/s, slow enough that metering dominates the time, fast enough for CI. */
const LINK = 1024 * 1024;

let dir: string;
let lunPath: string;
let target: LunTarget;
let file: FdFile;
const nodes: ClusterNode[] = [];
const events: NodeEvent[] = [];
const waiters: { test: (e: NodeEvent) => boolean; resolve: () => void }[] = [];

/** Resolves at the first event (past or future) passing `test`, or fails naming what did not come. */
function seen(what: string, test: (e: NodeEvent) => boolean, timeoutMs = 10_000): Promise<void> {
  if (events.some(test)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no ${what} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    waiters.push({
      test,
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
    });
  });
}

function onEvent(e: NodeEvent): void {
  events.push(e);
  for (const w of [...waiters])
    if (w.test(e)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-redirected-"));
  lunPath = join(dir, "lun.img");
  file = new FdFile(lunPath, "wx+");
  file.truncate(32 << 20);
  await Volume.format(new FileLun(file, false), { clusterBytes: 4096 });
  target = new LunTarget(file, { durable: false });
  const targetPort = await target.listen();
  const ports = [await freePort(), await freePort()];
  for (const id of [1, 2]) {
    const peer = 3 - id;
    nodes.push(
      new ClusterNode({
        id,
        port: ports[id - 1] ?? 0,
        targetPort,
        peers: new Map([[peer, ports[peer - 1] ?? 0]]),
        heartbeatMs: HEARTBEAT_MS,
        misses: MISSES,
        clusterBandwidth: LINK,
        onEvent,
      }),
    );
  }
  await Promise.all(nodes.map((n) => n.start()));
  await seen("coordinator", (e) => e.event === "coordinator" && e.node === 1);
  await seen("node 2 following node 1", (e) => e.event === "follow" && e.node === 2);
});

afterAll(async () => {
  for (const n of nodes) n.stop();
  await target?.close();
  file?.close();
  rmSync(dir, { recursive: true, force: true });
});

const pattern = (seed: number, n: number) => {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (seed * 31 + i * 7 + (i >> 9)) & 0xff;
  return out;
};

describe("csv redirected access", () => {
  it("a node whose path is cut writes through the coordinator at its link's bandwidth, loses nothing, and goes direct again when restored", async () => {
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    const size = 4 << 20;
    const f = await two.metadata({ op: "create", name: "vm2.vhd", size });
    if (!f) throw new Error("create returned no map");
    // Direct first: the bytes reach the LUN without the coordinator serving anything.
    const first = pattern(1, 256 * 1024);
    await two.writeFile(f, 0, first);
    expect(two.io.directWrites).toBe(1);
    expect(one.io.servedRedirected).toBe(0);

    // Cut mid-workload: writes already started finish or are sent again redirected.
    const inFlight = two.writeFile(f, 256 * 1024, pattern(2, 64 * 1024));
    two.cutPath("test");
    await inFlight;
    await seen("node 2 redirected", (e) => e.event === "redirected" && e.node === 2);
    expect(two.status()).toMatchObject({
      path: "cut",
      redirected: "storage path cut (test)",
    });
    const directBefore = two.io.directWrites;

    // 2 MiB through a 1 MiB/s link: the first request's burst is free, the rest is metered.
    const big = pattern(3, 2 << 20);
    const t0 = performance.now();
    await two.writeFile(f, 1 << 20, big);
    const elapsed = performance.now() - t0;
    const metered = big.length - MAX_REDIRECTED_BYTES;
    expect(elapsed).toBeGreaterThanOrEqual((metered / LINK) * 1000 * 0.9);
    expect(two.io.directWrites).toBe(directBefore);
    expect(two.io.redirectedWrites).toBeGreaterThanOrEqual(1);
    expect(one.io.servedRedirected).toBeGreaterThanOrEqual(
      Math.ceil(big.length / MAX_REDIRECTED_BYTES),
    );

    // Reads go redirected too, and return what was written by either path.
    expect(Buffer.from(await two.readFile(f, 0, first.length)).equals(Buffer.from(first))).toBe(
      true,
    );
    expect(Buffer.from(await two.readFile(f, 1 << 20, big.length)).equals(Buffer.from(big))).toBe(
      true,
    );
    expect(two.io.directReads).toBe(0);

    // A redirected write outside the file is refused by the coordinator's file table, with the reason.
    await expect(two.writeFile({ ...f, size: size * 2 }, size, pattern(4, 4096))).rejects.toThrow(
      /redirected WRITE of 4096 bytes at 4194304 of vm2\.vhd: .*outside its 4194304 bytes/,
    );

    // Restored: direct again; the coordinator serves nothing more.
    await two.restorePath();
    await seen("node 2 direct", (e) => e.event === "direct" && e.node === 2);
    const served = one.io.servedRedirected;
    await two.writeFile(f, 3 << 20, pattern(5, 128 * 1024));
    expect(two.io.directWrites).toBe(directBefore + 1);
    expect(one.io.servedRedirected).toBe(served);

    // Everything acknowledged reads back from the LUN itself, and the volume checks clean.
    const lun = new FileLun(new FdFile(lunPath, "r"), false);
    try {
      const volume = await Volume.open(lun, { replay: false });
      const map = volume.lookup("vm2.vhd");
      for (const [at, bytes] of [
        [0, first],
        [256 * 1024, pattern(2, 64 * 1024)],
        [1 << 20, big],
        [3 << 20, pattern(5, 128 * 1024)],
      ] as const)
        expect(
          Buffer.from(await volume.read(map, at, bytes.length)).equals(Buffer.from(bytes)),
        ).toBe(true);
      expect((await checkVolume(lun)).problems).toEqual([]);
    } finally {
      lun.close();
    }
  }, 60_000);

  it("a batch of chunks on a node whose path is cut goes through the coordinator, every chunk once", async () => {
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    const f = await two.metadata({ op: "create", name: "vm2-batch.vhd", size: 1 << 20 });
    if (!f) throw new Error("create returned no map");
    const count = (event: string) => events.filter((e) => e.event === event && e.node === 2).length;
    const redirectedBefore = count("redirected");
    const directBefore = count("direct");
    two.cutPath("test");
    await seen("node 2 redirected again", () => count("redirected") > redirectedBefore);
    const before = { ...two.io };
    const served = one.io.servedRedirected;
    const chunks = Array.from({ length: 6 }, (_, k) => ({
      offset: k * 16_384,
      data: pattern(20 + k, 16_384),
    }));
    await two.writeFileBatch(f, chunks);
    expect(two.io.redirectedWrites - before.redirectedWrites).toBe(6);
    expect(two.io.directWrites).toBe(before.directWrites);
    expect(one.io.servedRedirected - served).toBe(6);
    for (const c of chunks)
      expect(Buffer.from(await two.readFile(f, c.offset, c.data.length)).equals(c.data)).toBe(true);
    await two.restorePath();
    await seen("node 2 direct again", () => count("direct") > directBefore);
  }, 60_000);

  it("a backup window on the coordinator sends every other node's I/O through it until it closes", async () => {
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    expect(() => two.setBackup(true)).toThrow(/node 2 is not the coordinator \(node 1 is\)/);
    const f = await two.metadata({ op: "create", name: "backup.vhd", size: 64 * 1024 });
    if (!f) throw new Error("create returned no map");
    one.setBackup(true);
    await seen(
      "node 2 redirected by the backup",
      (e) =>
        e.event === "redirected" && e.node === 2 && /backup window on coordinator 1/.test(e.reason),
    );
    const served = one.io.servedRedirected;
    await two.writeFile(f, 0, pattern(6, 8192));
    expect(one.io.servedRedirected).toBe(served + 1);
    one.setBackup(false);
    const after = events.length;
    await seen(
      "node 2 direct after the backup",
      (e) => e.event === "direct" && e.node === 2 && events.indexOf(e) >= after,
    );
    await two.writeFile(f, 8192, pattern(7, 8192));
    expect(one.io.servedRedirected).toBe(served + 1);
    expect(Buffer.from(await two.readFile(f, 0, 8192)).equals(Buffer.from(pattern(6, 8192)))).toBe(
      true,
    );
  }, 30_000);

  it("a coordinator whose path is cut hands the role on; restored, it registers again and writes direct", async () => {
    const [one, two] = nodes as [ClusterNode, ClusterNode];
    const f = await one.metadata({ op: "create", name: "vm1.vhd", size: 64 * 1024 });
    if (!f) throw new Error("create returned no map");
    const epoch = one.state.epoch;
    one.cutPath("test");
    await seen(
      "node 1 stepping down",
      (e) => e.event === "fenced" && e.node === 1 && /storage path cut/.test(e.reason),
    );
    await seen(
      "node 2 coordinating",
      (e) => e.event === "coordinator" && e.node === 2 && e.epoch > epoch,
    );
    // Node 1's writes now go through node 2, and its metadata too.
    await one.writeFile(f, 0, pattern(8, 16 * 1024));
    expect(two.io.servedRedirected).toBeGreaterThanOrEqual(1);
    expect(one.state).toMatchObject({ role: "node", coordinator: 2 });
    await one.restorePath();
    const direct = one.io.directWrites;
    await one.writeFile(f, 16 * 1024, pattern(9, 16 * 1024));
    expect(one.io.directWrites).toBe(direct + 1);
    expect(
      Buffer.from(await one.readFile(f, 0, 16 * 1024)).equals(Buffer.from(pattern(8, 16 * 1024))),
    ).toBe(true);
    // The role stays where it went: sticky, as after a failover.
    expect(two.state.role).toBe("coordinator");
  }, 30_000);
});
