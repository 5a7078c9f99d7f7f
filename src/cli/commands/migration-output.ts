import { flattenDotted, queryMigrateRound, toQueryMigrate } from "../../migration/query-migrate.js";
import { roundsTable, summaryTable } from "../../migration/report.js";
import type { MigrationResult } from "../../migration/stats.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";

/** Where the CLI functions write: the process's streams by default, a test's otherwise. */
export interface CliOutput {
  out(line: string): void;
  err(line: string): void;
}

/** The process's standard output and error. */
export const processOutput: CliOutput = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/**
 * Prints a migration result, whatever mode ran it (virtual time, TCP,
 * quick): `--json` as query-migrate's layout ({rounds, summary}), `--csv` the
 * rounds with query-migrate's keys dotted (`ram.transferred`), or else a
 * headline, the rounds table and the summary table. A downtime over the
 * limit is one warning line on standard error.
 */
export function printMigration(
  result: MigrationResult,
  flags: { json?: boolean; csv?: boolean },
  output: CliOutput = processOutput,
  pageBytes = 4096,
): void {
  const s = result.summary;
  if (s.warning) output.err(`hvlab: warning: ${s.warning}`);
  if (flags.json) {
    output.out(JSON.stringify(toQueryMigrate(result, pageBytes), null, 2));
    return;
  }
  if (flags.csv) {
    const records = result.rounds.map((round) => flattenDotted(queryMigrateRound(round)));
    output.out(toCsv(recordsToTable(records)).trimEnd());
    return;
  }
  output.out(
    `${s.status}${s.reason ? `: ${s.reason}` : ""}\n` +
      `${s.mode} mode, ${s.policy} policy, ${formatBytes(s.total)} guest: ${s.rounds} rounds, total-time ${(s["total-time"] / 1000).toFixed(3)} s, downtime ${s.downtime.toFixed(1)} ms, ${formatBytes(s.transferred)} transferred` +
      (s.verified === null ? "" : s.verified ? ", every page verified" : ", VERIFICATION FAILED"),
  );
  if (result.rounds.length > 0) output.out(`\n${formatTable(roundsTable(result))}`);
  output.out(`\n${formatTable(summaryTable(result))}`);
}
