import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../memory/dirty-bitmap-pair.js";
import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { checkMarkingInPair } from "../wasm/dirty.js";
import type { MarkPagesInPairTask, MarkPagesTask, MarkResult } from "./task-types.js";

function bitmapOf(task: { bitmap: MarkPagesTask["bitmap"] }): DirtyBitmap {
  return new DirtyBitmap(new Region(task.bitmap.region), task.bitmap.pages, task.bitmap.pageShift);
}

function markPages(context: KernelContext, task: MarkPagesTask): MarkResult {
  const bitmap = bitmapOf(task);
  // Validate before the gate, so a bad task fails alone rather than at the gate.
  if (task.count > 0 && task.step < 1) {
    // A step of 0 or less would mark one page over and over.
    throw new RangeError(`mark-pages: page step must be at least 1, not ${task.step}`);
  }
  const last = task.first + (task.count - 1) * task.step;
  if (task.count > 0 && last >= bitmap.pages) {
    throw new RangeError(`mark-pages: pages ${task.first}..${last} pass the bitmap's end`);
  }
  passGate(context.memory, task.gate);
  const started = process.hrtime.bigint();
  let newly = 0;
  const dirty = context.dirty;
  for (let i = 0, page = task.first; i < task.count; i++, page += task.step) {
    if (dirty.markPage(bitmap, page)) newly++;
  }
  return { newlyDirty: newly, elapsedNs: Number(process.hrtime.bigint() - started) };
}

function markPagesInPair(context: KernelContext, task: MarkPagesInPairTask): MarkResult {
  const pair = DirtyBitmapPair.fromDescriptor(task.pair);
  const dirty = context.dirty;
  // Validate before the gate, so a bad task fails alone rather than at the gate.
  checkMarkingInPair(pair, task.slot, task.first, task.count, task.step, task.batch);
  passGate(context.memory, task.gate);
  const started = process.hrtime.bigint();
  const newlyDirty = dirty.markPagesInPair(
    pair,
    task.slot,
    task.first,
    task.count,
    task.step,
    task.batch,
  );
  return { newlyDirty, elapsedNs: Number(process.hrtime.bigint() - started) };
}

/** The dirty-tracking tasks: marking pages on a worker, in a bitmap or in a pair. */
export const handlers = defineHandlers({
  "dirty.mark-pages": markPages,
  "dirty.mark-pages-in-pair": markPagesInPair,
});
