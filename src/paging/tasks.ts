import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import type { WalkExports } from "../wasm/walk.js";
import { PagingMachine, type PagingStats } from "./machine.js";
import { consumeRing } from "./ring.js";
import type { PagingRunTask } from "./task-types.js";

function runConfigs(context: KernelContext, task: PagingRunTask): PagingStats[] {
  const kernel = context.exports<WalkExports>("walk");
  const machines = task.machines.map(
    (m) => new PagingMachine(context.memory, kernel, m.regions, m.options),
  );
  consumeRing(context.memory, task.ring, task.consumer, (offset, count) => {
    for (const machine of machines) machine.runRecords(offset, count);
  });
  return machines.map((machine) => machine.stats());
}

/** The paging domain's tasks: one configuration of a comparison per worker. */
export const handlers = defineHandlers({
  "paging.run": runConfigs,
});
