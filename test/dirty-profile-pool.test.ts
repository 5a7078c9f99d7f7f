import { afterEach, describe, expect, it, vi } from "vitest";
import { type DirtyProfileOptions, profileDirtyRate } from "../src/dirty/profile.js";
import { KernelPool } from "../src/pool/pool.js";

/*
 * Where a dirty-rate profile runs its vCPUs: on a pool of the threads asked
 * (the pool validates the count), or on this thread with threads 0; a pool
 * it started is stopped when the profile ends, however it ends, so no
 * worker thread outlives the call.
 */

const MiB = 1024 ** 2;

const base: DirtyProfileOptions = {
  bytes: 64 * MiB,
  content: false,
  vcpus: 2,
  seed: 4,
  workload: { kind: "uniform" },
  writesPerSecond: 20_000,
  periodMs: 100,
  periods: 2,
  threads: 0,
};

afterEach(() => {
  vi.restoreAllMocks();
});

describe("a dirty-rate profile's pool", () => {
  it("runs the vCPUs on a pool of the threads asked and stops it after the last period", async () => {
    const close = vi.spyOn(KernelPool.prototype, "close");
    const pooled = await profileDirtyRate({ ...base, threads: 1 });
    expect(close).toHaveBeenCalledTimes(1);
    // The same guest on this thread: the same pages, and no pool.
    const here = await profileDirtyRate(base);
    expect(close).toHaveBeenCalledTimes(1);
    expect(pooled.periods.map((p) => p.dirtyPages)).toEqual(here.periods.map((p) => p.dirtyPages));
    expect(pooled.summary.distinctPages).toBe(here.summary.distinctPages);
  });

  it("stops its pool when a period's callback throws", async () => {
    const close = vi.spyOn(KernelPool.prototype, "close");
    const stop = new Error("stopped after the first period");
    await expect(
      profileDirtyRate({
        ...base,
        threads: 1,
        onPeriod: () => {
          throw stop;
        },
      }),
    ).rejects.toBe(stop);
    expect(close).toHaveBeenCalledTimes(1);
  });

  it("refuses a thread count the pool cannot start rather than run on this thread", async () => {
    for (const threads of [257, 1.5]) {
      await expect(profileDirtyRate({ ...base, threads })).rejects.toThrow(
        `pool threads must be a whole number from 1 to 256, not ${threads}`,
      );
    }
  });
});
