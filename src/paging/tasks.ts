import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { PagingMachine, type PagingStats } from "./machine.js";
import { consumeRing } from "./ring.js";
import type { PagingRunTask } from "./task-types.js";

function runConfigs(context: KernelContext, task: PagingRunTask): PagingStats[] {
  const kernel = context.walk;
  const machines = task.machines.map(
    (m) => new PagingMachine(context.memory, kernel, m.regions, m.options),
  );
  consumeRing(context.memory, task.ring, task.consumer, (records, count) => {
    for (const machine of machines) machine.runRecords(records, count);
  });
  return machines.map((machine) => machine.stats());
}

/** The paging domain's tasks: one configuration of a comparison per worker. */
export const handlers = defineHandlers({
  "paging.run": runConfigs,
});
