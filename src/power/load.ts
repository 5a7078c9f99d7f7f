import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import { PowerConfigError } from "./errors.js";
import { traceLoad, type UtilizationTrace } from "./trace.js";

/** How the unaffinitized load varies on virtual time. */
export const LOAD_PATTERNS = ["constant", "poisson", "diurnal", "bursty", "trace"] as const;
/** A load pattern's name. */
export type LoadPattern = (typeof LOAD_PATTERNS)[number];

/** Threads pinned to one processor (affinitized): Poisson arrivals. */
export interface PinnedLoad {
  readonly processor: number;
  /** Share of that processor's time they take, 0-1. */
  readonly utilization: number;
}

/** A directed interrupt source (a VMQ queue's interrupt, a timer): Poisson arrivals. */
export interface InterruptSource {
  /** The processor its interrupts go to, or "unparked" to be steered to the unparked ones. */
  readonly processor: number | "unparked";
  /** Which source it is (a VMQ queue's index), for steering. */
  readonly index: number;
  readonly ratePerSecond: number;
  /** Processor time one interrupt takes, us. */
  readonly serviceUs: number;
}

/** The load a machine runs. */
export interface LoadSpec {
  readonly pattern: LoadPattern;
  /**
   * Unaffinitized load as a share of all logical processors, 0-1: the mean
   * (constant, poisson), the peak (diurnal) or the level while on (bursty).
   */
  readonly utilization: number;
  /** The trough (diurnal) or the level while off (bursty), 0-1. */
  readonly low: number;
  /** One day (diurnal) or one on/off cycle (bursty), s. */
  readonly periodS: number;
  /** Share of a bursty cycle spent on, 0-1. */
  readonly duty: number;
  /** Processor time one thread runs for at P0, us. */
  readonly serviceUs: number;
  readonly pinned: readonly PinnedLoad[];
  readonly interrupts: readonly InterruptSource[];
  /** The utilization trace replayed (pattern "trace"). */
  readonly trace?: UtilizationTrace;
}

/** The default load: 30 % of the machine, Poisson arrivals of 1 ms threads. */
export const DEFAULT_LOAD: LoadSpec = {
  pattern: "poisson",
  utilization: 0.3,
  low: 0.1,
  periodS: 1,
  duty: 0.3,
  serviceUs: 1000,
  pinned: [],
  interrupts: [],
};

/** Event flag: the work is a directed interrupt. */
export const EVENT_INTERRUPT = 1;

function fraction(value: number, what: string): void {
  if (!(value >= 0 && value <= 1)) {
    throw new PowerConfigError(`${what} ${value} is not a share from 0 to 1`);
  }
}

/**
 * Checks a load against a machine of `processors` processors.
 *
 * @throws PowerConfigError naming the value.
 */
export function checkLoad(load: LoadSpec, processors: number): void {
  if (!LOAD_PATTERNS.includes(load.pattern)) {
    throw new PowerConfigError(
      `unknown load pattern '${load.pattern}' (${LOAD_PATTERNS.join(", ")})`,
    );
  }
  fraction(load.utilization, "utilization");
  fraction(load.low, "low utilization");
  fraction(load.duty, "duty cycle");
  if (!(load.periodS > 0 && load.periodS <= 1e7)) {
    throw new PowerConfigError(`period ${load.periodS} s must be above 0 and at most 1e7`);
  }
  if (!(load.serviceUs >= 1 && load.serviceUs <= 1e7)) {
    throw new PowerConfigError(`service time ${load.serviceUs} us must be from 1 to 1e7`);
  }
  if (load.pattern === "trace" && !load.trace) {
    throw new PowerConfigError("the trace pattern needs a trace");
  }
  if (load.trace && load.trace.columns !== "total" && load.trace.columns > processors) {
    throw new PowerConfigError(
      `the trace has ${load.trace.columns} processors but the machine has ${processors}`,
    );
  }
  for (const p of load.pinned) {
    if (!Number.isSafeInteger(p.processor) || p.processor < 0 || p.processor >= processors) {
      throw new PowerConfigError(
        `pinned load on processor ${p.processor}: the machine has processors 0 to ${processors - 1}`,
      );
    }
    fraction(p.utilization, `pinned utilization of processor ${p.processor}`);
  }
  for (const i of load.interrupts) {
    if (
      i.processor !== "unparked" &&
      (!Number.isSafeInteger(i.processor) || i.processor < 0 || i.processor >= processors)
    ) {
      throw new PowerConfigError(
        `interrupts to processor ${i.processor}: the machine has processors 0 to ${processors - 1}`,
      );
    }
    if (!(i.ratePerSecond >= 0 && i.ratePerSecond <= 1e7)) {
      throw new PowerConfigError(`interrupt rate ${i.ratePerSecond}/s must be from 0 to 1e7`);
    }
    if (!(i.serviceUs >= 0.001 && i.serviceUs <= 1e6)) {
      throw new PowerConfigError(
        `interrupt service time ${i.serviceUs} us must be from 0.001 to 1e6`,
      );
    }
  }
}

interface Stream {
  /** Next candidate arrival, us of virtual time. */
  next: number;
  /** Arrivals per us at time t. */
  readonly rate: (t: number) => number;
  /** The most arrivals per us `rate` ever gives: candidates come at this rate. */
  readonly peak: number;
  readonly poisson: boolean;
  readonly workUs: number;
  readonly target: (unparked: readonly number[]) => number;
  readonly flags: number;
}

/**
 * Turns a load into arrivals, interval by interval, on virtual time: each
 * source is a stream of arrivals (evenly spaced for "constant", Poisson
 * otherwise), seeded. A Poisson stream whose rate varies over time
 * (diurnal, bursty, trace) is drawn by thinning (Lewis and Shedler,
 * "Simulation of nonhomogeneous Poisson processes by thinning", Naval
 * Research Logistics Quarterly 26(3), 1979): candidates arrive at the
 * stream's peak rate and each is kept with probability rate(t) / peak.
 * Drawing each gap at the rate where it starts instead is biased: a gap
 * drawn where the rate is near zero (a diurnal trough at 0) can jump past
 * the whole period.
 */
export class LoadGenerator {
  private readonly streams: Stream[] = [];
  private readonly rng;

  constructor(
    private readonly load: LoadSpec,
    private readonly processors: number,
    private readonly tickUs: number,
    seed: number,
    /** Where an unaffinitized thread goes: the kernel's ANY. */
    any: number,
  ) {
    checkLoad(load, processors);
    this.rng = xoroshiro128plus(seed);
    const perUs = (u: number, serviceUs: number) => u / serviceUs;
    const { serviceUs } = load;
    // The unaffinitized level never exceeds the larger of the peak and the
    // trough, nor (a trace) the whole machine.
    const top =
      load.pattern === "trace"
        ? 1
        : load.pattern === "diurnal" || load.pattern === "bursty"
          ? Math.max(load.utilization, load.low)
          : load.utilization;
    this.streams.push({
      next: 0,
      rate: (t) => perUs(this.level(t) * processors, serviceUs),
      peak: perUs(top * processors, serviceUs),
      poisson: load.pattern !== "constant",
      workUs: serviceUs,
      target: () => any,
      flags: 0,
    });
    for (const p of load.pinned) {
      this.streams.push({
        next: 0,
        rate: () => perUs(p.utilization, serviceUs),
        peak: perUs(p.utilization, serviceUs),
        poisson: true,
        workUs: serviceUs,
        target: () => p.processor,
        flags: 0,
      });
    }
    for (const i of load.interrupts) {
      this.streams.push({
        next: 0,
        rate: () => i.ratePerSecond / 1e6,
        peak: i.ratePerSecond / 1e6,
        poisson: true,
        workUs: i.serviceUs,
        target: (unparked) =>
          i.processor === "unparked"
            ? (unparked[i.index % Math.max(1, unparked.length)] ?? 0)
            : i.processor,
        flags: EVENT_INTERRUPT,
      });
    }
    for (const s of this.streams) s.next = this.gap(s, 0);
  }

  /** The unaffinitized load's level (share of the machine) at time t, us. */
  level(t: number): number {
    const { pattern, utilization, low, periodS, duty, trace } = this.load;
    const periodUs = periodS * 1e6;
    switch (pattern) {
      case "constant":
      case "poisson":
        return utilization;
      case "diurnal":
        return low + ((utilization - low) * (1 - Math.cos((2 * Math.PI * t) / periodUs))) / 2;
      case "bursty":
        return (t % periodUs) / periodUs < duty ? utilization : low;
      case "trace": {
        if (!trace) return 0;
        const s = t / 1e6;
        let lo = 0;
        let hi = trace.times.length - 1;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if ((trace.times[mid] ?? 0) <= s) lo = mid + 1;
          else hi = mid;
        }
        return Math.min(1, traceLoad(trace, lo, this.processors) / this.processors);
      }
    }
  }

  /**
   * The next candidate after one at `t`: evenly spaced (constant, whose
   * rate never changes), or an exponential gap at the stream's peak rate
   * (Poisson). A stream whose peak is 0 never arrives (1 / 0 is Infinity).
   */
  private gap(s: Stream, t: number): number {
    if (!s.poisson) return t + 1 / s.peak;
    if (!(s.peak > 0)) return Number.POSITIVE_INFINITY;
    return t - Math.log(1 - uniformFloat64(this.rng)) / s.peak;
  }

  /**
   * Whether a candidate at `t` arrives: always where the rate is at its
   * peak (so a stream of constant rate draws nothing more), else with
   * probability rate / peak (thinning), never where the rate is 0.
   */
  private keeps(s: Stream, t: number): boolean {
    const rate = s.rate(t);
    if (!s.poisson || rate >= s.peak) return true;
    return uniformFloat64(this.rng) * s.peak < rate;
  }

  /**
   * Arrivals in ticks [from, from + ticks) as kernel events (tick, work
   * units, target, flags), sorted by tick. `unparked` lists the unparked
   * processors, for steered interrupts.
   */
  events(from: number, ticks: number, unparked: readonly number[], fullSpeed: number): Uint32Array {
    const end = (from + ticks) * this.tickUs;
    const out: number[][] = [];
    for (const s of this.streams) {
      const units = Math.max(1, Math.round((s.workUs / this.tickUs) * fullSpeed));
      while (s.next < end) {
        const tick = Math.max(from, Math.floor(s.next / this.tickUs));
        if (this.keeps(s, s.next)) out.push([tick, units, s.target(unparked), s.flags]);
        s.next = this.gap(s, s.next);
      }
    }
    out.sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0));
    const words = new Uint32Array(out.length * 4);
    out.forEach((e, i) => {
      words.set(e, i * 4);
    });
    return words;
  }

  /** Arrivals per second the load brings at most (to size buffers and refuse absurd loads). */
  peakRatePerSecond(): number {
    const { utilization, low, serviceUs } = this.load;
    let rate =
      (Math.max(utilization, low, this.load.trace ? 1 : 0) * this.processors * 1e6) / serviceUs;
    for (const p of this.load.pinned) rate += (p.utilization * 1e6) / serviceUs;
    for (const i of this.load.interrupts) rate += i.ratePerSecond;
    return rate;
  }
}
