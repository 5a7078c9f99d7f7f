import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import type { ReceiveResult, ReceiveTask } from "./task-types.js";

function receive(context: KernelContext, task: ReceiveTask): ReceiveResult {
  const job = {
    frames: new Region(task.frames),
    table: new Region(task.table),
    work: new Region(task.work),
    first: task.first,
    count: task.count,
    rings: task.rings.map((d) => ({
      region: new Region(d.region),
      slots: d.slots,
      slotBytes: d.slotBytes,
    })),
    switchTable: task.switchTable,
    coalesce: task.coalesce,
    maxCoalesce: task.maxCoalesce,
    deliverBad: task.deliverBad,
    trustChecksums: task.trustChecksums,
    scratch: new Region(task.scratch),
  };
  const kernel = context.receive;
  passGate(context.memory, task.gate);
  const started = process.hrtime.bigint();
  const result = kernel.receive(job);
  return { ...result, busyNs: Number(process.hrtime.bigint() - started) };
}

/** The networking domain's tasks: a VMQ processor's receive work. */
export const handlers = defineHandlers({
  "net.receive": receive,
});
