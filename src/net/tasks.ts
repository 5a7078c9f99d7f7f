import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { receiveBatch } from "./receive-batch.js";
import { ReceiveRing } from "./ring.js";
import type { ReceiveResult, ReceiveTask } from "./task-types.js";

function receive(context: KernelContext, task: ReceiveTask): ReceiveResult {
  const memory = context.memory;
  const batch = {
    frames: new Region(task.frames),
    table: new Region(task.table),
    work: new Region(task.work),
    first: task.first,
    count: task.count,
    rings: task.rings.map((d) => ReceiveRing.open(memory, d)),
    switchTable: task.switchTable,
    coalesce: task.coalesce,
    maxCoalesce: task.maxCoalesce,
    deliverBad: task.deliverBad,
    trustChecksums: task.trustChecksums,
  };
  const kernels = {
    memory,
    segment: context.segment,
    checksum: context.checksum,
  };
  passGate(memory, task.gate);
  const started = process.hrtime.bigint();
  const result = receiveBatch(kernels, batch);
  return { ...result, busyNs: Number(process.hrtime.bigint() - started) };
}

/** The networking domain's tasks: a VMQ processor's receive work. */
export const handlers = defineHandlers({
  "net.receive": receive,
});
