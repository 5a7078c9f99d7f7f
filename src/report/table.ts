import { formatNumber } from "./format.js";

/** A table of records: column headers and rows of cells. */
export interface Table {
  readonly columns: readonly string[];
  readonly rows: readonly (readonly (string | number | null)[])[];
}

function cellText(cell: string | number | null): string {
  if (cell === null) return "";
  return typeof cell === "number" ? formatNumber(cell) : cell;
}

/** Renders a table as aligned text for the terminal: text left, numbers right. */
export function formatTable(table: Table): string {
  const text = table.rows.map((row) => row.map(cellText));
  const widths = table.columns.map((column, i) =>
    Math.max(column.length, ...text.map((row) => (row[i] ?? "").length)),
  );
  const numeric = table.columns.map((_, i) =>
    table.rows.every((row) => typeof row[i] === "number" || row[i] === null),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [
    line(table.columns),
    line(widths.map((w) => "-".repeat(w))),
    ...text.map((row) => line(row)),
  ].join("\n");
}
