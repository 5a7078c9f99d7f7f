import { availableParallelism } from "node:os";
import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { WalkKernel } from "../wasm/walk.js";
import { costModelRows } from "./cost.js";
import { PagingError } from "./errors.js";
import {
  type MachineOptions,
  type MachineRegions,
  type PagingConfig,
  PagingMachine,
  type PagingStats,
  standardConfigs,
} from "./machine.js";
import { MmuContext } from "./mmu.js";
import type { CostModel, TranslationCaches } from "./presets.js";
import { allocateRing, RingProducer } from "./ring.js";
import { type StreamOptions, streamTrace, type TraceFormat, type TraceSummary } from "./trace.js";
import { AccessGenerator, type AccessPattern, type OsActivity } from "./workload.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** What the comparison runs over: a synthetic pattern or a trace file. */
export type CompareSource =
  | { readonly kind: "synthetic"; readonly pattern: AccessPattern; readonly accesses: number }
  | {
      readonly kind: "trace";
      readonly file: string;
      readonly format: TraceFormat | "auto";
      readonly lenient: boolean;
    };

/** A comparison: the source, the guest, the CPU and the configurations. */
export interface CompareSpec {
  readonly source: CompareSource;
  readonly cpu: string;
  readonly caches: TranslationCaches;
  readonly cost: CostModel;
  readonly configs?: readonly PagingConfig[];
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  readonly guestBytes: number;
  /** Bytes for the guest's page tables (the host zone gets twice this); default from the working set. */
  readonly tableBytes?: number;
  readonly activity: OsActivity;
  readonly seed: number;
  /** Synthetic: touch the whole working set first and count the steady state only. */
  readonly prefault?: boolean;
  /** Dirty-log harvests per second of guest time (0: dirty logging off). */
  readonly dirtyLogHarvestsPerSecond?: number;
  /**
   * Pool workers: 0 runs every configuration on this thread. Default: one per
   * configuration, at most one per processor (a worker then runs a group).
   */
  readonly threads?: number;
  /** Trace progress (bytes of a file, or records generated). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** One configuration's line of a comparison, with its ratio to native. */
export interface CompareRow extends PagingStats {
  /** Translation cycles relative to native (1 = native). */
  readonly ratioToNative: number | null;
}

/** A comparison's results. */
export interface CompareResult {
  readonly cpu: string;
  readonly source: string;
  readonly trace: TraceSummary | null;
  readonly guestLevels: number;
  readonly hostLevels: number;
  readonly guestBytes: number;
  readonly activity: OsActivity;
  readonly costModel: { parameter: string; value: number | string; kind: string; source: string }[];
  readonly rows: readonly CompareRow[];
}

/** Default guest page-table zone for a working set (room for fork's copies), in whole MiB. */
export function defaultTableBytes(workingSetBytes: number | null, processes: number): number {
  if (workingSetBytes === null) return 32 * MiB;
  const perProcess = workingSetBytes / 512 + 64 * 1024;
  return Math.min(
    1024 * MiB,
    Math.ceil((perProcess * (processes + 1) * 1.5 + 2 * MiB) / MiB) * MiB,
  );
}

/**
 * Runs every configuration over the same accesses: each in its own pool
 * worker reading one trace ring in the shared memory (or all on this thread
 * with threads: 0), and prices the results.
 */
export async function comparePaging(spec: CompareSpec): Promise<CompareResult> {
  const configs = spec.configs ?? standardConfigs(spec.guestBytes % GiB === 0 ? "1G" : "2M");
  if (configs.length === 0) throw new PagingError("no configurations to compare");
  const ws = spec.source.kind === "synthetic" ? spec.source.pattern.workingSetBytes : null;
  const tableBytes = spec.tableBytes ?? defaultTableBytes(ws, spec.activity.processes);
  if (tableBytes * 2 >= spec.guestBytes) {
    throw new PagingError("the guest is too small for its page-table zone");
  }
  const layout = new MemoryLayout();
  // More workers than processors only add start-up work (each loads the
  // modules and instantiates the kernels) and contention: a worker runs a group.
  const threads = spec.threads ?? Math.min(configs.length, availableParallelism());
  // Each pool worker is one ring consumer; with fewer workers than
  // configurations, a worker runs several (every consumer must be running,
  // or the ring would wait forever for a slot).
  const groups = threads === 0 ? 1 : Math.min(threads, configs.length);
  const ring = allocateRing(layout, "trace ring", 8, 1 << 16, groups);
  const machines: { options: MachineOptions; regions: MachineRegions }[] = configs.map(
    (config) => ({
      options: {
        config,
        caches: spec.caches,
        cost: spec.cost,
        guestLevels: spec.guestLevels,
        hostLevels: spec.hostLevels,
        guestBytes: spec.guestBytes,
        guestTableBytes: tableBytes,
        hostTableBytes: tableBytes * 2,
        workingSetBytes: ws,
        activity: spec.activity,
        seed: spec.seed,
        prefault: spec.prefault === true,
        dirtyLogHarvestsPerSecond: spec.dirtyLogHarvestsPerSecond ?? 0,
      },
      regions: {
        arena: layout.allocate(`${config.label} tables`, tableBytes * 3, 4096).toDescriptor(),
        mmu: MmuContext.regions(layout, config.label, spec.caches),
      },
    }),
  );

  let stats: PagingStats[];
  let trace: TraceSummary | null = null;
  if (threads === 0) {
    const kernel = WalkKernel.on(layout.memory);
    const local = machines.map(
      (m) => new PagingMachine(layout.memory, kernel, m.regions, m.options),
    );
    const staging = layout.allocate("staging", ring.slotRecords * 8, 64);
    const words = () => new Uint32Array(layout.memory.buffer, staging.offset, ring.slotRecords * 2);
    const runAll = (count: number) => {
      for (const m of local) m.runRecords(staging, count);
    };
    trace = await produce(spec, ring.slotRecords, async (fill) => {
      const count = fill(words());
      runAll(count);
    });
    stats = local.map((m) => m.stats());
  } else {
    const pool = new KernelPool(layout, { threads, domains: ["paging"] });
    let reject!: (error: unknown) => void;
    const failed = new Promise<never>((_, r) => {
      reject = r;
    });
    failed.catch(() => {});
    const producer = new RingProducer(layout.memory, ring, failed);
    const runs = Array.from({ length: groups }, (_, consumer) =>
      pool.run({
        type: "paging.run",
        machines: machines.filter((_, i) => i % groups === consumer),
        ring,
        consumer,
      }),
    );
    for (const run of runs) run.catch((error) => reject(error));
    try {
      trace = await produce(spec, ring.slotRecords, async (fill, count, words) => {
        if (words) {
          // Parsed records go straight into the ring's slots.
          await producer.write(words, words.length / 2);
        } else if (count === undefined) {
          throw new PagingError("a trace chunk came without its records");
        } else {
          await producer.generate(count, (words, at, n) => {
            fill(words.subarray(at, at + n * 2));
          });
        }
      });
      producer.finish();
      const grouped = await Promise.all(runs);
      // Back to configuration order: machine i ran in group i % groups.
      stats = machines.map((_, i) => {
        const row = grouped[i % groups]?.[Math.floor(i / groups)];
        if (!row) throw new PagingError(`configuration ${i} returned no results`);
        return row;
      });
    } catch (error) {
      producer.abort();
      await Promise.allSettled(runs);
      throw error;
    } finally {
      await pool.close();
    }
  }
  const native = stats.find((s) => s.mode === "native");
  const rows = stats.map((s) => ({
    ...s,
    ratioToNative: native && native.cycles.total > 0 ? s.cycles.total / native.cycles.total : null,
  }));
  return {
    cpu: spec.cpu,
    source:
      spec.source.kind === "synthetic"
        ? `${spec.source.pattern.kind} over ${spec.source.pattern.workingSetBytes} bytes, ${spec.source.accesses} accesses`
        : spec.source.file,
    trace,
    guestLevels: spec.guestLevels,
    hostLevels: spec.hostLevels,
    guestBytes: spec.guestBytes,
    activity: spec.activity,
    costModel: costModelRows(spec.cost).map(([parameter, value, kind, source]) => ({
      parameter: String(parameter),
      value: typeof value === "number" ? value : String(value),
      kind: String(kind),
      source: String(source),
    })),
    rows,
  };
}

/**
 * Feeds the source to `deliver`: for a synthetic source, `deliver(fill, n)`
 * with a filler of n records; for a trace, `deliver(fill, undefined, words)`
 * per parsed chunk, with the chunk's records (word pairs) to copy as they are.
 */
async function produce(
  spec: CompareSpec,
  chunk: number,
  deliver: (
    fill: (words: Uint32Array) => number,
    count?: number,
    records?: Uint32Array,
  ) => Promise<void>,
): Promise<TraceSummary | null> {
  const source = spec.source;
  if (source.kind === "synthetic") {
    const generator = new AccessGenerator(source.pattern, spec.seed);
    for (let done = 0; done < source.accesses; ) {
      const n = Math.min(chunk, source.accesses - done);
      await deliver((words) => {
        generator.fill(words, 0, n);
        return n;
      }, n);
      done += n;
      spec.onProgress?.(done, source.accesses);
    }
    return null;
  }
  const options: StreamOptions = {
    format: source.format,
    lenient: source.lenient,
    levels: spec.guestLevels,
    onProgress: (p) => spec.onProgress?.(p.bytesRead, p.totalBytes),
  };
  return streamTrace(
    source.file,
    async (records) => {
      for (let at = 0; at < records.count; at += chunk) {
        const n = Math.min(chunk, records.count - at);
        const words = records.words.subarray(at * 2, (at + n) * 2);
        await deliver(
          (into) => {
            into.set(words);
            return n;
          },
          undefined,
          words,
        );
      }
    },
    options,
  );
}
