import { comparePaging } from "../paging/compare.js";
import { defineHandlers } from "../pool/registry.js";
import type { PagingConfigTask } from "./task-types.js";

function pagingConfig(_context: unknown, task: PagingConfigTask) {
  // threads 0: the configuration runs on this worker in its own memory, so
  // the worker process runs as many configurations at once as it has workers.
  return comparePaging({ ...task.spec, threads: 0 });
}

/** The distributed domain's tasks: a paging configuration over a trace. */
export const handlers = defineHandlers({
  "distributed.paging-config": pagingConfig,
});
