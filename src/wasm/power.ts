import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/power.ts. */
export interface PowerExports {
  init(config: number, states: number, counters: number, hist: number): void;
  setParked(config: number, states: number, p: number, parked: number): void;
  run(
    config: number,
    states: number,
    counters: number,
    hist: number,
    events: number,
    count: number,
    from: number,
    ticks: number,
  ): number;
}

/*
 * The layout assembly/power.ts draws; the module exports it as LAYOUT_
 * globals and {@link PowerKernel} refuses a module that differs.
 */
/** Bytes of the config block. */
export const CONFIG_BYTES = 160;
/** Bytes of one processor's state. */
export const STATE_BYTES = 64;
/** Bytes of one processor's counters: ten u64 tick counts, wake-ups, arrivals. */
export const COUNTER_BYTES = 96;
/** Bytes of one event: tick, work units, target, flags (u32 each). */
export const EVENT_BYTES = 16;
/** Buckets of the added-latency histogram, 1 us each (the last holds everything above). */
export const HIST_BUCKETS = 4096;
/** Most C-states a processor model has. */
export const MAX_CSTATES = 8;
/** Event target: any unparked processor (the scheduler places the thread). */
export const ANY = 0xffffffff;
/** Work units one tick at the highest P-state does. */
export const FULL_SPEED = 1024;
/** u64 slots of a processor's counters, by name. */
export const Counter = {
  busy: 0,
  waking: 1,
  /** Ticks in C-state i are at slot cstate + i. */
  cstate: 2,
  wakeups: 10,
  arrivals: 11,
} as const;
/** u32 slots of a processor's state, by name. */
export const State = {
  backlog: 0,
  wakeLeft: 1,
  cstate: 2,
  idleTicks: 3,
  parked: 4,
  historyPos: 5,
  /** The tick the state stands at (the end of the last run). */
  clock: 6,
  history: 8,
} as const;
/** The `cstate` slot of a processor that is not idle. */
export const RUNNING = 0xffffffff;

/** How idle processors pick their C-state. */
export const IdleMode = { halt: 0, menu: 1, deepest: 2 } as const;

/** One C-state as the kernel sees it. */
export interface KernelCState {
  /** Ticks a wake from it blocks the processor (exit latency, rounded to ticks). */
  readonly exitTicks: number;
  /** Exit latency in ns: the latency recorded for work that waits on it. */
  readonly exitNs: number;
  /** Target residency in us (the menu governor's break-even). */
  readonly residencyUs: number;
}

/** The machine the kernel runs: written once into the config block. */
export interface KernelConfig {
  readonly processors: number;
  readonly idleMode: (typeof IdleMode)[keyof typeof IdleMode];
  /** Work units done per running tick ({@link FULL_SPEED} at P0). */
  readonly speed: number;
  readonly tickNs: number;
  /** The menu governor's next-timer horizon, us. */
  readonly timerUs: number;
  readonly cstates: readonly KernelCState[];
}

/** Where one machine's kernel state lives in the shared memory. */
export interface PowerRegions {
  readonly config: Region;
  readonly states: Region;
  readonly counters: Region;
  readonly histogram: Region;
  readonly events: Region;
}

/** The bytes each region needs for `processors` processors and up to `maxEvents` events per run. */
export function powerRegionBytes(processors: number, maxEvents: number) {
  return {
    config: CONFIG_BYTES,
    states: processors * STATE_BYTES,
    counters: processors * COUNTER_BYTES,
    histogram: HIST_BUCKETS * 8,
    events: Math.max(1, maxEvents) * EVENT_BYTES,
  };
}

const U32_MAX = 0xffffffff;

function whole(value: number, min: number, max: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${what} must be a whole number from ${min} to ${max}, not ${value}`);
  }
}

/**
 * Typed, bounds-checked calls into the power kernel. Every region is checked
 * against the machine's size, and every event against the span it runs,
 * before wasm runs.
 */
export class PowerKernel {
  private processors = 0;
  private cstates = 0;
  private clock = 0;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: PowerExports,
  ) {
    checkKernelLayout("power", k, {
      CONFIG_BYTES,
      STATE_BYTES,
      COUNTER_BYTES,
      EVENT_BYTES,
      HIST_BUCKETS,
      MAX_CSTATES,
      ANY,
      STATE_CLOCK: State.clock * 4,
      COUNTER_WAKEUPS: Counter.wakeups * 8,
    });
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): PowerKernel {
    return new PowerKernel(memory, instantiateKernel<PowerExports>(compileKernel("power"), memory));
  }

  /** Writes the machine into the config block and puts every processor idle and unparked. */
  init(regions: PowerRegions, config: KernelConfig): void {
    whole(config.processors, 1, 4096, "processors");
    whole(config.cstates.length, 1, MAX_CSTATES, "C-state count");
    whole(config.idleMode, 0, 2, "idle mode");
    whole(config.speed, 1, FULL_SPEED, "speed");
    whole(config.tickNs, 1, 1e9, "tick (ns)");
    whole(config.timerUs, 0, U32_MAX, "timer (us)");
    for (const [i, c] of config.cstates.entries()) {
      whole(c.exitTicks, 0, 1e6, `C-state ${i} exit ticks`);
      whole(c.exitNs, 0, U32_MAX, `C-state ${i} exit latency (ns)`);
      whole(c.residencyUs, 0, U32_MAX, `C-state ${i} target residency (us)`);
    }
    const bytes = powerRegionBytes(config.processors, 1);
    const at = regions.config.check(0, CONFIG_BYTES, "power config");
    regions.states.check(0, bytes.states, `state of ${config.processors} processors`);
    regions.counters.check(0, bytes.counters, `counters of ${config.processors} processors`);
    regions.histogram.check(0, bytes.histogram, "latency histogram");
    const words = new Uint32Array(CONFIG_BYTES / 4);
    words.set([config.processors, config.cstates.length, config.idleMode, config.speed]);
    words.set([config.tickNs, config.timerUs], 4);
    for (const [i, c] of config.cstates.entries()) {
      words.set([c.exitTicks, c.exitNs, c.residencyUs], 8 + 4 * i);
    }
    this.write(at, words);
    this.processors = config.processors;
    this.cstates = config.cstates.length;
    this.clock = 0;
    this.k.init(
      regions.config.offset,
      regions.states.offset,
      regions.counters.offset,
      regions.histogram.offset,
    );
  }

  private ready(): void {
    if (this.processors === 0) throw new Error("power kernel: init() was not called");
  }

  /** Parks or unparks processor `p`. */
  setParked(regions: PowerRegions, p: number, parked: boolean): void {
    this.ready();
    whole(p, 0, this.processors - 1, "processor");
    regions.states.check(p * STATE_BYTES, STATE_BYTES, `state of processor ${p}`);
    this.k.setParked(regions.config.offset, regions.states.offset, p, parked ? 1 : 0);
  }

  /**
   * Runs ticks [from, from + ticks), `from` being where the last run ended
   * (0 after init). `events` holds 4 u32 per event (tick,
   * work units, target, flags), sorted by tick, every tick inside the span,
   * every target a processor or {@link ANY}, every work at least one unit.
   */
  run(regions: PowerRegions, events: Uint32Array, from: number, ticks: number): void {
    this.ready();
    whole(from, 0, U32_MAX, "first tick");
    whole(ticks, 0, U32_MAX - from, "ticks");
    if (from !== this.clock) {
      throw new RangeError(
        `a run must start where the last ended, at tick ${this.clock}, not ${from}`,
      );
    }
    if (events.length % 4 !== 0) {
      throw new RangeError(`events hold 4 words each, not ${events.length} words`);
    }
    const count = events.length / 4;
    let last = from;
    let any = false;
    for (let i = 0; i < count; i++) {
      const tick = events[i * 4] as number;
      const work = events[i * 4 + 1] as number;
      const target = events[i * 4 + 2] as number;
      if (tick < last || tick >= from + ticks) {
        throw new RangeError(
          `event ${i} at tick ${tick} is out of order or outside ticks [${from}, ${from + ticks})`,
        );
      }
      if (work === 0) throw new RangeError(`event ${i} brings no work`);
      if (target === ANY) any = true;
      else if (target >= this.processors) {
        throw new RangeError(`event ${i} targets processor ${target} of ${this.processors}`);
      }
      last = tick;
    }
    if (any && this.unparked(regions) === 0) {
      throw new RangeError("unaffinitized work arrives while every processor is parked");
    }
    const at = regions.events.check(0, events.byteLength, `${count} events`);
    this.write(at, events);
    this.k.run(
      regions.config.offset,
      regions.states.offset,
      regions.counters.offset,
      regions.histogram.offset,
      at,
      count,
      from,
      ticks,
    );
    this.clock = from + ticks;
  }

  /** Copies u32 words little-endian to `at` (regions need no alignment). */
  private write(at: number, words: Uint32Array): void {
    const view = new DataView(this.memory.buffer, at, words.byteLength);
    for (let i = 0; i < words.length; i++) view.setUint32(i * 4, words[i] as number, true);
  }

  private readU32(at: number, count: number): Uint32Array {
    const view = new DataView(this.memory.buffer, at, count * 4);
    return Uint32Array.from({ length: count }, (_, i) => view.getUint32(i * 4, true));
  }

  private readU64(at: number, count: number): BigUint64Array {
    const view = new DataView(this.memory.buffer, at, count * 8);
    return BigUint64Array.from({ length: count }, (_, i) => view.getBigUint64(i * 8, true));
  }

  /** How many processors are unparked. */
  unparked(regions: PowerRegions): number {
    const words = this.stateWords(regions);
    let n = 0;
    for (let p = 0; p < this.processors; p++) {
      if (words[p * (STATE_BYTES / 4) + State.parked] === 0) n++;
    }
    return n;
  }

  /** A copy of every processor's state (16 u32 each, slots named by {@link State}). */
  stateWords(regions: PowerRegions): Uint32Array {
    this.ready();
    const at = regions.states.check(0, this.processors * STATE_BYTES, "processor states");
    return this.readU32(at, (this.processors * STATE_BYTES) / 4);
  }

  /** A copy of every processor's counters (12 u64 each, slots named by {@link Counter}). */
  counters(regions: PowerRegions): BigUint64Array {
    this.ready();
    const at = regions.counters.check(0, this.processors * COUNTER_BYTES, "processor counters");
    return this.readU64(at, (this.processors * COUNTER_BYTES) / 8);
  }

  /** A copy of the added-latency histogram (1 us buckets). */
  histogram(regions: PowerRegions): BigUint64Array {
    this.ready();
    const at = regions.histogram.check(0, HIST_BUCKETS * 8, "latency histogram");
    return this.readU64(at, HIST_BUCKETS);
  }

  /** C-states of the machine last initialised. */
  get cstateCount(): number {
    return this.cstates;
  }
}
