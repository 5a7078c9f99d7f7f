import type { SimulationResult, SimulationSpec } from "./simulate.js";

/**
 * One simulation on a worker, in its own memory (a sweep point). The spec is
 * plain data (a trace's samples travel as typed arrays); only the result
 * comes back, without its timeline unless asked.
 */
export interface SimulateTask {
  readonly type: "power.simulate";
  readonly spec: SimulationSpec;
  readonly timeline: boolean;
}

declare module "../pool/registry.js" {
  /** The power domain's task types: one simulation. */
  interface TaskRegistry {
    "power.simulate": { task: SimulateTask; result: SimulationResult };
  }
}
