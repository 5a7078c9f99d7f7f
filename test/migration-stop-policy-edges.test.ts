/*
 * The stop policies (src/migration/policy.ts) on a run with no round cap:
 * a live migration's hyperv rule without `maxRounds` (src/migration/live/
 * source.ts passes null), or Xen's rule given no cap. Neither may stop for
 * a cap it does not have (Xen's other rules, tools/libxc/xc_domain_save.c,
 * still apply), and a round that continues says it has no cap rather than
 * "of at most null".
 */
import { describe, expect, it } from "vitest";
import { decide, type PolicyInput } from "../src/migration/policy.js";

const MiB = 1024 ** 2;

/** Round 3 with 50 MiB pending on a 100 MiB/s link and a 300 ms limit (30 MiB fits), no cap. */
const UNCAPPED: PolicyInput = {
  round: 3,
  pendingBytes: 50 * MiB,
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

describe("a run with no round cap", () => {
  it("Xen's rule keeps going, at any round, saying there is no cap", () => {
    for (const round of [2, 3, 29, 30, 1000]) {
      expect(decide("xen", { ...UNCAPPED, round })).toEqual({
        decision: "continue",
        reason: `round ${round} (no round cap)`,
      });
    }
    // Its other rules still stop it.
    expect(decide("xen", { ...UNCAPPED, pendingBytes: 0 })).toEqual({
      decision: "stop-and-copy",
      reason: "nothing left to send",
    });
  });

  it("Hyper-V's rule keeps going until what is left fits, saying there is no cap", () => {
    for (const round of [1, 10, 11, 1000]) {
      expect(decide("hyperv", { ...UNCAPPED, round })).toEqual({
        decision: "continue",
        reason: `pass ${round} (no pass cap)`,
      });
    }
    expect(decide("hyperv", { ...UNCAPPED, pendingBytes: 30 * MiB }).decision).toBe(
      "stop-and-copy",
    );
  });

  it("a cap is still named as one", () => {
    expect(decide("xen", { ...UNCAPPED, maxRounds: 29 }).reason).toBe("round 3 of at most 29");
    expect(decide("hyperv", { ...UNCAPPED, maxRounds: 10 }).reason).toBe("pass 3 of at most 10");
  });
});
