import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { z } from "zod";
import { ratioToOwn, runSuite, type SuiteResult } from "../../bench/harness.js";
import { BENCH_SUITES, loadSuite } from "../../bench/suites.js";
import { toMarkdown } from "../../report/markdown.js";
import { formatTable, type Table } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";
import { integerOption, jsonOption, UsageError } from "../options.js";
import { startProgress } from "../progress.js";

/** A suite's results as a table: one row per case and implementation, with its speed ratio. */
export function resultTable(result: SuiteResult): Table {
  return {
    columns: [
      "case",
      "impl",
      "ops/s",
      "bytes/s",
      "mean ns/op",
      "rme",
      "median ns/op",
      "MAD ns/op",
      "samples",
      "x hvlab",
    ],
    rows: result.results.map((row) => {
      const ratio = ratioToOwn(result, row);
      return [
        row.case,
        row.impl,
        Math.round(row.hz),
        row.bytesPerSecond === null ? null : `${formatBytes(row.bytesPerSecond)}/s`,
        Number(row.meanNs.toPrecision(4)),
        `±${row.rme.toFixed(1)}%`,
        Number(row.medianNs.toPrecision(4)),
        Number(row.madNs.toPrecision(3)),
        row.samples,
        ratio === null ? null : `${ratio.toFixed(3)}`,
      ];
    }),
  };
}

function machineLine(result: SuiteResult): string {
  const m = result.machine;
  const conditions = Object.entries(result.conditions ?? {})
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return `suite ${result.suite} on ${m.cpu} (${m.cores} cores, ${formatBytes(m.memoryBytes)}), Node.js ${m.node}, ${m.os}${conditions ? `; ${conditions}` : ""}`;
}

interface BenchFlags {
  json?: boolean;
  markdown?: boolean;
  from?: string;
  time: number;
  quick?: boolean;
  direct?: boolean;
}

function print(result: SuiteResult, flags: BenchFlags): void {
  if (flags.json) {
    console.log(JSON.stringify(result, null, 2));
  } else if (flags.markdown) {
    console.log(`${machineLine(result)}\n\n${toMarkdown(resultTable(result))}\n`);
  } else {
    console.log(`${machineLine(result)}\n${formatTable(resultTable(result))}`);
  }
}

/** Reads saved `hvlab bench --json` output (one suite or an array), checking its shape. */
async function readSaved(file: string): Promise<SuiteResult[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, "utf8"));
  } catch (error) {
    throw new UsageError(`cannot read bench results from ${file}: ${(error as Error).message}`);
  }
  const checked = savedResults.safeParse(parsed);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new UsageError(
      `${file} is not hvlab bench --json output: ${issue?.message ?? "bad shape"} at ${issue?.path.join(".") || "top level"}`,
    );
  }
  return Array.isArray(checked.data) ? checked.data : [checked.data];
}

const suiteResult = z.object({
  suite: z.string(),
  machine: z.object({
    cpu: z.string(),
    cores: z.number(),
    memoryBytes: z.number(),
    os: z.string(),
    arch: z.string(),
    node: z.string(),
    v8: z.string(),
    hvlab: z.string(),
    tinybench: z.string(),
  }),
  conditions: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  results: z.array(
    z.object({
      case: z.string(),
      impl: z.string(),
      hz: z.number().positive(),
      bytesPerSecond: z.number().nullable(),
      meanNs: z.number(),
      medianNs: z.number(),
      madNs: z.number(),
      p99Ns: z.number().optional(),
      rme: z.number(),
      samples: z.number().int().nonnegative(),
    }),
  ),
});
const savedResults = z.union([suiteResult, z.array(suiteResult)]);

/** `hvlab bench [suite ...] [--json]`. */
export function registerBench(program: Command): void {
  program
    .command("bench")
    .description(
      `run benchmark suites, each kernel beside its peers (suites: ${Object.keys(BENCH_SUITES).join(", ")})`,
    )
    .argument("[suites...]", "suites to run (default: all)")
    .addOption(jsonOption("print the results as JSON (one object per suite, an array for several)"))
    .option(
      "--time <ms>",
      "timing per implementation in milliseconds",
      integerOption(10, 600_000),
      500,
    )
    .option("--markdown", "print the results as Markdown tables (with --from: of saved JSON)")
    .option("--from <file>", "print a saved --json result instead of running")
    .option("--quick", "small sizes and short timing (a smoke run, not for figures)")
    .option(
      "--direct",
      "direct I/O (O_DIRECT) around the host's page cache, for suites that do file I/O (default: on for csv, whose direct I/O case models CSV's unbuffered I/O)",
    )
    .option(
      "--no-direct",
      "buffered I/O through the host's page cache instead (default: on for storage)",
    )
    .action(async (names: string[], flags: BenchFlags) => {
      if (flags.json && flags.markdown) throw new UsageError("choose one of --json and --markdown");
      if (flags.from !== undefined) {
        for (const result of await readSaved(flags.from)) print(result, flags);
        return;
      }
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
          // Absent unless given: each suite has its own default.
          ...(flags.direct === undefined ? {} : { direct: flags.direct }),
          onProgress: (done, total, label) => progress.update(done, label, total),
        }).finally(() => progress.stop());
        results.push(result);
        if (!flags.json) print(result, flags);
      }
      if (flags.json) {
        console.log(JSON.stringify(results.length === 1 ? results[0] : results, null, 2));
      }
    });
}
