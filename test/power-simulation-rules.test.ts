import { describe, expect, it } from "vitest";
import { PowerConfigError, TraceError } from "../src/power/errors.js";
import { DEFAULT_LOAD, type LoadSpec } from "../src/power/load.js";
import {
  checkParking,
  DEFAULT_PARKING,
  type ParkingParameters,
  parkingStep,
} from "../src/power/parking.js";
import { namedPolicy } from "../src/power/policies.js";
import {
  PROCESSOR_PRESETS,
  type ProcessorModel,
  parseProcessorModel,
} from "../src/power/processors.js";
import { checkSimulation, type SimulationSpec, simulate } from "../src/power/simulate.js";
import { runPowerSweep } from "../src/power/sweep.js";
import { parseTrace } from "../src/power/trace.js";

/*
 * Rules of a whole simulation that its figures alone do not show: when the
 * parking engine may act (CPDecreaseTime and CPIncreaseTime counted in
 * check intervals since the node's last change), that every arrival of a
 * check interval is simulated however many there are, and where the ranges
 * of a simulation's timing end.
 */

const nehalem = PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel;

function spec(
  load: Partial<LoadSpec>,
  policy: string,
  parking: Partial<ParkingParameters> = {},
  over: Partial<SimulationSpec> = {},
): SimulationSpec {
  return {
    model: nehalem,
    load: { ...DEFAULT_LOAD, ...load },
    policy: namedPolicy(policy, { ...DEFAULT_PARKING, ...parking }),
    durationS: 0.8,
    tickUs: 10,
    checkMs: 50,
    timerUs: 4000,
    seed: 3,
    ...over,
  };
}

describe("when the parking engine acts", () => {
  it("parks one processor per node every CPDecreaseTime checks, counted from the node's last change", () => {
    // No load at all: every node parks down to its one processor, one at a
    // time, each park CPDecreaseTime = 3 checks after the one before. A
    // timeline point is the interval before its check's decision.
    const idle = simulate(
      spec({ utilization: 0 }, "parking", { CPMinCores: 0, CPDecreaseTime: 3 }),
    );
    expect(idle.timeline.map((t) => t.unparked)).toEqual([
      16, 16, 16, 14, 14, 14, 12, 12, 12, 10, 10, 10, 8, 8, 8, 6,
    ]);
    expect(idle.timeline.map((t) => t.unparkedByNode)).toContainEqual([3, 3]);
  });

  it("parks every check when CPDecreaseTime is one check", () => {
    const idle = simulate(
      spec({ utilization: 0 }, "parking", { CPMinCores: 0, CPDecreaseTime: 1 }),
    );
    expect(idle.timeline.map((t) => t.unparked).slice(0, 9)).toEqual([
      16, 14, 12, 10, 8, 6, 4, 2, 2,
    ]);
  });

  it("waits CPIncreaseTime checks before unparking a node that holds its minimum", () => {
    const p = { ...DEFAULT_PARKING, CPMinCores: 0, CPIncreaseTime: 3 };
    // One processor unparked (the node's minimum) and fully busy: it wants two.
    const utilization = [1, 0, 0, 0];
    const unparked = [true, false, false, false];
    expect(parkingStep(p, utilization, unparked, 1)).toEqual(unparked);
    expect(parkingStep(p, utilization, unparked, 2)).toEqual(unparked);
    expect(parkingStep(p, utilization, unparked, 3)).toEqual([true, true, false, false]);
  });

  it("unparks the lowest numbered of equally busy parked processors first", () => {
    const p = { ...DEFAULT_PARKING, CPMinCores: 0 };
    expect(parkingStep(p, [1, 0, 0, 0], [true, false, false, false], 1)).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect(parkingStep(p, [0, 0, 0, 1], [false, false, false, true], 1)).toEqual([
      true,
      false,
      false,
      true,
    ]);
  });
});

describe("a check interval's arrivals", () => {
  it("are all simulated however many there are: the same figures with 160,000 arrivals per check as with 16,000", () => {
    // Without parking the check interval changes only the timeline's
    // grain; the kernel takes at most 65,536 arrivals a call, so 20 ms
    // checks of 8e6 arrivals/s are cut into calls at tick boundaries.
    const load = { pattern: "poisson" as const, utilization: 0.5, serviceUs: 1 };
    const many = simulate(spec(load, "menu", {}, { durationS: 0.02, checkMs: 20 }));
    const few = simulate(spec(load, "menu", {}, { durationS: 0.02, checkMs: 2 }));
    expect(many.timeline).toHaveLength(1);
    expect(few.timeline).toHaveLength(10);
    expect(many.latency.arrivals).toBeGreaterThan(140_000);
    expect(many.latency.arrivals).toBeLessThan(180_000);
    expect(many.latency).toEqual(few.latency);
    expect(many.residency).toEqual(few.residency);
    expect(many.energyJ).toBe(few.energyJ);
    expect(many.meanLoad).toBe(few.meanLoad);
  });

  it("refuses more than 65,536 arrivals in one tick, naming the tick", () => {
    // 8 processors' worth of 1 us work in a 10 ms tick: 80,000 arrivals.
    const crowded = spec(
      { pattern: "constant", utilization: 0.5, serviceUs: 1 },
      "none",
      {},
      {
        durationS: 0.01,
        tickUs: 10_000,
        checkMs: 10,
      },
    );
    expect(() => simulate(crowded)).toThrow(PowerConfigError);
    expect(() => simulate(crowded)).toThrow(
      "more than 65536 arrivals in one tick at 0: shorten the tick",
    );
  });

  it("takes a load of exactly 5e6 arrivals per check interval", () => {
    // 16 processors x 0.5 / 1 us = 8e6 arrivals/s: 5e6 in 625 ms.
    const load = { pattern: "poisson" as const, utilization: 0.5, serviceUs: 1 };
    const edge = simulate(spec(load, "none", {}, { durationS: 0.001, checkMs: 625 }));
    expect(edge.latency.arrivals).toBeGreaterThan(7000);
    expect(() => simulate(spec(load, "none", {}, { durationS: 0.001, checkMs: 626 }))).toThrow(
      /arrivals per check interval \(at most 5e6\)/,
    );
  });
});

describe("a simulation's timing", () => {
  it("refuses a tick or a check interval that is not a number", () => {
    const base = spec({}, "parking");
    expect(() => checkSimulation({ ...base, tickUs: Number.NaN })).toThrow(
      "tick NaN us must be from 0.001 to 1e6 us",
    );
    expect(() => checkSimulation({ ...base, checkMs: Number.NaN })).toThrow(
      "check interval NaN ms must be at least one tick",
    );
  });
});

describe("VMQ interrupts steered to unparked processors", () => {
  it("are the spread assignment when nothing is parked: the same figures", () => {
    const vmq = { queues: 16, interruptsPerSecond: 2000, serviceUs: 20 };
    const base = spec({ utilization: 0.1 }, "menu", {}, { durationS: 0.5 });
    const spread = simulate({ ...base, vmq: { ...vmq, steering: "spread" } });
    const steered = simulate({ ...base, vmq: { ...vmq, steering: "unparked" } });
    expect(steered.latency.arrivals).toBeGreaterThan(15_000);
    expect(steered).toEqual(spread);
  });
});

describe("the power engine's errors", () => {
  it("print under their own names", () => {
    expect(() => checkSimulation({ ...spec({}, "parking"), durationS: 0 })).toThrow(
      PowerConfigError,
    );
    try {
      checkSimulation({ ...spec({}, "parking"), durationS: 0 });
    } catch (error) {
      expect(String(error)).toMatch(/^PowerConfigError: duration 0 s/);
    }
    try {
      parseTrace("");
    } catch (error) {
      expect(error).toBeInstanceOf(TraceError);
      expect(String(error)).toMatch(/^TraceError: line 1: /);
    }
    expect.assertions(4);
  });

  it("say why a processor table's field is refused, not only which", () => {
    const table = {
      name: "mine",
      sockets: 0,
      coresPerSocket: 4,
      threadsPerCore: 1,
      numaNodes: 1,
      cstates: [{ name: "C1", exitLatencyUs: 1, targetResidencyUs: 2, watts: 1 }],
      pstates: [{ name: "P0", mhz: 3000, watts: 5 }],
      platformWatts: 50,
    };
    expect(() => parseProcessorModel(JSON.stringify(table), "t.json")).toThrow(
      /^t\.json: sockets: Too small: expected number to be >=1$/,
    );
    const { platformWatts: _, ...missing } = table;
    expect(() => parseProcessorModel(JSON.stringify({ ...missing, sockets: 1 }), "t.json")).toThrow(
      "t.json: platformWatts: Invalid input: expected number, received undefined",
    );
  });

  it("name a parking parameter they do not know as such", () => {
    const unknown = { ...DEFAULT_PARKING, CPIdle: 5 } as ParkingParameters;
    expect(() => checkParking(unknown)).toThrow(
      new PowerConfigError('parking parameters: Unrecognized key: "CPIdle"'),
    );
  });
});

describe("a sweep", () => {
  it("gives its wall time, within the call's", async () => {
    const t0 = performance.now();
    const sweep = await runPowerSweep(
      spec({ utilization: 0.2 }, "parking", {}, { durationS: 0.2 }),
      { parameter: "CPMinCores", values: [50] },
      { parameter: "CPHeadroom", values: [50] },
      { workers: 1 },
    );
    const elapsedMs = performance.now() - t0;
    expect(sweep.points).toHaveLength(1);
    expect(sweep.wallMs).toBeGreaterThan(0);
    expect(sweep.wallMs).toBeLessThanOrEqual(elapsedMs);
  });
});
