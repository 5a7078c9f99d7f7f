import type { BenchResult } from "../bench/harness.js";
import type { ReportTable } from "./section.js";

/** A benchmark's results as a report table, every column with its unit. */
export function benchTable(
  results: readonly BenchResult[],
  title = "Benchmark (short run)",
): ReportTable {
  return {
    title,
    columns: ["case", "implementation", "ops/s", "mean (ns/op)", "rme (%)", "samples"],
    rows: results.map((r) => [r.case, r.impl, r.hz, r.meanNs, r.rme, r.samples]),
  };
}
