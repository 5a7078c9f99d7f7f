import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  ANY,
  Counter,
  FULL_SPEED,
  IdleMode,
  type KernelConfig,
  PowerKernel,
  powerRegionBytes,
  State,
} from "../src/wasm/power.js";

/*
 * Rules of the power kernel (assembly/power.ts) on machines small enough to
 * follow tick by tick, each answer worked out by hand from the model
 * (docs/power.md, "The model"):
 *
 * - Idle states: the menu governor (Linux drivers/cpuidle/governors/menu.c,
 *   menu_select) predicts the idle time as the sooner of the next timer and
 *   the typical interval of the last eight idle periods
 *   (get_typical_interval), and takes the deepest state whose target
 *   residency fits it. A parked processor always sinks to the deepest state.
 * - Placement: an unaffinitized thread goes to the unparked processor with
 *   the least work queued, then the shallowest sleep, then the lowest number.
 *
 * C-states are Nehalem's (Linux drivers/idle/intel_idle.c, nehalem_cstates:
 * exit latency / target residency in us, C1 3/6, C1E 10/20, C3 20/80,
 * C6 200/800) on 1 us ticks, so a state's exit ticks are its exit latency.
 */

const NEHALEM = [
  { exitTicks: 3, exitNs: 3000, residencyUs: 6 },
  { exitTicks: 10, exitNs: 10_000, residencyUs: 20 },
  { exitTicks: 20, exitNs: 20_000, residencyUs: 80 },
  { exitTicks: 200, exitNs: 200_000, residencyUs: 800 },
];
const C1 = 0;
const C1E = 1;
const C3 = 2;
const C6 = 3;

/** A machine of `processors` on its own memory, running at full speed ({@link FULL_SPEED} work units a tick). */
function machine(config: Partial<KernelConfig> & Pick<KernelConfig, "processors">) {
  const layout = new MemoryLayout();
  const bytes = powerRegionBytes(config.processors, 16);
  const regions = {
    config: layout.allocate("config", bytes.config),
    states: layout.allocate("states", bytes.states),
    counters: layout.allocate("counters", bytes.counters),
    histogram: layout.allocate("histogram", bytes.histogram),
    events: layout.allocate("events", bytes.events),
  };
  const kernel = PowerKernel.on(layout.memory);
  kernel.init(regions, {
    idleMode: IdleMode.halt,
    speed: FULL_SPEED,
    tickNs: 1000,
    timerUs: 4000,
    cstates: NEHALEM,
    ...config,
  });
  /** Processor `p`'s state slot. */
  const state = (p: number, slot: number) => kernel.stateWords(regions)[p * 16 + slot] as number;
  /** Processor `p`'s counter slot. */
  const counter = (p: number, slot: number) => kernel.counters(regions)[p * 12 + slot];
  return { kernel, regions, state, counter };
}

/** Events of one work unit each (one tick of work: a part tick rounds up), for `target`, at `ticks`. */
const work = (target: number, ticks: readonly number[]) =>
  Uint32Array.from(ticks.flatMap((tick) => [tick, 1, target, 0]));

describe("the menu governor: the sooner of the next timer and the typical interval", () => {
  // Exit latencies of 0 ticks keep the periods exact: a unit of work arriving
  // at tick t runs in tick t and the processor is idle again from t + 1, so
  // events 51 ticks apart, the first at 50, make idle periods of 50 us each.
  const instant = NEHALEM.map((c) => ({ ...c, exitTicks: 0 }));
  const periods = (gapUs: number, count: number) =>
    Array.from({ length: count }, (_, k) => gapUs + k * (gapUs + 1));

  /** The C-state the processor picks after `count` idle periods of `gapUs`, with the timer `timerUs` away. */
  function chosenAfter(gapUs: number, count: number, timerUs: number): number {
    const { kernel, regions, state } = machine({
      processors: 1,
      idleMode: IdleMode.menu,
      timerUs,
      cstates: instant,
    });
    const ticks = periods(gapUs, count);
    const last = ticks.at(-1) ?? 0;
    kernel.run(regions, work(0, ticks), 0, last + 2);
    expect(state(0, State.backlog)).toBe(0);
    expect(state(0, State.idleTicks), "idle again since the last unit ran").toBe(1);
    return state(0, State.cstate);
  }

  it("before any idle period, only the timer predicts: 4000 us takes C6 (800 <= 4000)", () => {
    const { state } = machine({ processors: 1, idleMode: IdleMode.menu, cstates: instant });
    expect(state(0, State.cstate)).toBe(C6);
  });

  it("eight idle periods of 50 us predict 50 us, sooner than the timer: C1E (20 <= 50 < 80)", () => {
    expect(chosenAfter(50, 8, 4000)).toBe(C1E);
  });

  it("eight of 100 us take C3 (80 <= 100 < 800); eight of 10 us take C1 (6 <= 10 < 20)", () => {
    expect(chosenAfter(100, 8, 4000)).toBe(C3);
    expect(chosenAfter(10, 8, 4000)).toBe(C1);
  });

  it("a typical interval longer than the timer leaves the timer to decide", () => {
    // Typical 1000 us, timer 50 us: C1E.
    expect(chosenAfter(1000, 8, 50)).toBe(C1E);
    // Typical 1000 us, timer 4000 us: C6.
    expect(chosenAfter(1000, 8, 4000)).toBe(C6);
  });
});

describe("a parked processor sleeps in the deepest C-state", () => {
  it("goes back to C6 after an interrupt's work, though its idle mode is halt", () => {
    const { kernel, regions, state, counter } = machine({ processors: 2 });
    expect(state(1, State.cstate), "halt: idle in C1").toBe(C1);
    kernel.setParked(regions, 1, true);
    expect(state(1, State.cstate), "parked while idle: C6 at once").toBe(C6);
    // An interrupt for processor 1 at tick 10: it wakes from C6 (200 ticks,
    // 10 to 210), runs its unit (210 to 211) and sleeps again until 1000.
    kernel.run(regions, work(1, [10]), 0, 1000);
    expect(state(1, State.cstate)).toBe(C6);
    expect(counter(1, Counter.waking)).toBe(200n);
    expect(counter(1, Counter.busy)).toBe(1n);
    expect(counter(1, Counter.cstate + C6)).toBe(10n + 789n);
    expect(counter(1, Counter.cstate + C1)).toBe(0n);
    // The unparked one stays in C1 all along.
    expect(state(0, State.cstate)).toBe(C1);
    expect(counter(0, Counter.cstate + C1)).toBe(1000n);
  });

  it("in menu mode too: short idle periods do not keep a parked processor shallow", () => {
    const { kernel, regions, state } = machine({ processors: 1, idleMode: IdleMode.menu });
    kernel.setParked(regions, 0, true);
    // Work every 250 ticks: each wake from C6 takes 200, the unit 1, then 49 idle.
    const ticks = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((k) => 50 + 250 * k);
    kernel.run(regions, work(0, ticks), 0, 2600);
    expect(state(0, State.backlog)).toBe(0);
    expect(state(0, State.cstate)).toBe(C6);
  });
});

describe("placement: least work queued, then the shallowest sleep, then the lowest number", () => {
  it("sends a thread to the processor in C1 rather than to lower-numbered ones in C6", () => {
    const { kernel, regions, state, counter } = machine({ processors: 3 });
    // Parked and unparked again while idle: processors 0 and 1 stay in C6
    // until they next go idle; processor 2 is in C1 (halt).
    for (const p of [0, 1]) {
      kernel.setParked(regions, p, true);
      kernel.setParked(regions, p, false);
    }
    expect([0, 1, 2].map((p) => state(p, State.cstate))).toEqual([C6, C6, C1]);
    kernel.run(regions, work(ANY, [5]), 0, 100);
    expect([0, 1, 2].map((p) => counter(p, Counter.arrivals))).toEqual([0n, 0n, 1n]);
    // Processor 2: C1 for ticks 0-5, waking 3 (5-8), the unit (8-9), C1 again to 100.
    expect(counter(2, Counter.waking)).toBe(3n);
    expect(counter(2, Counter.cstate + C1)).toBe(5n + 91n);
  });

  it("less work queued comes first, however deep the sleep; equal sleepers go by number", () => {
    const { kernel, regions, counter } = machine({ processors: 3 });
    kernel.setParked(regions, 0, true);
    kernel.setParked(regions, 0, false);
    // Processor 1 gets five ticks of work at tick 0: it wakes from C1 (0-3)
    // and has run one tick of it by tick 4, four left (4096 units).
    kernel.run(regions, Uint32Array.of(0, 5 * FULL_SPEED, 1, 0), 0, 4);
    // At tick 4: processor 0 (C6, nothing queued) and 2 (C1, nothing queued)
    // tie on work; C1 is shallower, so 2 takes the first thread.
    kernel.run(regions, work(ANY, [4]), 4, 1);
    expect([0, 1, 2].map((p) => counter(p, Counter.arrivals))).toEqual([0n, 1n, 1n]);
    // At tick 5 processor 2 is waking (2 ticks left, 2048 units' worth) and
    // processor 1 has 3072 units left: processor 0, asleep in C6 with
    // nothing queued, takes the next.
    kernel.run(regions, work(ANY, [5]), 5, 1);
    expect([0, 1, 2].map((p) => counter(p, Counter.arrivals))).toEqual([1n, 1n, 1n]);
  });

  it("between equal sleepers, the lowest number", () => {
    const { kernel, regions, counter } = machine({ processors: 3 });
    kernel.run(regions, work(ANY, [7]), 0, 10);
    expect([0, 1, 2].map((p) => counter(p, Counter.arrivals))).toEqual([1n, 0n, 0n]);
  });
});
