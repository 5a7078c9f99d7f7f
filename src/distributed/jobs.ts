import { fileURLToPath } from "node:url";
import { isTraceUrl } from "../paging/trace-source.js";
import type { KernelPool } from "../pool/pool.js";
import type { SimulationSpec } from "../power/simulate.js";
import type { Payload } from "./payload.js";
import { PayloadError } from "./payload.js";
import type { BatchPoint } from "./task-types.js";

/** The pool domains a worker loads to run every job kind. */
export const WORKER_DOMAINS = ["migration", "power", "distributed"] as const;

/**
 * A trace's location as a worker opens it: a path, a `file:` URL (a path
 * every worker sees), or an `http:`/`https:` URL (fetched and streamed by
 * the paging engine). Any other scheme is refused.
 */
export function traceFile(location: string, where: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(location)) {
    if (isTraceUrl(location)) return location;
    if (!/^file:/i.test(location)) {
      throw new PayloadError(
        `${where}: trace ${location}: only paths, file: and http(s): URLs are read`,
      );
    }
    return fileURLToPath(location);
  }
  return location;
}

export type { BatchPoint } from "./task-types.js";

/** What a batch job returns: its points' outcomes, in its points' order. */
export interface BatchResult {
  readonly points: readonly BatchPoint[];
}

/**
 * Runs one checked job on the worker's pool and returns its result: the
 * same pool task a local run uses for that point, so the records agree.
 */
export async function runJob(pool: KernelPool, payload: Payload, where: string): Promise<unknown> {
  switch (payload.kind) {
    case "migrate-point":
      return pool.run({ type: "migration.sweep-point", options: payload.options });
    case "migrate-points":
      // One pool task for the batch: its points run in turn on one pool
      // worker, each with its own result or error.
      return pool.run({ type: "distributed.migrate-points", options: payload.options });
    case "paging-config": {
      const { trace, config, hvlab: _v, sweep: _s, index: _i, kind: _k, ...rest } = payload;
      return pool.run({
        type: "distributed.paging-config",
        spec: {
          ...rest,
          source: {
            kind: "trace",
            file: traceFile(trace.location, where),
            format: trace.format,
            lenient: trace.lenient,
          },
          configs: [config],
        },
      });
    }
    case "power-point": {
      const { load } = payload.spec;
      const spec: SimulationSpec = {
        ...payload.spec,
        load: {
          ...load,
          ...(load.trace
            ? {
                trace: {
                  columns: load.trace.columns,
                  times: Float64Array.from(load.trace.times),
                  values: Float64Array.from(load.trace.values),
                },
              }
            : {}),
        },
      } as SimulationSpec;
      return pool.run({ type: "power.simulate", spec, timeline: false });
    }
    case "empty":
      return {};
  }
}
