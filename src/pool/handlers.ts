import { dirtyTaskHandlers } from "../dirty/tasks.js";
import { guestTaskHandlers } from "../guest/tasks.js";
import { migrationTaskHandlers } from "../migration/tasks.js";
import { netTaskHandlers } from "../net/tasks.js";
import { pagingTaskHandlers } from "../paging/tasks.js";
import type { KernelContext } from "./context.js";
import type { PoolTask } from "./protocol.js";

type AnyHandler = (context: KernelContext, task: PoolTask) => unknown;

/** Every domain's task handlers, by task type. */
const HANDLERS: Readonly<Record<string, AnyHandler>> = {
  ...(guestTaskHandlers as Record<string, AnyHandler>),
  ...(dirtyTaskHandlers as Record<string, AnyHandler>),
  ...(migrationTaskHandlers as Record<string, AnyHandler>),
  ...(netTaskHandlers as Record<string, AnyHandler>),
  ...(pagingTaskHandlers as Record<string, AnyHandler>),
};

/** Runs one task message on a worker's kernels. */
export function handleTask(context: KernelContext, task: PoolTask): unknown {
  const handler = HANDLERS[(task as { type?: unknown }).type as string];
  if (!handler) {
    throw new TypeError(`unknown task type '${String((task as { type?: unknown }).type)}'`);
  }
  return handler(context, task);
}
