import type {
  MigrationPhase,
  MigrationResult,
  MigrationRound,
  MigrationStatus,
  MigrationSummary,
  RoundDecision,
} from "../stats.js";
import type { PostcopyRecoveryCounts, PrecopyClock, Sent, TransportCounters } from "./types.js";

/** One round as the driver saw it. */
export interface RoundFacts {
  readonly phase: MigrationPhase;
  /** Clock time the round began, ms. */
  readonly start: number;
  /** Clock time the round ended, ms (default: now). */
  readonly end?: number;
  readonly sent: Sent;
  readonly pagesDirtied: number;
  /** Pages still to send after the round. */
  readonly remainingPages: number;
  /** Bytes put on the link so far, all rounds. */
  readonly transferred: number;
  /** The bandwidth the policy used, bytes per second (MAX_VALUE: unthrottled and unmeasured). */
  readonly bandwidth: number;
  readonly throttle: number;
  readonly decision: RoundDecision;
  readonly reason: string;
}

/** The run's end as the driver saw it. */
export interface RunFacts {
  readonly status: MigrationStatus;
  readonly reason: string | null;
  readonly policy: string;
  readonly transferred: number;
  readonly remainingPages: number;
  readonly pagesSent: number;
  readonly syncs: number;
  readonly dirtyPagesRate: number;
  readonly precopyBytes: number;
  readonly downtimeBytes: number;
  readonly postcopyBytes: number;
  readonly expectedDowntime: number;
  readonly downtime: number;
  readonly setupTime: number;
  readonly throttle: number;
  readonly requests: number;
  readonly faultWaitMs: number;
  readonly blocktime: number;
  readonly vcpuBlocktime: readonly number[];
  /** Post-copy recovery's counts, when it was on. */
  readonly recovery?: PostcopyRecoveryCounts;
  readonly verified: boolean | null;
  readonly counters: TransportCounters;
  /** Clock time the migration ended, ms (verification excluded). */
  readonly totalTime: number;
  /** The downtime passed the downtime-limit. */
  readonly overLimit: boolean;
  /** Completed runs only: why the downtime passed the limit, or null. */
  readonly warning: string | null;
}

/**
 * Turns what one run did into QEMU-named rounds and a summary (QEMU's
 * qapi/migration.json, MigrationStats): every mode records through one of
 * these, so the printer and the rounds table see one shape.
 */
export class RoundRecorder {
  private readonly list: MigrationRound[] = [];

  constructor(
    private readonly clock: PrecopyClock,
    private readonly pageBytes: number,
    private readonly ramBytes: number,
    private readonly onRound?: (round: MigrationRound) => void,
  ) {}

  /** The rounds so far. */
  get rounds(): readonly MigrationRound[] {
    return this.list;
  }

  /** Records a round that ends now. */
  record(f: RoundFacts): MigrationRound {
    const duration = (f.end ?? this.clock.now()) - f.start;
    const seconds = duration / 1000;
    const known = Number.isFinite(f.bandwidth) && f.bandwidth > 0 && f.bandwidth < Number.MAX_VALUE;
    const round: MigrationRound = {
      round: this.list.length + 1,
      phase: f.phase,
      "start-ms": f.start,
      "duration-ms": duration,
      "pages-sent": f.sent.pages,
      "pages-dirtied": f.pagesDirtied,
      "bytes-sent": f.sent.bytes,
      remaining: f.remainingPages * this.pageBytes,
      transferred: f.transferred,
      "dirty-pages-rate": seconds > 0 ? f.pagesDirtied / seconds : 0,
      mbps: seconds > 0 ? (f.sent.bytes * 8) / 1e6 / seconds : 0,
      "bandwidth-estimate": known ? f.bandwidth : 0,
      "expected-downtime": known ? ((f.remainingPages * this.pageBytes) / f.bandwidth) * 1000 : 0,
      "cpu-throttle-percentage": f.throttle,
      decision: f.decision,
      reason: f.reason,
    };
    this.list.push(round);
    this.onRound?.(round);
    return round;
  }

  /** The rounds and the summary of a run. */
  result(f: RunFacts, mode: MigrationSummary["mode"]): MigrationResult {
    const totalTime = f.totalTime;
    const seconds = totalTime / 1000;
    const c = f.counters;
    const summary: MigrationSummary = {
      status: f.status,
      reason: f.reason,
      mode,
      policy: f.policy,
      transferred: f.transferred,
      remaining: f.status === "completed" ? 0 : f.remainingPages * this.pageBytes,
      total: this.ramBytes,
      duplicate: c.duplicate,
      normal: c.normal,
      "normal-bytes": c.normal * this.pageBytes,
      "dirty-pages-rate": f.dirtyPagesRate,
      mbps: seconds > 0 ? (f.transferred * 8) / 1e6 / seconds : 0,
      "pages-per-second": seconds > 0 ? f.pagesSent / seconds : 0,
      "dirty-sync-count": f.syncs,
      "precopy-bytes": f.precopyBytes,
      "downtime-bytes": f.downtimeBytes,
      "postcopy-bytes": f.postcopyBytes,
      "expected-downtime": f.expectedDowntime,
      downtime: f.downtime,
      "setup-time": f.setupTime,
      "total-time": totalTime,
      "cpu-throttle-percentage": f.throttle,
      "xbzrle-cache": c.xbzrle,
      "postcopy-remote-faults": f.requests,
      "postcopy-fault-wait-ms": f.faultWaitMs,
      "postcopy-requests": f.requests,
      "postcopy-blocktime": f.blocktime,
      "postcopy-vcpu-blocktime": f.vcpuBlocktime,
      ...(f.recovery
        ? {
            "postcopy-recovery": {
              pauses: f.recovery.pauses,
              "paused-ms": f.recovery.pausedMs,
              "rerequested-pages": f.recovery.rerequestedPages,
              "pages-left": f.recovery.pagesLeft,
              "bytes-after-resume": f.recovery.bytesAfterResume,
            },
          }
        : {}),
      rounds: this.list.length,
      verified: f.verified,
      ...(c.multifd
        ? {
            "multifd-channels": c.multifd.channels,
            "multifd-packets": c.multifd.packets,
            "multifd-bytes": c.multifd.bytes,
          }
        : {}),
      ...(c.xbzrleUnchanged !== undefined ? { "xbzrle-unchanged-pages": c.xbzrleUnchanged } : {}),
      ...(f.status === "completed" ? { "downtime-over-limit": f.overLimit } : {}),
      ...(f.warning ? { warning: f.warning } : {}),
    };
    return { rounds: this.list, summary };
  }
}
