import { constants } from "node:fs";
import { access, mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { machineInfo } from "../../bench/machine.js";
import { renderHtmlReport } from "../../report/html.js";
import type { ReportSection } from "../../report/section.js";
import { formatTable } from "../../report/table.js";
import { TOUR_SECTIONS } from "../../tour/sections.js";
import { addSeedOption, UsageError } from "../options.js";

interface TourFlags {
  out: string;
  seed: number;
  quick?: boolean;
  only?: string;
  verbose?: boolean;
}

/** The tour's closing lines: one per section, its headline figure and whether the target is met. */
export function tourSummary(sections: readonly ReportSection[]): string {
  const rows = sections.map((s) => [
    s.title,
    s.headline?.figure ?? "",
    s.headline === undefined ? "" : s.headline.met ? "target met" : "TARGET NOT MET",
  ]);
  return formatTable({ columns: ["engine", "headline figure", "target"], rows });
}

/** `hvlab tour`: the default tour, written as an HTML and a JSON report. */
export function registerTour(program: Command): void {
  const tour = program
    .command("tour")
    .description("run the default tour of every engine and write an HTML and JSON report")
    .option("--out <dir>", "folder for tour.html and tour.json", "reports")
    .option("--quick", "smaller sizes and shorter benchmarks (about 40 s instead of minutes)")
    .option(
      "--only <ids>",
      `comma-separated sections (${TOUR_SECTIONS.map((s) => s.id).join(", ")})`,
    )
    .option("--verbose", "also print every section's prose and tables on the terminal");
  addSeedOption(tour, "seed for every random choice");
  tour.action(async (flags: TourFlags) => {
    const wanted = flags.only?.split(",").map((id) => id.trim());
    for (const id of wanted ?? []) {
      if (!TOUR_SECTIONS.some((s) => s.id === id)) {
        throw new UsageError(`unknown tour section '${id}'`);
      }
    }
    // The output folder is made and checked before the tour runs: minutes of
    // work must not end in a path that could never be written.
    const out = resolve(flags.out);
    try {
      await mkdir(out, { recursive: true });
      await access(out, constants.W_OK);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new UsageError(`--out ${flags.out}: cannot write a report folder there (${code})`);
    }
    const sections: ReportSection[] = [];
    const log = (line: string) => console.error(line);
    for (const section of TOUR_SECTIONS) {
      if (wanted && !wanted.includes(section.id)) continue;
      log(`tour: ${section.title}...`);
      const report = await section.run({ quick: flags.quick === true, seed: flags.seed, log });
      sections.push(report);
      if (flags.verbose) {
        console.log(`\n== ${report.title} ==`);
        for (const paragraph of report.summary) console.log(paragraph);
        for (const table of report.tables) console.log(`\n${table.title}\n${formatTable(table)}`);
      }
    }
    const machine = machineInfo();
    const generatedAt = new Date();
    const html = await renderHtmlReport("hvlab tour", machine, sections, generatedAt);
    await writeFile(join(out, "tour.html"), html);
    const json = { generatedAt: generatedAt.toISOString(), machine, sections };
    await writeFile(join(out, "tour.json"), `${JSON.stringify(json, null, 2)}\n`);
    console.log(`${flags.verbose ? "\n" : ""}${tourSummary(sections)}`);
    console.log(`\nreport: ${join(out, "tour.html")} (open it in a browser; records in tour.json)`);
  });
}
