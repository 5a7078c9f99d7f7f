import { Region } from "../memory/region.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import type { PageKernel } from "../wasm/page.js";
import { runMigration } from "./engine.js";
import { runChannel } from "./multifd-channel.js";
import type { MigrationSummary } from "./stats.js";
import { serveStream } from "./stream-pipeline.js";
import type {
  ChannelResult,
  ChannelTask,
  HashPagesTask,
  StreamReceiveTask,
  SweepPointTask,
} from "./task-types.js";

function pageKernel(context: KernelContext, scratch: Region): PageKernel {
  return context.page(scratch);
}

function channel(context: KernelContext, task: ChannelTask): ChannelResult {
  const far = context.peer(task.destination.memory);
  const end = (side: KernelContext, scratch: Region) => ({
    memory: side.memory,
    kernel: side.multifd(scratch),
  });
  return runChannel(
    end(context, new Region(task.scratch)),
    end(far, new Region(task.destination.scratch)),
    task,
  );
}

function streamReceive(context: KernelContext, task: StreamReceiveTask): Promise<number> {
  const far = context.peer(task.destination.memory);
  return serveStream(
    context.memory,
    { memory: far.memory, kernel: far.multifd(new Region(task.destination.scratch)) },
    task,
  );
}

function hashPages(context: KernelContext, task: HashPagesTask): undefined {
  const kernel = pageKernel(context, new Region(task.scratch));
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
export const handlers = defineHandlers({
  "migration.hash-pages": hashPages,
  "migration.channel": channel,
  "migration.stream-receive": streamReceive,
  "migration.sweep-point": sweepPoint,
});
