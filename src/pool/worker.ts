import { workerData } from "node:worker_threads";
import { KernelContext, type WorkerBoot } from "./context.js";
import { handleTask } from "./handlers.js";
import type { PoolTask } from "./protocol.js";

// Each worker gets the engine's shared memory and compiled modules once, in
// workerData, and instantiates its own kernels over them.
const context = new KernelContext(workerData as WorkerBoot);

/** Piscina's entry point: one task message in, one small result out. */
export default function run(task: PoolTask): unknown {
  return handleTask(context, task);
}
