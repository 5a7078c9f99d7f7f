import type { MigrationOptions } from "../migration/options.js";
import type { CompareResult, CompareSpec } from "../paging/compare.js";

/** One point of a batch job's result: its value, or its error alone. */
export type BatchPoint =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: string; readonly attempts?: number };

/**
 * A batch job's sweep points, run one after another on one pool worker:
 * the batch crosses between threads once, not once a point (each crossing
 * waits for the process's main thread, which also serves the queue).
 */
export interface MigratePointsTask {
  readonly type: "distributed.migrate-points";
  /** Each point's options, without callbacks (they cannot cross threads). */
  readonly options: readonly Omit<MigrationOptions, "onRound" | "beforeVerify">[];
}

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
    "distributed.migrate-points": {
      task: MigratePointsTask;
      result: { readonly points: readonly BatchPoint[] };
    };
  }
}
