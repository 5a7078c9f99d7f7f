import { runMigration } from "../migration/engine.js";
import { comparePaging } from "../paging/compare.js";
import { defineHandlers } from "../pool/registry.js";
import type { BatchPoint, MigratePointsTask, PagingConfigTask } from "./task-types.js";

function pagingConfig(_context: unknown, task: PagingConfigTask) {
  // threads 0: the configuration runs on this worker in its own memory, so
  // the worker process runs as many configurations at once as it has workers.
  return comparePaging({ ...task.spec, threads: 0 });
}

async function migratePoints(
  _context: unknown,
  task: MigratePointsTask,
): Promise<{ points: BatchPoint[] }> {
  // What migration.sweep-point does for one point, for each in turn: each
  // migrates its own guest in its own memory, and a point that fails fails
  // alone. The worker's other threads take the next jobs meanwhile.
  const points: BatchPoint[] = [];
  for (const options of task.options) {
    try {
      const { summary } = await runMigration(options);
      points.push({ ok: true, value: { summary } });
    } catch (error) {
      points.push({ ok: false, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return { points };
}

/** The distributed domain's tasks: a paging configuration over a trace, a batch of sweep points. */
export const handlers = defineHandlers({
  "distributed.paging-config": pagingConfig,
  "distributed.migrate-points": migratePoints,
});
