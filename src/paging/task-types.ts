import type { MachineOptions, MachineRegions, PagingStats } from "./machine.js";
import type { RingDescriptor } from "./ring.js";

/** Run one paging configuration over a trace ring, as consumer `consumer`. */
export interface PagingRunTask {
  readonly type: "paging.run";
  readonly machine: MachineOptions;
  readonly regions: MachineRegions;
  readonly ring: RingDescriptor;
  readonly consumer: number;
}

/** The paging domain's task types and their results. */
export interface PagingTaskResults {
  "paging.run": PagingStats;
}
