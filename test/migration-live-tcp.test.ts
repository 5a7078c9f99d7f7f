import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import { flattenDotted, type QueryMigrateSummary } from "../src/migration/query-migrate.js";
import { hvlabAsync as hvlab } from "./support/cli.js";

const MiB = 1024 ** 2;
const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;

/** A destination process: `hvlab migrate-live --listen 0`, its port read from its first line. */
/** Destination processes this file started, killed after each test if still running. */
const destinations: ChildProcess[] = [];

async function startDestinationProcess(extra: string[] = []): Promise<{
  child: ChildProcess;
  port: number;
  exited: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
}> {
  const child = spawn(process.execPath, [BIN, "migrate-live", "--listen", "0", ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  destinations.push(child);
  // Listen for the exit now: the destination may be gone before the test asks.
  const exited = once(child, "exit").then(([code]) => code as number | null);
  let out = "";
  let err = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`destination exited ${code}: ${err}`)));
  });
  return { child, port, exited, stdout: () => out, stderr: () => err };
}

/** Resolves with `promise`, or fails naming `what` if it has not settled within `ms`. */
async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not come within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once a child's stderr (all of it so far: `seen`) matches `pattern`. */
async function outputMatching(
  child: ChildProcess,
  pattern: RegExp,
  seen: () => string,
): Promise<void> {
  if (pattern.test(seen())) return;
  await new Promise<void>((resolve) => {
    const check = () => {
      if (!pattern.test(seen())) return;
      child.stderr?.off("data", check);
      resolve();
    };
    child.stderr?.on("data", check);
  });
}

/**
 * A TCP proxy between a source and a destination that can damage the stream
 * from source to destination: flip a byte at an offset, or cut the
 * connection after a number of bytes. Each connection takes the next plan.
 */
async function proxy(
  target: number,
  plans: ({ flipAt?: number; cutAfter?: number; deliverFirst?: boolean } | undefined)[],
): Promise<{ server: Server; port: number }> {
  let connection = 0;
  const server = createServer((client: Socket) => {
    const plan = plans[connection++];
    const upstream = connect(target, "127.0.0.1");
    let passed = 0;
    let cut = false;
    client.on("data", (chunk: Buffer) => {
      if (cut) return;
      let data = chunk;
      if (
        plan?.flipAt !== undefined &&
        passed <= plan.flipAt &&
        plan.flipAt < passed + chunk.length
      ) {
        data = Buffer.from(chunk);
        data[plan.flipAt - passed] = (data[plan.flipAt - passed] ?? 0) ^ 0x40;
      }
      passed += chunk.length;
      if (plan?.cutAfter !== undefined && passed >= plan.cutAfter) {
        cut = true;
        if (plan.deliverFirst) {
          // The destination gets every byte before the cut, then the end of
          // the connection, and only then does the source's side break: what
          // the destination holds when it learns of the cut is fixed, not a
          // race against bytes a busy machine still had queued. The source's
          // side breaks a moment after the bytes left, since the source's
          // failure, told on the main connection, could otherwise be read
          // before this connection's bytes on a loaded machine.
          upstream.end(data.subarray(0, data.length - (passed - plan.cutAfter)), () =>
            setTimeout(() => client.destroy(), 250),
          );
        } else {
          // Both sides break at once; bytes still queued to the destination are lost.
          client.destroy();
          upstream.destroy();
        }
        return;
      }
      upstream.write(data);
    });
    upstream.on("data", (chunk: Buffer) => client.write(chunk));
    client.on("close", () => {
      if (!cut) upstream.destroy();
    });
    upstream.on("close", () => client.destroy());
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("proxy not listening");
  return { server, port: address.port };
}

const sources: LiveSource[] = [];
function source(guestMiB: number, writesPerSecond = 20_000): LiveSource {
  const s = LiveSource.start({
    guestBytes: guestMiB * MiB,
    vcpus: 2,
    workload: { kind: "hotset" },
    writesPerSecond,
    threads: 1,
    seed: 7,
  });
  sources.push(s);
  return s;
}

afterEach(async () => {
  // A source left running would steal the 2 cores from the next test's vCPUs.
  for (const s of sources.splice(0)) await s.close();
  // A destination still waiting for a session (its test failed first) would listen forever.
  for (const child of destinations.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }
});

/** Every field of MigrationSummary (src/migration/stats.ts), and nothing else. */
/** query-migrate's keys of a live run's summary, dotted. */
const SUMMARY_KEYS = [
  "status",
  "total-time",
  "downtime",
  "expected-downtime",
  "setup-time",
  "cpu-throttle-percentage",
  "ram.transferred",
  "ram.remaining",
  "ram.total",
  "ram.duplicate",
  "ram.normal",
  "ram.normal-bytes",
  "ram.dirty-pages-rate",
  "ram.mbps",
  "ram.dirty-sync-count",
  "ram.page-size",
  "ram.multifd-bytes",
  "ram.pages-per-second",
  "ram.precopy-bytes",
  "ram.downtime-bytes",
  "ram.postcopy-bytes",
  "ram.postcopy-requests",
  "hvlab.reason",
  // Every mode runs the one driver: a completed run says whether its downtime passed the limit.
  "hvlab.downtimeOverLimit",
  "hvlab.mode",
  "hvlab.policy",
  "hvlab.rounds",
  "hvlab.verified",
  "hvlab.postcopy-remote-faults",
  "hvlab.postcopy-fault-wait-ms",
];

describe("live migration over TCP", () => {
  it("two processes: hvlab migrate-live --listen 0 and --to, every page verified", async () => {
    const destination = await startDestinationProcess(["--json"]);
    const run = await hvlab([
      "migrate-live",
      "--to",
      `127.0.0.1:${destination.port}`,
      "--guest",
      "32MiB",
      "--rate",
      "50000",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout) as {
      rounds: unknown[];
      summary: QueryMigrateSummary;
    };
    expect(Object.keys(result).sort()).toEqual(["rounds", "summary"]);
    expect(Object.keys(flattenDotted(result.summary)).sort()).toEqual([...SUMMARY_KEYS].sort());
    expect(result.summary.status).toBe("completed");
    expect(result.summary.hvlab.mode).toBe("live-tcp");
    expect(result.summary.hvlab.verified).toBe(true);
    expect(result.summary.ram.normal).toBeGreaterThanOrEqual((32 * MiB) / 4096);
    expect(result.rounds.at(-1)).toMatchObject({ hvlab: { phase: "stop-and-copy" } });
    expect(await destination.exited).toBe(0);
    const report = JSON.parse(
      destination.stdout().slice(destination.stdout().indexOf("{")),
    ) as DestinationReport;
    expect(report).toMatchObject({
      status: "completed",
      verified: true,
      mismatches: 0,
      guestBytes: 32 * MiB,
    });
    expect(report.pagesReceived).toBe(result.summary.ram.normal);
  });

  it("a connection dropped mid-stream fails the run, the guest keeps running, the destination discards, a retry succeeds", async () => {
    const destination = await startDestinationProcess();
    const { server, port } = await proxy(destination.port, [{ cutAfter: 6 * MiB }, undefined]);
    const s = source(16);
    const failed = await s.migrate({ host: "127.0.0.1", port });
    expect(failed.summary.status).toBe("failed");
    expect(failed.summary.reason).toMatch(
      /connection to 127\.0\.0\.1:\d+ dropped during pre-copy pass 1/,
    );
    expect(failed.summary.verified).toBe(null);
    // The source VM is still running: its vCPUs keep writing.
    expect(s.runner.running).toBe(true);
    // On a busy machine the pool's first batch may still be running: wait for progress.
    const before = s.runner.writes;
    await s.runner.writesPass(before, 20_000);
    expect(s.runner.writes).toBeGreaterThan(before);
    // The destination takes one migration at a time: retry once it has discarded the cut one.
    await withDeadline(
      outputMatching(destination.child, /still listening\n/, destination.stderr),
      10_000,
      "the destination's discard of the cut migration",
    );
    const retried = await s.migrate({ host: "127.0.0.1", port });
    expect(retried.summary.status, retried.summary.reason ?? "").toBe("completed");
    expect(retried.summary.verified).toBe(true);
    expect(await destination.exited).toBe(0);
    expect(destination.stderr()).toMatch(
      /^hvlab: incoming migration 1 from .* failed: the connection closed mid-migration after \d+ pages; partial copy discarded; still listening\n$/,
    );
    expect(destination.stdout()).toMatch(/migration 2 from .* completed: 16\.0 MiB guest/);
    server.close();
  });

  it("a multifd channel cut mid-pass fails the run naming the channel; the destination discards, the guest keeps running, a retry succeeds", async () => {
    const reports: DestinationReport[] = [];
    const destination = await DestinationServer.listen({
      port: 0,
      sessions: 1,
      onSession: (r) => reports.push(r),
    });
    // Connections in order: the main one, channel 0 (cut after 3 MiB), channel 1; then the retry's.
    const { server, port } = await proxy(destination.address.port, [
      undefined,
      { cutAfter: 3 * MiB, deliverFirst: true },
      undefined,
    ]);
    const s = source(16);
    const failed = await s.migrate({ host: "127.0.0.1", port, multifdChannels: 2 });
    expect(failed.summary.status).toBe("failed");
    expect(failed.summary.reason).toMatch(/multifd channel/);
    expect(s.runner.running).toBe(true);
    await withDeadline(
      (async () => {
        while (reports.length === 0) await new Promise((r) => setTimeout(r, 20));
      })(),
      10_000,
      "the destination's report of the cut session",
    );
    expect(reports[0]).toMatchObject({ status: "failed", discarded: true });
    expect(reports[0]?.reason).toMatch(/multifd channel/);
    const retried = await s.migrate({ host: "127.0.0.1", port, multifdChannels: 2 });
    expect(retried.summary.status, retried.summary.reason ?? "").toBe("completed");
    expect(retried.summary.verified).toBe(true);
    expect(reports[1]).toMatchObject({ status: "completed", verified: true, channels: 2 });
    server.close();
    await destination.close();
  });

  it("a frame corrupted in transit fails the migration before wrong memory is written", async () => {
    const reports: DestinationReport[] = [];
    const destination = await DestinationServer.listen({
      port: 0,
      onSession: (r) => reports.push(r),
    });
    // Offset 3 MiB lands inside a pages frame's payload.
    const { server, port } = await proxy(destination.address.port, [{ flipAt: 3 * MiB + 12_345 }]);
    const s = source(8);
    const result = await s.migrate({ host: "127.0.0.1", port });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      /the destination stopped the migration: frame \d+ \(pages\): digest mismatch/,
    );
    expect(reports[0]).toMatchObject({ status: "failed", discarded: true, verified: null });
    // Every page that landed before the damaged frame came from intact frames:
    // the damaged frame's pages were never scattered.
    expect(reports[0]?.pagesReceived).toBeLessThan((3 * MiB + 12_345) / 4096);
    const retried = await s.migrate({ host: "127.0.0.1", port: destination.address.port });
    expect(retried.summary).toMatchObject({ status: "completed", verified: true });
    server.close();
    await destination.close();
  });

  it("a peer that speaks something else is refused with one clear line", async () => {
    const foreign = createServer((socket) => socket.end("SSH-2.0-OpenSSH_9.6\r\n"));
    foreign.listen(0, "127.0.0.1");
    await once(foreign, "listening");
    const address = foreign.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    const run = await hvlab([
      "migrate-live",
      "--to",
      `127.0.0.1:${address.port}`,
      "--guest",
      "4MiB",
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      `hvlab: migration failed: 127.0.0.1:${address.port}: the peer does not speak hvlab's migration protocol (it sent "SSH-2.0-OpenSSH_9.6\\x0d\\x0a")\n`,
    );
    foreign.close();

    // The other way round: something that is not a source connects to a destination.
    const reports: DestinationReport[] = [];
    const destination = await DestinationServer.listen({
      port: 0,
      onSession: (r) => reports.push(r),
    });
    const client = connect(destination.address.port, "127.0.0.1");
    await once(client, "connect");
    client.resume();
    client.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await once(client, "close");
    expect(reports[0]?.status).toBe("failed");
    expect(reports[0]?.reason).toMatch(
      /^the peer does not speak hvlab's migration protocol \(it sent "GET \/ HTTP\/1\.1\\x0d\\x0a/,
    );
    expect(reports[0]?.discarded).toBe(false);
    // Still listening, and a real source gets through.
    const result = await source(4).migrate({ host: "127.0.0.1", port: destination.address.port });
    expect(result.summary.status).toBe("completed");
    await destination.close();
  });

  it("a guest over the destination's limit is refused before any memory is laid out", async () => {
    const reports: DestinationReport[] = [];
    const destination = await DestinationServer.listen({
      port: 0,
      maxGuestBytes: 4 * MiB,
      onSession: (r) => reports.push(r),
    });
    const result = await source(8).migrate({ host: "127.0.0.1", port: destination.address.port });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toBe(
      "the destination stopped the migration: a guest of 8.0 MiB is over this destination's limit of 4.0 MiB (during setup after 64 B sent)",
    );
    expect(reports[0]).toMatchObject({ status: "failed", pagesReceived: 0, discarded: false });
    await destination.close();
  });

  it("a dirty rate above a throttled link does not converge: reported with its reason, never a hang", async () => {
    let reported: (report: DestinationReport) => void = () => {};
    const report = new Promise<DestinationReport>((resolve) => {
      reported = resolve;
    });
    const destination = await DestinationServer.listen({ port: 0, onSession: reported });
    const s = source(8, Number.POSITIVE_INFINITY);
    // Let the workers boot and write, so that the first pass already races them.
    await s.runner.writesPass(0, 20_000);
    const result = await s.migrate({
      host: "127.0.0.1",
      port: destination.address.port,
      maxBandwidth: 8 * MiB,
      downtimeLimitMs: 10,
      timeoutMs: 1500,
    });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(
      /^no convergence within 1500 ms: \d+ pages\/s dirtied against/,
    );
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
    expect(s.runner.running).toBe(true);
    // The destination reports the session when it has discarded it.
    const session = await withDeadline(report, 10_000, "the destination's session report");
    expect(session).toMatchObject({ status: "failed", discarded: true });
    expect(session.reason).toMatch(
      /^the source stopped the migration: migration cancelled by the source/,
    );
    // Throttled to 8 MiB/s: the bandwidth QEMU's windows measured is near it.
    const estimate = result.rounds[0]?.["bandwidth-estimate"] ?? 0;
    expect(estimate).toBeGreaterThan(4 * MiB);
    expect(estimate).toBeLessThan(12 * MiB);
    await s.close();
    await destination.close();
  });

  it("a pass cap stops pre-copy and copies the rest while paused", async () => {
    const destination = await DestinationServer.listen({ port: 0 });
    const s = source(32, Number.POSITIVE_INFINITY);
    // Let the workers boot and dirty pages, so that no pass can empty the log.
    await s.runner.writesPass(0, 20_000);
    const result = await s.migrate({
      host: "127.0.0.1",
      port: destination.address.port,
      maxPasses: 2,
      downtimeLimitMs: 0.001,
    });
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect(result.rounds.map((r) => r.phase)).toEqual(["precopy", "precopy", "stop-and-copy"]);
    expect(result.rounds[1]?.reason).toMatch(/^pass cap of 2 reached/);
    expect(result.summary.downtime).toBeGreaterThan(0);
    await s.close();
    await destination.close();
  });
});
