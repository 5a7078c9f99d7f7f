import type { MarkResult } from "../dirty/task-types.js";
import type { DirtyBitmapDescriptor } from "../memory/dirty-bitmap.js";
import type { DirtyBitmapPairDescriptor } from "../memory/dirty-bitmap-pair.js";
import type { DirtyRingDescriptor } from "../memory/dirty-ring.js";
import type { RegionDescriptor } from "../memory/region.js";

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

declare module "../pool/registry.js" {
  /** The guest's task types: a vCPU's writes. */
  interface TaskRegistry {
    "workload.run": { task: RunWorkloadTask; result: MarkResult };
  }
}
