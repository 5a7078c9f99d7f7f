import type { KernelContext } from "../wasm/context.js";

/*
 * The cross-thread protocol, filled in by the domains: the pool declares one
 * empty interface and each domain's task-types.ts adds its task types to it
 * by declaration merging,
 *
 *   declare module "../pool/registry.js" {
 *     interface TaskRegistry {
 *       "power.simulate": { task: SimulateTask; result: SimulateResult };
 *     }
 *   }
 *
 * so the pool never imports a domain, and a new engine adds its tasks
 * without editing src/pool/. Task messages carry region descriptors
 * (offsets and lengths), never guest bytes: the bytes are already in the
 * shared memory.
 */

/** Every task type a pool worker can run, by name: `{ task; result }` each. */
// biome-ignore lint/suspicious/noEmptyInterface: the domains fill it by declaration merging.
export interface TaskRegistry {}

/** The name of a registered task type. */
export type TaskType = keyof TaskRegistry & string;

/** The task message of a task type. */
export type TaskOf<K extends TaskType> = TaskRegistry[K] extends { task: infer T } ? T : never;

/** What a task type's handler returns (to the caller of `KernelPool.run`). */
export type ResultFor<K extends TaskType> = TaskRegistry[K] extends { result: infer R } ? R : never;

/** Every task message. */
export type PoolTask = { [K in TaskType]: TaskOf<K> }[TaskType];

/** The result type of a task message, exact for each registered type. */
export type ResultOf<T extends PoolTask> = T extends { readonly type: infer K extends TaskType }
  ? ResultFor<K>
  : never;

/**
 * Registry entries whose task message's `type` is not the name it is
 * registered under (`never` when every entry is right): such a message
 * would reach another type's handler.
 */
export type MisregisteredTask = {
  [K in TaskType]: TaskOf<K> extends { readonly type: K } ? never : K;
}[TaskType];

/** Runs one task of type `K` on a worker's kernels. */
export type TaskHandler<K extends TaskType> = (
  context: KernelContext,
  task: TaskOf<K>,
) => ResultFor<K> | Promise<ResultFor<K>>;

/** A domain's handlers, one per task type it owns. */
export type TaskHandlers<K extends TaskType> = { readonly [P in K]: TaskHandler<P> };

/**
 * Declares a domain's handlers (the `handlers` export of its tasks.ts, which
 * a worker imports at start-up when its pool names the domain). Each
 * handler is checked against the task and result types its key registers.
 */
export function defineHandlers<K extends TaskType>(handlers: TaskHandlers<K>): TaskHandlers<K> {
  return handlers;
}
