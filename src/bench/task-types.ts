import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
import type { RegionDescriptor } from "../memory/region.js";

/*
 * Pool tasks that only the benchmarks run: they consume what a kernel
 * produced in ways that serve timing (a fold of every page number, or of one
 * per batch), not any product path.
 */

/** How a worker consumes the page numbers of each harvested batch. */
export type BatchConsumer = "sum" | "last";

/**
 * Harvest one share of a quiet bitmap (the retired bitmap of a pair, or any
 * bitmap while the vCPUs are paused) into page numbers, batch by batch in the
 * worker's own batch buffer, and consume each batch there.
 */
export interface HarvestPagesTask {
  readonly type: "bench.harvest-pages";
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
  /** The benchmarks' own task types: a parallel harvest share with a timing consumer. */
  interface TaskRegistry {
    "bench.harvest-pages": { task: HarvestPagesTask; result: HarvestPagesResult };
  }
}
