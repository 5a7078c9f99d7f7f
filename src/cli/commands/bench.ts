import type { Command } from "commander";
import { ratioToOwn, runSuite, type SuiteResult } from "../../bench/harness.js";
import { BENCH_SUITES, loadSuite } from "../../bench/suites.js";
import { formatTable } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";
import { integerOption, UsageError } from "../options.js";
import { startProgress } from "../progress.js";

function printHuman(result: SuiteResult): void {
  const rows = result.results.map((row) => {
    const ratio = ratioToOwn(result, row);
    return [
      row.case,
      row.impl,
      row.hz,
      row.bytesPerSecond === null ? null : `${formatBytes(row.bytesPerSecond)}/s`,
      row.meanNs,
      `±${row.rme.toFixed(1)}%`,
      row.samples,
      ratio === null ? "" : `${ratio.toFixed(3)}`,
    ];
  });
  console.log(
    `suite ${result.suite} on ${result.machine.cpu} (${result.machine.cores} cores), Node.js ${result.machine.node}`,
  );
  console.log(
    formatTable({
      columns: [
        "case",
        "impl",
        "ops/s",
        "bytes/s",
        "mean ns/op",
        "rme",
        "samples",
        "speed vs hvlab",
      ],
      rows,
    }),
  );
}

/** `hvlab bench [suite ...] [--json]`. */
export function registerBench(program: Command): void {
  program
    .command("bench")
    .description(
      `run benchmark suites, each kernel beside its peers (suites: ${Object.keys(BENCH_SUITES).join(", ")})`,
    )
    .argument("[suites...]", "suites to run (default: all)")
    .option("--json", "print the results as JSON (one object per suite, an array for several)")
    .option(
      "--time <ms>",
      "timing per implementation in milliseconds",
      integerOption(10, 600_000),
      500,
    )
    .option("--quick", "small sizes and short timing (a smoke run, not for figures)")
    .action(async (names: string[], flags: { json?: boolean; time: number; quick?: boolean }) => {
      const chosen = names.length > 0 ? names : Object.keys(BENCH_SUITES);
      for (const name of chosen) {
        if (!(name in BENCH_SUITES)) {
          throw new UsageError(
            `unknown bench suite '${name}' (one of ${Object.keys(BENCH_SUITES).join(", ")})`,
          );
        }
      }
      const results: SuiteResult[] = [];
      for (const name of chosen) {
        const suite = await loadSuite(name);
        const progress = startProgress(`bench ${name}`, 1);
        const result = await runSuite(suite, {
          timeMs: flags.quick ? Math.min(flags.time, 50) : flags.time,
          quick: flags.quick === true,
          onProgress: (done, total, label) => progress.update(done, label, total),
        });
        progress.stop();
        results.push(result);
        if (!flags.json) printHuman(result);
      }
      if (flags.json) {
        console.log(JSON.stringify(results.length === 1 ? results[0] : results, null, 2));
      }
    });
}
