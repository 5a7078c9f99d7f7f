import { type EncodeCounts, emptyEncodeCounts } from "../wasm/page.js";
import { AutoConverge } from "./auto-converge.js";
import type { ResolvedMigrationOptions } from "./options.js";

/** What one virtual-time run keeps while it runs: a fresh object per run. */
export class VirtualRunState {
  clockMs = 0;
  /** Guest writes owed for the time passed, executed at each bandwidth window. */
  writesOwed = 0;
  windowOwedMs = 0;
  readonly throttle: AutoConverge;
  readonly counts: EncodeCounts = emptyEncodeCounts();
  transferred = 0;
  syncs = 0;
  pendingPages = 0;
  multifdPackets = 0;
  multifdBytes = 0;
  /** Packets of the one stream (numbered as a channel's). */
  streamPackets = 0;
  // The bandwidth window (QEMU re-estimates every 100 ms).
  rateWindowMs = 0;
  rateWindowBytes = 0;
  lastWindowRate: number | null = null;
  /** Bandwidth windows closed so far (QEMU's iteration: which measured window rate the link runs at). */
  windowsClosed = 0;
  /** Zero pages past the working set the first pass has still to scan (QEMU's iteration). */
  zeroTailPages: number;
  /** The guest wrote after the run began: the encode-time source hashes may be stale. */
  guestWrote = false;
  /**
   * A pass was cut with pages it never sent: they stay pending, and the next
   * sync merges what the guest dirtied into them.
   */
  unsentKept = false;
  /** Destination RAM was written other than by the decoder: its recorded hashes may be stale. */
  destinationWritten = false;

  constructor(o: ResolvedMigrationOptions) {
    this.throttle = new AutoConverge(o);
    this.zeroTailPages = o.qemuIteration?.zeroTailPages ?? 0;
  }
}
