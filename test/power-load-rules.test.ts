import { describe, expect, it } from "vitest";
import { PowerConfigError } from "../src/power/errors.js";
import {
  checkLoad,
  DEFAULT_LOAD,
  EVENT_INTERRUPT,
  LoadGenerator,
  type LoadSpec,
} from "../src/power/load.js";
import { parseTrace } from "../src/power/trace.js";

/*
 * How a load turns into arrivals, beyond its mean rate: affinitized threads
 * and interrupts arrive as Poisson processes (exponential gaps), a load
 * whose rate falls to zero comes back when the rate does, and a trace's
 * sample holds from the previous sample's time up to its own.
 */

const ANY = 0xffffffff;
/** A generator on 1 us ticks, so that arrival times are not rounded away. */
const generator = (load: Partial<LoadSpec>, processors = 4) =>
  new LoadGenerator({ ...DEFAULT_LOAD, ...load }, processors, 1, 5, ANY);

/** Arrival ticks of the events sent to `target` over `seconds`, in order. */
function arrivals(gen: LoadGenerator, seconds: number, target: number): number[] {
  const events = gen.events(0, seconds * 1e6, [0, 1, 2, 3], 1000);
  const ticks: number[] = [];
  for (let e = 0; e < events.length; e += 4) {
    if (events[e + 2] === target) ticks.push(events[e] as number);
  }
  return ticks;
}

/** Coefficient of variation of the gaps between arrivals: 1 for Poisson, 0 for even spacing. */
function gapVariation(ticks: readonly number[]): number {
  const gaps = ticks.slice(1).map((t, i) => t - (ticks[i] as number));
  const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
  const variance = gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length;
  return Math.sqrt(variance) / mean;
}

describe("arrivals of a load", () => {
  it("of pinned threads and of interrupts are Poisson, whatever the unaffinitized pattern", () => {
    const gen = generator({
      pattern: "constant",
      utilization: 0.1,
      serviceUs: 100,
      pinned: [{ processor: 1, utilization: 0.4 }],
      interrupts: [{ processor: 2, index: 0, ratePerSecond: 4000, serviceUs: 5 }],
    });
    const events = gen.events(0, 1e6, [0, 1, 2, 3], 1000);
    const flags = new Set<number>();
    for (let e = 0; e < events.length; e += 4) {
      if (events[e + 2] === 2) flags.add(events[e + 3] as number);
    }
    expect([...flags]).toEqual([EVENT_INTERRUPT]);
    const fresh = () =>
      generator({
        pattern: "constant",
        utilization: 0.1,
        serviceUs: 100,
        pinned: [{ processor: 1, utilization: 0.4 }],
        interrupts: [{ processor: 2, index: 0, ratePerSecond: 4000, serviceUs: 5 }],
      });
    // About 4,000 arrivals a second each: the variation of exponential gaps
    // is 1 within a few percent; evenly spaced arrivals would give 0.
    const unaffinitized = arrivals(fresh(), 1, ANY);
    const pinned = arrivals(fresh(), 1, 1);
    const interrupts = arrivals(fresh(), 1, 2);
    expect(unaffinitized.length).toBeGreaterThan(3900);
    expect(gapVariation(unaffinitized)).toBeLessThan(0.05);
    expect(pinned.length).toBeGreaterThan(3500);
    expect(gapVariation(pinned)).toBeGreaterThan(0.85);
    expect(gapVariation(pinned)).toBeLessThan(1.15);
    expect(interrupts.length).toBeGreaterThan(3500);
    expect(gapVariation(interrupts)).toBeGreaterThan(0.85);
    expect(gapVariation(interrupts)).toBeLessThan(1.15);
  });

  it("come back when a rate that fell to zero rises again", () => {
    // Bursty, off at 0 for the second half of each 1 s period: on again at 1 s.
    const bursty = arrivals(
      generator({ pattern: "bursty", utilization: 0.5, low: 0, duty: 0.5, periodS: 1 }),
      2,
      ANY,
    );
    const second = bursty.filter((t) => t >= 1e6);
    expect(second.length).toBeGreaterThan(500);
    expect(second.every((t) => t < 1.5e6 + 1000)).toBe(true);
  });
});

describe("a replayed trace", () => {
  it("holds each sample from the previous sample's time up to, not including, its own", () => {
    const trace = parseTrace("time,total\n0.1,10\n0.2,90\n0.3,40\n");
    const gen = generator({ pattern: "trace", trace });
    expect(gen.level(0)).toBeCloseTo(0.1, 12);
    expect(gen.level(99_999)).toBeCloseTo(0.1, 12);
    expect(gen.level(100_000)).toBeCloseTo(0.9, 12);
    expect(gen.level(200_000)).toBeCloseTo(0.4, 12);
  });
});

describe("interrupt sources", () => {
  it("refuse a processor below 0", () => {
    const load = {
      ...DEFAULT_LOAD,
      interrupts: [{ processor: -1, index: 0, ratePerSecond: 1, serviceUs: 1 }],
    };
    expect(() => checkLoad(load, 4)).toThrow(PowerConfigError);
    expect(() => checkLoad(load, 4)).toThrow(
      "interrupts to processor -1: the machine has processors 0 to 3",
    );
  });
});
