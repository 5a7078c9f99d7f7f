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

declare module "../pool/registry.js" {
  /** The dirty-tracking task types: marking pages, in a bitmap or in a pair. */
  interface TaskRegistry {
    "dirty.mark-pages": { task: MarkPagesTask; result: MarkResult };
    "dirty.mark-pages-in-pair": { task: MarkPagesInPairTask; result: MarkResult };
  }
}
