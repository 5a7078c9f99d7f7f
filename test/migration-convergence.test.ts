import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { distinctPages, geometricModel } from "../src/migration/model.js";
import { MigrationConfigError, resolveMigrationOptions } from "../src/migration/options.js";
import type { MigrationResult } from "../src/migration/stats.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const RECORD = 4096 + 8;

function precopy(result: MigrationResult) {
  return result.rounds.filter((r) => r.phase === "precopy");
}

describe("convergence against the model (Clark et al., NSDI 2005)", () => {
  it("follows the distinct-pages curve and the geometric model with uniform writes below the link rate", async () => {
    const guestBytes = 64 * GiB;
    const pages = guestBytes / 4096;
    const writesPerSecond = 20_000;
    const link = 1e9; // bytes/s
    const result = await runMigration({
      guestBytes,
      content: false,
      workload: { kind: "uniform" },
      writesPerSecond,
      maxBandwidth: link,
      latencyMs: 0,
      seed: 3,
    });
    expect(result.summary.status).toBe("completed");
    const rounds = precopy(result);
    expect(rounds.length).toBeGreaterThanOrEqual(3);
    for (const round of rounds) {
      // Random writes: distinct pages N (1 - exp(-w t / N)); 1 % tolerance
      // (the binomial spread at these counts is far below it).
      const expected = distinctPages(pages, (writesPerSecond * round["duration-ms"]) / 1000);
      expect(Math.abs(round["pages-dirtied"] - expected) / expected).toBeLessThan(0.01);
    }
    // The geometric model V_i = V_mem lambda^i, lambda = D / R with D the dirty
    // byte rate on the wire (each page is sent with its 8-byte header). While
    // the working set is far from saturated (w t << N) it holds within 5 %.
    const lambda = (writesPerSecond * RECORD) / link;
    const model = geometricModel(pages * RECORD, writesPerSecond * RECORD, link, 300e-3 * link, 0);
    for (const [i, round] of rounds.slice(0, 2).entries()) {
      const predicted = pages * lambda ** (i + 1);
      expect(Math.abs(round["pages-dirtied"] - predicted) / predicted).toBeLessThan(0.05);
    }
    expect(model.stopRound).toBe(rounds.length);
    const total = model.totalBytes ?? 0;
    const sentPages = result.rounds
      .filter((r) => r.phase !== "postcopy")
      .reduce((sum, r) => sum + r["pages-sent"], 0);
    expect(Math.abs(sentPages * RECORD - total) / total).toBeLessThan(0.01);
  });
});

describe("stop policies", () => {
  // A 1 GiB guest dirtying 200,000 random pages a second (820 MB/s) over 100 MB/s.
  const fast = {
    guestBytes: GiB,
    content: false,
    workload: { kind: "uniform" as const },
    writesPerSecond: 200_000,
    maxBandwidth: 100e6,
    seed: 5,
  };

  it("qemu without auto-converge reports not-converged, with the dirty rate above bandwidth as the reason", async () => {
    const result = await runMigration({ ...fast, policy: "qemu" });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(/dirty rate .* is above bandwidth/);
    expect(result.rounds.at(-1)?.decision).toBe("give-up");
    expect(result.summary["cpu-throttle-percentage"]).toBe(0);
  });

  it("qemu with auto-converge throttles 20 %, +10 % per step, and completes", async () => {
    const result = await runMigration({ ...fast, policy: "qemu", autoConverge: true });
    expect(result.summary.status).toBe("completed");
    const steps = [
      ...new Set(result.rounds.map((r) => r["cpu-throttle-percentage"]).filter((p) => p > 0)),
    ];
    expect(steps[0]).toBe(20);
    for (let i = 1; i < steps.length; i++) {
      expect(steps[i]).toBe(Math.min(99, (steps[i - 1] ?? 0) + 10));
    }
    expect(result.rounds.some((r) => r.decision === "throttle")).toBe(true);
    expect(result.summary.downtime).toBeLessThan(300 + 50 + 20);
  });

  it("hyperv suspends after 10 passes (2008 R2) and 5 (2012 R2) when it cannot converge", async () => {
    const r2008 = await runMigration({ ...fast, policy: "hyperv" });
    expect(r2008.summary.status).toBe("completed");
    expect(precopy(r2008)).toHaveLength(10);
    expect(precopy(r2008).at(-1)?.reason).toMatch(/pass cap of 10/);
    const r2012 = await runMigration({ ...fast, policy: "hyperv", hypervVersion: "2012r2" });
    expect(precopy(r2012)).toHaveLength(5);
    expect(r2012.summary.downtime).toBeGreaterThan(1000);
  });

  it("xen runs DEF_MAX_ITERS (29) rounds and the last one paused, 30 in all, when a hot set stays dirty", async () => {
    // 1,024 hot pages written 10 million times a second: every round finds
    // all of them dirty again, so no round sends more than the one before.
    const result = await runMigration({
      guestBytes: GiB,
      content: false,
      workload: { kind: "hotset", hotPages: 1024, hotFraction: 1 },
      writesPerSecond: 10_000_000,
      maxBandwidth: 100e6,
      policy: "xen",
      seed: 2,
    });
    expect(result.summary.status).toBe("completed");
    expect(precopy(result)).toHaveLength(29);
    expect(result.rounds).toHaveLength(30);
    expect(precopy(result).at(-1)?.reason).toMatch(/round cap 29/);
    expect(result.summary.transferred).toBeLessThan(3 * GiB);
  });

  it("xen ends pre-copy after a round that sent more than the one before", async () => {
    // 1,024 hot pages written 100,000 times a second: about 1,000 of them
    // dirty again each round, more in one round than in the last by chance.
    const result = await runMigration({
      guestBytes: GiB,
      content: false,
      workload: { kind: "hotset", hotPages: 1024, hotFraction: 1 },
      writesPerSecond: 100_000,
      maxBandwidth: 100e6,
      policy: "xen",
      seed: 2,
    });
    const sent = precopy(result).map((r) => r["pages-sent"]);
    // The first round from the second on that sent more than its predecessor.
    const grew = sent.findIndex((pages, i) => i > 0 && pages > (sent[i - 1] ?? 0));
    expect(grew).toBeGreaterThan(0);
    expect(sent).toHaveLength(grew + 1);
    expect(precopy(result).at(-1)?.reason).toMatch(
      /more than round \d+'s \d+, at the maximum rate/,
    );
    expect(result.summary.status).toBe("completed");
  });

  it("xen stops early when fewer than 50 pages were sent in a round", async () => {
    const result = await runMigration({
      guestBytes: 256 * MiB,
      content: false,
      workload: { kind: "hotset", hotPages: 40, hotFraction: 1 },
      writesPerSecond: 100_000,
      maxBandwidth: 1e9,
      policy: "xen",
    });
    expect(precopy(result).at(-1)?.reason).toMatch(/< 50/);
  });

  it("a total timeout ends the run as not-converged, never a hang", async () => {
    const result = await runMigration({ ...fast, policy: "qemu", timeoutMs: 30_000 });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(/^timeout/);
    expect(result.summary["total-time"]).toBeLessThan(30_000 + 15_000);
  });

  it("a user's round cap ends qemu as not-converged", async () => {
    const result = await runMigration({ ...fast, policy: "qemu", maxRounds: 3 });
    expect(result.summary.status).toBe("not-converged");
    expect(result.summary.reason).toMatch(/round cap 3/);
  });
});

describe("the run is deterministic", () => {
  it("gives the same records for the same seed, and different ones for another", async () => {
    const options = {
      guestBytes: 32 * MiB,
      content: true,
      workload: { kind: "zipf" as const },
      writesPerSecond: 50_000,
      maxBandwidth: 50e6,
      xbzrle: true,
    };
    const a = await runMigration({ ...options, seed: 7 });
    const b = await runMigration({ ...options, seed: 7 });
    const c = await runMigration({ ...options, seed: 8 });
    expect(JSON.stringify(a)).toBe(JSON.stringify(b));
    expect(JSON.stringify(a)).not.toBe(JSON.stringify(c));
  });
});

describe("bad options", () => {
  const ok = {
    guestBytes: 64 * MiB,
    content: false,
    workload: { kind: "uniform" as const },
    writesPerSecond: 1000,
  };
  it.each([
    [{ maxBandwidth: 0 }, /bandwidth must be more than 0/],
    [{ maxBandwidth: -5 }, /bandwidth must be more than 0/],
    [{ guestBytes: 64 * MiB + 100 }, /not a whole number of 4.0 KiB pages/],
    [{ policy: "vmware" as never }, /unknown stop policy 'vmware'/],
    [{ downtimeLimitMs: 0 }, /downtime limit/],
    [{ xbzrle: true }, /content mode/],
    [{ guestBytes: 8 * GiB, content: true }, /cannot be held in content mode/],
    [{ xbzrleCacheBytes: 3 * 4096 }, /power-of-two/],
    [{ writesPerSecond: Number.NaN }, /dirty rate/],
  ])("refuses %o", (bad, message) => {
    expect(() => resolveMigrationOptions({ ...ok, ...bad })).toThrow(MigrationConfigError);
    expect(() => resolveMigrationOptions({ ...ok, ...bad })).toThrow(message);
  });
});
