import { describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { VcpuProgressTimeoutError, VcpuRunner } from "../src/migration/live/vcpu-runner.js";

function guest(): Guest {
  return new Guest(new MemoryLayout(), {
    bytes: 1024 ** 2,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 1,
  });
}

describe("vCPU runner progress", () => {
  it("wakes a waiter on the batch that passes its count", async () => {
    const runner = new VcpuRunner(guest(), undefined, Number.POSITIVE_INFINITY);
    runner.resume();
    await runner.writesPass(0, 10_000);
    const seen = runner.writes;
    expect(seen).toBeGreaterThan(0);
    await runner.writesPass(seen, 10_000);
    expect(runner.writes).toBeGreaterThan(seen);
    await runner.pause();
    // Already passed: resolves at once, even paused.
    await runner.writesPass(0, 1);
  });

  it("fails with the counts when idle vCPUs never get there", async () => {
    const runner = new VcpuRunner(guest(), undefined, 0);
    runner.resume();
    const waited = runner.writesPass(0, 30);
    await expect(waited).rejects.toThrow(VcpuProgressTimeoutError);
    await expect(waited).rejects.toThrow("did not pass 0 writes within 30 ms (they did 0)");
    await runner.pause();
  });
});
