/*
 * The three stop policies, one rule at a time, on the inputs a round ends
 * with (src/migration/policy.ts). QEMU (migration/migration.c,
 * migration_iteration_run) switches over once pending bytes fit bandwidth x
 * downtime-limit; hvlab's give-up rule on the fitted shrink of pending
 * bytes; Hyper-V's pass cap; Xen's four rules (Clark et al., NSDI 2005;
 * tools/libxc/xc_domain_save.c). Each verdict's words with its figures.
 */
import { describe, expect, it } from "vitest";
import {
  decide,
  fitShrink,
  type PolicyInput,
  projectFinish,
  SHRINK_FIT_ROUNDS,
  XEN_MAX_RAM_FACTOR,
  XEN_MIN_PAGES_PER_ROUND,
} from "../src/migration/policy.js";

const MiB = 1024 ** 2;

/** A round that ends with 10 MiB pending on a 100 MiB/s link and a 300 ms limit (30 MiB fits). */
const BASE: PolicyInput = {
  round: 3,
  pendingBytes: 10 * MiB,
  pagesSent: 1000,
  bandwidth: 100 * MiB,
  transferredBytes: 200 * MiB,
  ramBytes: 1024 * MiB,
  downtimeLimitMs: 300,
  maxRounds: null,
  pendingHistory: [],
  previousPagesSent: 2000,
  elapsedMs: 5000,
  maxTimeMs: 600_000,
  giveUp: "projection",
  canThrottle: false,
  writeBytesRate: 10 * MiB,
};

describe("the constants", () => {
  it("Xen's 50 pages and 3x RAM; a fit over 6 rounds", () => {
    expect(XEN_MIN_PAGES_PER_ROUND).toBe(50);
    expect(XEN_MAX_RAM_FACTOR).toBe(3);
    expect(SHRINK_FIT_ROUNDS).toBe(6);
  });
});

describe("the shrink fit", () => {
  it("is null with fewer than 6 rounds, or a round with nothing pending", () => {
    expect(fitShrink([32, 16, 8, 4, 2])).toBeNull();
    expect(fitShrink([32, 16, 8, 4, 2, 0])).toBeNull();
    expect(fitShrink([32, 16, 8, 4, -1, 1])).toBeNull();
  });

  it("finds an exact geometric shrink with no spread, over the last 6 rounds only", () => {
    const fit = fitShrink([1, 1e9, 64, 32, 16, 8, 4, 2]);
    expect(fit?.factor).toBeCloseTo(0.5, 12);
    expect(fit?.spread).toBeCloseTo(0, 12);
    expect(fit?.rounds).toBe(6);
    const growing = fitShrink([1, 3, 9, 27, 81, 243]);
    expect(growing?.factor).toBeCloseTo(3, 12);
  });

  it("gives two standard errors of the factor as its spread", () => {
    // log pending = -i ln 2 + noise; least squares by hand.
    const history = [100, 60, 20, 14, 6, 3];
    const ys = history.map(Math.log);
    const xs = [0, 1, 2, 3, 4, 5];
    const mx = 2.5;
    const my = ys.reduce((a, b) => a + b, 0) / 6;
    const sxx = xs.reduce((a, x) => a + (x - mx) ** 2, 0);
    const slope = xs.reduce((a, x, i) => a + (x - mx) * ((ys[i] ?? 0) - my), 0) / sxx;
    const res = xs.reduce((a, x, i) => a + ((ys[i] ?? 0) - my - slope * (x - mx)) ** 2, 0);
    const se = Math.sqrt(res / 4 / sxx);
    const fit = fitShrink(history);
    expect(fit?.factor).toBeCloseTo(Math.exp(slope), 12);
    expect(fit?.spread).toBeCloseTo(Math.exp(slope) * 2 * se, 12);
    expect(fit?.spread).toBeGreaterThan(0.01);
  });

  it("projects the rounds to the target and the bytes they send", () => {
    // 80 halving to at most 10: 40, 20, 10: 3 rounds sending 80 + 40 + 20.
    expect(projectFinish(80, 10, 0.5, 140)).toEqual({ rounds: 3, ms: 1000 });
    // Just over the target after 3 rounds: a 4th.
    expect(projectFinish(80, 9.99, 0.5, 150).rounds).toBe(4);
    // Already under: at least one round.
    expect(projectFinish(5, 10, 0.5, 5)).toEqual({ rounds: 1, ms: 1000 });
  });
});

describe("QEMU's rule", () => {
  it("switches over once pending bytes fit bandwidth x downtime-limit, at it included", () => {
    const at = decide("qemu", { ...BASE, pendingBytes: 30 * MiB });
    expect(at).toEqual({
      decision: "stop-and-copy",
      reason: "pending 30.0 MiB <= bandwidth x downtime-limit 30.0 MiB",
    });
    const over = decide("qemu", { ...BASE, pendingBytes: 30 * MiB + 1 });
    expect(over).toEqual({
      decision: "continue",
      reason: "pending 30.0 MiB > bandwidth x downtime-limit 30.0 MiB",
    });
  });

  it("a user's round cap ends it not converged at the cap, not before, with the expected downtime", () => {
    const before = decide("qemu", { ...BASE, pendingBytes: 50 * MiB, maxRounds: 4 });
    expect(before.decision).toBe("continue");
    const at = decide("qemu", { ...BASE, pendingBytes: 50 * MiB, maxRounds: 3 });
    expect(at).toEqual({
      decision: "give-up",
      reason: "round cap 3 reached with 50.0 MiB pending (expected downtime 500 ms > limit 300 ms)",
    });
    const small = decide("qemu", {
      ...BASE,
      pendingBytes: 1 * MiB,
      downtimeLimitMs: 5,
      maxRounds: 3,
    });
    expect(small.reason).toBe(
      "round cap 3 reached with 1.0 MiB pending (expected downtime 10 ms > limit 5.00 ms)",
    );
    const tiny = decide("qemu", {
      ...BASE,
      pendingBytes: 0.5 * MiB,
      downtimeLimitMs: 2,
      maxRounds: 3,
    });
    expect(tiny.reason).toBe(
      "round cap 3 reached with 512.0 KiB pending (expected downtime 5.00 ms > limit 2.00 ms)",
    );
  });

  const flat = [50, 50, 50, 50, 50, 50].map((m) => m * MiB);
  const halving = [320, 160, 80, 40, 20, 10].map((m) => m * 10 * MiB);

  it("gives up when pending does not shrink, naming the dirty rate when it is above bandwidth", () => {
    const slow = decide("qemu", { ...BASE, pendingBytes: 50 * MiB, pendingHistory: flat });
    expect(slow).toEqual({
      decision: "give-up",
      reason:
        "pending 50.0 MiB does not shrink (shrink factor 1.0000 ± 0.0000 a round over the last 6 rounds): the writable working set does not fit bandwidth x downtime-limit 30.0 MiB",
    });
    for (const rate of [100 * MiB, 200 * MiB]) {
      const fast = decide("qemu", {
        ...BASE,
        pendingBytes: 50 * MiB,
        pendingHistory: flat,
        writeBytesRate: rate,
      });
      expect(fast.reason).toBe(
        `dirty rate ${rate / MiB}.0 MiB/s is above bandwidth 100.0 MiB/s: pending 50.0 MiB does not shrink (shrink factor 1.0000 ± 0.0000 a round over the last 6 rounds)`,
      );
    }
  });

  it("a factor under 1 whose spread reaches 1 counts as not shrinking; a clear shrink keeps going", () => {
    // Least squares on log pending: factor 0.9611, spread 0.0612.
    const noisy = [100, 80, 95, 70, 90, 75].map((m) => m * MiB);
    expect(decide("qemu", { ...BASE, pendingBytes: 75 * MiB, pendingHistory: noisy })).toEqual({
      decision: "give-up",
      reason:
        "pending 75.0 MiB does not shrink (shrink factor 0.9611 ± 0.0612 a round over the last 6 rounds): the writable working set does not fit bandwidth x downtime-limit 30.0 MiB",
    });
    // Factor 0.8928, spread 0.0195: 6 more rounds, 2.7 s, well inside max-time.
    const shrinking = [100, 95, 76, 75, 63, 58].map((m) => m * MiB);
    expect(
      decide("qemu", { ...BASE, pendingBytes: 58 * MiB, pendingHistory: shrinking }).decision,
    ).toBe("continue");
  });

  it("never gives up while auto-converge can throttle, nor with give-up never, nor without 6 rounds", () => {
    for (const change of [
      { canThrottle: true },
      { giveUp: "never" as const },
      { pendingHistory: flat.slice(1) },
    ]) {
      const verdict = decide("qemu", {
        ...BASE,
        pendingBytes: 50 * MiB,
        pendingHistory: flat,
        ...change,
      });
      expect(verdict).toEqual({
        decision: "continue",
        reason: "pending 50.0 MiB > bandwidth x downtime-limit 30.0 MiB",
      });
    }
  });

  it("gives up when the projected finish falls past max-time, and not when it falls at it", () => {
    // From 100 MiB halving to 30 MiB: 50, 25: 2 rounds sending 100 + 50 = 150 MiB, 1.5 s at 100 MiB/s.
    const history = [3200, 1600, 800, 400, 200, 100].map((m) => m * MiB);
    const input = { ...BASE, pendingBytes: 100 * MiB, pendingHistory: history, elapsedMs: 8500 };
    expect(decide("qemu", { ...input, maxTimeMs: 10_000 }).decision).toBe("continue");
    const past = decide("qemu", { ...input, maxTimeMs: 9_999 });
    expect(past).toEqual({
      decision: "give-up",
      reason:
        "pending 100.0 MiB would need 2 more rounds and 1.5 s to fit bandwidth x downtime-limit 30.0 MiB (shrink factor 0.5000 ± 0.0000 a round over the last 6 rounds): past max-time 10 s",
    });
    const fast = decide("qemu", { ...input, maxTimeMs: 9_999, writeBytesRate: 100 * MiB });
    expect(fast.reason).toMatch(
      /^dirty rate 100\.0 MiB\/s is above bandwidth 100\.0 MiB\/s: pending 100\.0 MiB would need 2 more rounds/,
    );
  });

  it("keeps going with a shrink that finishes in time", () => {
    expect(
      decide("qemu", { ...BASE, pendingBytes: 100 * MiB, pendingHistory: halving }).decision,
    ).toBe("continue");
  });
});

describe("Hyper-V's rule", () => {
  it("suspends once what is left fits the downtime target", () => {
    expect(decide("hyperv", { ...BASE, pendingBytes: 30 * MiB, maxRounds: 10 })).toEqual({
      decision: "stop-and-copy",
      reason: "pending 30.0 MiB <= bandwidth x downtime-limit 30.0 MiB",
    });
  });

  it("suspends anyway at the pass cap, not before", () => {
    expect(decide("hyperv", { ...BASE, pendingBytes: 50 * MiB, maxRounds: 3 })).toEqual({
      decision: "stop-and-copy",
      reason: "pass cap of 3 reached: suspending with 50.0 MiB pending",
    });
    expect(decide("hyperv", { ...BASE, pendingBytes: 50 * MiB, maxRounds: 4 })).toEqual({
      decision: "continue",
      reason: "pass 3 of at most 4",
    });
    expect(decide("hyperv", { ...BASE, pendingBytes: 50 * MiB }).decision).toBe("continue");
  });
});

describe("Xen's rules", () => {
  const xen = { ...BASE, pendingBytes: 50 * MiB, maxRounds: 29 };

  it("stops when a round after the first sent fewer than 50 pages", () => {
    expect(decide("xen", { ...xen, pagesSent: 49, previousPagesSent: 60 })).toEqual({
      decision: "stop-and-copy",
      reason: "49 pages sent in round 3 (< 50)",
    });
    expect(decide("xen", { ...xen, pagesSent: 50, previousPagesSent: 60 }).decision).toBe(
      "continue",
    );
    // The first round is the whole of memory: its count is no signal.
    expect(
      decide("xen", { ...xen, round: 1, pagesSent: 10, previousPagesSent: null }).decision,
    ).toBe("continue");
  });

  it("stops when more than 3x RAM has been sent, not at exactly 3x", () => {
    expect(decide("xen", { ...xen, transferredBytes: 3 * 1024 * MiB + 1 })).toEqual({
      decision: "stop-and-copy",
      reason: "3.0 GiB sent (> 3x RAM)",
    });
    expect(decide("xen", { ...xen, transferredBytes: 3 * 1024 * MiB }).decision).toBe("continue");
  });

  it("stops at the round cap, not before", () => {
    expect(decide("xen", { ...xen, maxRounds: 3 })).toEqual({
      decision: "stop-and-copy",
      reason: "round cap 3 reached",
    });
    expect(decide("xen", { ...xen, maxRounds: 4 })).toEqual({
      decision: "continue",
      reason: "round 3 of at most 4",
    });
  });

  it("stops when a round sent more than the one before, not as many", () => {
    expect(decide("xen", { ...xen, pagesSent: 2001 })).toEqual({
      decision: "stop-and-copy",
      reason: "round 3 sent 2001 pages, more than round 2's 2000, at the maximum rate",
    });
    expect(decide("xen", { ...xen, pagesSent: 2000 }).decision).toBe("continue");
    expect(
      decide("xen", { ...xen, round: 1, pagesSent: 5000, previousPagesSent: null }).decision,
    ).toBe("continue");
  });

  it("stops when nothing is left", () => {
    expect(decide("xen", { ...xen, pendingBytes: 0 })).toEqual({
      decision: "stop-and-copy",
      reason: "nothing left to send",
    });
    expect(decide("xen", { ...xen, pendingBytes: 1 }).decision).toBe("continue");
  });
});
