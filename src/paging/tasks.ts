import type { KernelContext } from "../pool/context.js";
import type { TaskHandlers } from "../pool/protocol.js";
import type { WalkExports } from "../wasm/walk.js";
import { PagingMachine, type PagingStats } from "./machine.js";
import { consumeRing } from "./ring.js";
import type { PagingRunTask } from "./task-types.js";

function runConfig(context: KernelContext, task: PagingRunTask): PagingStats {
  const machine = new PagingMachine(
    context.memory,
    context.exports<WalkExports>("walk"),
    task.regions,
    task.machine,
  );
  consumeRing(context.memory, task.ring, task.consumer, (offset, count) =>
    machine.runRecords(offset, count),
  );
  return machine.stats();
}

/** The paging domain's tasks: one configuration of a comparison per worker. */
export const pagingTaskHandlers: TaskHandlers<PagingRunTask> = {
  "paging.run": runConfig,
};
