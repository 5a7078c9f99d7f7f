import type { Table } from "./table.js";

function csvCell(cell: string | number | null): string {
  if (cell === null) return "";
  const text = String(cell);
  // RFC 4180: quote cells holding a comma, quote or line break; double quotes inside.
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** Renders a table as RFC 4180 CSV with a header row (pandas.read_csv reads it as is). */
export function toCsv(table: Table): string {
  return `${[table.columns, ...table.rows].map((row) => row.map(csvCell).join(",")).join("\r\n")}\r\n`;
}

/** Builds a table from records, one column per key of the first record. */
export function recordsToTable(records: readonly Record<string, string | number | null>[]): Table {
  const columns = Object.keys(records[0] ?? {});
  return { columns, rows: records.map((record) => columns.map((c) => record[c] ?? null)) };
}
