/*
 * The pre-copy convergence model of Clark et al. (NSDI 2005, section 3):
 * uniform dirtying at D over a link of R, lambda = D / R, sends
 * V_i = V_mem lambda^i in round i and stops at the first round whose volume
 * is at most the threshold; the total is the geometric sum and the
 * downtime the last round's time on the link plus the resume time. The
 * working set's distinct pages after w writes of N pages saturate as
 * N (1 - e^(-w/N)).
 */
import { describe, expect, it } from "vitest";
import { distinctPages, geometricModel } from "../src/migration/model.js";

describe("the geometric pre-copy model", () => {
  it("halving each round from 1,000 bytes stops at the first volume at or under the threshold", () => {
    const m = geometricModel(1000, 50, 100, 125, 7);
    expect(m.volumes).toEqual([1000, 500, 250, 125]);
    expect(m.stopRound).toBe(3);
    // 1000 (1 - 0.5^4) / 0.5
    expect(m.totalBytes).toBe(1875);
    // 125 bytes at 100 B/s, 1,250 ms, and 7 ms to resume.
    expect(m.downtimeMs).toBe(1257);
  });

  it("a threshold just under a round's volume takes one more round", () => {
    const m = geometricModel(1000, 50, 100, 124.9, 0);
    expect(m.volumes).toEqual([1000, 500, 250, 125, 62.5]);
    expect(m.stopRound).toBe(4);
    expect(m.totalBytes).toBe(1937.5);
    expect(m.downtimeMs).toBe(625);
  });

  it("a first round already under the threshold stops at round 1", () => {
    const m = geometricModel(1000, 10, 100, 100, 0);
    expect(m.volumes).toEqual([1000, 100]);
    expect(m.stopRound).toBe(1);
    expect(m.totalBytes).toBeCloseTo(1100, 9);
    expect(m.downtimeMs).toBe(1000);
  });

  it("a dirty rate at or above the link never converges, after one round", () => {
    for (const dirty of [100, 150]) {
      const m = geometricModel(1000, dirty, 100, 10, 5);
      expect(m.volumes).toEqual([1000, 1000 * (dirty / 100)]);
      expect(m).toMatchObject({ stopRound: null, totalBytes: null, downtimeMs: null });
    }
  });

  it("lambda at 1 with a threshold the first volume meets still does not converge", () => {
    const m = geometricModel(1000, 100, 100, 1000, 0);
    expect(m).toMatchObject({ stopRound: null, totalBytes: null, downtimeMs: null });
  });

  it("gives up after the round cap, and takes exactly the cap's rounds", () => {
    const capped = geometricModel(1000, 50, 100, 125, 0, 2);
    expect(capped.volumes).toEqual([1000, 500, 250]);
    expect(capped).toMatchObject({ stopRound: null, totalBytes: null, downtimeMs: null });
    const enough = geometricModel(1000, 50, 100, 125, 0, 3);
    expect(enough.stopRound).toBe(3);
    // The default cap is 1,000 rounds: 1e6 x 0.999^1000 is 367,695, and round 999's 368,063.
    expect(geometricModel(1e6, 99.9, 100, 367_000, 0).stopRound).toBeNull();
    expect(geometricModel(1e6, 99.9, 100, 367_700, 0).stopRound).toBe(1000);
  });
});

describe("distinct pages of uniform writes", () => {
  it("is N (1 - e^(-w/N))", () => {
    expect(distinctPages(1000, 0)).toBe(0);
    expect(distinctPages(1000, 1000)).toBeCloseTo(1000 * (1 - Math.exp(-1)), 9);
    expect(distinctPages(2048, 512)).toBeCloseTo(2048 * (1 - Math.exp(-0.25)), 9);
    expect(distinctPages(1000, 1e9)).toBeCloseTo(1000, 9);
  });
});
