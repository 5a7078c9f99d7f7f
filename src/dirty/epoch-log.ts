import type { DirtyBitmap } from "../memory/dirty-bitmap.js";
import {
  type DirtyBitmapPair,
  EPOCH_IDLE,
  EPOCH_MASK,
  EpochControl,
} from "../memory/dirty-bitmap-pair.js";
import type { Region } from "../memory/region.js";
import type { DirtyKernel } from "../wasm/dirty.js";

/** How long a flip waits for a writer to acknowledge it by default, ms. */
export const DEFAULT_FLIP_TIMEOUT_MS = 10_000;

/**
 * How long a flip polls a writer's ack before it blocks in Atomics.wait, ms:
 * a running writer acknowledges within one batch (microseconds), sooner than
 * a blocked thread is woken on a virtual machine.
 */
const POLL_MS = 0.05;

/** A writer did not acknowledge a flip in time (it hung, or its ack slot was overwritten). */
export class EpochFlipTimeoutError extends Error {
  override name = "EpochFlipTimeoutError";

  /**
   * @param writer - the writer slot that did not acknowledge
   * @param epoch - the epoch it was asked to acknowledge
   * @param ack - what its slot held
   */
  constructor(
    readonly writer: number,
    readonly epoch: number,
    readonly ack: number,
    timeoutMs: number,
  ) {
    super(
      `dirty log flip to epoch ${epoch}: writer ${writer} did not acknowledge within ${timeoutMs} ms (its slot holds ${ack >>> 0})`,
    );
  }
}

/** A harvest of the retired bitmap was asked for after a flip that did not complete. */
export class EpochUnsettledError extends Error {
  override name = "EpochUnsettledError";

  constructor(readonly epoch: number) {
    super(
      `dirty log: the flip to epoch ${epoch} was not acknowledged by every writer; settle it before harvesting`,
    );
  }
}

/**
 * The harvester's side of an epoch-swapped dirty log (a
 * {@link DirtyBitmapPair}). One harvester at a time may flip; writers on any
 * thread mark through {@link DirtyKernel.markPagesInPair} or the workload
 * kernel's pair mode.
 *
 * A flip stores the next epoch and waits with Atomics.wait, on each writer's
 * ack in turn, until every writer has acknowledged it or is idle. From then
 * until the next flip no writer can touch the retired bitmap, so it is read
 * and cleared with plain loads and stores. A page marked while the flip was
 * under way lands in the retired bitmap (harvested now) or the active one
 * (harvested at the next flip): none is lost.
 */
export class EpochDirtyLog {
  /**
   * Whether every writer acknowledged the last flip (or none was made): the
   * retired bitmap is the harvester's only then.
   */
  private settled = true;

  constructor(
    private readonly memory: WebAssembly.Memory,
    readonly pair: DirtyBitmapPair,
    private readonly kernel: DirtyKernel,
  ) {}

  /** The current epoch (flips so far, modulo 2^31). */
  get epoch(): number {
    return Atomics.load(this.pair.slots(this.memory), EpochControl.epoch / 4);
  }

  /** The bitmap writers mark now. */
  get active(): DirtyBitmap {
    return this.pair.bitmaps[this.epoch & 1] as DirtyBitmap;
  }

  /** The bitmap the last flip retired: the harvester's until the next flip. */
  get retired(): DirtyBitmap {
    return this.pair.bitmaps[(this.epoch & 1) ^ 1] as DirtyBitmap;
  }

  /**
   * Flips the epoch and waits until every writer has acknowledged it or is
   * idle. Returns the retired bitmap, which no writer marks until the next
   * flip.
   *
   * @throws EpochFlipTimeoutError when a writer does not acknowledge within
   *   `timeoutMs`: the flip stays made, and {@link settle} waits for it again.
   */
  flip(timeoutMs = DEFAULT_FLIP_TIMEOUT_MS): DirtyBitmap {
    const slots = this.pair.slots(this.memory);
    const before = Atomics.load(slots, EpochControl.epoch / 4);
    Atomics.store(slots, EpochControl.epoch / 4, (before + 1) & EPOCH_MASK);
    this.settled = false;
    return this.settle(timeoutMs);
  }

  /**
   * Waits until every writer has acknowledged the current epoch or is idle,
   * without flipping: how a harvester recovers from a flip that timed out.
   * Returns the retired bitmap.
   *
   * @throws EpochFlipTimeoutError when a writer does not acknowledge within `timeoutMs`.
   */
  settle(timeoutMs = DEFAULT_FLIP_TIMEOUT_MS): DirtyBitmap {
    const slots = this.pair.slots(this.memory);
    const epoch = Atomics.load(slots, EpochControl.epoch / 4);
    const acknowledged = (ack: number) => ack === epoch || ack === (EPOCH_IDLE | 0);
    const deadline = performance.now() + timeoutMs;
    for (let writer = 0; writer < this.pair.writers; writer++) {
      const index = EpochControl.acks / 4 + writer;
      const pollUntil = performance.now() + POLL_MS;
      while (!acknowledged(Atomics.load(slots, index)) && performance.now() < pollUntil) {
        // Polling the ack: the writer is at most one batch away from it.
      }
      for (;;) {
        const ack = Atomics.load(slots, index);
        if (acknowledged(ack)) break;
        const left = deadline - performance.now();
        // The writer is inside a batch of the old epoch: it acknowledges (and
        // notifies) at the batch's end. Atomics.wait returns at once if the
        // ack changed since it was read.
        if (left <= 0 || Atomics.wait(slots, index, ack, left) === "timed-out") {
          if (Atomics.load(slots, index) === ack) {
            throw new EpochFlipTimeoutError(writer, epoch, ack, timeoutMs);
          }
        }
      }
    }
    this.settled = true;
    return this.retired;
  }

  /**
   * Harvests the retired bitmap into page numbers, batch by batch (see
   * {@link DirtyKernel.harvestPagesQuiet}): call after {@link flip} with the
   * cursor reset, until it returns 0.
   */
  harvestPages(cursor: Region, out: Region): number {
    return this.kernel.harvestPagesQuiet(this.quietRetired(), cursor, out);
  }

  /**
   * The retired bitmap, once the last flip was acknowledged by every writer.
   *
   * @throws EpochUnsettledError after a flip that timed out: a writer may
   *   still be marking the bitmap a plain harvest would clear.
   */
  quietRetired(): DirtyBitmap {
    if (!this.settled) throw new EpochUnsettledError(this.epoch);
    return this.retired;
  }

  /**
   * A whole sync as KVM's get-and-clear dirty log gives it: flips, then moves
   * the retired bitmap into `snapshot` with plain loads and stores. Returns
   * the pages harvested.
   */
  harvestInto(snapshot: DirtyBitmap, timeoutMs = DEFAULT_FLIP_TIMEOUT_MS): number {
    return this.kernel.harvestQuiet(this.flip(timeoutMs), snapshot);
  }

  /** Dirty pages in both bitmaps (a snapshot that may race writers). */
  count(): number {
    return this.kernel.count(this.pair.bitmaps[0]) + this.kernel.count(this.pair.bitmaps[1]);
  }
}
