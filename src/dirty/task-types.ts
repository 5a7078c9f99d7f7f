import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
import type { RegionDescriptor } from "../memory/region.js";

/** How a worker consumes the page numbers of each harvested batch. */
export type BatchConsumer = "sum" | "last";

/**
 * Harvest one share of a quiet bitmap (the retired bitmap of a pair, or any
 * bitmap while the vCPUs are paused) into page numbers, batch by batch in the
 * worker's own batch buffer, and consume each batch there.
 */
export interface HarvestPagesTask {
  readonly type: "dirty.harvest-pages";
  /** The share: a slice of the bitmap, whole words. */
  readonly bitmap: DirtyBitmapDescriptor;
  /** Number of the share's first page in the whole bitmap. */
  readonly firstPage: number;
  /** The worker's harvest cursor (8 bytes). */
  readonly cursor: RegionDescriptor;
  /** The worker's batch buffer of u32 page numbers. */
  readonly out: RegionDescriptor;
  /**
   * "sum" adds up every page number (mod 2^32), as a consumer that reads
   * each one; "last" folds in only each batch's last page number, so that
   * the harvest's own work is what is timed.
   */
  readonly consume: BatchConsumer;
}

/** What a harvest share reports. */
export interface HarvestPagesResult {
  /** Page numbers harvested. */
  readonly pages: number;
  /** The consumer's fold of them (see {@link HarvestPagesTask.consume}). */
  readonly checksum: number;
  /** Batches the share took. */
  readonly batches: number;
  /** Wall time of the harvest in the worker, ns. */
  readonly elapsedNs: number;
  /**
   * When the share's harvest began, ms on the clock every thread shares
   * (performance.timeOrigin + performance.now()): how long the worker took
   * to wake shows against the moment the harvest was asked for.
   */
  readonly startedAtMs: number;
}

/** The dirty-tracking task types and their results. */
export interface DirtyTaskResults {
  "dirty.harvest-pages": HarvestPagesResult;
}
