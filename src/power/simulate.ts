import { MemoryLayout } from "../memory/layout.js";
import {
  ANY,
  Counter,
  FULL_SPEED,
  IdleMode,
  PowerKernel,
  type PowerRegions,
  powerRegionBytes,
} from "../wasm/power.js";
import { PowerConfigError } from "./errors.js";
import { EVENT_INTERRUPT, LoadGenerator, type LoadSpec } from "./load.js";
import { checkParking, type ParkingParameters, parkingStep } from "./parking.js";
import {
  checkProcessorModel,
  logicalProcessors,
  numaNodeOf,
  type ProcessorModel,
} from "./processors.js";
import { type VmqLoad, vmqInterrupts } from "./vmq.js";

/** How idle processors that are not parked pick their C-state. */
export type IdlePolicy = keyof typeof IdleMode;

/** A power policy: parking or not, the idle-state choice, and the P-state work runs at. */
export interface PowerPolicy {
  readonly name: string;
  /** Core parking parameters, or null for no parking. */
  readonly parking: ParkingParameters | null;
  /** "halt": C-state 0 only; "menu": Linux's menu governor; "deepest": always the deepest. */
  readonly idle: IdlePolicy;
  /** Index of the P-state running work uses (0: the fastest, race-to-idle). */
  readonly pstate: number;
}

/** A simulation: a machine, a load, a policy, on virtual time. */
export interface SimulationSpec {
  readonly model: ProcessorModel;
  readonly load: LoadSpec;
  readonly policy: PowerPolicy;
  /** A VMQ NIC whose queue interrupts land on the processors. */
  readonly vmq?: VmqLoad;
  readonly durationS: number;
  /** Virtual time one tick stands for, us. */
  readonly tickUs: number;
  /** The parking engine's check interval, ms. */
  readonly checkMs: number;
  /** The menu governor's next-timer horizon, us. */
  readonly timerUs: number;
  readonly seed: number;
}

/** Defaults of a simulation's timing (assumed, named in docs/power.md). */
export const DEFAULT_TIMING = {
  durationS: 2,
  tickUs: 10,
  checkMs: 50,
  // A 250 Hz scheduler tick: the next timer an idle processor knows of.
  timerUs: 4000,
  seed: 1,
} as const;

/** Most processor-ticks one simulation runs (about 20 s of kernel time). */
export const MAX_PROCESSOR_TICKS = 4e9;

/** Time and energy of one state over the whole run, summed over processors. */
export interface StateResidency {
  /** "running P0", "waking", a C-state's name, or "platform". */
  readonly state: string;
  /** Processor-seconds in the state (for "platform": the run's length). */
  readonly seconds: number;
  /** Watts of one processor in the state (a preset). */
  readonly watts: number;
  readonly joules: number;
  /** Share of all processor time, 0-1 (platform: 1). */
  readonly share: number;
}

/** One check of the parking engine. */
export interface TimelinePoint {
  readonly timeS: number;
  readonly unparked: number;
  /** Unparked processors of each NUMA node. */
  readonly unparkedByNode: readonly number[];
  /** Processors-worth of work done in the interval (busy and waking). */
  readonly load: number;
}

/** Added latency: how long arriving work waited for its processor to wake. */
export interface AddedLatency {
  readonly arrivals: number;
  readonly wakeups: number;
  /** Wake-ups of processors that were parked. */
  readonly parkedWakeups: number;
  /** Directed interrupts that landed on a parked processor. */
  readonly interruptsOnParked: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
}

/** What a simulation measured. */
export interface SimulationResult {
  readonly processor: string;
  readonly policy: string;
  readonly processors: number;
  readonly seconds: number;
  readonly energyJ: number;
  readonly meanWatts: number;
  /** Mean processors-worth of work, 0 to processors. */
  readonly meanLoad: number;
  readonly meanUnparked: number;
  readonly residency: readonly StateResidency[];
  readonly latency: AddedLatency;
  readonly timeline: readonly TimelinePoint[];
  /** Where the watts come from: always a preset or the user's table. */
  readonly wattsSource: string;
}

/** A percentile of a 1 us histogram, us (the last bucket reads as its lower edge). */
export function histogramPercentile(hist: readonly number[], p: number): number {
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  const rank = Math.ceil(p * total);
  let seen = 0;
  for (const [us, count] of hist.entries()) {
    seen += count;
    if (seen >= rank) return us;
  }
  return hist.length - 1;
}

/**
 * Checks a simulation before it runs.
 *
 * @throws PowerConfigError naming the value that is out of range.
 */
export function checkSimulation(spec: SimulationSpec): void {
  checkProcessorModel(spec.model);
  if (spec.policy.parking) checkParking(spec.policy.parking);
  if (!(spec.policy.idle in IdleMode)) {
    throw new PowerConfigError(`idle policy '${spec.policy.idle}' must be halt, menu or deepest`);
  }
  const { pstate } = spec.policy;
  if (!Number.isSafeInteger(pstate) || pstate < 0 || pstate >= spec.model.pstates.length) {
    throw new PowerConfigError(
      `P-state ${pstate}: processor '${spec.model.name}' has P-states 0 to ${spec.model.pstates.length - 1}`,
    );
  }
  if (!(spec.tickUs > 0) || spec.tickUs > 1e6 || Math.round(spec.tickUs * 1000) < 1) {
    throw new PowerConfigError(`tick ${spec.tickUs} us must be from 0.001 to 1e6 us`);
  }
  if (!(spec.durationS > 0) || spec.durationS > 1e6) {
    throw new PowerConfigError(`duration ${spec.durationS} s must be above 0 and at most 1e6`);
  }
  if (!(spec.checkMs > 0) || spec.checkMs * 1000 < spec.tickUs || spec.checkMs > 1e6) {
    throw new PowerConfigError(
      `check interval ${spec.checkMs} ms must be at least one tick (${spec.tickUs} us) and at most 1e6 ms`,
    );
  }
  if (!(spec.timerUs >= 0 && spec.timerUs <= 1e9)) {
    throw new PowerConfigError(`timer ${spec.timerUs} us must be from 0 to 1e9`);
  }
  if (!Number.isSafeInteger(spec.seed) || spec.seed < 0 || spec.seed > 2 ** 32 - 1) {
    throw new PowerConfigError(`seed ${spec.seed} must be a whole number from 0 to 2^32 - 1`);
  }
  const ticks = Math.round((spec.durationS * 1e6) / spec.tickUs);
  if (ticks < 1 || ticks > 2 ** 32 - 1) {
    throw new PowerConfigError(`${ticks} ticks (duration / tick) must be from 1 to 2^32 - 1`);
  }
  const processorTicks = ticks * logicalProcessors(spec.model);
  if (processorTicks > MAX_PROCESSOR_TICKS) {
    throw new PowerConfigError(
      `${processorTicks.toExponential(2)} processor-ticks is more than ${MAX_PROCESSOR_TICKS.toExponential(0)}: shorten the duration or lengthen the tick`,
    );
  }
}

/** Most events handed to the kernel in one call. */
const EVENT_CHUNK = 65_536;

/**
 * Runs one simulation: the load's arrivals go to the power kernel check
 * interval by check interval; between intervals the parking engine reads
 * each processor's utilization and parks or unparks, node by node.
 *
 * @throws PowerConfigError for a bad spec, before anything runs.
 */
export function simulate(spec: SimulationSpec): SimulationResult {
  checkSimulation(spec);
  const { model, policy } = spec;
  const n = logicalProcessors(model);
  const interrupts = spec.vmq ? vmqInterrupts(spec.vmq, n) : [];
  const load: LoadSpec = { ...spec.load, interrupts: [...spec.load.interrupts, ...interrupts] };
  const generator = new LoadGenerator(load, n, spec.tickUs, spec.seed, ANY);
  const tickNs = Math.round(spec.tickUs * 1000);
  const totalTicks = Math.round((spec.durationS * 1e6) / spec.tickUs);
  const ticksPerCheck = Math.max(1, Math.round((spec.checkMs * 1000) / spec.tickUs));
  const peakEvents = (generator.peakRatePerSecond() * spec.checkMs) / 1000;
  if (peakEvents > 5e6) {
    throw new PowerConfigError(
      `the load brings about ${Math.round(peakEvents)} arrivals per check interval (at most 5e6): lengthen the service time`,
    );
  }

  const layout = new MemoryLayout();
  const bytes = powerRegionBytes(n, EVENT_CHUNK);
  const regions: PowerRegions = {
    config: layout.allocate("power config", bytes.config),
    states: layout.allocate("power states", bytes.states),
    counters: layout.allocate("power counters", bytes.counters),
    histogram: layout.allocate("power latency histogram", bytes.histogram),
    events: layout.allocate("power events", bytes.events),
  };
  const kernel = PowerKernel.on(layout.memory);
  const maxMhz = model.pstates[0]?.mhz ?? 1;
  const pstate = model.pstates[policy.pstate];
  if (!pstate) throw new PowerConfigError(`no P-state ${policy.pstate}`);
  const speed = Math.max(1, Math.round((FULL_SPEED * pstate.mhz) / maxMhz));
  kernel.init(regions, {
    processors: n,
    idleMode: IdleMode[policy.idle],
    speed,
    tickNs,
    timerUs: Math.round(spec.timerUs),
    cstates: model.cstates.map((c) => ({
      exitTicks: Math.round((c.exitLatencyUs * 1000) / tickNs),
      exitNs: Math.round(c.exitLatencyUs * 1000),
      residencyUs: Math.round(c.targetResidencyUs),
    })),
  });

  const nodes = Array.from({ length: model.numaNodes }, () => [] as number[]);
  for (let p = 0; p < n; p++) nodes[numaNodeOf(model, p)]?.push(p);
  const unparked = new Array<boolean>(n).fill(true);
  const sinceChange = new Array<number>(model.numaNodes).fill(0);
  let previous = kernel.counters(regions);
  const timeline: TimelinePoint[] = [];
  let parkedWakeups = 0;
  let interruptsOnParked = 0;

  for (let from = 0; from < totalTicks; from += ticksPerCheck) {
    const ticks = Math.min(ticksPerCheck, totalTicks - from);
    const unparkedList = unparked.flatMap((u, p) => (u ? [p] : []));
    const events = generator.events(from, ticks, unparkedList, FULL_SPEED);
    for (let e = 0; e < events.length; e += 4) {
      if (events[e + 3] === EVENT_INTERRUPT && !unparked[events[e + 2] as number]) {
        interruptsOnParked++;
      }
    }
    // The kernel takes at most EVENT_CHUNK events a call: split the span
    // at the tick of the first event a call cannot take.
    const count = events.length / 4;
    for (let at = from, first = 0; at < from + ticks; ) {
      let end = Math.min(count, first + EVENT_CHUNK);
      const until = end < count ? (events[end * 4] as number) : from + ticks;
      while (end > first && (events[(end - 1) * 4] as number) >= until) end--;
      if (until === at && end === first) {
        throw new PowerConfigError(
          `more than ${EVENT_CHUNK} arrivals in one tick at ${at}: shorten the tick`,
        );
      }
      kernel.run(regions, events.subarray(first * 4, end * 4), at, until - at);
      first = end;
      at = until;
    }
    const now = kernel.counters(regions);
    const utilization = new Array<number>(n);
    let work = 0;
    for (let p = 0; p < n; p++) {
      const base = p * 12;
      const delta = (slot: number) =>
        Number((now[base + slot] ?? 0n) - (previous[base + slot] ?? 0n));
      const busy = delta(Counter.busy) + delta(Counter.waking);
      utilization[p] = busy / ticks;
      work += busy / ticks;
      if (!unparked[p]) parkedWakeups += delta(Counter.wakeups);
    }
    previous = now;
    timeline.push({
      timeS: ((from + ticks) * spec.tickUs) / 1e6,
      unparked: unparked.filter(Boolean).length,
      unparkedByNode: nodes.map((members) => members.filter((p) => unparked[p]).length),
      load: work,
    });
    if (!policy.parking) continue;
    for (const [node, members] of nodes.entries()) {
      const next = parkingStep(
        policy.parking,
        members.map((p) => utilization[p] ?? 0),
        members.map((p) => unparked[p] ?? true),
        (sinceChange[node] ?? 0) + 1,
      );
      let changed = false;
      for (const [i, p] of members.entries()) {
        if (next[i] === unparked[p]) continue;
        changed = true;
        unparked[p] = next[i] ?? true;
        kernel.setParked(regions, p, !unparked[p]);
      }
      sinceChange[node] = changed ? 0 : (sinceChange[node] ?? 0) + 1;
    }
  }

  const counters = kernel.counters(regions);
  const hist = Array.from(kernel.histogram(regions), Number);
  const seconds = (totalTicks * spec.tickUs) / 1e6;
  const tickS = spec.tickUs / 1e6;
  const sum = (slot: number) => {
    let total = 0;
    for (let p = 0; p < n; p++) total += Number(counters[p * 12 + slot] ?? 0n);
    return total;
  };
  const allTicks = totalTicks * n;
  const row = (state: string, ticks: number, watts: number): StateResidency => ({
    state,
    seconds: ticks * tickS,
    watts,
    joules: ticks * tickS * watts,
    share: ticks / allTicks,
  });
  const residency: StateResidency[] = [
    row(`running ${pstate.name}`, sum(Counter.busy), pstate.watts),
    // Waking: the processor is back in C0 paying the exit latency (assumed at running watts).
    row("waking", sum(Counter.waking), pstate.watts),
    ...model.cstates.map((c, i) => row(c.name, sum(Counter.cstate + i), c.watts)),
    {
      state: "platform",
      seconds,
      watts: model.platformWatts,
      joules: seconds * model.platformWatts,
      share: 1,
    },
  ];
  const energyJ = residency.reduce((a, r) => a + r.joules, 0);
  const arrivals = sum(Counter.arrivals);
  const latencySum = hist.reduce((a, count, us) => a + count * us, 0);
  return {
    processor: model.name,
    policy: policy.name,
    processors: n,
    seconds,
    energyJ,
    meanWatts: energyJ / seconds,
    meanLoad: (sum(Counter.busy) + sum(Counter.waking)) / totalTicks,
    meanUnparked: timeline.reduce((a, t) => a + t.unparked, 0) / Math.max(1, timeline.length),
    residency,
    latency: {
      arrivals,
      wakeups: sum(Counter.wakeups),
      parkedWakeups,
      interruptsOnParked,
      meanUs: arrivals === 0 ? 0 : latencySum / arrivals,
      p50Us: histogramPercentile(hist, 0.5),
      p99Us: histogramPercentile(hist, 0.99),
      p999Us: histogramPercentile(hist, 0.999),
    },
    timeline,
    wattsSource: `watts are presets, not measurements (processor '${model.name}': ${model.source})`,
  };
}
