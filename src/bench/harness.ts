import { Bench } from "tinybench";
import type { MachineInfo } from "./machine.js";
import { machineInfo } from "./machine.js";

/** One implementation measured in a case: hvlab's kernel or one of its peers. */
export interface BenchImpl {
  /**
   * Its name, e.g. "hvlab", "oracle", "memory read (bound)". hvlab's own
   * implementations are named "hvlab" or "hvlab ..." (see {@link isOwnImpl}).
   */
  readonly impl: string;
  /**
   * One call; it may do several operations (see {@link BenchCase.opsPerCall}).
   * Work that completes later (pool tasks) must be an `async` function: it is
   * then awaited inside the timed window, and never probed by a stray call.
   */
  readonly fn: () => unknown;
}

/** A case: the same work done by hvlab's kernel and its peers, in the same run. */
export interface BenchCase {
  /** What is measured, e.g. "harvest+iterate 1 TiB guest, 1% dirty". */
  readonly case: string;
  /** Operations one call does (hz counts operations, not calls). Default 1. */
  readonly opsPerCall?: number;
  /** Bytes one operation processes, for bytesPerSecond; omit when bytes mean nothing. */
  readonly bytesPerOp?: number;
  /** The implementations, hvlab's own among them. */
  readonly impls: readonly BenchImpl[];
  /**
   * Runs before timing and throws if any implementation's result is wrong or
   * disagrees with the others: a benchmark never times a wrong answer.
   */
  readonly verify: () => void | Promise<void>;
  /** Runs before each implementation is timed (resetting state the calls consume). */
  readonly beforeEach?: () => void;
  /**
   * Runs before every timed call, outside the timed window (refilling what a
   * call consumes, or restarting a process a call killed; awaited).
   */
  readonly beforeEachCall?: () => void | Promise<void>;
  /**
   * Timed calls per implementation (default: tinybench's 64 at least), for
   * cases whose one call takes seconds; warm-up is then a single call.
   */
  readonly iterations?: number;
  /**
   * With {@link iterations}: untimed calls of each implementation before
   * its timed ones (default 1), for cases whose first calls run slower
   * than the rest (code in other processes still being compiled).
   */
  readonly warmupIterations?: number;
}

/** A suite: cases built over fresh state, and how to release it. */
export interface BenchSuite {
  readonly name: string;
  readonly description: string;
  /** Builds the cases; `quick` asks for small sizes (tests). */
  setup(options: SuiteOptions): Promise<PreparedSuite>;
}

/** What a suite's setup returns. */
export interface PreparedSuite {
  readonly cases: readonly BenchCase[];
  /**
   * What the figures were measured under, beyond the machine (for file I/O:
   * `pageCache`, whether the host's page cache was in play).
   */
  readonly conditions?: Readonly<Record<string, string | number | boolean>>;
  teardown(): Promise<void>;
}

/** How a suite runs. */
export interface SuiteOptions {
  /** Milliseconds of timing per implementation (default 500). */
  readonly timeMs: number;
  /** Small sizes and short timing, for tests. */
  readonly quick: boolean;
  /**
   * Direct I/O (O_DIRECT) for suites that do file I/O: around the host's
   * page cache. Absent when the user chose neither way: each suite then
   * takes its own default (storage buffered, csv unbuffered, as Hyper-V
   * 2.0's I/O on a Cluster Shared Volume is).
   */
  readonly direct?: boolean;
  /** Time only the cases whose name matches (all when absent). */
  readonly cases?: RegExp;
  /** Called as each case finishes. */
  readonly onProgress?: (done: number, total: number, name: string) => void;
}

/** One line of results, in the JSON form of ARCHITECTURE.md. */
export interface BenchResult {
  readonly case: string;
  readonly impl: string;
  readonly hz: number;
  readonly bytesPerSecond: number | null;
  readonly meanNs: number;
  /**
   * Median time per operation, ns: robust to the stray slow samples a shared
   * machine produces, where the mean is not.
   */
  readonly medianNs: number;
  /** Median absolute deviation of the time per operation, ns (unscaled). */
  readonly madNs: number;
  /** 99th percentile of the time per operation, ns: the tail a queue's latency is judged by. */
  readonly p99Ns?: number;
  readonly rme: number;
  readonly samples: number;
}

/** A suite's results: `hvlab bench <suite> --json` prints exactly this. */
export interface SuiteResult {
  readonly suite: string;
  readonly machine: MachineInfo;
  /** The suite's {@link PreparedSuite.conditions}, when it states any. */
  readonly conditions?: Readonly<Record<string, string | number | boolean>>;
  readonly results: readonly BenchResult[];
}

/** Thrown when a case's verification fails: nothing is timed. */
export class BenchVerificationError extends Error {
  override name = "BenchVerificationError";
}

/** Runs a suite: verify each case, then time each implementation. */
export async function runSuite(suite: BenchSuite, options: SuiteOptions): Promise<SuiteResult> {
  const prepared = await suite.setup(options);
  const results: BenchResult[] = [];
  try {
    let done = 0;
    const chosen = prepared.cases.filter((c) => !options.cases || options.cases.test(c.case));
    for (const benchCase of chosen) {
      if (!benchCase.impls.some((impl) => isOwnImpl(impl.impl))) {
        throw new BenchVerificationError(`case '${benchCase.case}' has no hvlab implementation`);
      }
      try {
        await benchCase.verify();
      } catch (cause) {
        throw new BenchVerificationError(
          `case '${benchCase.case}' failed verification: ${(cause as Error).message}`,
        );
      }
      const ops = benchCase.opsPerCall ?? 1;
      for (const impl of benchCase.impls) {
        benchCase.beforeEach?.();
        const bench = new Bench({
          time: options.timeMs,
          // At least a few samples, but let slow peers (a one-page-at-a-time
          // oracle over a 1 TiB bitmap) stop once the time budget is spent.
          iterations: 3,
          warmupTime: Math.min(100, options.timeMs / 5),
          warmupIterations: 2,
          throws: true,
          ...(benchCase.iterations !== undefined
            ? {
                iterations: benchCase.iterations,
                warmupIterations: benchCase.warmupIterations ?? 1,
              }
            : {}),
        });
        bench.add(impl.impl, impl.fn, {
          // Said outright: left to itself, tinybench calls the function once,
          // unawaited, to see whether it returns a promise.
          async: impl.fn.constructor.name === "AsyncFunction",
          ...(benchCase.beforeEachCall ? { beforeEach: benchCase.beforeEachCall } : {}),
        });
        await bench.run();
        const task = bench.tasks[0];
        const result = task?.result;
        if (!result || !("latency" in result)) {
          throw new Error(`case '${benchCase.case}' / ${impl.impl}: no timing result`);
        }
        const meanMs = result.latency.mean;
        const hz = (1000 / meanMs) * ops;
        results.push({
          case: benchCase.case,
          impl: impl.impl,
          hz,
          bytesPerSecond: benchCase.bytesPerOp === undefined ? null : hz * benchCase.bytesPerOp,
          meanNs: (meanMs * 1e6) / ops,
          medianNs: (result.latency.p50 * 1e6) / ops,
          madNs: (result.latency.mad * 1e6) / ops,
          p99Ns: (result.latency.p99 * 1e6) / ops,
          rme: result.latency.rme,
          samples: result.latency.samplesCount,
        });
      }
      done++;
      options.onProgress?.(done, chosen.length, benchCase.case);
    }
  } finally {
    await prepared.teardown();
  }
  return {
    suite: suite.name,
    machine: machineInfo(),
    ...(prepared.conditions ? { conditions: prepared.conditions } : {}),
    results,
  };
}

/** Whether an implementation name is hvlab's own ("hvlab" or "hvlab ..."). */
export function isOwnImpl(impl: string): boolean {
  return impl === "hvlab" || impl.startsWith("hvlab ");
}

/**
 * Each result's speed as a ratio to the first hvlab implementation of its case
 * (1 for that one; 0.5 for a peer half as fast).
 */
export function ratioToOwn(result: SuiteResult, row: BenchResult): number | null {
  const own = result.results.find((r) => r.case === row.case && isOwnImpl(r.impl));
  return own ? row.hz / own.hz : null;
}
