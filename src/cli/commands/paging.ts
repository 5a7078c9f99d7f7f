import type { Command } from "commander";
import {
  type PointFailure,
  pagingCompareJobs,
  pagingCompareResults,
  type TraceComparison,
} from "../../distributed/studies.js";
import { type CompareResult, type CompareSource, comparePaging } from "../../paging/compare.js";
import type { PageSize } from "../../paging/entry.js";
import { explainWalk } from "../../paging/explain.js";
import type { PagingModeName } from "../../paging/machine.js";
import {
  CACHE_LEVEL_REFERENCE_CYCLES,
  type CostModel,
  CPU_PRESETS,
  cpuPreset,
  parseGeometry,
  type TranslationCaches,
} from "../../paging/presets.js";
import { compareSummaryTable, compareTable } from "../../paging/report-table.js";
import { CHURN_RATES, crossoverSweep, publishedResults } from "../../paging/studies.js";
import { TRACE_FORMATS, type TraceFormat } from "../../paging/trace.js";
import { ACCESS_PATTERNS, type AccessPatternKind } from "../../paging/workload.js";
import { toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";
import {
  checkOutputFlags,
  csvOption,
  guestOption,
  integerOption,
  jsonOption,
  numberOption,
  seedOption,
  sizeOption,
  UsageError,
} from "../options.js";
import { startProgress } from "../progress.js";
import {
  addQueueOptions,
  newSweepId,
  type QueueFlags,
  reportFailures,
  submitWithProgress,
} from "../queue-options.js";

const GiB = 1024 ** 3;
const PAGE_SIZES: readonly PageSize[] = ["4K", "2M", "1G"];

interface CompareFlags extends QueueFlags {
  trace: string[];
  format: string;
  lenient?: boolean;
  pattern: string;
  workingSet: number;
  stride: number;
  writes: number;
  accesses: number;
  cpu: string;
  l2?: string;
  pwc?: string;
  nestedTlb?: string;
  pcid: boolean;
  levels: number;
  hostLevels: number;
  guest: number;
  tables?: number;
  processes: number;
  switches: number;
  ptUpdates: number;
  forks: number;
  munmaps: number;
  accessRate: number;
  exitCycles?: number;
  refCycles?: number;
  refCyclesByLevel?: boolean;
  threads?: number;
  seed: number;
  prefault?: boolean;
  dirtyLog: number;
  json?: boolean;
  csv?: boolean;
}

function levelsOption(text: string): 4 | 5 {
  if (text !== "4" && text !== "5")
    throw new UsageError(`paging levels must be 4 or 5, not ${text}`);
  return Number(text) as 4 | 5;
}

function pageSizeOption(what: string, text: string): PageSize {
  const size = text.toUpperCase().replace(/I?B$/, "") as PageSize;
  if (!PAGE_SIZES.includes(size)) {
    throw new UsageError(`${what} must be one of 4K, 2M, 1G, not '${text}'`);
  }
  return size;
}

/**
 * Runs a check of the command line that the paging engine does itself
 * (a CPU preset's name, a cache geometry): its refusal is a usage error.
 */
function asUsage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** The caches and cost model of a preset with the command line's overrides. */
function machineOf(flags: CompareFlags): { caches: TranslationCaches; cost: CostModel } {
  const preset = asUsage(() => cpuPreset(flags.cpu));
  let caches: TranslationCaches = { ...preset.caches, tagged: preset.caches.tagged && flags.pcid };
  const { l2, pwc, nestedTlb } = flags;
  if (l2) caches = { ...caches, l2: asUsage(() => parseGeometry("--l2", l2)) };
  if (pwc) {
    const g = asUsage(() => parseGeometry("--pwc", pwc));
    caches = {
      ...caches,
      pwcGuest: { ...caches.pwcGuest, 2: g },
      pwcHost: { ...caches.pwcHost, 2: g },
    };
  }
  if (nestedTlb)
    caches = {
      ...caches,
      nestedTlb: asUsage(() => parseGeometry("--nested-tlb", nestedTlb)),
    };
  let cost = preset.cost;
  if (flags.exitCycles !== undefined) {
    cost = {
      ...cost,
      vmExitCycles: { value: flags.exitCycles, assumed: true, source: "(assumed) --exit-cycles" },
    };
  }
  if (flags.refCycles !== undefined) {
    cost = {
      ...cost,
      walkReferenceCycles: {
        value: flags.refCycles,
        assumed: true,
        source: "(assumed) --ref-cycles",
      },
    };
  }
  if (flags.refCyclesByLevel)
    cost = { ...cost, referenceCyclesByLevel: CACHE_LEVEL_REFERENCE_CYCLES };
  return { caches, cost };
}

/** Prints comparisons (one, or one per trace) as JSON, CSV or tables: the one printer of local and distributed runs. */
function printComparisons(results: readonly CompareResult[], flags: CompareFlags): void {
  const [only] = results;
  if (flags.json) {
    console.log(JSON.stringify(results.length === 1 ? only : results, null, 2));
    return;
  }
  if (flags.csv) {
    if (results.length === 1 && only) {
      process.stdout.write(toCsv(compareTable(only)));
      return;
    }
    // Several traces: one table, each row led by its trace.
    const tables = results.map((r) => ({ source: r.source, table: compareTable(r) }));
    const columns = ["trace", ...(tables[0]?.table.columns ?? [])];
    const rows = tables.flatMap((t) => t.table.rows.map((row) => [t.source, ...row]));
    process.stdout.write(toCsv({ columns, rows }));
    return;
  }
  const preset = asUsage(() => cpuPreset(flags.cpu));
  for (const [i, result] of results.entries()) {
    if (i > 0) console.log("");
    console.log(`${result.source} on ${preset.name}: ${preset.description}`);
    if (result.trace) {
      const t = result.trace;
      console.log(
        `trace: ${t.format}${t.gzip ? " (gzip)" : ""}, ${formatBytes(t.bytes)}, ${t.records.toLocaleString("en-US")} accesses${t.skipped - t.kernel > 0 ? `, ${(t.skipped - t.kernel).toLocaleString("en-US")} malformed lines or records skipped` : ""}${t.kernel > 0 ? `, ${t.kernel.toLocaleString("en-US")} kernel-space addresses skipped (the guest model runs user space)` : ""}`,
      );
    }
    console.log(formatTable(compareSummaryTable(result)));
  }
  const [first] = results;
  if (!first) return;
  console.log("\ncost model (cycles):");
  console.log(
    formatTable({
      columns: ["parameter", "value", "kind", "source"],
      rows: first.costModel.map((p) => [p.parameter, p.value, p.kind, p.source]),
    }),
  );
}

/** `hvlab paging compare` and `hvlab paging walk`. */
export function registerPaging(program: Command): void {
  const paging = program
    .command("paging")
    .description(
      "SLAT against shadow paging: real page tables, two-dimensional walks, TLBs and a shadow MMU",
    );

  const compare = paging
    .command("compare")
    .description(
      "run one workload or trace under native, shadow, SLAT 4K host, SLAT 2M host and SLAT with large pages in both dimensions",
    )
    .option(
      "--trace <file|url>",
      "a trace: Valgrind lackey, plain 'R|W hexaddr', or ChampSim binary (plain or gzip), by path, file: URL or http(s) URL (streamed); repeat for several (with --queue: a location every worker can read)",
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option("--format <format>", `trace format: auto, ${TRACE_FORMATS.join(", ")}`, "auto")
    .option("--lenient", "skip malformed trace lines (counted) instead of stopping")
    .option("--pattern <kind>", `synthetic pattern: ${ACCESS_PATTERNS.join(", ")}`, "random")
    .option(
      "--working-set <size>",
      "synthetic working set",
      sizeOption(4096, 2 ** 40),
      256 * 1024 ** 2,
    )
    .option(
      "--stride <bytes>",
      "strided: bytes between accesses",
      integerOption(1, 2 ** 40),
      4096 + 64,
    )
    .option(
      "--writes <fraction>",
      "fraction of synthetic accesses that write",
      numberOption(0, 1),
      0.2,
    )
    .option("--accesses <n>", "synthetic accesses", integerOption(1, 1e11), 2_000_000)
    .option("--prefault", "synthetic: touch the working set first and count the steady state only")
    .option("--cpu <preset>", `CPU preset: ${Object.keys(CPU_PRESETS).join(", ")}`, "skylake-sp")
    .option("--l2 <entries/ways>", "override the second-level TLB geometry")
    .option("--pwc <entries/ways>", "override the PDE-level page-walk caches (both dimensions)")
    .option("--nested-tlb <entries/ways>", "override the nested TLB geometry")
    .option("--no-pcid", "flush the TLB on every CR3 load (no address-space tags)")
    .option("--levels <n>", "guest paging levels (4 or 5)", levelsOption, 4)
    .option("--host-levels <n>", "EPT levels (4 or 5)", levelsOption, 4)
    .addOption(guestOption({ min: 256 * 1024 ** 2, max: 2 ** 46, fallback: 16 * GiB }))
    .option(
      "--tables <size>",
      "guest page-table zone (host tables get twice this)",
      sizeOption(1024 ** 2, 2 * GiB),
    )
    .option("--processes <n>", "processes running the workload", integerOption(1, 64), 1)
    .option("--switches <per-s>", "context switches per second", numberOption(0, 1e6), 0)
    .option("--pt-updates <per-s>", "page-table updates per second", numberOption(0, 1e7), 0)
    .option("--forks <per-s>", "fork+exec per second", numberOption(0, 1e5), 0)
    .option("--munmaps <per-s>", "munmap/mmap churn (64 KiB) per second", numberOption(0, 1e6), 0)
    .option(
      "--dirty-log <harvests-per-s>",
      "dirty logging as in live migration: write-protect and harvest this often (SLAT and shadow)",
      numberOption(0, 1e6),
      0,
    )
    .option(
      "--access-rate <per-s>",
      "memory accesses per second of guest time (assumed)",
      numberOption(1e3, 1e11),
      1e9,
    )
    .option("--exit-cycles <n>", "override the VM exit round trip", integerOption(0, 1e6))
    .option("--ref-cycles <n>", "override cycles per walk reference", integerOption(0, 1e4))
    .option(
      "--ref-cycles-by-level",
      "price walk references per table level (PT from L3, PD from L2, upper levels from L1; assumed) instead of a fixed latency",
    )
    .option(
      "--threads <n>",
      "pool workers (0: this thread alone; default none below 8 M records, else processors - 1, this thread running a group too)",
      integerOption(0, 16),
    )
    .addOption(seedOption("seed of the workload and the guest"))
    .addOption(jsonOption("print the results as JSON"))
    .addOption(csvOption("print one CSV row per configuration"));
  addQueueOptions(compare).action(async (flags: CompareFlags) => {
    checkOutputFlags(flags);
    if (!TRACE_FORMATS.includes(flags.format as TraceFormat) && flags.format !== "auto") {
      throw new UsageError(
        `unknown trace format '${flags.format}' (auto, ${TRACE_FORMATS.join(", ")})`,
      );
    }
    if (!ACCESS_PATTERNS.includes(flags.pattern as AccessPatternKind)) {
      throw new UsageError(
        `unknown pattern '${flags.pattern}' (one of ${ACCESS_PATTERNS.join(", ")})`,
      );
    }
    if (flags.guest % (2 * 1024 ** 2) !== 0)
      throw new UsageError("--guest must be whole 2 MiB pages");
    const { caches, cost } = machineOf(flags);
    const activity = {
      processes: flags.processes,
      contextSwitchesPerSecond: flags.switches,
      pageTableUpdatesPerSecond: flags.ptUpdates,
      forkExecPerSecond: flags.forks,
      munmapPerSecond: flags.munmaps,
      accessesPerSecond: flags.accessRate,
    };
    const common = {
      cpu: flags.cpu,
      caches,
      cost,
      guestLevels: flags.levels as 4 | 5,
      hostLevels: flags.hostLevels as 4 | 5,
      guestBytes: flags.guest,
      ...(flags.tables !== undefined ? { tableBytes: flags.tables } : {}),
      activity,
      seed: flags.seed,
      dirtyLogHarvestsPerSecond: flags.dirtyLog,
    };
    let results: CompareResult[];
    let failed: readonly PointFailure[] = [];
    if (flags.queue !== undefined) {
      if (flags.trace.length === 0) {
        throw new UsageError("--queue compares traces: name them with --trace (one or more)");
      }
      if (flags.prefault) throw new UsageError("--prefault is for synthetic runs, not traces");
      const traces: TraceComparison[] = flags.trace.map((location) => ({
        ...common,
        trace: { location, format: flags.format, lenient: flags.lenient === true },
      }));
      const sweepId = flags.sweepId ?? newSweepId();
      const jobs = pagingCompareJobs(sweepId, traces);
      const submission = await submitWithProgress(
        "paging compare",
        { ...flags, queue: flags.queue },
        sweepId,
        jobs,
      );
      ({ comparisons: results, failed } = pagingCompareResults(traces, submission));
    } else {
      const sources: CompareSource[] =
        flags.trace.length > 0
          ? flags.trace.map((file) => ({
              kind: "trace",
              file,
              format: flags.format as TraceFormat | "auto",
              lenient: flags.lenient === true,
            }))
          : [
              {
                kind: "synthetic",
                pattern: {
                  kind: flags.pattern as AccessPatternKind,
                  workingSetBytes: flags.workingSet,
                  strideBytes: flags.stride,
                  writeFraction: flags.writes,
                },
                accesses: flags.accesses,
              },
            ];
      results = [];
      for (const source of sources) {
        const progress = startProgress(source.kind === "trace" ? "trace" : "accesses", 1);
        try {
          results.push(
            await comparePaging({
              ...common,
              source,
              prefault: flags.prefault === true,
              ...(flags.threads !== undefined ? { threads: flags.threads } : {}),
              onProgress: (done, total) => progress.update(done, "", total),
            }),
          );
        } finally {
          progress.stop();
        }
      }
    }
    printComparisons(results, flags);
    reportFailures(failed);
  });

  paging
    .command("studies")
    .description(
      "reproduce the published results (Bhargava, VMware, Agile Paging) against their published ranges, and sweep page-table churn for the crossover",
    )
    .option("--accesses <n>", "accesses per run", integerOption(1000, 1e9), 300_000)
    .option("--cpu <preset>", `CPU preset: ${Object.keys(CPU_PRESETS).join(", ")}`, "skylake-sp")
    .option("--threads <n>", "pool workers (0: this thread)", integerOption(0, 16), 5)
    .addOption(seedOption())
    .addOption(jsonOption("print the results as JSON"))
    .action(
      async (flags: {
        accesses: number;
        cpu: string;
        threads: number;
        seed: number;
        json?: boolean;
      }) => {
        const options = {
          accesses: flags.accesses,
          threads: flags.threads,
          seed: flags.seed,
          cpu: asUsage(() => cpuPreset(flags.cpu)).name,
        };
        const published = await publishedResults(options);
        const sweep = await crossoverSweep(options, CHURN_RATES);
        if (flags.json) {
          console.log(JSON.stringify({ published, sweep }, null, 2));
          return;
        }
        console.log(
          formatTable({
            columns: ["source", "claim", "published", "measured here", "against the range"],
            rows: published.map((p) => [p.source, p.claim, p.published, p.measured, p.verdict]),
          }),
        );
        console.log("\nwhat moves each figure (assumptions printed as used):");
        console.log(
          formatTable({
            columns: ["claim", "assumption", "workload"],
            rows: published.map((p) => [p.claim, p.assumption, p.note]),
          }),
        );
        const configs = [...new Set(sweep.points.map((p) => p.config))];
        console.log("\ntranslation cycles per access against munmap/mmap churn per second:");
        console.log(
          formatTable({
            columns: ["churn/s", ...configs],
            rows: CHURN_RATES.map((rate) => [
              rate,
              ...configs.map((c) => {
                const p = sweep.points.find((x) => x.churnPerSecond === rate && x.config === c);
                return p ? Number(p.cyclesPerAccess.toFixed(2)) : null;
              }),
            ]),
          }),
        );
        console.log(
          sweep.crossover === null
            ? "no crossover in this range"
            : `SLAT (4 KiB host pages) overtakes shadow paging at ${sweep.crossover.toLocaleString("en-US")} munmaps per second`,
        );
      },
    );

  paging
    .command("walk")
    .description("explain one address's translation reference by reference")
    .argument("<address>", "virtual address (hex with 0x, or decimal)")
    .option("--mode <mode>", "native, shadow or slat", "slat")
    .option("--levels <n>", "guest paging levels (4 or 5)", levelsOption, 4)
    .option("--host-levels <n>", "EPT levels (4 or 5)", levelsOption, 4)
    .option("--guest-page <size>", "guest page size: 4K, 2M or 1G", "4K")
    .option("--host-page <size>", "host (EPT) page size: 4K, 2M or 1G", "4K")
    .addOption(guestOption({ min: 256 * 1024 ** 2, max: 2 ** 46, fallback: 16 * GiB }))
    .option("--cpu <preset>", `CPU preset: ${Object.keys(CPU_PRESETS).join(", ")}`, "skylake-sp")
    .option("--write", "a write access")
    .option("--ept-ad", "EPT accessed and dirty flags on (EPTP bit 6): the walk sets them")
    .option(
      "--warm",
      "keep the caches warm from the first touch (shows page-walk-cache and nested-TLB hits)",
    )
    .addOption(jsonOption("print the explanation as JSON"))
    .action(
      (
        text: string,
        flags: {
          mode: string;
          levels: number;
          hostLevels: number;
          guestPage: string;
          hostPage: string;
          guest: number;
          cpu: string;
          write?: boolean;
          eptAd?: boolean;
          warm?: boolean;
          json?: boolean;
        },
      ) => {
        // A bigint: a 57-bit address (5-level paging) has more bits than a number holds exactly.
        if (!/^(0x[0-9a-f]{1,16}|[0-9]{1,20})$/i.test(text)) {
          throw new UsageError(`'${text}' is not an address (hex with 0x, or decimal)`);
        }
        const address = BigInt(text);
        if (address >= 1n << 64n) throw new UsageError(`'${text}' is wider than 64 bits`);
        if (!["native", "shadow", "slat"].includes(flags.mode)) {
          throw new UsageError(`--mode must be native, shadow or slat, not '${flags.mode}'`);
        }
        const explanation = explainWalk({
          address,
          mode: flags.mode as PagingModeName,
          guestLevels: flags.levels as 4 | 5,
          hostLevels: flags.hostLevels as 4 | 5,
          guestPageSize: pageSizeOption("--guest-page", flags.guestPage),
          hostBacking: pageSizeOption("--host-page", flags.hostPage),
          guestBytes: flags.guest,
          write: flags.write === true,
          eptAccessedDirty: flags.eptAd === true,
          warm: flags.warm === true,
          cpu: asUsage(() => cpuPreset(flags.cpu)),
        });
        if (flags.json) {
          console.log(
            JSON.stringify(
              explanation,
              (_, v) => (typeof v === "bigint" ? `0x${v.toString(16)}` : v),
              2,
            ),
          );
          return;
        }
        console.log(
          `${flags.mode} walk of 0x${address.toString(16)} (${flags.levels}-level guest${flags.mode === "slat" ? `, ${flags.hostLevels}-level EPT, ${flags.hostPage} host pages` : ""}, ${flags.guestPage} guest pages, ${flags.warm ? "warm" : "cold"} caches):`,
        );
        console.log(
          formatTable({
            columns: ["#", "dimension", "table", "entry address", "entry", "meaning"],
            rows: explanation.references.map((r, i) => [
              i + 1,
              r.dimension,
              r.table,
              `0x${r.address.toString(16)}`,
              `0x${r.entry.toString(16).padStart(16, "0")}`,
              r.decoded,
            ]),
          }),
        );
        console.log(
          `${explanation.references.length} memory references; ` +
            (explanation.hpa !== null
              ? `translates to ${flags.mode === "native" ? "physical" : "host-physical"} 0x${explanation.hpa.toString(16)}`
              : `faults: ${explanation.fault?.code} at level ${explanation.fault?.level}`),
        );
      },
    );
}
