import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import { until } from "./support/until.js";

const MiB = 1024 ** 2;
const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;

const servers: DestinationServer[] = [];
const sources: LiveSource[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }
  for (const s of sources.splice(0)) await s.close();
  for (const server of servers.splice(0)) await server.close();
});

async function destination(timeouts: {
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
}): Promise<{ server: DestinationServer; nextReport: () => Promise<DestinationReport> }> {
  const waiting: ((report: DestinationReport) => void)[] = [];
  const server = await DestinationServer.listen({
    port: 0,
    sessions: 0,
    ...timeouts,
    onSession: (report) => waiting.shift()?.(report),
  });
  servers.push(server);
  return {
    server,
    nextReport: () => new Promise((resolve) => waiting.push(resolve)),
  };
}

function source(guestMiB: number): LiveSource {
  const s = LiveSource.start({
    guestBytes: guestMiB * MiB,
    vcpus: 1,
    workload: { kind: "hotset" },
    writesPerSecond: 5_000,
    threads: 0,
    seed: 3,
  });
  sources.push(s);
  return s;
}

describe("a destination no peer can wedge", () => {
  it("a connection that sends nothing holds the slot only until the handshake deadline; then a real migration succeeds", async () => {
    const { server, nextReport } = await destination({
      handshakeTimeoutMs: 300,
      idleTimeoutMs: 60_000,
    });
    const timedOut = nextReport();
    const silent = connect(server.address.port, "127.0.0.1");
    await once(silent, "connect");
    // It reads (so it sees the destination hang up) but never writes.
    let told = 0;
    silent.on("data", (chunk: Buffer) => {
      told += chunk.length;
    });
    silent.on("error", () => undefined);
    const silentClosed = once(silent, "close");
    await until(() => server.receiving, 2_000, "the destination taking the silent connection");
    // While the silent peer holds the slot, a real source is turned away.
    const s = source(4);
    const refused = await s.migrate({ host: "127.0.0.1", port: server.address.port });
    expect(refused.summary.status).toBe("failed");
    expect(refused.summary.reason).toMatch(/receiving another migration/);

    const report = await timedOut;
    expect(report.status).toBe("failed");
    expect(report.reason).toBe("no hello within 300 ms of connecting");
    await silentClosed;
    // The destination said why before it hung up (an error frame).
    expect(told).toBeGreaterThan(0);
    expect(server.receiving).toBe(false);

    const completed = nextReport();
    const result = await s.migrate({ host: "127.0.0.1", port: server.address.port });
    expect(result.summary.status, result.summary.reason ?? "").toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect((await completed).verified).toBe(true);
  });

  it("a source process stopped with SIGSTOP mid-migration is discarded after the idle timeout; then a real migration succeeds", async () => {
    const { server, nextReport } = await destination({
      handshakeTimeoutMs: 5_000,
      idleTimeoutMs: 400,
    });
    const port = server.address.port;
    // A throttled source: 32 MiB at 4 MiB/s takes seconds, so it is stopped mid-stream.
    const child = spawn(
      process.execPath,
      [
        BIN,
        "migrate-live",
        "--to",
        `127.0.0.1:${port}`,
        "--guest",
        "32MiB",
        "--max-bandwidth",
        "4MiB",
        "--threads",
        "0",
      ],
      { stdio: ["ignore", "ignore", "ignore"] },
    );
    children.push(child);
    const report = nextReport();
    // Past the hello and the first pages: the source is sending pages when it stops.
    await until(() => server.pagesReceiving > 0, 20_000, "the source process sending pages");
    child.kill("SIGSTOP");
    const failed = await report;
    expect(failed.status).toBe("failed");
    expect(failed.reason).toMatch(/^nothing received for 400 ms after \d+ pages$/);
    expect(failed.pagesReceived).toBeGreaterThan(0);
    expect(failed.discarded).toBe(true);
    expect(server.receiving).toBe(false);

    const completed = nextReport();
    const s = source(8);
    const result = await s.migrate({ host: "127.0.0.1", port });
    expect(result.summary.status, result.summary.reason ?? "").toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect((await completed).status).toBe("completed");
  });

  it("a destination receiving migrations of mixed sizes ends with the memory it had after its largest", async () => {
    const { server, nextReport } = await destination({
      handshakeTimeoutMs: 5_000,
      idleTimeoutMs: 10_000,
    });
    const port = server.address.port;
    const sizes = [8, 3, 5, 1, 8, 2, 7, 4];
    const before = server.memoryBytes;
    const memory: number[] = [];
    for (const mib of sizes) {
      const s = source(mib);
      const report = nextReport();
      const result = await s.migrate({ host: "127.0.0.1", port });
      expect(result.summary.status, result.summary.reason ?? "").toBe("completed");
      expect(result.summary.verified).toBe(true);
      expect((await report).guestBytes).toBe(mib * MiB);
      memory.push(server.memoryBytes);
      await s.close();
      sources.splice(sources.indexOf(s), 1);
    }
    // One landing region as large as the largest guest, reused by every smaller one.
    expect(memory.every((bytes) => bytes === memory[0])).toBe(true);
    expect((memory[0] ?? 0) - before).toBeLessThanOrEqual(8 * MiB + 64 * 1024);
  });
});
