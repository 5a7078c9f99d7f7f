import { afterEach, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import type { WorkloadSpec } from "../src/workload/spec.js";

const MiB = 1024 ** 2;
const PAGE = 4096;

const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const thing of open.splice(0)) await thing.close();
});

async function destination(): Promise<{
  server: DestinationServer;
  report: Promise<DestinationReport>;
}> {
  const server = await DestinationServer.listen({ port: 0 });
  open.push(server);
  return { server, report: server.done() };
}

function source(options: {
  guestBytes: number;
  writesPerSecond: number;
  workload?: WorkloadSpec;
  threads?: number;
}): LiveSource {
  const s = LiveSource.start({
    guestBytes: options.guestBytes,
    vcpus: 2,
    workload: options.workload ?? { kind: "uniform" },
    writesPerSecond: options.writesPerSecond,
    threads: options.threads ?? (options.writesPerSecond > 0 ? 1 : 0),
    seed: 11,
  });
  open.push(s);
  return s;
}

/** Zeroes every other run of 8 pages of the source guest: half its RAM is zero pages. */
function zeroHalf(s: LiveSource): number {
  const ram = s.guest.ram?.bytes(s.layout.memory);
  if (!ram) throw new Error("no guest bytes");
  let zeroed = 0;
  for (let page = 0; page < ram.length / PAGE; page++) {
    if (page % 16 < 8) {
      ram.fill(0, page * PAGE, (page + 1) * PAGE);
      zeroed++;
    }
  }
  return zeroed;
}

describe("live TCP mode: zero pages, XBZRLE and multifd, every page verified at the destination", () => {
  it("zero pages go as ZERO records (a header and one byte): half the guest zero, about half the bytes", async () => {
    const plain = await destination();
    const s = source({ guestBytes: 16 * MiB, writesPerSecond: 0 });
    const zeroed = zeroHalf(s);
    const whole = await s.migrate({ host: "127.0.0.1", port: plain.server.address.port });
    expect(whole.summary).toMatchObject({ status: "completed", verified: true, duplicate: 0 });
    const zero = await destination();
    const result = await s.migrate({
      host: "127.0.0.1",
      port: zero.server.address.port,
      zeroPages: true,
    });
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    // An idle guest: the first pass sends every page once, the zeroed ones as ZERO records.
    expect(result.summary.duplicate).toBe(zeroed);
    expect(result.summary.normal).toBe(4096 - zeroed);
    expect((await zero.report).verified).toBe(true);
    // 8 KiB of records per 8 zero pages against 32 KiB whole: the stream is about half.
    expect(result.summary.transferred).toBeLessThan(whole.summary.transferred * 0.55);
    expect(result.summary.transferred).toBeGreaterThan(whole.summary.transferred * 0.45);
  });

  it("XBZRLE from the second pass on, with the guest writing meanwhile: hot pages go as deltas, and the copy verifies", async () => {
    const { server, report } = await destination();
    const s = source({
      guestBytes: 16 * MiB,
      writesPerSecond: 40_000,
      workload: { kind: "hotset", hotPages: 256, hotFraction: 0.95 },
    });
    zeroHalf(s);
    // The vCPUs' worker is up and writing before the migration starts.
    await s.runner.writesPass(1000, 20_000);
    const result = await s.migrate({
      host: "127.0.0.1",
      port: server.address.port,
      zeroPages: true,
      xbzrle: true,
      xbzrleCacheBytes: 4 * MiB,
      maxBandwidth: 64 * MiB,
      // Hyper-V's rule with a pass cap of 4 and a limit of 1 ms: a few
      // passes whatever the machine's load, so the hot set is cached in the
      // second and sent as deltas after.
      maxPasses: 4,
      downtimeLimitMs: 1,
      timeoutMs: 30_000,
    });
    expect(result.summary.status, result.summary.reason ?? "").toBe("completed");
    expect(result.summary.verified).toBe(true);
    const phases = result.rounds.map((r) => r.phase);
    expect(phases.at(-1)).toBe("stop-and-copy");
    expect(phases.length).toBeGreaterThanOrEqual(3);
    expect((await report).verified).toBe(true);
    const cache = result.summary["xbzrle-cache"];
    expect(cache).not.toBeNull();
    expect(cache?.["cache-size"]).toBe(4 * MiB);
    // The hot set is dirtied round after round: from the third pass it is in the cache.
    expect(cache?.pages).toBeGreaterThan(0);
    expect(cache?.["cache-miss"]).toBeGreaterThan(0);
    // A delta of a few written bytes is far smaller than the page.
    expect(cache?.["encoding-rate"]).toBeGreaterThan(4);
  });

  it("multifd over 2 more TCP connections: pages on the channels, control on the main one, a sync each pass", async () => {
    const { server, report } = await destination();
    const s = source({ guestBytes: 16 * MiB, writesPerSecond: 2_000 });
    zeroHalf(s);
    await s.runner.writesPass(100, 20_000);
    const result = await s.migrate({
      host: "127.0.0.1",
      port: server.address.port,
      zeroPages: true,
      multifdChannels: 2,
      maxBandwidth: 64 * MiB,
      downtimeLimitMs: 10,
      timeoutMs: 30_000,
    });
    expect(result.summary.status, result.summary.reason ?? "").toBe("completed");
    expect(result.summary.verified).toBe(true);
    const seen = await report;
    expect(seen).toMatchObject({ status: "completed", verified: true, channels: 2 });
    // One sync per pass, the stop-and-copy's included: every round's pages landed before the next.
    expect(seen.syncs).toBe(result.rounds.length);
    expect(result.summary["multifd-channels"]).toBe(2);
    expect(result.summary["multifd-packets"]).toBeGreaterThan(0);
    // Every page byte went on a channel: the main connection carried only control frames.
    const pageBytes = result.summary["multifd-bytes"] ?? 0;
    expect(pageBytes).toBeGreaterThan(8 * MiB);
    expect(result.summary.transferred - pageBytes).toBeLessThan(256 * 1024);
    expect(result.summary.duplicate).toBeGreaterThan(0);
  });

  it("refuses XBZRLE with multifd, as QEMU does, and a cache that is not a power of two", async () => {
    const s = source({ guestBytes: 4 * MiB, writesPerSecond: 0 });
    await expect(
      s.migrate({ host: "127.0.0.1", port: 9, xbzrle: true, multifdChannels: 2 }),
    ).rejects.toThrowError(/XBZRLE does not work with multifd/);
    await expect(
      s.migrate({ host: "127.0.0.1", port: 9, xbzrle: true, xbzrleCacheBytes: 3 * MiB }),
    ).rejects.toThrowError(/power of two/);
    await expect(
      s.migrate({ host: "127.0.0.1", port: 9, multifdChannels: 17 }),
    ).rejects.toThrowError(/multifd channels must be from 0 to 16/);
  });
});
