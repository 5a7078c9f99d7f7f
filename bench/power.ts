/**
 * Power benchmarks: the per-processor, per-tick kernel against its oracle, a
 * naive driver that calls the kernel once per tick, and a plain copy of the
 * state it touches (the memory bound); then a 100-point parking sweep on two
 * pool workers against one. Every case is verified before it is timed.
 */
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { PowerOracle } from "../src/oracle/power.js";
import { KernelPool } from "../src/pool/pool.js";
import { DEFAULT_LOAD, LoadGenerator } from "../src/power/load.js";
import { namedPolicy } from "../src/power/policies.js";
import { PROCESSOR_PRESETS, type ProcessorModel } from "../src/power/processors.js";
import { DEFAULT_TIMING, type SimulationSpec } from "../src/power/simulate.js";
import { type PowerSweepResult, runPowerSweep } from "../src/power/sweep.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import {
  ANY,
  COUNTER_BYTES,
  FULL_SPEED,
  IdleMode,
  type KernelConfig,
  PowerKernel,
  type PowerRegions,
  powerRegionBytes,
  STATE_BYTES,
} from "../src/wasm/power.js";

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function equalArrays(a: ArrayLike<unknown>, b: ArrayLike<unknown>, what: string): void {
  assert(a.length === b.length, `${what}: ${a.length} entries against ${b.length}`);
  for (let i = 0; i < a.length; i++) {
    assert(a[i] === b[i], `${what} differ at ${i}: ${String(a[i])} against ${String(b[i])}`);
  }
}

export const suite: BenchSuite = {
  name: "power",
  description:
    "core parking: the C-state kernel against its oracle; a 100-point sweep on 2 workers against 1",
  async setup({ quick }) {
    const model = PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel;
    const processors = 16;
    const ticks = quick ? 2000 : 100_000;
    const tickUs = 10;
    // 30 % of the machine in 1 ms threads, the menu governor choosing C-states.
    const generator = new LoadGenerator(
      { ...DEFAULT_LOAD, utilization: 0.3 },
      processors,
      tickUs,
      1,
      ANY,
    );
    const events = generator.events(0, ticks, [], FULL_SPEED);
    const config: KernelConfig = {
      processors,
      idleMode: IdleMode.menu,
      speed: FULL_SPEED,
      tickNs: tickUs * 1000,
      timerUs: DEFAULT_TIMING.timerUs,
      cstates: model.cstates.map((c) => ({
        exitTicks: Math.round(c.exitLatencyUs / tickUs),
        exitNs: c.exitLatencyUs * 1000,
        residencyUs: c.targetResidencyUs,
      })),
    };
    const layout = new MemoryLayout();
    const bytes = powerRegionBytes(processors, events.length / 4);
    const regions: PowerRegions = {
      config: layout.allocate("power config", bytes.config),
      states: layout.allocate("power states", bytes.states),
      counters: layout.allocate("power counters", bytes.counters),
      histogram: layout.allocate("power latency histogram", bytes.histogram),
      events: layout.allocate("power events", bytes.events),
    };
    const copyBytes = processors * (STATE_BYTES + COUNTER_BYTES);
    const copyFrom = layout.allocate("copy source", copyBytes);
    const copyTo = layout.allocate("copy target", copyBytes);
    const kernel = PowerKernel.on(layout.memory);
    const bandwidth = BandwidthKernel.on(layout.memory);

    const runKernel = () => {
      kernel.init(regions, config);
      kernel.run(regions, events, 0, ticks);
    };
    const runOracle = () => {
      const oracle = new PowerOracle(config);
      oracle.run(events, 0, ticks);
      return oracle;
    };
    // Per-tick events, found once (the naive driver's bookkeeping is not what it is timed for).
    const perTick: Uint32Array[] = [];
    for (let t = 0, e = 0; t < ticks; t++) {
      const first = e;
      while (e < events.length / 4 && events[e * 4] === t) e++;
      perTick.push(events.subarray(first * 4, e * 4));
    }
    const runNaive = () => {
      kernel.init(regions, config);
      for (let t = 0; t < ticks; t++) kernel.run(regions, perTick[t] as Uint32Array, t, 1);
    };

    const cases: BenchCase[] = [
      {
        case: `C-state machine, ${processors} processors x ${ticks} ticks, 30 % load (ops: processor-ticks)`,
        opsPerCall: processors * ticks,
        verify() {
          const oracle = runOracle();
          runKernel();
          equalArrays(kernel.stateWords(regions), oracle.stateWords(), "states");
          equalArrays(kernel.counters(regions), oracle.counters(), "counters");
          runNaive();
          equalArrays(kernel.counters(regions), oracle.counters(), "counters of the naive driver");
          assert(events.length > 0, "the load brought no work");
        },
        impls: [
          { impl: "hvlab", fn: runKernel },
          { impl: "oracle (TypeScript)", fn: runOracle },
          { impl: "naive (one kernel call per tick)", fn: runNaive },
          {
            impl: "memory copy of the state per tick (bound)",
            fn: () => {
              for (let t = 0; t < ticks; t++) bandwidth.copy(copyTo, 0, copyFrom, 0, copyBytes);
            },
          },
        ],
      },
    ];

    // --- a 100-point sweep on two workers against one ---------------------
    const sweepSpec: SimulationSpec = {
      ...DEFAULT_TIMING,
      model,
      load: { ...DEFAULT_LOAD, utilization: 0.3 },
      policy: namedPolicy("parking"),
      durationS: quick ? 0.02 : 1.5,
    };
    const side = quick ? 3 : 10;
    const axis = (parameter: "CPMinCores" | "CPHeadroom") => ({
      parameter,
      values: Array.from({ length: side }, (_, i) => Math.round((i * 100) / (side - 1))),
    });
    const pools = [1, 2].map(
      (threads) => new KernelPool(new MemoryLayout(), { threads, domains: ["power"] }),
    );
    const sweepOn = (pool: KernelPool) => () =>
      runPowerSweep(sweepSpec, axis("CPMinCores"), axis("CPHeadroom"), {
        workers: pool.threads,
        pool,
      });
    const [one, two] = pools as [KernelPool, KernelPool];
    cases.push({
      case: `${side * side}-point sweep CPMinCores x CPHeadroom, ${sweepSpec.durationS} s each (ops: sweeps)`,
      iterations: quick ? 2 : 3,
      async verify() {
        const a: PowerSweepResult = await sweepOn(one)();
        const b: PowerSweepResult = await sweepOn(two)();
        assert(a.points.length === side * side, `${a.points.length} points`);
        equalArrays(
          a.points.map((p) => p.savingsPercent),
          b.points.map((p) => p.savingsPercent),
          "savings on 1 and 2 workers",
        );
      },
      impls: [
        {
          impl: "hvlab (2 workers)",
          fn: async () => {
            await sweepOn(two)();
          },
        },
        {
          impl: "hvlab (1 worker)",
          fn: async () => {
            await sweepOn(one)();
          },
        },
      ],
    });

    return {
      cases,
      async teardown() {
        await Promise.all(pools.map((pool) => pool.close()));
      },
    };
  },
};
