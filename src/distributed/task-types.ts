import type { CompareResult, CompareSpec } from "../paging/compare.js";

/**
 * One paging configuration over one trace, run whole on a pool worker
 * (the trace read there, the machine on that thread): the unit a
 * distributed `hvlab paging compare` hands a worker.
 */
export interface PagingConfigTask {
  readonly type: "distributed.paging-config";
  /** The comparison, one configuration, read from a file path the worker can open. */
  readonly spec: Omit<CompareSpec, "onProgress" | "threads">;
}

declare module "../pool/registry.js" {
  /** The distributed domain's task types: what a queue's job runs that no engine task does. */
  interface TaskRegistry {
    "distributed.paging-config": { task: PagingConfigTask; result: CompareResult };
  }
}
