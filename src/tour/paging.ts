import { join } from "node:path";
import { runSuite } from "../bench/harness.js";
import { loadSuite } from "../bench/suites.js";
import { comparePaging } from "../paging/compare.js";
import { explainWalk } from "../paging/explain.js";
import { cpuPreset } from "../paging/presets.js";
import { crossoverSweep, publishedResults } from "../paging/studies.js";
import { QUIET } from "../paging/workload.js";
import { benchRatioChart } from "../report/bench-chart.js";
import { benchTable } from "../report/bench-table.js";
import { lineChart, type ReportChart, VEGA_LITE_SCHEMA } from "../report/chart.js";
import { formatNumber } from "../report/format.js";
import type { ReportSection } from "../report/section.js";
import { packageRoot } from "../util/package-root.js";
import type { TourSection } from "./section.js";

/** One configuration's cost, as the comparison reports it. */
type ComparedRow = Awaited<ReturnType<typeof comparePaging>>["rows"][number];

/** Cycles per access by configuration, split into walks and VM exits (stacked bars). */
function cyclesChart(title: string, rows: readonly ComparedRow[]): ReportChart {
  const values = rows.flatMap((r) => [
    {
      config: r.label,
      part: "walks + L2 TLB hits",
      cycles: (r.cycles.walks + r.cycles.l2Hits) / r.accesses,
    },
    {
      config: r.label,
      part: "VM exits + hypervisor",
      cycles: (r.cycles.exits + r.cycles.hypervisor) / r.accesses,
    },
  ]);
  return {
    title,
    spec: {
      $schema: VEGA_LITE_SCHEMA,
      width: 480,
      height: 220,
      data: { values },
      mark: "bar",
      encoding: {
        x: {
          field: "config",
          type: "nominal",
          sort: null,
          title: "configuration",
          axis: { labelAngle: 0 },
        },
        y: { field: "cycles", type: "quantitative", title: "cycles per access", stack: "zero" },
        color: { field: "part", type: "nominal", title: null },
      },
    },
  };
}

/** The tour's paging section: the comparison, the crossover, the published results. */
export const pagingTourSection: TourSection = {
  id: "paging",
  title: "SLAT against shadow paging",
  async run({ quick, seed, log }): Promise<ReportSection> {
    const preset = cpuPreset("skylake-sp");
    const accesses = quick ? 40_000 : 1_000_000;
    const threads = quick ? 0 : 5;
    log(`  comparing five configurations over ${formatNumber(accesses)} random accesses...`);
    const synthetic = await comparePaging({
      source: {
        kind: "synthetic",
        pattern: {
          kind: "random",
          workingSetBytes: 128 * 2 ** 20,
          strideBytes: 4096,
          writeFraction: 0.2,
        },
        accesses,
      },
      cpu: preset.name,
      caches: preset.caches,
      cost: preset.cost,
      guestLevels: 4,
      hostLevels: 4,
      guestBytes: 16 * 2 ** 30,
      activity: { ...QUIET, processes: 2, contextSwitchesPerSecond: 1000, munmapPerSecond: 50_000 },
      seed,
      prefault: true,
      threads,
    });
    log("  comparing them over a lackey trace of a real program...");
    const trace = await comparePaging({
      source: {
        kind: "trace",
        file: join(packageRoot(), "test", "fixtures", "touch.lackey.gz"),
        format: "auto",
        lenient: false,
      },
      cpu: preset.name,
      caches: preset.caches,
      cost: preset.cost,
      guestLevels: 4,
      hostLevels: 4,
      guestBytes: 16 * 2 ** 30,
      activity: QUIET,
      seed,
      threads,
    });
    log("  sweeping page-table churn for the crossover...");
    const study = { accesses: quick ? 20_000 : 300_000, threads, seed };
    const sweep = await crossoverSweep(study, quick ? [0, 100_000, 1_000_000] : undefined);
    log("  reproducing the published results...");
    const published = await publishedResults(study);
    const walks = [
      ["4x4, 4K/4K", 4, 4, "4K", "4K"],
      ["5x5, 4K/4K", 5, 5, "4K", "4K"],
      ["4x5, 4K/4K", 4, 5, "4K", "4K"],
      ["4x4, 4K over 2M host", 4, 4, "4K", "2M"],
      ["4x4, 2M/2M", 4, 4, "2M", "2M"],
      ["4x4, 1G/1G", 4, 4, "1G", "1G"],
    ] as const;
    const walkRows = walks.map(([label, g, h, gp, hp]) => [
      label,
      explainWalk({
        address: 0x10_0000_0000,
        mode: "slat",
        guestLevels: g,
        hostLevels: h,
        guestPageSize: gp,
        hostBacking: hp,
        guestBytes: 8 * 2 ** 30,
        write: false,
        warm: false,
        cpu: preset,
      }).references.length,
    ]);
    log("  benchmarking the walk kernel (short run)...");
    const bench = await runSuite(await loadSuite("paging"), {
      timeMs: quick ? 30 : 200,
      quick: true,
    });
    // Every figure in its paper's direction; and how many land inside the published range.
    const agreed = published.filter((p) => p.value > 0).length;
    const inside = published.filter((p) => p.verdict === "inside").length;
    const shadow = synthetic.rows.find((r) => r.label === "shadow");
    const slat = synthetic.rows.find((r) => r.label === "slat-4k");
    return {
      id: "paging",
      title: "SLAT against shadow paging",
      summary: [
        `Five configurations translate the same ${formatNumber(accesses)} random accesses over 128 MiB (2 processes, 1,000 context switches/s, 50,000 munmaps/s at an assumed 1e9 accesses/s) on real x86-64 and EPT tables, with ${preset.name}'s TLBs and page-walk caches: shadow paging costs ${formatNumber(shadow?.cycles.perAccess ?? Number.NaN)} cycles per access with ${formatNumber(shadow?.totalExits ?? Number.NaN)} VM exits, SLAT with 4 KiB host pages ${formatNumber(slat?.cycles.perAccess ?? Number.NaN)} with ${formatNumber(slat?.referencesPerWalk ?? Number.NaN)} references per walk.`,
        `The sweep adds page-table churn to a TLB-miss-heavy workload: shadow paging leads while the tables are static and SLAT leads from ${sweep.crossover === null ? "(no crossover in this range)" : `${formatNumber(sweep.crossover)} munmaps per second`}; 2 MiB host pages and large pages in both dimensions close SLAT's gap to native.`,
        "Cost-model parameters marked assumed are assumptions (their sources are named in docs/references.md); each published result is compared with its published range (inside, or how many points outside), with the assumption that moves it.",
        "The benchmark below is a short run at small sizes; `hvlab bench paging` gives the full figures.",
      ],
      headline: {
        figure: `${agreed} of ${published.length} published results in their direction, ${inside} inside the published range; shadow ${formatNumber(shadow?.cycles.perAccess ?? Number.NaN)} against SLAT ${formatNumber(slat?.cycles.perAccess ?? Number.NaN)} cycles per access`,
        target: "every published result reproduced in direction",
        met: agreed === published.length,
      },
      charts: [
        cyclesChart("Translation cycles per access, synthetic random accesses", synthetic.rows),
        cyclesChart(
          `Translation cycles per access, lackey trace of a real program (${formatNumber(trace.trace?.records ?? 0)} accesses)`,
          trace.rows,
        ),
        lineChart({
          title: "Crossover: cycles per access as page-table churn grows",
          data: sweep.points.map((p) => ({ ...p, churn: Math.max(1000, p.churnPerSecond) })),
          x: {
            field: "churn",
            title: "munmap/mmap churn (per s, log; 0 drawn at 1,000)",
            log: true,
          },
          y: { field: "cyclesPerAccess", title: "translation cycles per access (log)", log: true },
          series: "config",
          seriesTitle: "configuration",
        }),
        benchRatioChart("Benchmark (short run): throughput against hvlab's kernel", bench.results),
      ],
      tables: [
        {
          title: "Comparison (synthetic)",
          columns: [
            "config",
            "L1 hit (%)",
            "L2 hit (%)",
            "walks",
            "references per walk",
            "VM exits",
            "cycles per access",
            "against native (x)",
          ],
          rows: synthetic.rows.map((r) => [
            r.label,
            r.l1HitRate * 100,
            r.l2HitRate * 100,
            r.walks,
            r.referencesPerWalk,
            r.totalExits,
            r.cycles.perAccess,
            r.ratioToNative,
          ]),
        },
        {
          title: `Comparison (lackey trace of a real program, ${formatNumber(trace.trace?.records ?? 0)} accesses)`,
          columns: [
            "config",
            "L1 hit (%)",
            "walks",
            "references per walk",
            "VM exits",
            "cycles per access",
            "against native (x)",
          ],
          rows: trace.rows.map((r) => [
            r.label,
            r.l1HitRate * 100,
            r.walks,
            r.referencesPerWalk,
            r.totalExits,
            r.cycles.perAccess,
            r.ratioToNative,
          ]),
        },
        {
          title: "Published results against their published ranges",
          columns: [
            "source",
            "published",
            "measured here",
            "against the range",
            "claim",
            "assumption",
            "how",
          ],
          rows: published.map((p) => [
            p.source,
            p.published,
            p.measured,
            p.verdict,
            p.claim,
            p.assumption,
            p.note,
          ]),
        },
        {
          title:
            "Cold two-dimensional walks: memory references ((n+1)(m+1) - 1, Bhargava et al., ASPLOS 2008)",
          columns: ["walk (guest x host levels, page sizes)", "memory references"],
          rows: walkRows,
        },
        {
          title: "Cost model",
          columns: ["parameter", "value (cycles)", "kind", "source"],
          rows: synthetic.costModel.map((p) => [p.parameter, p.value, p.kind, p.source]),
        },
        benchTable(bench.results),
      ],
      data: { synthetic, trace, sweep, published, bench },
    };
  },
};
