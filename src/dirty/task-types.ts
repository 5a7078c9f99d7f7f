import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
import type { DirtyBitmapPairDescriptor } from "../memory/dirty-bitmap-pair.js";
import type { RegionDescriptor } from "../memory/region.js";

/** Mark pages `first, first + step, ...` (`count` of them) in a bitmap. */
export interface MarkPagesTask {
  readonly type: "dirty.mark-pages";
  readonly bitmap: DirtyBitmapDescriptor;
  readonly first: number;
  readonly count: number;
  readonly step: number;
  /** A start gate to pass before marking, so that workers mark at once. */
  readonly gate?: RegionDescriptor;
}

/**
 * Mark pages `first, first + step, ...` (`count` of them) in the active
 * bitmap of an epoch-swapped pair, as writer `slot`, re-reading the epoch
 * every `batch` pages.
 */
export interface MarkPagesInPairTask {
  readonly type: "dirty.mark-pages-in-pair";
  readonly pair: DirtyBitmapPairDescriptor;
  readonly slot: number;
  readonly first: number;
  readonly count: number;
  readonly step: number;
  readonly batch?: number;
  /** A start gate to pass before marking, so that workers mark at once. */
  readonly gate?: RegionDescriptor;
}

/** What a marking or workload task reports. */
export interface MarkResult {
  /** Pages this task found clean and made dirty (or logged in its ring). */
  readonly newlyDirty: number;
  /** Wall time of the marking alone, after the gate, in nanoseconds. */
  readonly elapsedNs: number;
}

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

declare module "../pool/registry.js" {
  /** The dirty-tracking task types: marking pages and harvesting a share of a bitmap. */
  interface TaskRegistry {
    "dirty.mark-pages": { task: MarkPagesTask; result: MarkResult };
    "dirty.mark-pages-in-pair": { task: MarkPagesInPairTask; result: MarkResult };
    "dirty.harvest-pages": { task: HarvestPagesTask; result: HarvestPagesResult };
  }
}
