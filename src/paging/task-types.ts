import type { MachineOptions, MachineRegions, PagingStats } from "./machine.js";
import type { RingDescriptor } from "./ring.js";

/**
 * Run paging configurations over a trace ring, as consumer `consumer`: one
 * configuration per worker normally, several when there are fewer workers.
 */
export interface PagingRunTask {
  readonly type: "paging.run";
  readonly machines: readonly {
    readonly options: MachineOptions;
    readonly regions: MachineRegions;
  }[];
  readonly ring: RingDescriptor;
  readonly consumer: number;
}

declare module "../pool/registry.js" {
  /** The paging domain's task types: configurations run over a trace ring. */
  interface TaskRegistry {
    "paging.run": { task: PagingRunTask; result: PagingStats[] };
  }
}
