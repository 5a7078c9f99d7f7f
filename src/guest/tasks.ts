import type { MarkResult } from "../dirty/task-types.js";
import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../memory/dirty-bitmap-pair.js";
import { DirtyRing } from "../memory/dirty-ring.js";
import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import type { RunWorkloadTask } from "./task-types.js";

function bitmapOf(task: { bitmap: RunWorkloadTask["bitmap"] }): DirtyBitmap {
  return new DirtyBitmap(new Region(task.bitmap.region), task.bitmap.pages, task.bitmap.pageShift);
}

function runWorkload(context: KernelContext, task: RunWorkloadTask): MarkResult {
  const target = {
    descriptor: new Region(task.descriptor),
    bitmap: bitmapOf(task),
    ...(task.ram ? { ram: new Region(task.ram) } : {}),
    ...(task.ring ? { ring: new DirtyRing(new Region(task.ring.region), task.ring.entries) } : {}),
    ...(task.pair
      ? { pair: { pair: DirtyBitmapPair.fromDescriptor(task.pair.pair), slot: task.pair.slot } }
      : {}),
  };
  passGate(context.memory, task.gate);
  const started = process.hrtime.bigint();
  const newlyDirty = context.workload.run(target, task.count);
  return { newlyDirty, elapsedNs: Number(process.hrtime.bigint() - started) };
}

/** The guest's tasks: vCPU writes on pool workers. */
export const handlers = defineHandlers({
  "workload.run": runWorkload,
});
