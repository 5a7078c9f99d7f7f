import { describe, expect, it } from "vitest";
import { DirtyProfileError, profileDirtyRate } from "../src/dirty/profile.js";

const MiB = 1024 ** 2;

const base = {
  bytes: 4 * MiB,
  content: false,
  vcpus: 2,
  seed: 5,
  workload: { kind: "uniform" as const },
  writesPerSecond: 20_000,
  periodMs: 50,
  periods: 5,
  threads: 0,
};

describe("dirty-rate profile: every figure follows from the counts", () => {
  it("runs exactly the periods asked, each record's rates from its own counts", async () => {
    const started = process.hrtime.bigint();
    const profile = await profileDirtyRate(base);
    const elapsed = Number(process.hrtime.bigint() - started);
    expect(profile.periods.map((p) => p.period)).toEqual([1, 2, 3, 4, 5]);
    let wallNs = 0;
    for (const p of profile.periods) {
      expect(p.virtualTimeMs).toBe(p.period * 50);
      // 20,000 writes a second for 50 ms.
      expect(p.writes).toBe(1000);
      expect(p.dirtyPages).toBeGreaterThan(0);
      expect(p.dirtyPagesRate).toBe(p.dirtyPages / 0.05);
      expect(p.dirtyBytesRate).toBe((p.dirtyPages * 4096) / 0.05);
      expect(p.harvestNs).toBeGreaterThanOrEqual(0);
      expect(p.writeNs).toBeGreaterThan(0);
      wallNs += p.harvestNs + p.writeNs;
    }
    // Wall times are differences of clock readings inside the call.
    expect(wallNs).toBeLessThanOrEqual(elapsed);

    const rates = profile.periods.map((p) => p.dirtyPagesRate);
    const { summary } = profile;
    expect(summary.mode).toBe("metadata");
    expect(summary.guestPages).toBe(1024);
    expect(summary.totalWrites).toBe(5000);
    expect(summary.meanDirtyPagesRate).toBeCloseTo(rates.reduce((a, b) => a + b) / 5, 9);
    expect(summary.peakDirtyPagesRate).toBe(Math.max(...rates));
    expect(Math.min(...rates)).toBeLessThan(summary.peakDirtyPagesRate);
    // Occupancy of N = 1024 bins by 5,000 uniform balls: N (1 - e^(-5000/N)).
    expect(summary.expectedDistinctPages).toBeCloseTo(1024 * (1 - Math.exp(-5000 / 1024)), 9);
  });

  it("says content mode, and expects no distinct count for a non-uniform workload", async () => {
    const profile = await profileDirtyRate({
      ...base,
      content: true,
      periods: 1,
      workload: { kind: "hotset", hotPages: 64, hotFraction: 1 },
    });
    expect(profile.summary.mode).toBe("content");
    expect(profile.summary.expectedDistinctPages).toBeNull();
  });

  it("takes a rate of zero and the most periods, and refuses one period more", async () => {
    const idle = await profileDirtyRate({ ...base, writesPerSecond: 0, periods: 100_000 });
    expect(idle.periods).toHaveLength(100_000);
    expect(idle.summary.distinctPages).toBe(0);
    await expect(profileDirtyRate({ ...base, periods: 100_001 })).rejects.toThrow(
      "periods must be from 1 to 100000, not 100001",
    );
  });

  it("refuses more writes per period than can be executed, as a DirtyProfileError", async () => {
    const refused = profileDirtyRate({ ...base, writesPerSecond: 2 ** 42, periodMs: 1000 });
    await expect(refused).rejects.toThrow(`${2 ** 42} writes per period is too many to execute`);
    await expect(refused).rejects.toMatchObject({ name: "DirtyProfileError" });
    await expect(refused).rejects.toBeInstanceOf(DirtyProfileError);
  });
});
