import { describe, expect, it } from "vitest";
import { profileDirtyRate } from "../src/dirty/profile.js";
import { GuestConfigError } from "../src/guest/guest.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

describe("dirty-rate profile on virtual time", () => {
  it("follows N(1 - exp(-w t / N)) distinct pages for uniform writes (occupancy of N bins)", async () => {
    const pages = GiB / 4096;
    const profile = await profileDirtyRate({
      bytes: GiB,
      content: false,
      vcpus: 2,
      seed: 5,
      workload: { kind: "uniform" },
      writesPerSecond: 1_000_000,
      periodMs: 100,
      periods: 8,
      threads: 0,
    });
    for (const period of profile.periods) {
      const writes = (period.virtualTimeMs / 1000) * 1_000_000;
      const expected = pages * (1 - Math.exp(-writes / pages));
      // Binomial spread is well under 0.5 % at these sizes.
      expect(Math.abs(period.distinctPages - expected) / expected).toBeLessThan(0.005);
      // Each period's harvest holds the distinct pages of 100,000 writes.
      const perPeriod = pages * (1 - Math.exp(-100_000 / pages));
      expect(Math.abs(period.dirtyPages - perPeriod) / perPeriod).toBeLessThan(0.01);
      expect(period.dirtyPagesRate).toBe(period.dirtyPages * 10);
    }
    expect(profile.summary.totalWrites).toBe(800_000);
    expect(profile.summary.distinctPages).toBe(profile.periods.at(-1)?.distinctPages);
  });

  it("saturates a hot set: distinct pages stop growing once the set is dirty", async () => {
    const profile = await profileDirtyRate({
      bytes: 256 * MiB,
      content: true,
      vcpus: 1,
      seed: 2,
      workload: { kind: "hotset", hotPages: 512, hotFraction: 1 },
      writesPerSecond: 100_000,
      periodMs: 100,
      periods: 5,
      threads: 0,
    });
    expect(profile.summary.distinctPages).toBe(512);
    expect(profile.periods.every((p) => p.dirtyPages === 512)).toBe(true);
  });

  it("logs through rings, overflowing to the bitmap, and loses no page", async () => {
    const options = {
      bytes: 64 * MiB,
      content: false,
      vcpus: 2,
      seed: 8,
      workload: { kind: "uniform" as const },
      writesPerSecond: 50_000,
      periodMs: 100,
      periods: 3,
      threads: 2,
    };
    const viaBitmap = await profileDirtyRate(options);
    const viaRing = await profileDirtyRate({ ...options, tracking: "ring", ringEntries: 1024 });
    expect(viaRing.periods.map((p) => p.dirtyPages)).toEqual(
      viaBitmap.periods.map((p) => p.dirtyPages),
    );
    expect(viaRing.periods.at(-1)?.ringOverflow).toBeGreaterThan(0);
    expect(viaRing.periods[0]?.ringEntries).toBe(2048);
  });

  it("refuses what cannot run, with the reason", async () => {
    const base = {
      bytes: 64 * MiB,
      content: false,
      vcpus: 1,
      seed: 1,
      workload: { kind: "uniform" as const },
      writesPerSecond: 1000,
      periodMs: 100,
      periods: 1,
      threads: 0,
    };
    await expect(profileDirtyRate({ ...base, bytes: 64 * MiB + 1 })).rejects.toThrow(
      "not a whole number of 4.0 KiB pages",
    );
    await expect(profileDirtyRate({ ...base, bytes: 4 * GiB, content: true })).rejects.toThrow(
      GuestConfigError,
    );
    await expect(profileDirtyRate({ ...base, bytes: 32 * 1024 ** 4 })).rejects.toThrow("16 TiB");
    await expect(profileDirtyRate({ ...base, writesPerSecond: -1 })).rejects.toThrow("write rate");
    await expect(profileDirtyRate({ ...base, periodMs: 0 })).rejects.toThrow("period");
    await expect(profileDirtyRate({ ...base, periods: 0 })).rejects.toThrow("periods");
    await expect(profileDirtyRate({ ...base, vcpus: 0 })).rejects.toThrow("vCPUs");
  });
});
