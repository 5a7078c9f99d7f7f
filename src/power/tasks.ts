import { defineHandlers } from "../pool/registry.js";
import { simulate } from "./simulate.js";
import type { SimulateTask } from "./task-types.js";

function simulateTask(_context: unknown, task: SimulateTask) {
  // The point runs in its own memory on this worker (its regions are its
  // own), so nothing of the pool's shared memory is touched.
  const result = simulate(task.spec);
  return task.timeline ? result : { ...result, timeline: [] };
}

/** The power domain's tasks: simulations (sweep points). */
export const handlers = defineHandlers({
  "power.simulate": simulateTask,
});
