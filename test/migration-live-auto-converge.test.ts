/*
 * QEMU's auto-converge in the live mode: the one driver's throttle
 * (src/migration/auto-converge.ts) slows the real vCPUs, at a paced rate by
 * scaling it, flat out as a duty cycle (QEMU's cpu-throttle.c).
 */
import { afterEach, describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import { VcpuRunner } from "../src/migration/live/vcpu-runner.js";

const MiB = 1024 ** 2;

const sources: LiveSource[] = [];
const servers: DestinationServer[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.close();
  for (const server of servers.splice(0)) await server.close();
});

function guest(): Guest {
  return new Guest(new MemoryLayout(), {
    bytes: MiB,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 1,
  });
}

/** Writes a runner does in `ms` of wall time. */
async function writesIn(runner: VcpuRunner, ms: number): Promise<number> {
  const before = runner.writes;
  await new Promise((resolve) => setTimeout(resolve, ms));
  return runner.writes - before;
}

describe("auto-converge in the live mode", () => {
  it("a 50 % throttle halves a paced guest's writes", async () => {
    const runner = new VcpuRunner(guest(), undefined, 4000);
    runner.resume();
    const full = await writesIn(runner, 600);
    runner.throttle = { percentage: 50 };
    await writesIn(runner, 100); // the credit earned at full speed drains
    const half = await writesIn(runner, 600);
    await runner.pause();
    // 4,000 writes/s for 0.6 s: 2,400 at full speed, 1,200 throttled (timer slack aside).
    expect(full).toBeGreaterThan(1800);
    expect(half).toBeGreaterThan(800);
    expect(half).toBeLessThan(full * 0.7);
  });

  it("a guest dirtying faster than the link is throttled 20 %, then +10 % a step, and the throttle ends with the run", async () => {
    const destination = await DestinationServer.listen({ port: 0 });
    servers.push(destination);
    const source = LiveSource.start({
      guestBytes: 8 * MiB,
      vcpus: 2,
      workload: { kind: "uniform" },
      writesPerSecond: 40_000,
      threads: 1,
      seed: 3,
    });
    sources.push(source);
    await source.runner.writesPass(0, 20_000);
    const result = await source.migrate({
      host: "127.0.0.1",
      port: destination.address.port,
      maxBandwidth: 4 * MiB,
      downtimeLimitMs: 300,
      timeoutMs: 6000,
      autoConverge: {
        autoConverge: true,
        throttleInitial: 20,
        throttleIncrement: 10,
        throttleMax: 99,
        throttleTriggerThreshold: 50,
        throttleTailslow: false,
      },
    });
    const throttled = result.rounds.filter((r) => r.decision === "throttle");
    expect(throttled.length).toBeGreaterThan(0);
    expect(throttled[0]?.reason).toMatch(/throttle to 20%$/);
    const steps = result.rounds.map((r) => r["cpu-throttle-percentage"]);
    // Never down, and in QEMU's steps: 0, 20, 30, 40, ...
    for (const [i, p] of steps.entries()) {
      expect(p).toBeGreaterThanOrEqual(steps[i - 1] ?? 0);
      expect(p === 0 || (p >= 20 && (p - 20) % 10 === 0)).toBe(true);
    }
    expect(result.summary["cpu-throttle-percentage"]).toBeGreaterThanOrEqual(20);
    expect(source.runner.throttle).toBeUndefined();
  });
});
