import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { Region } from "../memory/region.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import type { DirtyKernel } from "../wasm/dirty.js";
import type { BatchConsumer, HarvestPagesResult, HarvestPagesTask } from "./task-types.js";

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

/** The benchmarks' tasks: a share of a parallel harvest, consumed for timing. */
export const handlers = defineHandlers({
  "bench.harvest-pages": harvestPages,
});
