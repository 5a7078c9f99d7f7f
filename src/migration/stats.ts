/*
 * Migration statistics, named as QEMU names them (QEMU's
 * qapi/migration.json: MigrationInfo, MigrationStats) so that QEMU users feel at home. Every engine that
 * migrates (virtual-time pre-copy, post-copy, live over TCP, quick
 * migration) reports these same records. Times are milliseconds, sizes
 * bytes, rates per second, `mbps` megabits per second.
 */

/** How a migration ended. */
export type MigrationStatus = "completed" | "failed" | "not-converged";

/** How the migration ran. */
export type MigrationMode = "content" | "metadata" | "live-tcp" | "quick" | "qemu";

/** What the stop policy decided at the end of a round. */
export type RoundDecision =
  | "continue"
  | "stop-and-copy"
  | "switch-to-postcopy"
  | "throttle"
  | "give-up";

/** Phases a round can belong to. */
export type MigrationPhase = "setup" | "precopy" | "stop-and-copy" | "postcopy" | "resume";

/** QEMU's XBZRLE cache statistics. */
export interface XbzrleCacheStats {
  readonly "cache-size": number;
  readonly bytes: number;
  readonly pages: number;
  readonly "cache-miss": number;
  readonly "cache-miss-rate": number;
  readonly "encoding-rate": number;
  readonly overflow: number;
}

/** One round (pass) of a migration. */
export interface MigrationRound {
  /** 1 for the first full pass. */
  readonly round: number;
  readonly phase: MigrationPhase;
  /** Start and length of the round on the migration's clock (virtual or wall), ms. */
  readonly "start-ms": number;
  readonly "duration-ms": number;
  /** Pages sent in this round (normal + duplicate + xbzrle). */
  readonly "pages-sent": number;
  /** Pages the guest dirtied while this round ran. */
  readonly "pages-dirtied": number;
  /** Bytes put on the link in this round. */
  readonly "bytes-sent": number;
  /** Bytes still to send after this round (dirty pages x page size). */
  readonly remaining: number;
  /** Cumulative bytes transferred. */
  readonly transferred: number;
  readonly "dirty-pages-rate": number;
  readonly mbps: number;
  /** The bandwidth estimate the policy used, bytes per second. */
  readonly "bandwidth-estimate": number;
  readonly "expected-downtime": number;
  readonly "cpu-throttle-percentage": number;
  readonly decision: RoundDecision;
  /** Why the policy decided so, in words. */
  readonly reason: string;
}

/** The whole migration, in QEMU's names plus what hvlab adds. */
export interface MigrationSummary {
  readonly status: MigrationStatus;
  /** Why it failed or did not converge (null when completed). */
  readonly reason: string | null;
  readonly mode: MigrationMode;
  readonly policy: string;
  readonly transferred: number;
  readonly remaining: number;
  readonly total: number;
  readonly duplicate: number;
  readonly normal: number;
  readonly "normal-bytes": number;
  readonly "dirty-pages-rate": number;
  readonly mbps: number;
  readonly "pages-per-second": number;
  readonly "dirty-sync-count": number;
  readonly "precopy-bytes": number;
  readonly "downtime-bytes": number;
  readonly "postcopy-bytes": number;
  readonly "expected-downtime": number;
  readonly downtime: number;
  readonly "setup-time": number;
  readonly "total-time": number;
  readonly "cpu-throttle-percentage": number;
  readonly "xbzrle-cache": XbzrleCacheStats | null;
  /** Post-copy: pages the destination faulted on and fetched, and their total wait, ms. */
  readonly "postcopy-remote-faults": number;
  readonly "postcopy-fault-wait-ms": number;
  /** Pages the destination asked for (QEMU's ram.postcopy-requests). */
  readonly "postcopy-requests"?: number;
  /** Post-copy time every vCPU was blocked at once, ms (QEMU's postcopy-blocktime). */
  readonly "postcopy-blocktime"?: number;
  /** Each vCPU's post-copy time blocked on a page, ms (QEMU's postcopy-vcpu-blocktime). */
  readonly "postcopy-vcpu-blocktime"?: readonly number[];
  /**
   * Post-copy recovery, when it was on (QEMU's postcopy-recover): pauses on
   * a broken link, time paused, pages the destination requested again, the
   * pages left at each resume and the bytes sent after resuming.
   */
  readonly "postcopy-recovery"?: {
    readonly pauses: number;
    readonly "paused-ms": number;
    readonly "rerequested-pages": number;
    readonly "pages-left": readonly number[];
    readonly "bytes-after-resume": number;
  };
  readonly rounds: number;
  /** Content mode: every destination page was checked against the source. */
  readonly verified: boolean | null;
  /** multifd channels used (0: a single stream) and packets they sent. */
  readonly "multifd-channels"?: number;
  readonly "multifd-packets"?: number;
  /** XBZRLE cache hits whose page had not changed: nothing sent (QEMU skips them too). */
  readonly "xbzrle-unchanged-pages"?: number;
  /** Bytes the multifd channels carried (QEMU's ram.multifd-bytes). */
  readonly "multifd-bytes"?: number;
  /** The downtime passed the downtime-limit although the run completed. */
  readonly "downtime-over-limit"?: boolean;
  /** Why it did: which part of the downtime pushed it over. */
  readonly warning?: string;
}

/** What `hvlab migrate --json` prints. */
export interface MigrationResult {
  readonly rounds: readonly MigrationRound[];
  readonly summary: MigrationSummary;
}
