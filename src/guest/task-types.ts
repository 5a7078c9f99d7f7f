import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
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

/** Run `count` writes of one vCPU's workload. */
export interface RunWorkloadTask {
  readonly type: "workload.run";
  readonly descriptor: RegionDescriptor;
  readonly bitmap: DirtyBitmapDescriptor;
  readonly ram?: RegionDescriptor;
  readonly ring?: DirtyRingDescriptor;
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
  "workload.run": MarkResult;
}
