import { workerData } from "node:worker_threads";
import { KernelContext } from "../wasm/context.js";
import { HandlerTable } from "./domains.js";
import type { WorkerBoot } from "./pool.js";

// Each worker gets the engine's shared memory and compiled modules once, in
// workerData, and instantiates its own kernels over them. It loads the
// handlers of the domains its pool names before taking any task: piscina
// imports this module, and the import waits for this top-level await.
const boot = workerData as WorkerBoot;
const context = new KernelContext(boot);
const table = await HandlerTable.load(boot.domains);

/** Piscina's entry point: one task message in, one small result out. */
export default function run(task: unknown): unknown {
  return table.handle(context, task);
}
