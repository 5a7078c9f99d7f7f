import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
import type { DirtyBitmapPairDescriptor } from "../memory/dirty-bitmap-pair.js";
import type { DirtyRingDescriptor } from "../memory/dirty-ring.js";
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

/** Run `count` writes of one vCPU's workload. */
export interface RunWorkloadTask {
  readonly type: "workload.run";
  readonly descriptor: RegionDescriptor;
  readonly bitmap: DirtyBitmapDescriptor;
  readonly ram?: RegionDescriptor;
  readonly ring?: DirtyRingDescriptor;
  /** Mark this epoch-swapped pair (whose bitmap 0 is `bitmap`) as writer `slot`. */
  readonly pair?: { readonly pair: DirtyBitmapPairDescriptor; readonly slot: number };
  readonly count: number;
  readonly gate?: RegionDescriptor;
}

/** What a marking or workload task reports. */
export interface MarkResult {
  /** Pages this task found clean and made dirty (or logged in its ring). */
  readonly newlyDirty: number;
  /** Wall time of the marking alone, after the gate, in nanoseconds. */
  readonly elapsedNs: number;
}

/** The guest's task types and their results. */
export interface GuestTaskResults {
  "dirty.mark-pages": MarkResult;
  "dirty.mark-pages-in-pair": MarkResult;
  "workload.run": MarkResult;
}
