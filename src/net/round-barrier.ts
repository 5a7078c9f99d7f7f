import type { RegionDescriptor } from "../memory/region.js";

/**
 * Int32 slots of a round barrier: processors arrived in this round, the
 * round's generation, and how many processors take part.
 */
const Slot = { arrived: 0, generation: 1, expected: 2 } as const;
/** Bytes of a round barrier (one cache line: nothing else shares it). */
export const ROUND_BARRIER_BYTES = 64;

/**
 * A reusable barrier in the shared memory between the receive rounds of a
 * batch, for the processors of a path whose rings several of them fill
 * (RSS spreading the default queue, or the switch's lookup behind it): a
 * ring is consumed and emptied only when every processor is done with the
 * round. The last processor to arrive does that serial step itself and
 * releases the others by bumping the generation (Atomics.wait and notify,
 * no sleeping), so no third thread wakes up between two rounds. Paths
 * whose processors own disjoint rings never use it: their processors run
 * their rounds without waiting for each other, as a NIC's queues do.
 */
export class RoundBarrier {
  private readonly slots: Int32Array;

  constructor(memory: WebAssembly.Memory, region: RegionDescriptor) {
    if (region.byteLength < ROUND_BARRIER_BYTES || region.offset % 4 !== 0) {
      throw new RangeError(
        `round barrier '${region.name}' needs ${ROUND_BARRIER_BYTES} bytes aligned to 4`,
      );
    }
    this.slots = new Int32Array(memory.buffer, region.offset, 3);
  }

  /** Clears the barrier for a batch of `expected` processors (before any of them starts). */
  reset(expected: number): void {
    if (!Number.isSafeInteger(expected) || expected < 1 || expected > 256) {
      throw new RangeError(`a round barrier takes 1 to 256 processors, not ${expected}`);
    }
    Atomics.store(this.slots, Slot.arrived, 0);
    Atomics.store(this.slots, Slot.generation, 0);
    Atomics.store(this.slots, Slot.expected, expected);
  }

  /**
   * A processor is done with its round: the last to arrive runs `serial`
   * (while every other processor waits) and releases them all.
   *
   * @throws Error when the others do not arrive within `timeoutMs`.
   */
  arrive(serial: () => void, timeoutMs = 30_000): void {
    const generation = Atomics.load(this.slots, Slot.generation);
    const arrived = Atomics.add(this.slots, Slot.arrived, 1) + 1;
    const expected = Atomics.load(this.slots, Slot.expected);
    if (arrived >= expected) {
      try {
        serial();
      } finally {
        Atomics.store(this.slots, Slot.arrived, 0);
        Atomics.add(this.slots, Slot.generation, 1);
        Atomics.notify(this.slots, Slot.generation);
      }
      return;
    }
    const deadline = Date.now() + timeoutMs;
    while (Atomics.load(this.slots, Slot.generation) === generation) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `round barrier: ${Atomics.load(this.slots, Slot.arrived)} of ${expected} processors arrived`,
        );
      }
      Atomics.wait(this.slots, Slot.generation, generation, left);
    }
  }
}
