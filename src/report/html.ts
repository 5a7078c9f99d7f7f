import type { MachineInfo } from "../bench/machine.js";
import { formatBytes } from "../util/units.js";
import { renderChartSvg } from "./chart.js";
import type { ReportSection } from "./section.js";

function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function cell(value: string | number | null): string {
  if (value === null) return "<td></td>";
  if (typeof value === "number") {
    const text = Number.isInteger(value) ? value.toLocaleString("en-US") : value.toPrecision(4);
    return `<td class="num">${text}</td>`;
  }
  return `<td>${escapeHtml(value)}</td>`;
}

const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ddd;padding:3px 8px;white-space:nowrap}th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}
.machine{color:#555;font-size:13px}nav a{margin-right:1em}`;

/** Renders a self-contained HTML report (inline CSS and SVG charts, no scripts). */
export async function renderHtmlReport(
  title: string,
  machine: MachineInfo,
  sections: readonly ReportSection[],
  generatedAt: Date,
): Promise<string> {
  const parts: string[] = [];
  for (const section of sections) {
    parts.push(`<section id="${escapeHtml(section.id)}"><h2>${escapeHtml(section.title)}</h2>`);
    for (const paragraph of section.summary) parts.push(`<p>${escapeHtml(paragraph)}</p>`);
    for (const chart of section.charts) {
      const svg = await renderChartSvg(chart);
      parts.push(`<figure><figcaption>${escapeHtml(chart.title)}</figcaption>${svg}</figure>`);
    }
    for (const table of section.tables) {
      parts.push(`<table><caption>${escapeHtml(table.title)}</caption><thead><tr>`);
      parts.push(table.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join(""));
      parts.push("</tr></thead><tbody>");
      for (const row of table.rows) parts.push(`<tr>${row.map(cell).join("")}</tr>`);
      parts.push("</tbody></table>");
    }
    parts.push("</section>");
  }
  const nav = sections
    .map((s) => `<a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a>`)
    .join("");
  const machineLine = `${machine.cpu}, ${machine.cores} cores, ${formatBytes(machine.memoryBytes)}, Node.js ${machine.node}, hvlab ${machine.hvlab}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head>
<body><h1>${escapeHtml(title)}</h1>
<p class="machine">Generated ${generatedAt.toISOString()} on ${escapeHtml(machineLine)}.</p>
<nav>${nav}</nav>
${parts.join("\n")}
</body></html>
`;
}
