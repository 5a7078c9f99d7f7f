import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { DirtyBitmapPair } from "../memory/dirty-bitmap-pair.js";
import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { checkMarkingInPair, type DirtyKernel } from "../wasm/dirty.js";
import type {
  BatchConsumer,
  HarvestPagesResult,
  HarvestPagesTask,
  MarkPagesInPairTask,
  MarkPagesTask,
  MarkResult,
} from "./task-types.js";

function bitmapOf(task: { bitmap: MarkPagesTask["bitmap"] }): DirtyBitmap {
  return new DirtyBitmap(new Region(task.bitmap.region), task.bitmap.pages, task.bitmap.pageShift);
}

function markPages(context: KernelContext, task: MarkPagesTask): MarkResult {
  const bitmap = bitmapOf(task);
  const last = task.first + (task.count - 1) * task.step;
  if (task.count > 0 && (task.step < 1 || last >= bitmap.pages)) {
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

/**
 * Harvests a share of a quiet bitmap with the one-pass kernel and consumes
 * each batch in place: the page numbers never leave the shared memory.
 */
export function harvestShare(
  dirty: DirtyKernel,
  memory: WebAssembly.Memory,
  bitmap: DirtyBitmap,
  firstPage: number,
  cursor: Region,
  out: Region,
  consume: BatchConsumer,
): HarvestPagesResult {
  const startedAtMs = performance.timeOrigin + performance.now();
  const started = process.hrtime.bigint();
  dirty.resetCursor(cursor);
  const view = new Uint32Array(memory.buffer, out.offset, Math.floor(out.byteLength / 4));
  let pages = 0;
  let batches = 0;
  let checksum = 0;
  for (
    let n = dirty.harvestPagesQuiet(bitmap, cursor, out, firstPage);
    n > 0;
    n = dirty.harvestPagesQuiet(bitmap, cursor, out, firstPage)
  ) {
    pages += n;
    batches++;
    if (consume === "sum") {
      for (let i = 0; i < n; i++) checksum = (checksum + (view[i] ?? 0)) >>> 0;
    } else {
      checksum = (checksum ^ (view[n - 1] ?? 0)) >>> 0;
    }
  }
  return {
    pages,
    checksum,
    batches,
    elapsedNs: Number(process.hrtime.bigint() - started),
    startedAtMs,
  };
}

function harvestPages(context: KernelContext, task: HarvestPagesTask): HarvestPagesResult {
  const bitmap = new DirtyBitmap(
    new Region(task.bitmap.region),
    task.bitmap.pages,
    task.bitmap.pageShift,
  );
  return harvestShare(
    context.dirty,
    context.memory,
    bitmap,
    task.firstPage,
    new Region(task.cursor),
    new Region(task.out),
    task.consume,
  );
}

/** The dirty-tracking tasks: marking pages and harvesting a share of a bitmap on a worker. */
export const handlers = defineHandlers({
  "dirty.mark-pages": markPages,
  "dirty.mark-pages-in-pair": markPagesInPair,
  "dirty.harvest-pages": harvestPages,
});
