import { describe, expect, it } from "vitest";
import { DEFAULT_LOAD, LoadGenerator, type LoadSpec } from "../src/power/load.js";
import { parseTrace } from "../src/power/trace.js";

/*
 * A Poisson load whose rate varies over time arrives, in every stretch of
 * time, as often as the integral of its rate over that stretch says
 * (the defining property of a nonhomogeneous Poisson process), whatever
 * the pattern: a diurnal cosine down to 0, a bursty load off at 0 or at a
 * low level, a replayed trace that ends idle.
 */

const ANY = 0xffffffff;
const PROCESSORS = 4;
const SERVICE_US = 1000;
const SECONDS = 10;
/** Stretches counted: eighths of a 1 s period. */
const BINS = 8;

function generator(load: Partial<LoadSpec>, seed: number): LoadGenerator {
  return new LoadGenerator(
    { ...DEFAULT_LOAD, serviceUs: SERVICE_US, periodS: 1, ...load },
    PROCESSORS,
    1,
    seed,
    ANY,
  );
}

/** Arrivals in each eighth of the period, over all the periods run. */
function counted(gen: LoadGenerator): number[] {
  const bins = new Array<number>(BINS).fill(0);
  const events = gen.events(0, SECONDS * 1e6, [0, 1, 2, 3], 1000);
  for (let e = 0; e < events.length; e += 4) {
    const t = events[e] as number;
    const bin = Math.floor(((t % 1e6) / 1e6) * BINS);
    bins[bin] = (bins[bin] ?? 0) + 1;
  }
  return bins;
}

/** The integral of the arrival rate over each eighth, from the load's level, by the midpoint rule. */
function expected(gen: LoadGenerator): number[] {
  const bins = new Array<number>(BINS).fill(0);
  const stepUs = 50;
  for (let t = stepUs / 2; t < SECONDS * 1e6; t += stepUs) {
    const bin = Math.floor(((t % 1e6) / 1e6) * BINS);
    bins[bin] = (bins[bin] ?? 0) + (gen.level(t) * PROCESSORS * stepUs) / SERVICE_US;
  }
  return bins;
}

describe("a load whose rate varies over time", () => {
  const trace = parseTrace("time,total\n1,25\n2,75\n3,0\n");
  it.each<[string, Partial<LoadSpec>]>([
    ["diurnal from 0 to 60 %", { pattern: "diurnal", utilization: 0.6, low: 0 }],
    ["diurnal from 20 to 90 %", { pattern: "diurnal", utilization: 0.9, low: 0.2 }],
    [
      "bursty at 80 % for a quarter, else off",
      { pattern: "bursty", utilization: 0.8, low: 0, duty: 0.25 },
    ],
    [
      "bursty at 80 % for a quarter, else 10 %",
      { pattern: "bursty", utilization: 0.8, low: 0.1, duty: 0.25 },
    ],
    ["a trace that ends idle", { pattern: "trace", trace }],
    // A trough above the peak: the rate's top is the trough.
    ["diurnal from 70 % down to 20 %", { pattern: "diurnal", utilization: 0.2, low: 0.7 }],
    [
      "bursty at 10 % for a quarter, else 60 %",
      { pattern: "bursty", utilization: 0.1, low: 0.6, duty: 0.25 },
    ],
  ])("%s: arrivals in every eighth of the period as its rate's integral says", (_, load) => {
    for (const seed of [1, 2, 3]) {
      const want = expected(generator(load, seed));
      const got = counted(generator(load, seed));
      for (let b = 0; b < BINS; b++) {
        const mean = want[b] as number;
        // A Poisson count's standard deviation is the root of its mean: 5 of them.
        expect(
          Math.abs((got[b] as number) - mean),
          `seed ${seed}, eighth ${b}`,
        ).toBeLessThanOrEqual(5 * Math.sqrt(mean) + 1);
      }
    }
  });

  it("a constant load of 0 never arrives, nor does a Poisson one", () => {
    for (const pattern of ["constant", "poisson"] as const) {
      const gen = generator({ pattern, utilization: 0 }, 4);
      expect(gen.events(0, 2e6, [0, 1, 2, 3], 1000).length, pattern).toBe(0);
    }
  });

  it("never arrives where its rate is 0", () => {
    const gen = generator({ pattern: "bursty", utilization: 0.8, low: 0, duty: 0.25 }, 9);
    const events = gen.events(0, 4e6, [0, 1, 2, 3], 1000);
    expect(events.length).toBeGreaterThan(1000);
    for (let e = 0; e < events.length; e += 4) {
      expect((events[e] as number) % 1e6).toBeLessThan(0.25e6);
    }
  });
});
