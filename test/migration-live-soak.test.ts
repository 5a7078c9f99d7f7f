import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { afterAll, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";

const MiB = 1024 ** 2;
const MIGRATIONS = 50;
const SIZES_MIB = [1, 2, 4, 8, 16];
// HVLAB_SOAK_SEED=n replays a run; a failure names the seed it ran with.
const SEED = Number(process.env.HVLAB_SOAK_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** What the link does to one migration's source-to-destination stream. */
type Fault =
  | { readonly kind: "none" }
  /** The stream stalls for `ms` at byte `at`, then goes on: the migration must still complete. */
  | { readonly kind: "delay"; readonly at: number; readonly ms: number }
  /** The connection is closed (FIN both ways) at byte `at`. */
  | { readonly kind: "drop"; readonly at: number }
  /** `bytes` bytes from `at` never arrive, the rest does. */
  | { readonly kind: "lose"; readonly at: number; readonly bytes: number }
  /** The byte at `at` arrives XORed with `mask`. */
  | { readonly kind: "flip"; readonly at: number; readonly mask: number }
  /** The peer dies at byte `at`: both ends get a reset (RST), no goodbye. */
  | { readonly kind: "kill"; readonly at: number };

/**
 * A TCP relay between source and destination that injects the fault set for
 * the next connection. Replies (destination to source) pass untouched.
 */
class FaultyLink {
  next: Fault = { kind: "none" };
  private readonly sockets = new Set<Socket>();

  private constructor(readonly server: Server) {}

  static async start(target: number): Promise<FaultyLink> {
    const server = createServer();
    const link = new FaultyLink(server);
    server.on("connection", (source) => link.relay(source, target, link.next));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return link;
  }

  get port(): number {
    const address = this.server.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    return address.port;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private relay(source: Socket, target: number, fault: Fault): void {
    const destination = connect({ host: "127.0.0.1", port: target });
    for (const s of [source, destination]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => undefined);
    }
    source.pause();
    destination.once("connect", () => source.resume());
    destination.pipe(source);
    destination.on("close", () => source.destroy());
    source.on("close", () => destination.destroy());
    let offset = 0;
    let done = false;
    source.on("data", (chunk: Buffer) => {
      if (done) return;
      const start = offset;
      offset += chunk.length;
      if (fault.kind === "none" || fault.at < start || fault.at >= offset) {
        destination.write(chunk);
        return;
      }
      const cut = fault.at - start;
      destination.write(chunk.subarray(0, cut));
      switch (fault.kind) {
        case "delay":
          source.pause();
          setTimeout(() => {
            destination.write(chunk.subarray(cut));
            source.resume();
          }, fault.ms);
          return;
        case "drop":
          done = true;
          destination.end();
          source.end();
          return;
        case "lose":
          // The bytes lost may run past this chunk; what follows them still arrives.
          destination.write(chunk.subarray(Math.min(chunk.length, cut + fault.bytes)));
          offset += Math.max(0, cut + fault.bytes - chunk.length);
          return;
        case "flip": {
          const rest = Buffer.from(chunk.subarray(cut));
          rest[0] = (rest[0] ?? 0) ^ fault.mask;
          destination.write(rest);
          return;
        }
        case "kill":
          done = true;
          destination.resetAndDestroy();
          source.resetAndDestroy();
          return;
      }
    });
  }
}

const sources = new Map<number, LiveSource>();
afterAll(async () => {
  for (const source of sources.values()) await source.close();
});

function sourceOf(mib: number): LiveSource {
  let source = sources.get(mib);
  if (!source) {
    source = LiveSource.start({
      guestBytes: mib * MiB,
      vcpus: 1,
      workload: { kind: "hotset" },
      writesPerSecond: 20_000,
      threads: 0,
      seed: mib,
    });
    sources.set(mib, source);
  }
  return source;
}

describe("soak: live migrations over a faulty loopback link", () => {
  it(`${MIGRATIONS} migrations of mixed sizes with random faults (seed ${SEED})`, async () => {
    const reports: DestinationReport[] = [];
    const server = await DestinationServer.listen({
      port: 0,
      sessions: 0,
      onSession: (report) => reports.push(report),
    });
    const link = await FaultyLink.start(server.address.port);
    const rng = xoroshiro128plus(SEED);
    const pick = (from: number, to: number) => uniformInt(rng, from, to);
    const log: string[] = [];
    try {
      const waitReports = async (n: number, what: string) => {
        const deadline = performance.now() + 15_000;
        while (reports.length < n) {
          if (performance.now() > deadline) throw new Error(`no destination report for ${what}`);
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      };
      // The largest guest first, straight: the landing memory a destination keeps from then on.
      const largest = Math.max(...SIZES_MIB);
      const warm = await sourceOf(largest).migrate({
        host: "127.0.0.1",
        port: server.address.port,
      });
      expect(warm.summary.status, warm.summary.reason ?? "").toBe("completed");
      await waitReports(1, "the first migration");
      const memoryAfterLargest = server.memoryBytes;

      const tally = { completed: 0, failed: 0 };
      for (let i = 0; i < MIGRATIONS; i++) {
        const mib = SIZES_MIB[pick(0, SIZES_MIB.length - 1)] as number;
        // Faults land inside the first pass (it alone carries every page), so each one bites.
        const at = pick(0, Math.floor(mib * MiB * 0.9));
        const faults: Fault[] = [
          { kind: "none" },
          { kind: "delay", at, ms: pick(50, 800) },
          { kind: "drop", at },
          { kind: "lose", at, bytes: pick(1, 8192) },
          { kind: "flip", at, mask: pick(1, 255) },
          { kind: "kill", at },
        ];
        const fault = faults[pick(0, faults.length - 1)] as Fault;
        link.next = fault;
        const what = `migration ${i + 1} (${mib} MiB, ${JSON.stringify(fault)})`;
        log.push(what);
        const result = await sourceOf(mib).migrate({
          host: "127.0.0.1",
          port: link.port,
          replyTimeoutMs: 10_000,
        });
        await waitReports(i + 2, what);
        const report = reports[i + 1] as DestinationReport;
        expect(report.guestBytes === 0 || report.guestBytes === mib * MiB, what).toBe(true);
        if (fault.kind === "none" || fault.kind === "delay") {
          // A slow link is not a broken one: the migration completes and every page matches.
          expect(result.summary.status, `${what}: ${result.summary.reason}`).toBe("completed");
          expect(result.summary.verified, what).toBe(true);
          expect(report, what).toMatchObject({
            status: "completed",
            verified: true,
            mismatches: 0,
          });
          tally.completed++;
        } else {
          // Anything lost, changed or cut is caught; the destination throws its copy away.
          expect(result.summary.status, what).toBe("failed");
          expect(result.summary.reason, what).not.toMatch(/\n/);
          expect(report.status, what).toBe("failed");
          expect(report.verified, what).not.toBe(true);
          expect(report.discarded || report.pagesReceived === 0, what).toBe(true);
          tally.failed++;
        }
        expect(server.receiving, `${what}: the slot is free again`).toBe(false);
        expect(server.memoryBytes, `${what}: no landing memory kept per size`).toBe(
          memoryAfterLargest,
        );
      }
      // Both kinds of outcome happened, and the destination still takes a migration.
      expect(tally.completed).toBeGreaterThan(0);
      expect(tally.failed).toBeGreaterThan(0);
      const last = await sourceOf(1).migrate({ host: "127.0.0.1", port: server.address.port });
      expect(last.summary.status, last.summary.reason ?? "").toBe("completed");
      expect(last.summary.verified).toBe(true);
      expect(server.memoryBytes).toBe(memoryAfterLargest);
    } catch (error) {
      throw new Error(
        `soak failed with HVLAB_SOAK_SEED=${SEED} (set it to replay), at ${log.at(-1) ?? "the first migration"}: ${(error as Error).message}`,
      );
    } finally {
      await link.close();
      await server.close();
    }
  });
});
