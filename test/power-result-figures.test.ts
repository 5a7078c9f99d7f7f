import { describe, expect, it } from "vitest";
import { DEFAULT_LOAD } from "../src/power/load.js";
import { DEFAULT_PARKING } from "../src/power/parking.js";
import { namedPolicy } from "../src/power/policies.js";
import { PROCESSOR_PRESETS, type ProcessorModel } from "../src/power/processors.js";
import {
  DEFAULT_TIMING,
  type SimulationResult,
  type SimulationSpec,
  simulate,
} from "../src/power/simulate.js";

/*
 * A simulation's summary figures from their definitions, on a run that is
 * not one second long (so that a product and a quotient by the run's length
 * differ): mean watts are energy over time, mean load the busy and waking
 * processor-seconds over time, mean unparked the timeline's mean, each
 * state's share its processor-seconds over all of them, one timeline point
 * per check at the check's end.
 *
 * Each test runs its own simulation: mutation testing switches a mutant on
 * only from the file's first hook, and counts a test as covering the code
 * it ran itself, not what a hook ran for it.
 */

const nehalem = PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel;
const spec = (policy: string, utilization: number): SimulationSpec => ({
  model: nehalem,
  load: { ...DEFAULT_LOAD, utilization },
  policy: namedPolicy(policy, { ...DEFAULT_PARKING, CPDecreaseTime: 1 }),
  ...DEFAULT_TIMING,
  durationS: 0.5,
});

describe("a simulation's figures", () => {
  const figures = (): SimulationResult => simulate(spec("menu-parking", 0.25));

  it("has one timeline point per 50 ms check, at the check's end", () => {
    const result = figures();
    expect(result.seconds).toBe(0.5);
    expect(result.timeline.map((t) => t.timeS)).toEqual(
      Array.from({ length: 10 }, (_, i) => Number(((i + 1) * 0.05).toFixed(2))),
    );
    // Parking at a quarter of the load: fewer than all 16 unparked by the end.
    expect(result.timeline.at(-1)?.unparked).toBeLessThan(16);
    for (const point of result.timeline) {
      expect(point.unparked).toBe(point.unparkedByNode.reduce((a, b) => a + b, 0));
    }
  });

  it("gives means from their definitions", () => {
    const result = figures();
    expect(result.meanWatts).toBeCloseTo(result.energyJ / 0.5, 9);
    const running = result.residency.find((r) => r.state === "running P0");
    const waking = result.residency.find((r) => r.state === "waking");
    expect(running && waking).toBeTruthy();
    expect(result.meanLoad).toBeCloseTo(
      ((running?.seconds ?? 0) + (waking?.seconds ?? 0)) / 0.5,
      9,
    );
    expect(result.meanLoad).toBeGreaterThan(3);
    expect(result.meanLoad).toBeLessThan(5);
    const unparked = result.timeline.map((t) => t.unparked);
    expect(result.meanUnparked).toBeCloseTo(
      unparked.reduce((a, b) => a + b, 0) / unparked.length,
      12,
    );
    // The timeline's load is the work done in each interval, in processors.
    const meanTimelineLoad =
      result.timeline.reduce((a, t) => a + t.load, 0) / result.timeline.length;
    expect(meanTimelineLoad).toBeCloseTo(result.meanLoad, 9);
  });

  it("shares every processor-second among the states, the platform drawing for the whole run", () => {
    const result = figures();
    const states = result.residency.filter((r) => r.state !== "platform");
    expect(states.map((r) => r.state)).toEqual(["running P0", "waking", "C1", "C1E", "C3", "C6"]);
    for (const r of states) expect(r.share).toBeCloseTo(r.seconds / (16 * 0.5), 12);
    expect(states.reduce((a, r) => a + r.share, 0)).toBeCloseTo(1, 9);
    expect(result.residency.at(-1)).toEqual({
      state: "platform",
      seconds: 0.5,
      watts: 100,
      joules: 50,
      share: 1,
    });
  });

  it("adds latency only as long as the deepest state's exit takes, and none without arrivals", () => {
    const deepest = simulate(spec("deepest", 0.25));
    expect(deepest.latency.arrivals).toBeGreaterThan(1000);
    // C6's exit latency is 200 us.
    expect(deepest.latency.meanUs).toBeGreaterThan(0);
    expect(deepest.latency.meanUs).toBeLessThanOrEqual(200);
    expect(deepest.latency.p999Us).toBeLessThanOrEqual(200);
    const idle = simulate(spec("deepest", 0));
    expect(idle.latency.arrivals).toBe(0);
    expect(idle.latency.meanUs).toBe(0);
  });

  it("ends its timeline at the run's end when the run is not a whole number of checks", () => {
    // 0.125 s in 50 ms checks: two whole checks and a last one of 25 ms.
    const short = simulate({ ...spec("menu-parking", 0.25), durationS: 0.125 });
    expect(short.seconds).toBe(0.125);
    expect(short.timeline.map((t) => t.timeS)).toEqual([0.05, 0.1, 0.125]);
    const states = short.residency.filter((r) => r.state !== "platform");
    expect(states.reduce((a, r) => a + r.seconds, 0)).toBeCloseTo(16 * 0.125, 9);
  });

  it("runs a simulation of exactly one tick", () => {
    const one = simulate({ ...spec("menu", 0.25), durationS: 10e-6 });
    expect(one.seconds).toBe(10e-6);
    expect(one.timeline).toHaveLength(1);
    expect(one.timeline[0]?.timeS).toBe(10e-6);
  });

  it("counts wake-ups of parked processors only when something is parked", () => {
    const unparkedOnly = simulate(spec("menu", 0.25));
    expect(unparkedOnly.latency.wakeups).toBeGreaterThan(100);
    expect(unparkedOnly.latency.parkedWakeups).toBe(0);
    // Parked processors still take their pinned work (it cannot move): a
    // little on each of node 1's processors, which parks down to one or two.
    const pinned = Array.from({ length: 8 }, (_, i) => ({ processor: 8 + i, utilization: 0.01 }));
    const parked = simulate({
      ...spec("menu-parking", 0.05),
      load: { ...DEFAULT_LOAD, utilization: 0.05, pinned },
    });
    expect(parked.timeline.at(-1)?.unparked).toBeLessThan(16);
    expect(parked.latency.parkedWakeups).toBeGreaterThan(0);
    expect(parked.latency.parkedWakeups).toBeLessThan(parked.latency.wakeups);
  });
});
