import { RegionBoundsError } from "../memory/errors.js";
import type { Region, RegionDescriptor } from "../memory/region.js";

/**
 * Named Int32 slots of a start gate: workers arrived, the gate open, and
 * how many workers open it themselves on arrival (0: the opener does).
 */
export const GateSlot = { arrived: 0, open: 1, expected: 2 } as const;
/** Bytes of a start gate. */
export const GATE_BYTES = 12;

/**
 * A start gate in shared memory: workers arrive and block until the opener
 * sees all of them and opens it, so that they start their work at the same
 * moment. It uses Atomics.wait and notify, never sleeps, which makes
 * concurrency tests deterministic about who runs at once.
 */
export class StartGate {
  private readonly slots: Int32Array;

  constructor(memory: WebAssembly.Memory, region: RegionDescriptor) {
    if (region.byteLength < GATE_BYTES || region.offset % 4 !== 0) {
      throw new RegionBoundsError(
        region.name,
        "start gate",
        `needs ${GATE_BYTES} bytes aligned to 4`,
      );
    }
    this.slots = new Int32Array(memory.buffer, region.offset, GATE_BYTES / 4);
  }

  /**
   * Clears the gate for a new round. With `expected` workers, the last of
   * them to arrive opens it: no opener thread has to wake up between the
   * workers' arrival and their start (on a busy machine, a wake-up can wait
   * milliseconds for a processor).
   */
  reset(expected = 0): void {
    Atomics.store(this.slots, GateSlot.arrived, 0);
    Atomics.store(this.slots, GateSlot.open, 0);
    Atomics.store(this.slots, GateSlot.expected, expected);
  }

  /** A worker arrives and blocks until the gate opens (or `timeoutMs` passes). */
  arriveAndWait(timeoutMs = 30_000): void {
    const arrived = Atomics.add(this.slots, GateSlot.arrived, 1) + 1;
    const expected = Atomics.load(this.slots, GateSlot.expected);
    if (expected > 0 && arrived >= expected) {
      Atomics.store(this.slots, GateSlot.open, 1);
      Atomics.notify(this.slots, GateSlot.open);
      return;
    }
    Atomics.notify(this.slots, GateSlot.arrived);
    const outcome = Atomics.wait(this.slots, GateSlot.open, 0, timeoutMs);
    if (outcome === "timed-out") throw new Error("start gate never opened");
  }

  /** Waits (without blocking the event loop) until `count` workers arrived, then opens. */
  async openWhenArrived(count: number, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const arrived = Atomics.load(this.slots, GateSlot.arrived);
      if (arrived >= count) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`start gate: ${arrived} of ${count} workers arrived`);
      const waiting = Atomics.waitAsync(this.slots, GateSlot.arrived, arrived, left);
      if (waiting.async) await waiting.value;
    }
    Atomics.store(this.slots, GateSlot.open, 1);
    Atomics.notify(this.slots, GateSlot.open);
  }

  /** Builds the gate over a region. */
  static over(memory: WebAssembly.Memory, region: Region): StartGate {
    return new StartGate(memory, region);
  }
}

/** Passes a start gate if the task names one (workers call this before timed work). */
export function passGate(memory: WebAssembly.Memory, gate: RegionDescriptor | undefined): void {
  if (gate) new StartGate(memory, gate).arriveAndWait();
}
