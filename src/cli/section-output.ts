import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { machineInfo } from "../bench/machine.js";
import { renderHtmlReport } from "../report/html.js";
import type { ReportSection } from "../report/section.js";
import { formatTable } from "../report/table.js";
import { UsageError } from "./options.js";

/** Writes one report section as a whole HTML report titled after the command that made it. */
export async function writeSectionReport(
  file: string,
  command: string,
  section: ReportSection,
): Promise<void> {
  writeFileSync(file, await renderHtmlReport(command, machineInfo(), [section], new Date()));
}

/**
 * Prints a report section on the terminal: its summary lines, then each
 * table under its title, then where the HTML report went, if one was written.
 */
export function printSection(section: ReportSection, htmlFile?: string): void {
  for (const line of section.summary) console.log(line);
  for (const table of section.tables) console.log(`\n${table.title}\n${formatTable(table)}`);
  if (htmlFile !== undefined) console.log(`\nreport: ${htmlFile}`);
}

/**
 * Makes the folders a scenario writes into before it starts its processes:
 * its working folder (`--dir`, a usage error naming it when it cannot be
 * made) and the HTML report's folder.
 */
export function prepareScenarioOutput(flags: { dir?: string; html?: string }): void {
  if (flags.dir !== undefined) {
    try {
      mkdirSync(flags.dir, { recursive: true });
    } catch (error) {
      throw new UsageError(`--dir ${flags.dir}: ${(error as Error).message}`);
    }
  }
  if (flags.html !== undefined) mkdirSync(dirname(resolve(flags.html)), { recursive: true });
}
