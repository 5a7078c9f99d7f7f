import {
  ANY,
  Counter,
  HIST_BUCKETS,
  IdleMode,
  type KernelConfig,
  RUNNING,
  STATE_BYTES,
  State,
} from "../wasm/power.js";

const INTERVALS = 8;
const INTERVALS_N = 8n;
const NO_PREDICTION = 0xffffffff;

interface OracleProcessor {
  backlog: number;
  wakeLeft: number;
  cstate: number;
  idleTicks: number;
  parked: boolean;
  historyPos: number;
  history: number[];
  counters: number[];
}

/**
 * The plain TypeScript oracle for assembly/power.ts: the same state machine
 * over objects, one processor-tick at a time, with the menu governor's
 * typical interval written out as Linux's get_typical_interval reads.
 */
export class PowerOracle {
  readonly processors: OracleProcessor[];
  readonly histogram = new Array<number>(HIST_BUCKETS).fill(0);
  private clock = 0;

  constructor(readonly config: KernelConfig) {
    this.processors = Array.from({ length: config.processors }, () => ({
      backlog: 0,
      wakeLeft: 0,
      cstate: 0,
      idleTicks: 0,
      parked: false,
      historyPos: 0,
      history: new Array<number>(INTERVALS).fill(0),
      counters: new Array<number>(12).fill(0),
    }));
    for (const p of this.processors) this.enterIdle(p);
  }

  /** The menu governor's typical idle interval in us, or 0xffffffff for none. */
  static typicalInterval(history: readonly number[]): number {
    // BigInt: the kernel's sums of squares are u64, past a double's 53 bits.
    let thresh = 0x7fffffff;
    for (;;) {
      const kept = history.filter((v) => v <= thresh);
      const max = Math.max(0, ...kept);
      if (max === 0) return NO_PREDICTION;
      const divisor = BigInt(kept.length);
      const big = kept.map(BigInt);
      const avg = big.reduce((a, b) => a + b, 0n) / divisor;
      const variance = big.reduce((a, v) => a + (v - avg) * (v - avg), 0n) / divisor;
      if ((avg * avg > variance * 36n && divisor * 4n >= INTERVALS_N * 3n) || variance <= 400n) {
        return Number(avg);
      }
      if (divisor * 4n <= INTERVALS_N * 3n) return NO_PREDICTION;
      thresh = max - 1;
    }
  }

  /** The C-state index the menu governor picks for a predicted idle time in us. */
  static menuChoice(config: KernelConfig, predictedUs: number): number {
    let chosen = 0;
    for (let i = 1; i < config.cstates.length; i++) {
      if ((config.cstates[i]?.residencyUs ?? 0) > predictedUs) break;
      chosen = i;
    }
    return chosen;
  }

  private choose(p: OracleProcessor): number {
    const deepest = this.config.cstates.length - 1;
    if (p.parked) return deepest;
    if (this.config.idleMode === IdleMode.halt) return 0;
    if (this.config.idleMode !== IdleMode.menu) return deepest;
    const predicted = Math.min(this.config.timerUs, PowerOracle.typicalInterval(p.history));
    return PowerOracle.menuChoice(this.config, predicted);
  }

  private enterIdle(p: OracleProcessor): void {
    p.cstate = this.choose(p);
    p.idleTicks = 0;
  }

  /** Parks or unparks a processor (an idle one that parks drops to the deepest state). */
  setParked(index: number, parked: boolean): void {
    const p = this.processors[index];
    if (!p) throw new RangeError(`no processor ${index}`);
    p.parked = parked;
    if (parked && p.cstate !== RUNNING) p.cstate = this.config.cstates.length - 1;
  }

  private record(us: number): void {
    const bucket = Math.min(us, HIST_BUCKETS - 1);
    this.histogram[bucket] = (this.histogram[bucket] ?? 0) + 1;
  }

  private place(): number {
    let best = -1;
    let bestKey = Number.POSITIVE_INFINITY;
    for (const [i, p] of this.processors.entries()) {
      if (p.parked) continue;
      const queued = (p.backlog + p.wakeLeft * this.config.speed) * 65_536;
      const sleep =
        p.cstate === RUNNING ? 0 : Math.min(this.config.cstates[p.cstate]?.exitTicks ?? 0, 0xffff);
      if (queued + sleep < bestKey) {
        bestKey = queued + sleep;
        best = i;
      }
    }
    return best;
  }

  private arrive(index: number, work: number): void {
    const p = this.processors[index] as OracleProcessor;
    p.counters[Counter.arrivals] = (p.counters[Counter.arrivals] ?? 0) + 1;
    if (p.cstate !== RUNNING) {
      const idleUs = (BigInt(p.idleTicks) * BigInt(this.config.tickNs)) / 1000n;
      p.history[p.historyPos] = Number(idleUs < 0x3fffffffn ? idleUs : 0x3fffffffn);
      p.historyPos = (p.historyPos + 1) % INTERVALS;
      const state = this.config.cstates[p.cstate];
      if (!state) throw new RangeError(`processor ${index} is in no C-state ${p.cstate}`);
      p.wakeLeft = state.exitTicks;
      p.cstate = RUNNING;
      p.counters[Counter.wakeups] = (p.counters[Counter.wakeups] ?? 0) + 1;
      this.record(Math.ceil(state.exitNs / 1000));
    } else if (p.wakeLeft > 0) {
      this.record(Number((BigInt(p.wakeLeft) * BigInt(this.config.tickNs) + 999n) / 1000n));
    } else {
      this.record(0);
    }
    p.backlog = Math.min(p.backlog + work, 0xffffffff);
  }

  /** Runs ticks [from, from + ticks) with events as the kernel takes them (4 u32 each). */
  run(events: Uint32Array, from: number, ticks: number): void {
    this.clock = from + ticks;
    let next = 0;
    for (let tick = from; tick < from + ticks; tick++) {
      while (next * 4 < events.length && events[next * 4] === tick) {
        let target = events[next * 4 + 2] as number;
        if (target === ANY) target = this.place();
        if (target >= 0) this.arrive(target, events[next * 4 + 1] as number);
        next++;
      }
      for (const p of this.processors) {
        if (p.wakeLeft > 0) {
          p.wakeLeft--;
          p.counters[Counter.waking] = (p.counters[Counter.waking] ?? 0) + 1;
        } else if (p.backlog > 0) {
          p.counters[Counter.busy] = (p.counters[Counter.busy] ?? 0) + 1;
          p.backlog = Math.max(0, p.backlog - this.config.speed);
          if (p.backlog === 0) this.enterIdle(p);
        } else {
          const slot = Counter.cstate + p.cstate;
          p.counters[slot] = (p.counters[slot] ?? 0) + 1;
          p.idleTicks++;
        }
      }
    }
  }

  /** The processors' state in the kernel's layout (16 u32 each). */
  stateWords(): Uint32Array {
    const words = new Uint32Array((this.processors.length * STATE_BYTES) / 4);
    for (const [i, p] of this.processors.entries()) {
      const base = i * (STATE_BYTES / 4);
      words[base + State.backlog] = p.backlog;
      words[base + State.wakeLeft] = p.wakeLeft;
      words[base + State.cstate] = p.cstate;
      words[base + State.idleTicks] = p.idleTicks;
      words[base + State.parked] = p.parked ? 1 : 0;
      words[base + State.historyPos] = p.historyPos;
      words[base + State.clock] = this.clock;
      words.set(p.history, base + State.history);
    }
    return words;
  }

  /** The counters in the kernel's layout (12 u64 each). */
  counters(): BigUint64Array {
    return BigUint64Array.from(this.processors.flatMap((p) => p.counters.map(BigInt)));
  }
}
