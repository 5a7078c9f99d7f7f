import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { WalkKernel } from "../wasm/walk.js";
import { costModelRows } from "./cost.js";
import { PagingError } from "./errors.js";
import { LackeyScanner } from "./lackey-scanner.js";
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
import { isTraceUrl } from "./trace-source.js";
import { AccessGenerator, type AccessPattern, type OsActivity } from "./workload.js";

const MiB = 2 ** 20;
/**
 * The trace ring: 32 slots of 65,536 records (16 MiB). The reading thread
 * may run up to 2 M records ahead of the slowest worker, so that it is not
 * held up while the workers start.
 */
const RING_SLOTS = 32;
const RING_SLOT_RECORDS = 1 << 16;
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
   * Pool workers: 0 runs every configuration on this thread. With fewer
   * workers than configurations this thread runs a group too. Default:
   * {@link defaultWorkers} (none below {@link WORKER_THRESHOLD_RECORDS}).
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
 * Runs every configuration over the same accesses, read (decompressed and
 * parsed, or generated) once into one trace ring in the shared memory that
 * every consumer reads: pool workers, each running a group of
 * configurations, and this thread when it has a group of its own (always
 * with threads: 0). Then prices the results.
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
  const threads =
    spec.threads ??
    defaultWorkers(configs.length, availableParallelism(), expectedRecords(spec.source));
  if (!Number.isInteger(threads) || threads < 0) {
    throw new PagingError(`threads must be a whole number, not ${threads}`);
  }
  // Each pool worker is one ring consumer running a group of configurations
  // (every consumer must be running, or the ring would wait forever for a
  // slot). With fewer workers than configurations this thread is a consumer
  // too: it runs the last (smallest) group, since it also reads the trace.
  const onMain = threads === 0 || threads < configs.length;
  const groups = threads === 0 ? 1 : Math.min(configs.length, threads + (onMain ? 1 : 0));
  const mainGroup = onMain ? groups - 1 : -1;
  const ring = allocateRing(layout, "trace ring", RING_SLOTS, RING_SLOT_RECORDS, groups);
  // A trace's text is scanned in this memory (no second one is reserved for
  // it), laid out before the workers start.
  const scanner = spec.source.kind === "trace" ? new LackeyScanner(layout, "trace") : null;
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
  // Configuration i runs in group i % groups.
  const groupOf = (group: number) => machines.filter((_, i) => i % groups === group);

  // Workers first: they start (load the modules, instantiate the kernels)
  // while this thread opens the trace and fills the ring.
  const pool =
    groups > (onMain ? 1 : 0)
      ? new KernelPool(layout, { threads: groups - (onMain ? 1 : 0), domains: ["paging"] })
      : null;
  let reject!: (error: unknown) => void;
  const failed = new Promise<never>((_, r) => {
    reject = r;
  });
  failed.catch(() => {});
  const runs: Promise<PagingStats[]>[] = [];
  if (pool) {
    for (let group = 0; group < groups; group++) {
      if (group === mainGroup) continue;
      const run = pool.run({ type: "paging.run", machines: groupOf(group), ring, consumer: group });
      run.catch((error) => reject(error));
      runs.push(run);
    }
  }
  let local: PagingMachine[] = [];
  // Made before anything that may throw, so that the workers can be told to stop.
  const producer = new RingProducer(
    layout.memory,
    ring,
    failed,
    onMain
      ? {
          consumer: mainGroup,
          consume: (records, count) => {
            for (const machine of local) machine.runRecords(records, count);
          },
        }
      : undefined,
  );
  try {
    if (onMain) {
      const kernel = WalkKernel.on(layout.memory);
      local = groupOf(mainGroup).map(
        (m) => new PagingMachine(layout.memory, kernel, m.regions, m.options),
      );
    }
    const trace = await produce(spec, producer, scanner);
    producer.finish();
    const grouped = await Promise.all(runs);
    const results = new Map<number, PagingStats[]>();
    let worker = 0;
    for (let group = 0; group < groups; group++) {
      results.set(
        group,
        group === mainGroup ? local.map((m) => m.stats()) : (grouped[worker++] ?? []),
      );
    }
    // Back to configuration order: machine i ran in group i % groups, as its (i / groups)th.
    const stats = machines.map((_, i) => {
      const row = results.get(i % groups)?.[Math.floor(i / groups)];
      if (!row) throw new PagingError(`configuration ${i} returned no results`);
      return row;
    });
    return priced(spec, trace, stats);
  } catch (error) {
    producer.abort();
    await Promise.allSettled(runs);
    throw error;
  } finally {
    await pool?.close();
  }
}

/**
 * Records below which a comparison runs on this thread alone by default. A
 * worker costs its start-up (loading the modules and instantiating the
 * kernels: about 0.15 s of CPU on a quiet core, and its code runs cold),
 * which three configurations' translations repay only from several million
 * records on (measured on a 4-million-record trace: docs/paging.md).
 */
export const WORKER_THRESHOLD_RECORDS = 8_000_000;

/**
 * Pool workers by default: none for a small run (this thread reads the
 * trace, decompressed beside it by zlib's own thread, and runs every
 * configuration); otherwise a processor is left to this thread, which reads
 * the trace and runs the smallest group of configurations itself, and more
 * workers than processors would only add start-up and contention.
 */
export function defaultWorkers(
  configs: number,
  processors: number,
  records: number | null,
): number {
  if (records !== null && records < WORKER_THRESHOLD_RECORDS) return 0;
  return Math.max(0, Math.min(configs, processors) - 1);
}

/**
 * How many records a source is expected to hold, or null when it cannot be
 * told beforehand (a URL): a synthetic run's count; for a local file, its
 * size over the bytes a record takes at least: 1 gzip'ed (lackey traces
 * compress to 1-3 bytes a record), 7 in text (`I  0,1`), 64 in ChampSim (for up
 * to 7 accesses).
 */
export function expectedRecords(source: CompareSource): number | null {
  if (source.kind === "synthetic") return source.accesses;
  if (isTraceUrl(source.file)) return null;
  const file = /^file:/i.test(source.file) ? fileURLToPath(source.file) : source.file;
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(2);
    readSync(fd, head, 0, 2, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return size;
    // A text line takes 7 bytes or more; a ChampSim record (64 bytes) holds 7 accesses at most.
    return Math.ceil(size / 7);
  } catch {
    // streamTrace says what is wrong with the file.
    return null;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

function priced(
  spec: CompareSpec,
  trace: TraceSummary | null,
  stats: PagingStats[],
): CompareResult {
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
 * Feeds the source into the ring: a synthetic source generated in place in
 * its slots, a trace's parsed records copied once from the parser's buffer.
 */
async function produce(
  spec: CompareSpec,
  producer: RingProducer,
  scanner: LackeyScanner | null,
): Promise<TraceSummary | null> {
  const source = spec.source;
  if (source.kind === "synthetic") {
    const generator = new AccessGenerator(source.pattern, spec.seed);
    const step = producer.ring.slotRecords;
    for (let done = 0; done < source.accesses; ) {
      const n = Math.min(step, source.accesses - done);
      await producer.generate(n, (words, at, count) => generator.fill(words, at, count));
      done += n;
      spec.onProgress?.(done, source.accesses);
    }
    return null;
  }
  const options: StreamOptions = {
    format: source.format,
    lenient: source.lenient,
    levels: spec.guestLevels,
    ...(scanner ? { scanner } : {}),
    onProgress: (p) => spec.onProgress?.(p.bytesRead, p.totalBytes),
  };
  return streamTrace(
    source.file,
    (records) => producer.write(records.words, records.count),
    options,
  );
}
