import type { DirtyTaskResults, HarvestPagesTask } from "../dirty/task-types.js";
import type {
  GuestTaskResults,
  MarkPagesInPairTask,
  MarkPagesTask,
  RunWorkloadTask,
} from "../guest/task-types.js";
import type {
  ChannelTask,
  HashPagesTask,
  MigrationTaskResults,
  SweepPointTask,
} from "../migration/task-types.js";
import type { NetTaskResults, ReceiveTask } from "../net/task-types.js";
import type { PagingRunTask, PagingTaskResults } from "../paging/task-types.js";
import type { KernelContext } from "./context.js";

/*
 * The cross-thread protocol: every task a worker runs is one of these named
 * message types, declared beside the domain that owns it (its task-types.ts)
 * and gathered here. Messages carry region descriptors (offsets and lengths),
 * never guest bytes: the bytes are already in the shared memory.
 */

/** Every task message. */
export type PoolTask =
  | MarkPagesTask
  | MarkPagesInPairTask
  | RunWorkloadTask
  | HarvestPagesTask
  | ChannelTask
  | HashPagesTask
  | SweepPointTask
  | PagingRunTask
  | ReceiveTask;

/** Task types and the results they produce. */
export interface TaskResults
  extends GuestTaskResults,
    DirtyTaskResults,
    MigrationTaskResults,
    PagingTaskResults,
    NetTaskResults {}

/** The result type of a task message. */
export type ResultOf<T extends PoolTask> = T["type"] extends keyof TaskResults
  ? TaskResults[T["type"]]
  : never;

/** A domain's table of handlers, one per task type it owns. */
export type TaskHandlers<T extends { type: string }> = {
  readonly [K in T["type"]]: (context: KernelContext, task: Extract<T, { type: K }>) => unknown;
};
