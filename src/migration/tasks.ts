import { Region } from "../memory/region.js";
import type { KernelContext } from "../pool/context.js";
import type { TaskHandlers } from "../pool/protocol.js";
import { emptyEncodeCounts, type PageExports, PageKernel } from "../wasm/page.js";
import { runMigration } from "./engine.js";
import type { MigrationSummary } from "./stats.js";
import type {
  EncodeChannelResult,
  EncodeChannelTask,
  HashPagesTask,
  SweepPointTask,
} from "./task-types.js";

function encodeChannel(context: KernelContext, task: EncodeChannelTask): EncodeChannelResult {
  const kernel = new PageKernel(
    context.memory,
    context.exports<PageExports>("page"),
    new Region(task.scratch),
  );
  const stats = new Region(task.stats);
  const consumed = kernel.encodePages({
    ram: new Region(task.ram),
    pageShift: task.pageShift,
    list: new Region(task.list),
    listStart: task.listStart,
    count: task.count,
    out: new Region(task.packet),
    zeroPages: task.zeroPages,
    stats,
    ...(task.hashes ? { hashes: new Region(task.hashes) } : {}),
  });
  return { consumed, counts: kernel.takeEncodeStats(stats, emptyEncodeCounts()) };
}

function hashPages(context: KernelContext, task: HashPagesTask): undefined {
  const kernel = new PageKernel(
    context.memory,
    context.exports<PageExports>("page"),
    new Region(task.scratch),
  );
  kernel.hashPages(new Region(task.ram), task.pageShift, 0, task.count, new Region(task.out));
  return undefined;
}

async function sweepPoint(
  _context: KernelContext,
  task: SweepPointTask,
): Promise<{ summary: MigrationSummary }> {
  // Each point migrates its own guest in its own memory on this worker; the
  // rounds stay here (the sweep reports summaries), so the reply is small.
  const { summary } = await runMigration(task.options);
  return { summary };
}

/** The migration domain's tasks: multifd channels and sweep points. */
export const migrationTaskHandlers: TaskHandlers<
  EncodeChannelTask | HashPagesTask | SweepPointTask
> = {
  "migration.hash-pages": hashPages,
  "migration.encode-channel": encodeChannel,
  "migration.sweep-point": sweepPoint,
};
