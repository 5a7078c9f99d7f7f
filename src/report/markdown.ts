import { formatNumber } from "./format.js";
import type { Table } from "./table.js";

function markdownCell(cell: string | number | null): string {
  if (cell === null) return "";
  if (typeof cell === "number") return formatNumber(cell);
  return cell.replaceAll("|", "\\|");
}

/** Renders a table as a GitHub-flavoured Markdown table (numbers right-aligned). */
export function toMarkdown(table: Table): string {
  const numeric = table.columns.map((_, i) =>
    table.rows.every((row) => typeof row[i] === "number" || row[i] === null),
  );
  const header = `| ${table.columns.join(" | ")} |`;
  const rule = `| ${numeric.map((n) => (n ? "---:" : "---")).join(" | ")} |`;
  const rows = table.rows.map((row) => `| ${row.map(markdownCell).join(" | ")} |`);
  return [header, rule, ...rows].join("\n");
}
