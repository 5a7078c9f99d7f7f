import { type BenchResult, isOwnImpl } from "../bench/harness.js";
import { type ReportChart, VEGA_LITE_SCHEMA } from "./chart.js";
import { formatNumber } from "./format.js";

/** One implementation's throughput against hvlab's first kernel in the same case. */
export interface BenchRatio {
  readonly case: string;
  readonly impl: string;
  /** Its operations per second over the reference's (1 for the reference itself). */
  readonly ratio: number;
  /** Lower and upper ends of the error bar (see {@link benchRatios}). */
  readonly low: number;
  readonly high: number;
  /** Both implementations' relative margins of error combined, percent. */
  readonly rme: number;
}

/**
 * Each result's throughput as a ratio to the case's first hvlab
 * implementation, with an error bar. tinybench's relative margin of error
 * (rme, 95 % confidence of the mean) of the two are combined as independent
 * errors, sqrt(a^2 + b^2); the bar spans ratio / (1 + e) to ratio x (1 + e),
 * which stays above zero (margins on a shared machine reach 100 % and more)
 * and is symmetric on the log scale the chart uses.
 */
export function benchRatios(results: readonly BenchResult[]): BenchRatio[] {
  const reference = new Map<string, BenchResult>();
  for (const r of results) {
    if (isOwnImpl(r.impl) && !reference.has(r.case)) reference.set(r.case, r);
  }
  const ratios: BenchRatio[] = [];
  for (const r of results) {
    const ref = reference.get(r.case);
    if (ref === undefined || !(ref.hz > 0) || !(r.hz > 0)) continue;
    const ratio = r.hz / ref.hz;
    const rme = r === ref ? r.rme : Math.hypot(r.rme, ref.rme);
    const e = rme / 100;
    ratios.push({
      case: r.case,
      impl: r.impl,
      ratio,
      low: ratio / (1 + e),
      high: ratio * (1 + e),
      rme,
    });
  }
  return ratios;
}

/**
 * The benchmark chart of a report: for each case, every implementation's
 * throughput relative to hvlab's kernel (1x), on a log scale, with its error
 * bar. Ratios, not raw rates, because the cases' rates differ by decades.
 */
export function benchRatioChart(title: string, results: readonly BenchResult[]): ReportChart {
  const values = benchRatios(results).map((r) => ({
    ...r,
    label: `${formatNumber(r.ratio)}x ±${formatNumber(r.rme)} %`,
  }));
  const cases = [...new Set(values.map((v) => v.case))];
  return {
    title,
    spec: {
      $schema: VEGA_LITE_SCHEMA,
      data: { values },
      // One panel per case, stacked; a shared log axis so that panels compare.
      vconcat: cases.map((name) => ({
        title: {
          text: wrapTitle(name, TITLE_LINE_CHARS),
          anchor: "start" as const,
          fontSize: 11,
          fontWeight: 600,
        },
        transform: [{ filter: { field: "case", equal: name } }],
        width: 360,
        height: { step: 16 },
        encoding: { y: { field: "impl", type: "nominal" as const, sort: null, title: null } },
        layer: [
          {
            mark: { type: "rule" as const, strokeWidth: 1.5 },
            encoding: {
              x: {
                field: "low",
                type: "quantitative" as const,
                scale: { type: "log" as const },
                title: "throughput against hvlab's kernel (x, log; bar: margin of error)",
              },
              x2: { field: "high" },
            },
          },
          {
            mark: { type: "point" as const, filled: true, size: 40 },
            encoding: {
              x: { field: "ratio", type: "quantitative" as const },
              tooltip: { field: "label", type: "nominal" as const },
            },
          },
        ],
      })),
      resolve: { scale: { x: "shared" } },
    },
  };
}

/**
 * Characters a panel's title line holds: about the width of the panel and
 * its axis labels at 11 px, so that a long case name (what is timed, on
 * which trace) wraps instead of widening the chart past the page.
 */
const TITLE_LINE_CHARS = 90;

/** Splits `text` at spaces into lines of at most `width` characters (a longer word stands alone). */
export function wrapTitle(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "" || lines.length === 0) lines.push(line);
  return lines;
}
