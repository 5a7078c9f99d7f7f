/*
 * The pre-copy driver's limits, in every mode: a time limit holds within one
 * page batch of its value (virtual time on a link of 1 bit/s; wall time on a
 * stalled TCP link), and a stop-and-copy that fails reports the pause it
 * really cost and that the guest runs again on the source.
 */
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import { hvlab } from "./support/cli.js";

const MiB = 1024 ** 2;
/** QEMU's bandwidth window, ms: the virtual link's page batch is one window of its bytes. */
const WINDOW_MS = 100;

const servers: DestinationServer[] = [];
const proxies: Server[] = [];
const sources: LiveSource[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.close();
  for (const server of servers.splice(0)) await server.close();
  for (const proxy of proxies.splice(0)) {
    proxy.close();
  }
});

/**
 * A TCP proxy to `target` that, once `after` bytes from the source have
 * passed, either stops reading (`stall`: the source's socket fills and its
 * sends wait) or cuts both connections (`cut`).
 */
async function proxy(target: number, after: number, how: "stall" | "cut"): Promise<number> {
  const open: Socket[] = [];
  const server = createServer((client: Socket) => {
    const upstream = connect(target, "127.0.0.1");
    open.push(client, upstream);
    let passed = 0;
    client.on("data", (chunk: Buffer) => {
      const left = after - passed;
      passed += chunk.length;
      if (left >= chunk.length) {
        upstream.write(chunk);
        return;
      }
      if (left > 0) upstream.write(chunk.subarray(0, left));
      if (how === "cut") {
        client.destroy();
        upstream.destroy();
      } else client.pause();
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  server.on("close", () => {
    for (const socket of open) socket.destroy();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  proxies.push(server);
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy not listening");
  return address.port;
}

function source(guestMiB: number): LiveSource {
  const s = LiveSource.start({
    guestBytes: guestMiB * MiB,
    vcpus: 2,
    workload: { kind: "hotset" },
    writesPerSecond: Number.POSITIVE_INFINITY,
    threads: 1,
    seed: 11,
  });
  sources.push(s);
  return s;
}

describe("time limits hold within one page batch", () => {
  it("virtual time: 64 MiB over 1 bit/s stops at the 5 s limit, not hours later", async () => {
    const began = performance.now();
    const result = await runMigration({
      guestBytes: 64 * MiB,
      content: true,
      vcpus: 2,
      workload: { kind: "uniform" },
      writesPerSecond: 20_000,
      seed: 1,
      maxBandwidth: 1 / 8,
      timeoutMs: 5000,
    });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(
      /^timeout: [\d.]+ MiB still pending after 5\.0 s \(limit 5\.0 s\)$/,
    );
    expect(result.summary["total-time"]).toBeGreaterThanOrEqual(5000);
    expect(result.summary["total-time"]).toBeLessThanOrEqual(5000 + WINDOW_MS);
    // Not a page got out in 5 s at 1 bit/s.
    expect(result.summary.normal).toBe(0);
    expect(performance.now() - began).toBeLessThan(30_000);
  });

  it("virtual time: at 100 Kbit a round that would last 5,000 s is cut at the limit", async () => {
    const result = await runMigration({
      guestBytes: 64 * MiB,
      content: false,
      vcpus: 2,
      workload: { kind: "uniform" },
      writesPerSecond: 20_000,
      seed: 1,
      maxBandwidth: 100_000 / 8,
      timeoutMs: 5000,
    });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary["total-time"]).toBeLessThanOrEqual(5000 + WINDOW_MS);
    // 5 s of 12,500 B/s carry 15 pages of 4 KiB and their record headers, no more.
    expect(result.summary.normal).toBeGreaterThan(0);
    expect(result.summary.normal).toBeLessThanOrEqual(Math.floor((5 * 100_000) / 8 / 4096));
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
  });

  it("hvlab migrate --max-time 5 at 1 bit/s ends at 5 s of virtual time", () => {
    const run = hvlab(
      ["migrate", "--guest", "64MiB", "--bandwidth", "1bit", "--max-time", "5", "--json"],
      60_000,
    );
    expect(run.stderr).toMatch(/not-converged: timeout/);
    const result = JSON.parse(run.stdout) as { summary: { "total-time": number } };
    expect(result.summary["total-time"]).toBeGreaterThanOrEqual(5000);
    expect(result.summary["total-time"]).toBeLessThanOrEqual(5000 + WINDOW_MS);
  });

  it("wall time: a stalled link gives up at the timeout, said so, the guest still running", async () => {
    const destination = await DestinationServer.listen({ port: 0 });
    servers.push(destination);
    // The handshake and 2 MiB of pages pass; then the proxy reads no more.
    const port = await proxy(destination.address.port, 2 * MiB, "stall");
    const s = source(32);
    const began = performance.now();
    const result = await s.migrate({ host: "127.0.0.1", port, timeoutMs: 1500 });
    const took = performance.now() - began;
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(/^no convergence within 1500 ms/);
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
    // One frame (1 MiB) on an unthrottled link is far under a second: the rest is slack for a shared machine.
    expect(result.summary["total-time"]).toBeGreaterThanOrEqual(1500);
    expect(result.summary["total-time"]).toBeLessThan(1500 + 1500);
    expect(took).toBeLessThan(1500 + 3000);
    expect(s.runner.running).toBe(true);
  });
});

describe("a stop-and-copy that fails", () => {
  it("reports the real pause and that the guest runs again on the source", async () => {
    const destination = await DestinationServer.listen({ port: 0 });
    servers.push(destination);
    const guestBytes = 8 * MiB;
    // The first pass (every page, its 4-byte number, frame headers: under
    // 16 KiB over the pages) passes; the cut falls in stop-and-copy, whose
    // 64 KiB of device state alone goes past it.
    const port = await proxy(
      destination.address.port,
      guestBytes + guestBytes / 1024 + 24 * 1024,
      "cut",
    );
    const s = source(8);
    await s.runner.writesPass(0, 20_000);
    const result = await s.migrate({ host: "127.0.0.1", port, maxPasses: 1 });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(/dropped during stop-and-copy/);
    expect(result.summary.reason).toMatch(
      /the guest was paused [\d.]+ ms and runs again on the source$/,
    );
    const paused = Number(/paused ([\d.]+) ms/.exec(result.summary.reason ?? "")?.[1]);
    expect(result.summary.downtime).toBeGreaterThan(0);
    expect(result.summary.downtime).toBeCloseTo(paused, 0);
    expect(result.summary.downtime).toBeLessThanOrEqual(result.summary["total-time"]);
    expect(s.runner.running).toBe(true);
  });
});
