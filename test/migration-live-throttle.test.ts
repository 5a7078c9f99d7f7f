import { afterEach, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import { RATE_WINDOW_MS, TokenBucket } from "../src/transport/token-bucket.js";

const MiB = 1024 ** 2;
const servers: DestinationServer[] = [];
const sources: LiveSource[] = [];

afterEach(async () => {
  for (const s of sources.splice(0)) await s.close();
  for (const server of servers.splice(0)) await server.close();
});

describe("a throttled link takes the time its rate says", () => {
  it("bursts one 100 ms window of its rate, as QEMU's limiter, not megabytes", () => {
    let now = 0;
    const bucket = new TokenBucket(1000, undefined, () => now);
    expect(RATE_WINDOW_MS).toBe(100);
    expect(bucket.burst).toBe(100);
    expect(bucket.sliceBytes).toBe(100);
    // A 1 MiB guest's bytes at 1,000 bytes/s, in window-sized slices: the
    // first 100 bytes go at once, every later byte a millisecond each.
    let waited = 0;
    for (let sent = 0; sent < MiB; sent += bucket.sliceBytes) {
      const wait = bucket.reserve(Math.min(bucket.sliceBytes, MiB - sent));
      waited += wait;
      now += wait;
    }
    expect(waited).toBeCloseTo(MiB - 100, 3);
    // A fast link's burst is still 100 ms of it.
    expect(new TokenBucket(128 * MiB).burst).toBeCloseTo(12.8 * MiB, 3);
    expect(() => new TokenBucket(1000, 0)).toThrowError(/burst must be a positive number/);
    expect(() => new TokenBucket(Number.NaN)).toThrowError(/rate must be a positive/);
  });

  it("a 1 MiB guest over a 1 MiB/s link takes about a second, not the tens of milliseconds of one burst", async () => {
    const reports: DestinationReport[] = [];
    const server = await DestinationServer.listen({ port: 0, onSession: (r) => reports.push(r) });
    servers.push(server);
    const source = LiveSource.start({
      guestBytes: MiB,
      vcpus: 1,
      workload: { kind: "hotset" },
      writesPerSecond: 0,
      threads: 0,
      seed: 9,
    });
    sources.push(source);
    const rate = MiB;
    const result = await source.migrate({
      host: "127.0.0.1",
      port: server.address.port,
      maxBandwidth: rate,
      deviceStateBytes: 4096,
    });
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    const burst = (rate * RATE_WINDOW_MS) / 1000;
    // Everything past the first window waits for its tokens.
    const floor = ((result.summary.transferred - burst) / rate) * 1000;
    expect(floor).toBeGreaterThan(850);
    expect(result.summary["total-time"]).toBeGreaterThanOrEqual(floor * 0.98);
    // And no faster than the rate on average, by the source's own count.
    expect(result.summary.mbps).toBeLessThanOrEqual(((rate * 8) / 1e6) * 1.1);
    expect(reports[0]).toMatchObject({ status: "completed", verified: true });
  });
});
