import { runSuite } from "../bench/harness.js";
import { loadSuite } from "../bench/suites.js";
import { profileDirtyRate } from "../dirty/profile.js";
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
        `A ${formatBytes(guestBytes)} guest (metadata mode: bitmap only) with 2 vCPUs writing ${common.writesPerSecond.toLocaleString("en-US")} pages per second of virtual time, harvested every ${common.periodMs} ms as KVM's get-and-clear dirty log does.`,
        `Uniform writes dirtied ${uniform.summary.distinctPages.toLocaleString("en-US")} distinct pages; the model N(1-exp(-wt/N)) predicts ${Math.round(uniform.summary.expectedDistinctPages ?? 0).toLocaleString("en-US")}. Hot-set writes (90% into 1/64 of memory) saturate their working set and dirty ${Math.round(hotset.summary.meanDirtyPagesRate).toLocaleString("en-US")} pages/s against ${Math.round(uniform.summary.meanDirtyPagesRate).toLocaleString("en-US")} for uniform writes.`,
        `Content mode: a 256 MiB guest whose bytes are really written, logged through 4,096-entry per-vCPU dirty rings: ${content.summary.distinctPages.toLocaleString("en-US")} distinct pages, ${content.periods.at(-1)?.ringOverflow ?? 0} ring overflows to the bitmap.`,
        "The benchmark below is a short run at small sizes; `hvlab bench dirty` gives the full figures.",
      ],
      charts: [
        {
          title: "Distinct pages dirtied over virtual time",
          spec: {
            $schema: "https://vega.github.io/schema/vega-lite/v6.json",
            width: 640,
            height: 260,
            data: { values: curve },
            mark: { type: "line", point: true },
            encoding: {
              x: { field: "ms", type: "quantitative", title: "virtual time (ms)" },
              y: { field: "pages", type: "quantitative", title: "distinct dirty pages" },
              color: { field: "workload", type: "nominal" },
              strokeDash: { field: "series", type: "nominal" },
            },
          },
        },
        {
          title: "Dirty pages per second, period by period",
          spec: {
            $schema: "https://vega.github.io/schema/vega-lite/v6.json",
            width: 640,
            height: 220,
            data: { values: rates },
            mark: { type: "line", point: true },
            encoding: {
              x: { field: "ms", type: "quantitative", title: "virtual time (ms)" },
              y: { field: "rate", type: "quantitative", title: "dirty-pages-rate (pages/s)" },
              color: { field: "workload", type: "nominal" },
            },
          },
        },
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
            "mean dirty-pages-rate",
            "peak dirty-pages-rate",
          ],
          rows: [
            [
              "uniform",
              uniform.summary.mode,
              formatBytes(uniform.summary.guestBytes),
              uniform.summary.totalWrites,
              uniform.summary.distinctPages,
              Math.round(uniform.summary.meanDirtyPagesRate),
              Math.round(uniform.summary.peakDirtyPagesRate),
            ],
            [
              "hotset",
              hotset.summary.mode,
              formatBytes(hotset.summary.guestBytes),
              hotset.summary.totalWrites,
              hotset.summary.distinctPages,
              Math.round(hotset.summary.meanDirtyPagesRate),
              Math.round(hotset.summary.peakDirtyPagesRate),
            ],
            [
              "zipf (ring)",
              content.summary.mode,
              formatBytes(content.summary.guestBytes),
              content.summary.totalWrites,
              content.summary.distinctPages,
              Math.round(content.summary.meanDirtyPagesRate),
              Math.round(content.summary.peakDirtyPagesRate),
            ],
          ],
        },
        {
          title: "Benchmark (short run)",
          columns: ["case", "impl", "ops/s", "mean ns/op", "rme %"],
          rows: bench.results.map((r) => [
            r.case,
            r.impl,
            Math.round(r.hz),
            Math.round(r.meanNs),
            Number(r.rme.toFixed(1)),
          ]),
        },
      ],
      data: { uniform, hotset, content, bench },
    };
  },
};
