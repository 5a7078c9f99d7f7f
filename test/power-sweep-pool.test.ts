import { afterAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { KernelPool } from "../src/pool/pool.js";
import { savingsPercent } from "../src/power/compare.js";
import { DEFAULT_LOAD } from "../src/power/load.js";
import { DEFAULT_PARKING } from "../src/power/parking.js";
import { namedPolicy } from "../src/power/policies.js";
import { PROCESSOR_PRESETS, type ProcessorModel } from "../src/power/processors.js";
import { DEFAULT_TIMING, type SimulationSpec, simulate } from "../src/power/simulate.js";
import { runPowerSweep } from "../src/power/sweep.js";

/*
 * A sweep through the pool: each point is one simulation on a worker, and
 * the sweep's figures are the ones the same simulations give on this
 * thread (a simulation is deterministic for its seed).
 */

const base: SimulationSpec = {
  model: PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel,
  load: { ...DEFAULT_LOAD, utilization: 0.2 },
  policy: namedPolicy("parking", { ...DEFAULT_PARKING, CPDecreaseTime: 1 }),
  ...DEFAULT_TIMING,
  durationS: 0.3,
};
const x = { parameter: "CPMinCores" as const, values: [0, 100] };
const y = { parameter: "CPHeadroom" as const, values: [20, 80] };

describe("power sweep through the pool", () => {
  const pool = new KernelPool(new MemoryLayout(), { threads: 1, domains: ["power"] });
  afterAll(() => pool.close());

  it("runs every point and the baseline, giving the figures each simulation gives here", async () => {
    const progress: [number, number][] = [];
    const sweep = await runPowerSweep(base, x, y, {
      workers: 4,
      pool,
      onPoint: (done, total) => progress.push([done, total]),
    });
    expect(sweep.x).toBe("CPMinCores");
    expect(sweep.y).toBe("CPHeadroom");
    // The pool given, kept open: its one thread.
    expect(sweep.workers).toBe(1);
    expect(sweep.wallMs).toBeGreaterThan(0);
    expect(progress).toEqual([
      [1, 5],
      [2, 5],
      [3, 5],
      [4, 5],
      [5, 5],
    ]);
    const baseline = simulate({ ...base, policy: namedPolicy("none") });
    expect(sweep.baseline.energyJ).toBe(baseline.energyJ);
    expect(sweep.baseline.policy).toBe("none");
    // Points come back without their timelines.
    expect(sweep.baseline.timeline).toEqual([]);
    expect(sweep.points.map((p) => [p.x, p.y])).toEqual([
      [0, 20],
      [0, 80],
      [100, 20],
      [100, 80],
    ]);
    const last = simulate({
      ...base,
      policy: {
        ...base.policy,
        parking: { ...DEFAULT_PARKING, CPDecreaseTime: 1, CPMinCores: 100, CPHeadroom: 80 },
      },
    });
    expect(sweep.points[3]?.savingsPercent).toBe(savingsPercent(baseline, last));
    expect(sweep.points[3]?.meanUnparked).toBe(16);
    // CPMinCores 0 parks at 20 % load; CPMinCores 100 parks nothing.
    expect(sweep.points[0]?.meanUnparked).toBeLessThan(16);
    // The pool is still open for more.
    expect(
      (
        await runPowerSweep(
          base,
          { ...x, values: [0] },
          { ...y, values: [20] },
          { workers: 1, pool },
        )
      ).points,
    ).toHaveLength(1);
  });

  it("makes a pool of its own when given none", async () => {
    const sweep = await runPowerSweep(
      base,
      { ...x, values: [50] },
      { ...y, values: [50] },
      { workers: 1 },
    );
    expect(sweep.workers).toBe(1);
    expect(sweep.points).toHaveLength(1);
  });
});
