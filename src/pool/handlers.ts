import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { DirtyRing } from "../memory/dirty-ring.js";
import { Region } from "../memory/region.js";
import type { KernelContext } from "./context.js";
import { StartGate } from "./gate.js";
import type { MarkPagesTask, MarkResult, PoolTask, RunWorkloadTask } from "./protocol.js";

function bitmapOf(task: { bitmap: MarkPagesTask["bitmap"] }): DirtyBitmap {
  return new DirtyBitmap(new Region(task.bitmap.region), task.bitmap.pages, task.bitmap.pageShift);
}

function passGate(context: KernelContext, gate: MarkPagesTask["gate"]): void {
  if (gate) new StartGate(context.memory, gate).arriveAndWait();
}

function markPages(context: KernelContext, task: MarkPagesTask): MarkResult {
  const bitmap = bitmapOf(task);
  const last = task.first + (task.count - 1) * task.step;
  if (task.count > 0 && (task.step < 1 || last >= bitmap.pages)) {
    throw new RangeError(`mark-pages: pages ${task.first}..${last} pass the bitmap's end`);
  }
  passGate(context, task.gate);
  const started = process.hrtime.bigint();
  let newly = 0;
  const dirty = context.dirty;
  for (let i = 0, page = task.first; i < task.count; i++, page += task.step) {
    if (dirty.markPage(bitmap, page)) newly++;
  }
  return { newlyDirty: newly, elapsedNs: Number(process.hrtime.bigint() - started) };
}

function runWorkload(context: KernelContext, task: RunWorkloadTask): MarkResult {
  const target = {
    descriptor: new Region(task.descriptor),
    bitmap: bitmapOf(task),
    ...(task.ram ? { ram: new Region(task.ram) } : {}),
    ...(task.ring ? { ring: new DirtyRing(new Region(task.ring.region), task.ring.entries) } : {}),
  };
  passGate(context, task.gate);
  const started = process.hrtime.bigint();
  const newlyDirty = context.workload.run(target, task.count);
  return { newlyDirty, elapsedNs: Number(process.hrtime.bigint() - started) };
}

/** Runs one task message on a worker's kernels. */
export function handleTask(context: KernelContext, task: PoolTask): unknown {
  switch (task.type) {
    case "dirty.mark-pages":
      return markPages(context, task);
    case "workload.run":
      return runWorkload(context, task);
    default: {
      const unknown: { type?: unknown } = task;
      throw new TypeError(`unknown task type '${String(unknown.type)}'`);
    }
  }
}
