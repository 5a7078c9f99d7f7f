import { describe, expect, it } from "vitest";
import { compareToBaseline, savingsPercent } from "../src/power/compare.js";
import { PowerConfigError } from "../src/power/errors.js";
import { checkLoad, DEFAULT_LOAD, LoadGenerator, type LoadSpec } from "../src/power/load.js";
import { DEFAULT_PARKING } from "../src/power/parking.js";
import { namedPolicy, POLICY_NAMES } from "../src/power/policies.js";
import {
  checkProcessorModel,
  logicalProcessors,
  numaNodeOf,
  PROCESSOR_PRESETS,
  type ProcessorModel,
  parseProcessorModel,
} from "../src/power/processors.js";
import { recordUtilization } from "../src/power/record.js";
import {
  checkSimulation,
  DEFAULT_TIMING,
  histogramPercentile,
  type SimulationResult,
  type SimulationSpec,
  simulate,
} from "../src/power/simulate.js";
import { powerSweepPlan, powerSweepPoints, sweepParameter } from "../src/power/sweep.js";
import { parseTrace } from "../src/power/trace.js";
import { vmqInterrupts } from "../src/power/vmq.js";

/*
 * The power engine's inputs checked before anything runs (each refused on
 * its far side, taken on its near side, the message naming the value), and
 * its figures from their definitions: processors and NUMA nodes of the
 * presets, percentiles of the latency histogram, savings against the
 * no-parking baseline, the load's level over time, a sweep's grid.
 */

const nehalem = PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel;

const spec = (over: Partial<SimulationSpec> = {}): SimulationSpec => ({
  model: nehalem,
  load: DEFAULT_LOAD,
  policy: namedPolicy("parking"),
  ...DEFAULT_TIMING,
  durationS: 0.2,
  ...over,
});

describe("processor models", () => {
  it("count the presets' logical processors and number them node by node", () => {
    expect(logicalProcessors(nehalem)).toBe(16);
    expect(logicalProcessors(PROCESSOR_PRESETS["skylake-sp"] as ProcessorModel)).toBe(80);
    expect(logicalProcessors(PROCESSOR_PRESETS["epyc-7763"] as ProcessorModel)).toBe(256);
    expect([0, 7, 8, 15].map((p) => numaNodeOf(nehalem, p))).toEqual([0, 0, 1, 1]);
    for (const model of Object.values(PROCESSOR_PRESETS)) {
      expect(checkProcessorModel(model)).toBe(model);
    }
  });

  it("refuses a topology past 1024 processors or that does not split into its NUMA nodes", () => {
    const at = (sockets: number, coresPerSocket: number) =>
      ({ ...nehalem, sockets, coresPerSocket, threadsPerCore: 2 }) as ProcessorModel;
    expect(checkProcessorModel(at(4, 128)).sockets).toBe(4);
    expect(() => checkProcessorModel(at(4, 129))).toThrow(
      new PowerConfigError("processor 'nehalem-ep' has 1032 logical processors (at most 1024)"),
    );
    expect(() => checkProcessorModel({ ...nehalem, numaNodes: 3 })).toThrow(
      "processor 'nehalem-ep': 16 logical processors do not split into 3 NUMA nodes",
    );
  });

  it("takes C-states that deepen (or stay equal) and P-states that slow (or stay equal), not the reverse", () => {
    const c = (exitLatencyUs: number, targetResidencyUs: number) => ({
      name: `C${exitLatencyUs}`,
      exitLatencyUs,
      targetResidencyUs,
      watts: 1,
    });
    expect(checkProcessorModel({ ...nehalem, cstates: [c(3, 6), c(3, 6)] }).cstates).toHaveLength(
      2,
    );
    expect(() => checkProcessorModel({ ...nehalem, cstates: [c(3, 6), c(2, 6)] })).toThrow(
      "C-state C2 is shallower than C3 before it (list them shallowest first)",
    );
    expect(() => checkProcessorModel({ ...nehalem, cstates: [c(3, 6), c(3, 5)] })).toThrow(
      "is shallower than C3 before it",
    );
    const p = (mhz: number) => ({ name: `P${mhz}`, mhz, watts: 1 });
    expect(checkProcessorModel({ ...nehalem, pstates: [p(2000), p(2000)] }).pstates).toHaveLength(
      2,
    );
    expect(() => checkProcessorModel({ ...nehalem, pstates: [p(2000), p(2001)] })).toThrow(
      "P-state P2001 is faster than P2000 before it (list them fastest first)",
    );
  });

  it("reads a user's table from JSON, naming the file and the first bad field", () => {
    const table = {
      name: "mine",
      sockets: 1,
      coresPerSocket: 4,
      threadsPerCore: 1,
      numaNodes: 1,
      cstates: [{ name: "C1", exitLatencyUs: 1, targetResidencyUs: 2, watts: 1 }],
      pstates: [{ name: "P0", mhz: 3000, watts: 5 }],
      platformWatts: 50,
    };
    const model = parseProcessorModel(JSON.stringify(table), "mine.json");
    expect(model.description).toBe("user-supplied processor table");
    expect(model.source).toBe("user-supplied");
    expect(logicalProcessors(model)).toBe(4);
    expect(() => parseProcessorModel("{", "t.json")).toThrow(/^t\.json: not JSON \(/);
    expect(() => parseProcessorModel(JSON.stringify({ ...table, sockets: 0 }), "t.json")).toThrow(
      /^t\.json: sockets: /,
    );
    expect(() =>
      parseProcessorModel(
        JSON.stringify({ ...table, cstates: [{ ...table.cstates[0], watts: -1 }] }),
        "t.json",
      ),
    ).toThrow(/^t\.json: cstates\.0\.watts: /);
    expect(() => parseProcessorModel("[]", "t.json")).toThrow(/^t\.json: \(top\): /);
    expect(() => parseProcessorModel(JSON.stringify({ ...table, numaNodes: 3 }), "t.json")).toThrow(
      "do not split into 3 NUMA nodes",
    );
    const padded = JSON.stringify(table) + " ".repeat(64 * 1024 - JSON.stringify(table).length);
    expect(parseProcessorModel(padded, "t.json").name).toBe("mine");
    expect(() => parseProcessorModel(`${padded} `, "t.json")).toThrow(
      new PowerConfigError("t.json: a processor table is at most 64 KiB"),
    );
  });
});

describe("policies", () => {
  it("name what parks and how idle processors pick their C-state", () => {
    const got = POLICY_NAMES.map((name) => {
      const p = namedPolicy(name, DEFAULT_PARKING, 2);
      return [p.name, p.parking !== null, p.idle, p.pstate];
    });
    expect(got).toEqual([
      ["none", false, "halt", 2],
      ["parking", true, "halt", 2],
      ["menu", false, "menu", 2],
      ["menu-parking", true, "menu", 2],
      ["deepest", false, "deepest", 2],
    ]);
    expect(namedPolicy("parking").parking).toBe(DEFAULT_PARKING);
    expect(namedPolicy("none").pstate).toBe(0);
    expect(() => namedPolicy("eco")).toThrow(
      new PowerConfigError("unknown policy 'eco' (none, parking, menu, menu-parking, deepest)"),
    );
  });
});

describe("a simulation is checked before it runs", () => {
  it.each([
    [
      { policy: { ...namedPolicy("menu"), idle: "sleep" } },
      "idle policy 'sleep' must be halt, menu or deepest",
    ],
    [
      { policy: namedPolicy("none", undefined, 4) },
      "P-state 4: processor 'nehalem-ep' has P-states 0 to 3",
    ],
    [{ policy: namedPolicy("none", undefined, -1) }, "P-state -1:"],
    [{ policy: namedPolicy("none", undefined, 0.5) }, "P-state 0.5:"],
    [{ policy: namedPolicy("parking", { ...DEFAULT_PARKING, CPHeadroom: -1 }) }, "CPHeadroom -1"],
    [{ tickUs: 0 }, "tick 0 us must be from 0.001 to 1e6 us"],
    [{ tickUs: 0.0004 }, "tick 0.0004 us"],
    [{ tickUs: 1e6 + 1 }, "tick 1000001 us"],
    [{ durationS: 0 }, "duration 0 s must be above 0 and at most 1e6"],
    [{ durationS: 1e6 + 1 }, "duration 1000001 s"],
    [{ checkMs: 0 }, "check interval 0 ms must be at least one tick (10 us) and at most 1e6 ms"],
    [{ checkMs: 0.009 }, "check interval 0.009 ms"],
    [{ checkMs: 1e6 + 1, durationS: 1 }, "check interval 1000001 ms"],
    [{ timerUs: -1 }, "timer -1 us must be from 0 to 1e9"],
    [{ timerUs: 1e9 + 1 }, "timer 1000000001 us"],
    [{ seed: -1 }, "seed -1 must be a whole number from 0 to 2^32 - 1"],
    [{ seed: 2 ** 32 }, `seed ${2 ** 32} must`],
    [{ seed: 1.5 }, "seed 1.5 must"],
    [
      { durationS: 1e6, tickUs: 100 },
      "10000000000 ticks (duration / tick) must be from 1 to 2^32 - 1",
    ],
    [{ durationS: 1e-6, tickUs: 10 }, "0 ticks (duration / tick)"],
    [
      { durationS: 3000, tickUs: 10 },
      "4.80e+9 processor-ticks is more than 4e+9: shorten the duration or lengthen the tick",
    ],
  ] as const)("refuses %o", (over, message) => {
    expect(() => checkSimulation(spec(over as Partial<SimulationSpec>))).toThrow(PowerConfigError);
    expect(() => checkSimulation(spec(over as Partial<SimulationSpec>))).toThrow(message);
  });

  it("takes every value at the near end of its range", () => {
    for (const over of [
      { tickUs: 0.001, durationS: 1e-3, checkMs: 1e-3 },
      { tickUs: 1e6, durationS: 1e6, checkMs: 1e6 },
      { checkMs: 0.01 },
      { timerUs: 0 },
      { timerUs: 1e9 },
      { seed: 0 },
      { seed: 2 ** 32 - 1 },
      { policy: namedPolicy("none", undefined, 3) },
      // 2,500 s of 10 us ticks on 16 processors: exactly 4e9 processor-ticks.
      { durationS: 2500 },
    ]) {
      expect(() => checkSimulation(spec(over))).not.toThrow();
    }
  });

  it("refuses a load that brings more than 5e6 arrivals in one check interval", () => {
    expect(() =>
      simulate(
        spec({
          load: { ...DEFAULT_LOAD, utilization: 1, serviceUs: 1 },
          checkMs: 1000,
          durationS: 1,
        }),
      ),
    ).toThrow(
      "the load brings about 16000000 arrivals per check interval (at most 5e6): lengthen the service time",
    );
  });
});

describe("loads", () => {
  const generator = (load: Partial<LoadSpec>, processors = 4) =>
    new LoadGenerator({ ...DEFAULT_LOAD, ...load }, processors, 10, 1, 0xffffffff);

  it.each([
    [
      { pattern: "sine" },
      "unknown load pattern 'sine' (constant, poisson, diurnal, bursty, trace)",
    ],
    [{ utilization: 1.01 }, "utilization 1.01 is not a share from 0 to 1"],
    [{ low: -0.1 }, "low utilization -0.1 is not a share"],
    [{ duty: Number.NaN }, "duty cycle NaN is not a share"],
    [{ periodS: 0 }, "period 0 s must be above 0 and at most 1e7"],
    [{ periodS: 1e7 + 1 }, "period 10000001 s"],
    [{ serviceUs: 0.5 }, "service time 0.5 us must be from 1 to 1e7"],
    [{ serviceUs: 1e7 + 1 }, "service time 10000001 us"],
    [{ pattern: "trace" }, "the trace pattern needs a trace"],
    [
      { trace: parseTrace("time,cpu0,cpu1,cpu2,cpu3,cpu4\n1,1,1,1,1,1\n") },
      "the trace has 5 processors but the machine has 4",
    ],
    [
      { pinned: [{ processor: 4, utilization: 0.5 }] },
      "pinned load on processor 4: the machine has processors 0 to 3",
    ],
    [{ pinned: [{ processor: -1, utilization: 0.5 }] }, "pinned load on processor -1"],
    [
      { pinned: [{ processor: 0, utilization: 2 }] },
      "pinned utilization of processor 0 2 is not a share",
    ],
    [
      { interrupts: [{ processor: 4, index: 0, ratePerSecond: 1, serviceUs: 1 }] },
      "interrupts to processor 4: the machine has processors 0 to 3",
    ],
    [
      { interrupts: [{ processor: 0.5, index: 0, ratePerSecond: 1, serviceUs: 1 }] },
      "interrupts to processor 0.5",
    ],
    [
      { interrupts: [{ processor: 0, index: 0, ratePerSecond: 1e7 + 1, serviceUs: 1 }] },
      "interrupt rate 10000001/s must be from 0 to 1e7",
    ],
    [
      { interrupts: [{ processor: 0, index: 0, ratePerSecond: -1, serviceUs: 1 }] },
      "interrupt rate -1/s",
    ],
    [
      { interrupts: [{ processor: 0, index: 0, ratePerSecond: 1, serviceUs: 0 }] },
      "interrupt service time 0 us must be from 0.001 to 1e6",
    ],
    [
      { interrupts: [{ processor: 0, index: 0, ratePerSecond: 1, serviceUs: 1e6 + 1 }] },
      "interrupt service time 1000001 us",
    ],
  ] as const)("refuses %o", (load, message) => {
    const run = () => checkLoad({ ...DEFAULT_LOAD, ...(load as Partial<LoadSpec>) }, 4);
    expect(run).toThrow(PowerConfigError);
    expect(run).toThrow(message);
  });

  it("takes every value at the near end of its range", () => {
    for (const load of [
      { utilization: 0, low: 0, duty: 0, periodS: 1e7, serviceUs: 1 },
      { utilization: 1, low: 1, duty: 1, serviceUs: 1e7 },
      { trace: parseTrace("time,cpu0,cpu1,cpu2,cpu3\n1,1,1,1,1\n") },
      {
        pinned: [{ processor: 3, utilization: 1 }],
        interrupts: [
          { processor: 3, index: 0, ratePerSecond: 1e7, serviceUs: 0.001 },
          { processor: "unparked" as const, index: 9, ratePerSecond: 0, serviceUs: 1e6 },
        ],
      },
    ]) {
      expect(() => checkLoad({ ...DEFAULT_LOAD, ...load }, 4)).not.toThrow();
    }
  });

  it("follows its pattern over time: diurnal from its trough to its peak at half a period, bursty on for its duty", () => {
    const diurnal = generator({ pattern: "diurnal", utilization: 0.9, low: 0.1, periodS: 2 });
    expect(diurnal.level(0)).toBeCloseTo(0.1, 12);
    expect(diurnal.level(0.5e6)).toBeCloseTo(0.5, 12);
    expect(diurnal.level(1e6)).toBeCloseTo(0.9, 12);
    expect(diurnal.level(2e6)).toBeCloseTo(0.1, 12);
    const bursty = generator({
      pattern: "bursty",
      utilization: 0.8,
      low: 0.2,
      periodS: 1,
      duty: 0.25,
    });
    expect([0, 0.2499e6, 0.25e6, 0.9e6, 1.1e6].map((t) => bursty.level(t))).toEqual([
      0.8, 0.8, 0.2, 0.2, 0.8,
    ]);
    expect(generator({ pattern: "constant", utilization: 0.3 }).level(5e6)).toBe(0.3);
    const trace = parseTrace("time,total\n1,20\n2,60\n");
    const replay = generator({ pattern: "trace", trace });
    // Each sample is the interval that ends at its time.
    expect(replay.level(0.5e6)).toBeCloseTo(0.2, 12);
    expect(replay.level(1.5e6)).toBeCloseTo(0.6, 12);
    expect(replay.level(9e6)).toBeCloseTo(0.6, 12);
  });

  it("spaces constant arrivals evenly, and sizes its peak from every source", () => {
    // 4 processors at 50 % of 1 ms threads: one arrival every 500 us, the first at 500 us:
    // 49 before 25 ms.
    const constant = generator({ pattern: "constant", utilization: 0.5, serviceUs: 1000 });
    const events = constant.events(0, 2500, [0, 1, 2, 3], 1000);
    expect(events.length / 4).toBe(49);
    expect(events[0]).toBe(50);
    expect(events[4]).toBe(100);
    // Work units: 1 ms of 10 us ticks at full speed 1000.
    expect(events[1]).toBe(100_000);
    expect(events[2]).toBe(0xffffffff);
    expect(events[3]).toBe(0);
    const peak = generator({
      utilization: 0.5,
      low: 0.8,
      serviceUs: 100,
      pinned: [{ processor: 1, utilization: 0.5 }],
      interrupts: [{ processor: 0, index: 0, ratePerSecond: 700, serviceUs: 5 }],
    });
    // max(0.5, 0.8) x 4 / 100 us + 0.5 / 100 us + 700/s.
    expect(peak.peakRatePerSecond()).toBeCloseTo(32_000 + 5000 + 700, 6);
  });

  it("sends pinned work to its processor and steered interrupts to the unparked ones, sorted by tick", () => {
    const load = generator({
      utilization: 0,
      pinned: [{ processor: 2, utilization: 0.5 }],
      interrupts: [{ processor: "unparked", index: 3, ratePerSecond: 10_000, serviceUs: 20 }],
    });
    const events = load.events(0, 10_000, [1, 3], 1000);
    const rows = Array.from({ length: events.length / 4 }, (_, i) => [
      ...events.subarray(i * 4, i * 4 + 4),
    ]);
    const pinned = rows.filter((r) => r[3] === 0);
    const interrupts = rows.filter((r) => r[3] === 1);
    expect(pinned.length).toBeGreaterThan(20);
    expect(pinned.every((r) => r[2] === 2)).toBe(true);
    // Index 3 of two unparked processors: the second, processor 3.
    expect(interrupts.length).toBeGreaterThan(500);
    expect(interrupts.every((r) => r[2] === 3 && r[1] === 2000)).toBe(true);
    for (let i = 1; i < rows.length; i++)
      expect(rows[i]?.[0]).toBeGreaterThanOrEqual(rows[i - 1]?.[0] ?? 0);
  });
});

describe("VMQ interrupts", () => {
  it("go round robin over the processors a NIC addresses, at most 64", () => {
    const vmq = { queues: 4, interruptsPerSecond: 100, serviceUs: 10, steering: "spread" as const };
    expect(vmqInterrupts(vmq, 3).map((i) => i.processor)).toEqual([0, 1, 2, 0]);
    expect(
      vmqInterrupts({ ...vmq, queues: 64 }, 256)
        .map((i) => i.index)
        .at(-1),
    ).toBe(63);
    const steered = vmqInterrupts({ ...vmq, steering: "unparked" }, 3);
    expect(steered.map((i) => [i.processor, i.index])).toEqual([
      ["unparked", 0],
      ["unparked", 1],
      ["unparked", 2],
      ["unparked", 0],
    ]);
    expect(steered[0]).toMatchObject({ ratePerSecond: 100, serviceUs: 10 });
    expect(vmqInterrupts({ ...vmq, queues: 1 }, 3)).toHaveLength(1);
    for (const queues of [0, 65, 1.5]) {
      expect(() => vmqInterrupts({ ...vmq, queues }, 3)).toThrow(
        `VMQ queues ${queues} must be a whole number from 1 to 64`,
      );
    }
    expect(() => vmqInterrupts({ ...vmq, steering: "random" as "spread" }, 3)).toThrow(
      "VMQ steering 'random' must be spread or unparked",
    );
  });
});

describe("figures", () => {
  it("reads percentiles of the 1 us latency histogram as the first bucket reaching the rank", () => {
    expect(histogramPercentile([], 0.5)).toBe(0);
    expect(histogramPercentile([0, 0, 0], 0.99)).toBe(0);
    // 10 samples: 5 at 1 us, 5 at 3 us.
    const hist = [0, 5, 0, 5];
    expect(histogramPercentile(hist, 0.5)).toBe(1);
    expect(histogramPercentile(hist, 0.51)).toBe(3);
    expect(histogramPercentile(hist, 0.99)).toBe(3);
    expect(histogramPercentile([7], 0.999)).toBe(0);
  });

  it("counts savings against the baseline's energy, and compares with the no-parking baseline at the same P-state", () => {
    const result = (energyJ: number) => ({ energyJ }) as SimulationResult;
    expect(savingsPercent(result(200), result(150))).toBe(25);
    expect(savingsPercent(result(100), result(110))).toBeCloseTo(-10, 12);
    const parking = spec({ policy: namedPolicy("parking", DEFAULT_PARKING, 1), durationS: 0.5 });
    const compared = compareToBaseline(parking);
    expect(compared.baseline.policy).toBe("none");
    expect(compared.baseline.residency[0]?.state).toBe("running P1");
    expect(compared.result.policy).toBe("parking");
    expect(compared.savingsPercent).toBe(savingsPercent(compared.baseline, compared.result));
    expect(compared.addedP99Us).toBe(
      compared.result.latency.p99Us - compared.baseline.latency.p99Us,
    );
    // A baseline given is used, not run again.
    const again = compareToBaseline(parking, compared.result);
    expect(again.baseline).toBe(compared.result);
    expect(again.savingsPercent).toBe(0);
  });
});

describe("sweeps", () => {
  const x = { parameter: "CPMinCores" as const, values: [0, 50] };
  const y = { parameter: "CPHeadroom" as const, values: [10, 20, 30] };

  it("names an axis by its parameter, in any case", () => {
    expect(sweepParameter("cpheadroom")).toBe("CPHeadroom");
    expect(sweepParameter("CPMaxCores")).toBe("CPMaxCores");
    expect(() => sweepParameter("headroom")).toThrow(
      "unknown sweep parameter 'headroom' (CPMinCores, CPMaxCores, CPIncreaseTime, CPDecreaseTime, CPConcurrency, CPHeadroom, CPDistribution)",
    );
  });

  it("plans one simulation per point, x-major, and a no-parking baseline at the same P-state", () => {
    const base = spec({ policy: namedPolicy("menu-parking", DEFAULT_PARKING, 2) });
    const plan = powerSweepPlan(base, x, y);
    expect(
      plan.specs.map((s) => [s.policy.parking?.CPMinCores, s.policy.parking?.CPHeadroom]),
    ).toEqual([
      [0, 10],
      [0, 20],
      [0, 30],
      [50, 10],
      [50, 20],
      [50, 30],
    ]);
    expect(
      plan.specs.every((s) => s.policy.idle === "menu" && s.policy.parking?.CPMaxCores === 100),
    ).toBe(true);
    expect(plan.baseline.policy).toEqual(namedPolicy("none", undefined, 2));
    expect(plan.baseline.load).toBe(base.load);
  });

  it("refuses a grid with one axis twice, no points, too many, a point out of range, or a policy that does not park", () => {
    const base = spec();
    expect(() => powerSweepPlan(base, x, { ...y, parameter: "CPMinCores" })).toThrow(
      "the sweep's two axes are both CPMinCores",
    );
    expect(() => powerSweepPlan(base, x, { ...y, values: [] })).toThrow(
      "the sweep grid has no points",
    );
    const many = Array.from({ length: 100 }, (_, i) => i);
    expect(powerSweepPlan(base, { ...x, values: many }, { ...y, values: many }).specs).toHaveLength(
      10_000,
    );
    expect(() =>
      powerSweepPlan(base, { ...x, values: many }, { ...y, values: [...many, 100] }),
    ).toThrow("the sweep grid has 10100 points (at most 10000)");
    expect(() => powerSweepPlan(base, x, { ...y, values: [101] })).toThrow("CPHeadroom 101");
    expect(() => powerSweepPlan(spec({ policy: namedPolicy("menu") }), x, y)).toThrow(
      "policy 'menu' does not park: sweep a parking policy",
    );
    expect(() => powerSweepPlan(spec({ seed: -1 }), x, y)).toThrow("seed -1");
  });

  it("places each result at its point against the baseline, leaving out points that failed", () => {
    const result = (energyJ: number, p99Us: number) =>
      ({
        energyJ,
        meanWatts: energyJ / 2,
        meanUnparked: energyJ / 100,
        latency: { p99Us },
      }) as SimulationResult;
    const baseline = result(200, 10);
    const points = powerSweepPoints(x, y, baseline, [
      result(180, 12),
      null,
      null,
      null,
      result(100, 40),
      null,
    ]);
    expect(
      points.map((p) => [p.x, p.y, p.addedP99Us, p.p99Us, p.meanWatts, p.meanUnparked]),
    ).toEqual([
      [0, 10, 2, 12, 90, 1.8],
      [50, 20, 30, 40, 50, 1],
    ]);
    expect(points[0]?.savingsPercent).toBeCloseTo(10, 12);
    expect(points[1]?.savingsPercent).toBeCloseTo(50, 12);
  });
});

describe("recording this machine's utilization", () => {
  it("samples every processor of /proc/stat at the interval asked, each a share from 0 to 1", async () => {
    if (process.platform !== "linux") return;
    const seen: number[] = [];
    const started = performance.now();
    const trace = await recordUtilization(3, 20, (done) => seen.push(done));
    expect(performance.now() - started).toBeGreaterThanOrEqual(55);
    expect(seen).toEqual([1, 2, 3]);
    expect(trace.columns).toBeGreaterThan(0);
    expect(trace.times).toHaveLength(3);
    expect(trace.values).toHaveLength(3 * (trace.columns as number));
    for (let i = 0; i < 3; i++) {
      expect(trace.times[i]).toBeGreaterThanOrEqual((20 * (i + 1) - 5) / 1000);
    }
    expect([...trace.values].every((v) => v >= 0 && v <= 1)).toBe(true);
  });
});
