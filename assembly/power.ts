// Core parking and processor idle states: the per-processor, per-tick state
// machine of a machine's logical processors on virtual time. Each tick every
// processor is running work, paying a C-state's exit latency (waking), or idle
// in a C-state; work that lands on a sleeping processor waits for it to wake.
//
// Config (one per machine, little-endian u32):
//
//   byte  0 +------------+------------+------------+------------+
//           | processors | cstates    | idle mode  | speed      |   idle mode: 0 halt (C-state 0
//        16 +------------+------------+------------+------------+   only), 1 menu governor,
//           | tick ns    | timer us   | (reserved) | (reserved) |   2 deepest; speed: work units
//        32 +------------+------------+------------+------------+   done per tick (1024 at P0)
//           | C-state 0: exit ticks | exit ns | residency us | - |
//        48 | C-state 1 ...                                      |   up to 8 C-states,
//           | ...                                                |   shallowest first
//       160 +----------------------------------------------------+
//
// Processor state (one per logical processor, 64 bytes, u32):
//
//   byte  0 +----------+----------+----------+----------+
//           | backlog  | wake left| cstate   | idle     |   backlog: work units queued;
//        16 +----------+----------+----------+----------+   wake left: exit-latency ticks
//           | parked   | history  | clock    | (reserved)|  still to pay; cstate: the idle
//        32 +----------+----------+----------+----------+   state (RUNNING while not idle);
//           | history[0..7]: last idle periods, us      |   idle: ticks of this idle period;
//        64 +-------------------------------------------+   history: next slot (0-7); clock:
//                                                            the tick the state stands at
//
// Counters (one per processor, 96 bytes, u64): ticks busy, ticks waking,
// ticks in C-state 0..7, wake-ups, arrivals. Every tick of every processor
// lands in exactly one of the first ten, which makes energy accounting exact.
//
// Latency histogram: HIST_BUCKETS u64 counts of added latency in whole
// microseconds (bucket 0: the work found its processor awake); the last
// bucket holds everything at or above it.
//
// Event (16 bytes, u32, sorted by tick): | tick | work units | target | flags |
// target: a processor, or ANY for an unaffinitized thread the scheduler places.

@inline const C_PROCESSORS: usize = 0;
@inline const C_CSTATES: usize = 4;
@inline const C_IDLE_MODE: usize = 8;
@inline const C_SPEED: usize = 12;
@inline const C_TICK_NS: usize = 16;
@inline const C_TIMER_US: usize = 20;
@inline const C_STATES: usize = 32;
@inline const CS_EXIT_TICKS: usize = 0;
@inline const CS_EXIT_NS: usize = 4;
@inline const CS_RESIDENCY_US: usize = 8;

@inline const P_BACKLOG: usize = 0;
@inline const P_WAKE_LEFT: usize = 4;
@inline const P_CSTATE: usize = 8;
@inline const P_IDLE: usize = 12;
@inline const P_PARKED: usize = 16;
@inline const P_HISTORY_POS: usize = 20;
@inline const P_CLOCK: usize = 24;
@inline const P_HISTORY: usize = 32;

@inline const K_BUSY: usize = 0;
@inline const K_WAKING: usize = 8;
@inline const K_CSTATE: usize = 16;
@inline const K_WAKEUPS: usize = 80;
@inline const K_ARRIVALS: usize = 88;

@inline const E_TICK: usize = 0;
@inline const E_WORK: usize = 4;
@inline const E_TARGET: usize = 8;

@inline const MODE_HALT: u32 = 0;
@inline const MODE_MENU: u32 = 1;
@inline const RUNNING: u32 = 0xffffffff;
@inline const NO_PREDICTION: u32 = 0xffffffff;
// Linux's menu governor keeps the last 8 idle intervals (INTERVALS, INTERVAL_SHIFT 3).
@inline const INTERVALS: u32 = 8;
@inline const HISTORY_CAP: u64 = 0x3fffffff;

/** Bytes of the config block. */
const CONFIG_BYTES: u32 = 160;
/** Bytes of one processor's state. */
const STATE_BYTES: u32 = 64;
/** Bytes of one processor's counters. */
const COUNTER_BYTES: u32 = 96;
/** Bytes of one event. */
const EVENT_BYTES: u32 = 16;
/** Buckets of the latency histogram (1 us each). */
const HIST_BUCKETS: u32 = 4096;
/** Most C-states a config holds. */
const MAX_CSTATES: u32 = 8;
/** Event target meaning "any unparked processor". */
const ANY: u32 = 0xffffffff;

/**
 * Linux's get_typical_interval (drivers/cpuidle/governors/menu.c): the mean
 * of the last 8 idle periods when their spread is small (variance <= 400 us^2,
 * or mean^2 > 36 variance with at least 3/4 of them kept); otherwise drop the
 * largest and try again, giving up below 3/4.
 */
function typicalInterval(state: usize): u32 {
  let thresh: u32 = 0x7fffffff;
  while (true) {
    let min: u32 = 0xffffffff;
    let max: u32 = 0;
    let sum: u64 = 0;
    let divisor: u32 = 0;
    for (let i: u32 = 0; i < INTERVALS; i++) {
      const value = load<u32>(state + P_HISTORY + (<usize>i << 2));
      if (value <= thresh) {
        sum += value;
        divisor++;
        if (value > max) max = value;
        if (value < min) min = value;
      }
    }
    if (max == 0) return NO_PREDICTION;
    const avg = <u32>(sum / <u64>divisor);
    let variance: u64 = 0;
    for (let i: u32 = 0; i < INTERVALS; i++) {
      const value = load<u32>(state + P_HISTORY + (<usize>i << 2));
      if (value <= thresh) {
        const diff = <i64>value - <i64>avg;
        variance += <u64>(diff * diff);
      }
    }
    variance /= <u64>divisor;
    if (variance <= U64.MAX_VALUE / 36) {
      if (
        (<u64>avg * <u64>avg > variance * 36 && divisor * 4 >= INTERVALS * 3) ||
        variance <= 400
      ) {
        return avg;
      }
    }
    if (divisor * 4 <= INTERVALS * 3) return NO_PREDICTION;
    thresh = max - 1;
  }
}

/** The C-state a processor enters as it goes idle. */
function chooseIdleState(config: usize, state: usize): u32 {
  const deepest = load<u32>(config + C_CSTATES) - 1;
  if (load<u32>(state + P_PARKED) != 0) return deepest;
  const mode = load<u32>(config + C_IDLE_MODE);
  if (mode == MODE_HALT) return 0;
  if (mode != MODE_MENU) return deepest;
  // menu_select: the predicted idle time is the sooner of the next timer and
  // the typical interval; take the deepest state whose target residency fits.
  let predicted = load<u32>(config + C_TIMER_US);
  const typical = typicalInterval(state);
  if (typical < predicted) predicted = typical;
  let chosen: u32 = 0;
  for (let i: u32 = 1; i <= deepest; i++) {
    const residency = load<u32>(config + C_STATES + (<usize>i << 4) + CS_RESIDENCY_US);
    if (residency > predicted) break;
    chosen = i;
  }
  return chosen;
}

@inline
function enterIdle(config: usize, state: usize): void {
  store<u32>(state + P_CSTATE, chooseIdleState(config, state));
  store<u32>(state + P_IDLE, 0);
}

@inline
function record(hist: usize, us: u64): void {
  const bucket = us < <u64>HIST_BUCKETS ? us : <u64>(HIST_BUCKETS - 1);
  const at = hist + (<usize>bucket << 3);
  store<u64>(at, load<u64>(at) + 1);
}

/** Puts every processor idle, unparked, with an empty history, in the state its policy picks. */
export function init(config: usize, states: usize, counters: usize, hist: usize): void {
  const n = load<u32>(config + C_PROCESSORS);
  memory.fill(states, 0, <usize>n * STATE_BYTES);
  memory.fill(counters, 0, <usize>n * COUNTER_BYTES);
  memory.fill(hist, 0, <usize>HIST_BUCKETS << 3);
  for (let p: u32 = 0; p < n; p++) enterIdle(config, states + <usize>p * STATE_BYTES);
}

/**
 * Parks or unparks a processor. A parked processor that is idle sinks to the
 * deepest C-state at once; one that unparks keeps its state until it next
 * goes idle.
 */
export function setParked(config: usize, states: usize, p: u32, parked: u32): void {
  const state = states + <usize>p * STATE_BYTES;
  store<u32>(state + P_PARKED, parked);
  if (parked != 0 && load<u32>(state + P_CSTATE) != RUNNING) {
    store<u32>(state + P_CSTATE, load<u32>(config + C_CSTATES) - 1);
  }
}

/** The unparked processor an unaffinitized thread goes to: least work queued, then shallowest sleep, then lowest number. */
function place(config: usize, states: usize, n: u32): u32 {
  const speed = <u64>load<u32>(config + C_SPEED);
  let best: u32 = ANY;
  let bestKey: u64 = U64.MAX_VALUE;
  for (let p: u32 = 0; p < n; p++) {
    const state = states + <usize>p * STATE_BYTES;
    if (load<u32>(state + P_PARKED) != 0) continue;
    const cstate = load<u32>(state + P_CSTATE);
    let key = (<u64>load<u32>(state + P_BACKLOG) + <u64>load<u32>(state + P_WAKE_LEFT) * speed) << 16;
    if (cstate != RUNNING) {
      const exitTicks = load<u32>(config + C_STATES + (<usize>cstate << 4) + CS_EXIT_TICKS);
      key |= <u64>(exitTicks < 0xffff ? exitTicks : 0xffff);
    }
    if (key < bestKey) {
      bestKey = key;
      best = p;
    }
  }
  return best;
}

/** Work arrives at a processor: a sleeping one starts waking and the work waits for it. */
function arrive(config: usize, states: usize, counters: usize, hist: usize, p: u32, work: u32): void {
  const state = states + <usize>p * STATE_BYTES;
  const counter = counters + <usize>p * COUNTER_BYTES;
  const tickNs = <u64>load<u32>(config + C_TICK_NS);
  store<u64>(counter + K_ARRIVALS, load<u64>(counter + K_ARRIVALS) + 1);
  const cstate = load<u32>(state + P_CSTATE);
  const wakeLeft = load<u32>(state + P_WAKE_LEFT);
  if (cstate != RUNNING) {
    const slot = load<u32>(state + P_HISTORY_POS);
    const idleUs = (<u64>load<u32>(state + P_IDLE) * tickNs) / 1000;
    // Capped at 2^30 - 1 us (18 minutes) so that eight squared deviations fit a u64.
    store<u32>(state + P_HISTORY + (<usize>slot << 2), <u32>(idleUs < HISTORY_CAP ? idleUs : HISTORY_CAP));
    store<u32>(state + P_HISTORY_POS, (slot + 1) & (INTERVALS - 1));
    const entry = config + C_STATES + (<usize>cstate << 4);
    store<u32>(state + P_WAKE_LEFT, load<u32>(entry + CS_EXIT_TICKS));
    store<u32>(state + P_CSTATE, RUNNING);
    store<u64>(counter + K_WAKEUPS, load<u64>(counter + K_WAKEUPS) + 1);
    record(hist, (<u64>load<u32>(entry + CS_EXIT_NS) + 999) / 1000);
  } else if (wakeLeft > 0) {
    record(hist, (<u64>wakeLeft * tickNs + 999) / 1000);
  } else {
    record(hist, 0);
  }
  const backlog = <u64>load<u32>(state + P_BACKLOG) + <u64>work;
  store<u32>(state + P_BACKLOG, <u32>(backlog < 0xffffffff ? backlog : 0xffffffff));
}

@inline
function addCount(at: usize, ticks: u32): void {
  store<u64>(at, load<u64>(at) + <u64>ticks);
}

/**
 * Brings one processor from its clock to tick `to` in one step: what the
 * tick-by-tick machine would do (wake for the exit ticks left, run the work
 * queued at `speed` units a tick, go idle and pick a C-state, sleep), with
 * every tick counted once. Nothing happens to a processor between arrivals
 * but this, so idle processors cost nothing per tick.
 */
function advance(config: usize, state: usize, counter: usize, to: u32): void {
  const at = load<u32>(state + P_CLOCK);
  if (to <= at) return;
  let dt = to - at;
  store<u32>(state + P_CLOCK, to);
  const wakeLeft = load<u32>(state + P_WAKE_LEFT);
  if (wakeLeft > 0) {
    const waking = wakeLeft < dt ? wakeLeft : dt;
    store<u32>(state + P_WAKE_LEFT, wakeLeft - waking);
    addCount(counter + K_WAKING, waking);
    dt -= waking;
    if (dt == 0) return;
  }
  const backlog = load<u32>(state + P_BACKLOG);
  if (backlog > 0) {
    const speed = <u64>load<u32>(config + C_SPEED);
    const need = (<u64>backlog + speed - 1) / speed;
    if (need > <u64>dt) {
      store<u32>(state + P_BACKLOG, <u32>(<u64>backlog - <u64>dt * speed));
      addCount(counter + K_BUSY, dt);
      return;
    }
    store<u32>(state + P_BACKLOG, 0);
    addCount(counter + K_BUSY, <u32>need);
    dt -= <u32>need;
    enterIdle(config, state);
    if (dt == 0) return;
  }
  addCount(counter + K_CSTATE + (<usize>load<u32>(state + P_CSTATE) << 3), dt);
  store<u32>(state + P_IDLE, load<u32>(state + P_IDLE) + dt);
}

/**
 * Runs ticks [from, from + ticks) of every processor, taking the `count`
 * events at `events` (sorted by tick, all inside the span) as they fall due:
 * at each event the processors it concerns are brought to its tick (all the
 * unparked ones, for a thread the scheduler places), and at the end every
 * processor is brought to `from + ticks`. Each processor's clock must stand
 * at `from`. Returns the number of events consumed (all of them).
 */
export function run(
  config: usize,
  states: usize,
  counters: usize,
  hist: usize,
  events: usize,
  count: u32,
  from: u32,
  ticks: u32,
): u32 {
  const n = load<u32>(config + C_PROCESSORS);
  for (let e: u32 = 0; e < count; e++) {
    const event = events + (<usize>e << 4);
    const tick = load<u32>(event + E_TICK);
    let target = load<u32>(event + E_TARGET);
    if (target == ANY) {
      for (let p: u32 = 0; p < n; p++) {
        const state = states + <usize>p * STATE_BYTES;
        if (load<u32>(state + P_PARKED) != 0) continue;
        advance(config, state, counters + <usize>p * COUNTER_BYTES, tick);
      }
      target = place(config, states, n);
    } else if (target < n) {
      advance(config, states + <usize>target * STATE_BYTES, counters + <usize>target * COUNTER_BYTES, tick);
    }
    // No processor unparked (the wrapper forbids it): the work is dropped, never misplaced.
    if (target < n) arrive(config, states, counters, hist, target, load<u32>(event + E_WORK));
  }
  const end = from + ticks;
  for (let p: u32 = 0; p < n; p++) {
    advance(config, states + <usize>p * STATE_BYTES, counters + <usize>p * COUNTER_BYTES, end);
  }
  return count;
}

// The layout above, exported for src/wasm/power.ts to check at load.
export const LAYOUT_CONFIG_BYTES: u32 = CONFIG_BYTES;
export const LAYOUT_STATE_BYTES: u32 = STATE_BYTES;
export const LAYOUT_COUNTER_BYTES: u32 = COUNTER_BYTES;
export const LAYOUT_EVENT_BYTES: u32 = EVENT_BYTES;
export const LAYOUT_HIST_BUCKETS: u32 = HIST_BUCKETS;
export const LAYOUT_MAX_CSTATES: u32 = MAX_CSTATES;
export const LAYOUT_ANY: u32 = ANY;
export const LAYOUT_STATE_CLOCK: u32 = <u32>P_CLOCK;
export const LAYOUT_COUNTER_WAKEUPS: u32 = <u32>K_WAKEUPS;
