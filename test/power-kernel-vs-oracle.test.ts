import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { PowerOracle } from "../src/oracle/power.js";
import {
  ANY,
  FULL_SPEED,
  IdleMode,
  type KernelConfig,
  PowerKernel,
  type PowerRegions,
  powerRegionBytes,
} from "../src/wasm/power.js";

function regionsFor(layout: MemoryLayout, processors: number, maxEvents: number): PowerRegions {
  const bytes = powerRegionBytes(processors, maxEvents);
  // A spare byte before each region: regions start at unaligned offsets too.
  const pad = (name: string, size: number) => {
    layout.allocate(`${name} pad`, 1 + (size % 3), 1);
    return layout.allocate(name, size, 1);
  };
  return {
    config: pad("config", bytes.config),
    states: pad("states", bytes.states),
    counters: pad("counters", bytes.counters),
    histogram: pad("histogram", bytes.histogram),
    events: pad("events", bytes.events),
  };
}

const cstateArb = fc.record({
  exitTicks: fc.integer({ min: 0, max: 30 }),
  exitNs: fc.integer({ min: 0, max: 300_000 }),
  residencyUs: fc.integer({ min: 0, max: 2000 }),
});

const machineArb = fc.record({
  processors: fc.integer({ min: 1, max: 13 }),
  idleMode: fc.constantFrom(IdleMode.halt, IdleMode.menu, IdleMode.deepest),
  speed: fc.integer({ min: 1, max: FULL_SPEED }),
  tickNs: fc.integer({ min: 1, max: 50_000 }),
  timerUs: fc.integer({ min: 0, max: 20_000 }),
  cstates: fc.array(cstateArb, { minLength: 1, maxLength: 8 }),
});

/** Chunks of ticks, each with events (tick offset, work, target or ANY) and parking changes before it. */
const chunkArb = fc.record({
  ticks: fc.integer({ min: 0, max: 157 }),
  events: fc.array(
    fc.record({
      at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      work: fc.integer({ min: 1, max: 20 * FULL_SPEED + 7 }),
      target: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 12 })),
    }),
    { maxLength: 40 },
  ),
  park: fc.array(fc.record({ p: fc.integer({ min: 0, max: 12 }), parked: fc.boolean() }), {
    maxLength: 4,
  }),
});

describe("power kernel against the oracle", () => {
  it("keeps the same states, counters and latency histogram", () => {
    // One memory for every run: init() resets all the kernel keeps.
    const layout = new MemoryLayout();
    const regions = regionsFor(layout, 13, 40);
    const kernel = PowerKernel.on(layout.memory);
    fc.assert(
      fc.property(machineArb, fc.array(chunkArb, { maxLength: 6 }), (machine, chunks) => {
        const config: KernelConfig = machine;
        kernel.init(regions, config);
        const oracle = new PowerOracle(config);
        let from = 0;
        for (const chunk of chunks) {
          for (const { p, parked } of chunk.park) {
            if (p >= config.processors) continue;
            kernel.setParked(regions, p, parked);
            oracle.setParked(p, parked);
          }
          const unparked = kernel.unparked(regions);
          const events = chunk.ticks === 0 ? [] : chunk.events;
          const list = events
            .map((e) => [
              from + Math.floor(e.at * chunk.ticks),
              e.work,
              e.target < 0 || e.target >= config.processors ? (unparked > 0 ? ANY : 0) : e.target,
              0,
            ])
            .sort((a, b) => (a[0] as number) - (b[0] as number));
          const words = Uint32Array.from(list.flat());
          kernel.run(regions, words, from, chunk.ticks);
          oracle.run(words, from, chunk.ticks);
          from += chunk.ticks;
          expect(kernel.stateWords(regions)).toEqual(oracle.stateWords());
        }
        expect(kernel.counters(regions)).toEqual(oracle.counters());
        expect(kernel.histogram(regions)).toEqual(
          BigUint64Array.from(oracle.histogram.map(BigInt)),
        );
      }),
      { numRuns: 200 },
    );
  });

  it("refuses events out of order, outside the span, without work or to no processor", () => {
    const layout = new MemoryLayout();
    const regions = regionsFor(layout, 2, 4);
    const kernel = PowerKernel.on(layout.memory);
    const config: KernelConfig = {
      processors: 2,
      idleMode: IdleMode.halt,
      speed: FULL_SPEED,
      tickNs: 10_000,
      timerUs: 4000,
      cstates: [{ exitTicks: 0, exitNs: 3000, residencyUs: 6 }],
    };
    kernel.init(regions, config);
    const run = (events: number[], from = 0, ticks = 10) =>
      kernel.run(regions, Uint32Array.from(events), from, ticks);
    expect(() => run([], 5, 1)).toThrow(/start where the last ended, at tick 0, not 5/);
    expect(() => run([5, 1, 0, 0, 4, 1, 0, 0])).toThrow(/out of order/);
    expect(() => run([10, 1, 0, 0])).toThrow(/outside ticks \[0, 10\)/);
    expect(() => run([3, 0, 0, 0])).toThrow(/no work/);
    expect(() => run([3, 1, 2, 0])).toThrow(/processor 2 of 2/);
    expect(() => run([1, 1, 0, 0, 2, 1, 0, 0, 3, 1, 0, 0, 4, 1, 0, 0, 5, 1, 0, 0])).toThrow(
      /region 'events'/,
    );
    kernel.setParked(regions, 0, true);
    kernel.setParked(regions, 1, true);
    expect(() => run([3, 1, ANY, 0])).toThrow(/every processor is parked/);
    expect(() => kernel.setParked(regions, 2, true)).toThrow(/processor must be/);
    expect(() => kernel.init(regions, { ...config, processors: 3 })).toThrow(/region 'states'/);
  });
});
