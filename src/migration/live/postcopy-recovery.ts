import type { PostcopyRecoveryCounts } from "../precopy/types.js";

/**
 * QEMU's statuses of a post-copy migration that may break and recover
 * (qapi/migration.json, MigrationStatus): `postcopy-active` while pages
 * flow, `postcopy-paused` once the link broke (both sides keep their state:
 * QEMU's postcopy_pause in migration/migration.c, postcopy_pause_incoming in
 * migration/savevm.c),
 * `postcopy-recover` while a new connection exchanges the received-page
 * bitmap, then `postcopy-active` again, and `completed` or `failed`.
 */
export type PostcopyStatus =
  | "postcopy-active"
  | "postcopy-paused"
  | "postcopy-recover"
  | "completed"
  | "failed";

/** Longest wait for a recovery a side accepts, ms: one hour. */
export const MAX_RECOVER_WAIT_MS = 3_600_000;

/**
 * The status machine and counters of post-copy recovery on one side: it
 * outlives every connection of the run. Each transition is checked: a
 * pause only from `postcopy-active` or `postcopy-recover`, a recovery only
 * while paused, a resume only while recovering.
 */
export class PostcopyRecovery {
  private status: PostcopyStatus = "postcopy-active";
  private pausedSince: number | null = null;
  private pausedTotal = 0;
  private pauseCount = 0;
  private rerequested = 0;
  private readonly left: number[] = [];
  /** Bytes after the latest resume are counted from this transferred figure. */
  private resumedAt: number | null = null;
  private bytesAfter = 0;

  /**
   * @param now - the clock, ms.
   * @param onStatus - called on every change of status.
   */
  constructor(
    private readonly now: () => number,
    private readonly onStatus?: (status: PostcopyStatus) => void,
  ) {
    onStatus?.("postcopy-active");
  }

  /** The current status. */
  get current(): PostcopyStatus {
    return this.status;
  }

  /** The link broke: paused. A break while recovering pauses again (the same pause goes on). */
  pause(transferred: number): void {
    this.expect(["postcopy-active", "postcopy-recover"], "pause");
    if (this.status === "postcopy-active") {
      this.pauseCount++;
      this.pausedSince = this.now();
      this.countAfterResume(transferred);
    }
    this.set("postcopy-paused");
  }

  /** A new connection is up: the bitmap exchange starts. */
  recover(): void {
    this.expect(["postcopy-paused"], "recover");
    this.set("postcopy-recover");
  }

  /** The destination acknowledged the resume: post-copy runs again. */
  resume(pagesLeft: number, rerequested: number, transferred: number): void {
    this.expect(["postcopy-recover"], "resume");
    this.pausedTotal += this.now() - (this.pausedSince ?? this.now());
    this.pausedSince = null;
    this.left.push(pagesLeft);
    this.rerequested += rerequested;
    this.resumedAt = transferred;
    this.set("postcopy-active");
  }

  /** Post-copy ended, every page sent (completed) or not (failed). */
  end(status: "completed" | "failed", transferred: number): void {
    if (this.status === "postcopy-active") this.countAfterResume(transferred);
    if (this.pausedSince !== null) {
      this.pausedTotal += this.now() - this.pausedSince;
      this.pausedSince = null;
    }
    this.set(status);
  }

  /** The counts so far. */
  counts(): PostcopyRecoveryCounts {
    const open = this.pausedSince === null ? 0 : this.now() - this.pausedSince;
    return {
      pauses: this.pauseCount,
      pausedMs: this.pausedTotal + open,
      rerequestedPages: this.rerequested,
      pagesLeft: [...this.left],
      bytesAfterResume: this.bytesAfter,
    };
  }

  private countAfterResume(transferred: number): void {
    if (this.resumedAt === null) return;
    this.bytesAfter += transferred - this.resumedAt;
    this.resumedAt = null;
  }

  private expect(from: readonly PostcopyStatus[], what: string): void {
    if (!from.includes(this.status)) {
      throw new Error(`post-copy cannot ${what} from ${this.status}`);
    }
  }

  private set(status: PostcopyStatus): void {
    this.status = status;
    this.onStatus?.(status);
  }
}
