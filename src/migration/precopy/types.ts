import type { AutoConverge } from "../auto-converge.js";
import type { GiveUpRule, StopPolicyName } from "../options.js";
import type { MigrationMode, XbzrleCacheStats } from "../stats.js";

/** What one send put on the link. */
export interface Sent {
  readonly pages: number;
  readonly bytes: number;
}

/** A pass over the pending pages; `cut` when it stopped at the deadline with pages left. */
export interface Pass extends Sent {
  readonly cut: boolean;
}

/**
 * The migration's clock: virtual time (the link's time computed from its
 * rate, the guest's writes owed for it) or the wall clock (a real link).
 * Milliseconds since the run began.
 */
export interface PrecopyClock {
  readonly kind: "virtual" | "wall";
  now(): number;
}

/** The source guest as pre-copy sees it: its dirty log and its vCPUs. */
export interface PrecopyGuest {
  readonly pageBytes: number;
  readonly ramBytes: number;
  /** Starts the dirty log with every page pending (QEMU's bitmap starts all set). Returns pages pending. */
  logAll(): number;
  /** The end-of-round sync: what the guest dirtied joins the pending set. Returns pages pending. */
  sync(): number;
  /** Stops the vCPUs and syncs a last time (nothing can dirty a page after). Returns pages pending. */
  pause(): Promise<number>;
  /** Lets the vCPUs run again on the source (a failed switchover, a failed verification). */
  resume(): void;
  /** Guest writes per second, repeats included, over the round that just ended. */
  writeRate(roundMs: number): number;
  /** Dirty-log syncs so far (QEMU's dirty-sync-count). */
  readonly syncs: number;
  /** QEMU's auto-converge, when the guest's vCPUs can be throttled. */
  readonly throttle?: AutoConverge;
}

/** Where the pages go: in-process records, multifd channels on the pool, TCP frames. */
export interface PrecopyTransport {
  readonly mode: MigrationMode;
  /** Opens the stream (connection, hello, the destination's skeleton VM). */
  open(): Promise<void>;
  /**
   * Sends every pending page. While the guest runs (`running`), stops within
   * one page batch once the clock reaches `untilMs`, and says so (`cut`).
   */
  sendPending(round: { running: boolean; round: number; untilMs: number }): Promise<Pass>;
  /** Bytes per second the policy should assume for the round just sent. */
  bandwidth(roundBytes: number, roundMs: number): number;
  /** The link's rate as it stands (its cap, or what was last measured), bytes per second. */
  rate(): number;
  /** Bytes put on the link so far. */
  readonly transferred: number;
  /**
   * With the guest paused and its pages sent: the device state and the
   * switchover. Resolves when the destination runs the guest; `fixed` says
   * in words what besides the pages the downtime held. `to` says whether
   * pages are left for post-copy (then the destination must learn which).
   */
  switchover(to?: "stop-and-copy" | "postcopy"): Promise<Handover>;
  /** Tells the destination to discard what it has and why (a give-up or a failure); never throws past a dead link. */
  cancel(reason: string): Promise<void>;
  /**
   * Post-copy, when the transport can (after the switchover: the rest is
   * pulled on faults and pushed in the background).
   */
  postcopy?(pendingPages: number, untilMs: number): Promise<PostcopyOutcome>;
  /** Checks every destination page against the source: null when equal, why not, or undefined when not checked. */
  verify(): Promise<string | null | undefined>;
  /** Counters for the summary. */
  counters(): TransportCounters;
  /** One line for an error the transport threw, naming the phase it broke. */
  explain(error: Error, phase: string): string;
}

/** What the switchover did besides the last pages. */
export interface Handover {
  /** Bytes it put on the link (the device state). */
  readonly bytes: number;
  /** In words, what besides the pages the downtime held. */
  readonly fixed: string;
  /**
   * When the switchover is a step of its own worth a round (quick
   * migration's storage failover and restore): in words, what the
   * stop-and-copy did and what the switchover did. The driver then records
   * the switchover as a `resume` round after the stop-and-copy.
   */
  readonly ownRound?: { readonly copy: string; readonly resume: string };
}

/** What a transport counted, for the summary. */
export interface TransportCounters {
  readonly duplicate: number;
  readonly normal: number;
  readonly xbzrle: XbzrleCacheStats | null;
  readonly xbzrleUnchanged?: number;
  readonly multifd?: { channels: number; packets: number; bytes: number };
}

/** What post-copy did. */
export interface PostcopyOutcome extends Sent {
  readonly requests: number;
  readonly faultWaitMs: number;
  readonly blocktime: number;
  readonly vcpuBlocktime: readonly number[];
  /** Pages still on the source when it ended (0: all arrived). */
  readonly missing: number;
  /** Why it failed (timeout, a broken connection), or null. */
  readonly failure: string | null;
  readonly windows: number;
  /** In words, what post-copy did (the round's reason); the driver words one when absent. */
  readonly summary?: string;
  /** What post-copy recovery counted, when it was on. */
  readonly recovery?: PostcopyRecoveryCounts;
}

/** What a run's post-copy recoveries counted (QEMU's postcopy-recover). */
export interface PostcopyRecoveryCounts {
  /** Times post-copy paused on a broken link. */
  readonly pauses: number;
  /** Time spent paused or recovering, ms. */
  readonly pausedMs: number;
  /** Pages the destination requested again at each resume (its vCPUs still waited on them). */
  readonly rerequestedPages: number;
  /** Pages left to send at each resume, from the destination's received-page bitmap. */
  readonly pagesLeft: readonly number[];
  /** Bytes put on the link after each resume, to post-copy's end. */
  readonly bytesAfterResume: number;
}

/** The stop rule and its limits. */
export interface PrecopyPolicy {
  /**
   * The stop rule asked after each round; `quick` runs no pre-copy round at
   * all (Hyper-V 1.0's quick migration: the VM pauses at once and its whole
   * memory goes in the stop-and-copy).
   */
  readonly name: StopPolicyName | "quick";
  /** The name in the summary (hyperv with its release). */
  readonly label: string;
  readonly downtimeLimitMs: number;
  readonly maxRounds: number | null;
  /** Give up (not-converged) at this clock time, ms; held within one page batch. */
  readonly timeoutMs: number;
  readonly giveUp: GiveUpRule;
  /** Switch to post-copy after this many pre-copy rounds (null: never). */
  readonly postcopyAfterRounds: number | null;
  /**
   * QEMU's migrate-start-postcopy: asked after each pre-copy round the rule
   * would continue; true switches to post-copy then (absent: never).
   */
  readonly postcopyRequested?: () => boolean;
}
