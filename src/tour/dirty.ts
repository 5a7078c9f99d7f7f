import { runSuite } from "../bench/harness.js";
import { loadSuite } from "../bench/suites.js";
import { profileDirtyRate } from "../dirty/profile.js";
import { benchRatioChart } from "../report/bench-chart.js";
import { benchTable } from "../report/bench-table.js";
import { lineChart } from "../report/chart.js";
import { formatNumber } from "../report/format.js";
import type { ReportSection } from "../report/section.js";
import { formatBytes } from "../util/units.js";
import type { TourSection } from "./section.js";

const GiB = 1024 ** 3;

/** The tour's dirty-tracking section: two profiles and a short benchmark. */
export const dirtyTourSection: TourSection = {
  id: "dirty",
  title: "Dirty-page tracking",
  async run({ quick, seed, log }): Promise<ReportSection> {
    const guestBytes = quick ? 4 * GiB : 64 * GiB;
    log(`  profiling a ${formatBytes(guestBytes)} guest, uniform and hot-set writes...`);
    const common = {
      bytes: guestBytes,
      content: false,
      vcpus: 2,
      seed,
      writesPerSecond: 4_000_000,
      periodMs: 100,
      periods: quick ? 10 : 30,
      threads: 2,
    };
    const uniform = await profileDirtyRate({ ...common, workload: { kind: "uniform" } });
    const hotset = await profileDirtyRate({
      ...common,
      workload: { kind: "hotset", hotFraction: 0.9 },
    });
    log("  profiling a 256 MiB guest in content mode with per-vCPU dirty rings...");
    const content = await profileDirtyRate({
      bytes: 256 * 1024 ** 2,
      content: true,
      vcpus: 2,
      seed,
      workload: { kind: "zipf" },
      tracking: "ring",
      ringEntries: 4096,
      writesPerSecond: 1_000_000,
      periodMs: 50,
      periods: 10,
      threads: 0,
    });
    log("  benchmarking harvest + iterate (short run)...");
    const bench = await runSuite(await loadSuite("dirty"), {
      timeMs: quick ? 30 : 150,
      quick: true,
    });
    const curve = [
      ...uniform.periods.map((p) => ({
        workload: "uniform",
        ms: p.virtualTimeMs,
        pages: p.distinctPages,
        series: "distinct pages (measured)",
      })),
      ...uniform.periods.map((p) => ({
        workload: "uniform",
        ms: p.virtualTimeMs,
        pages: Math.round(
          uniform.summary.guestPages *
            (1 -
              Math.exp(
                (-(p.virtualTimeMs / 1000) * common.writesPerSecond) / uniform.summary.guestPages,
              )),
        ),
        series: "N(1-exp(-wt/N)) model",
      })),
      ...hotset.periods.map((p) => ({
        workload: "hotset",
        ms: p.virtualTimeMs,
        pages: p.distinctPages,
        series: "distinct pages (measured)",
      })),
    ];
    const modelError =
      uniform.summary.distinctPages / (uniform.summary.expectedDistinctPages ?? Number.NaN) - 1;
    const rates = [
      ...uniform.periods.map((p) => ({
        workload: "uniform",
        ms: p.virtualTimeMs,
        rate: p.dirtyPagesRate,
      })),
      ...hotset.periods.map((p) => ({
        workload: "hotset",
        ms: p.virtualTimeMs,
        rate: p.dirtyPagesRate,
      })),
    ];
    return {
      id: "dirty",
      title: "Dirty-page tracking",
      summary: [
        `A ${formatBytes(guestBytes)} guest (metadata mode: bitmap only) with 2 vCPUs writing ${formatNumber(common.writesPerSecond)} pages per second of virtual time, harvested every ${common.periodMs} ms as KVM's get-and-clear dirty log does.`,
        `Uniform writes dirtied ${formatNumber(uniform.summary.distinctPages)} distinct pages; the model N(1-exp(-wt/N)) predicts ${formatNumber(uniform.summary.expectedDistinctPages ?? 0)}. Hot-set writes (90% into 1/64 of memory) saturate their working set and dirty ${formatNumber(hotset.summary.meanDirtyPagesRate)} pages/s against ${formatNumber(uniform.summary.meanDirtyPagesRate)} for uniform writes.`,
        `Content mode: a 256 MiB guest whose bytes are really written, logged through 4,096-entry per-vCPU dirty rings: ${formatNumber(content.summary.distinctPages)} distinct pages, ${content.periods.at(-1)?.ringOverflow ?? 0} ring overflows to the bitmap.`,
        "The benchmark below is a short run at small sizes; `hvlab bench dirty` gives the full figures.",
      ],
      headline: {
        figure: `uniform writes dirtied ${formatNumber(uniform.summary.distinctPages)} distinct pages, ${formatNumber(modelError * 100)} % from the model`,
        target: "within 1 % of N(1-exp(-wt/N)) for uniform writes",
        met: Math.abs(modelError) <= 0.01,
      },
      charts: [
        lineChart({
          title: "Distinct pages dirtied over virtual time, measured and modelled",
          data: curve,
          x: { field: "ms", title: "virtual time (ms)" },
          y: { field: "pages", title: "distinct dirty pages" },
          series: "workload",
          seriesTitle: "workload",
          dash: "series",
          width: 520,
        }),
        lineChart({
          title: "Dirty pages per second, period by period",
          data: rates,
          x: { field: "ms", title: "virtual time (ms)" },
          y: { field: "rate", title: "dirty-pages-rate (pages/s)" },
          series: "workload",
          seriesTitle: "workload",
        }),
        benchRatioChart("Benchmark (short run): throughput against hvlab's kernel", bench.results),
      ],
      tables: [
        {
          title: "Dirty-rate profile summary",
          columns: [
            "workload",
            "mode",
            "guest",
            "writes",
            "distinct pages",
            "mean dirty-pages-rate (pages/s)",
            "peak dirty-pages-rate (pages/s)",
          ],
          rows: [
            ["uniform", uniform],
            ["hotset", hotset],
            ["zipf (ring)", content],
          ].map(([label, profile]) => {
            const p = (profile as typeof uniform).summary;
            return [
              label as string,
              p.mode,
              formatBytes(p.guestBytes),
              p.totalWrites,
              p.distinctPages,
              Math.round(p.meanDirtyPagesRate),
              Math.round(p.peakDirtyPagesRate),
            ];
          }),
        },
        benchTable(bench.results),
      ],
      data: { uniform, hotset, content, bench },
    };
  },
};
