import type { MachineInfo } from "../bench/machine.js";
import { formatBytes } from "../util/units.js";
import { renderChartSvg } from "./chart.js";
import { formatNumber } from "./format.js";
import type { ReportSection, ReportTable } from "./section.js";

function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function cell(value: string | number | null): string {
  if (value === null) return "<td></td>";
  if (typeof value === "number") return `<td class="num">${formatNumber(value)}</td>`;
  // Sentences (a claim, how it was measured) wrap; names and figures stay on one line.
  return value.length > 48
    ? `<td class="wrap">${escapeHtml(value)}</td>`
    : `<td>${escapeHtml(value)}</td>`;
}

/*
 * Tables sit in a box that scrolls sideways when they are wider than the
 * page. The scroll bar is styled so that Chromium draws it always, not as an
 * overlay that appears only while scrolling: a reader sees there is more.
 */
const STYLE = `
body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
.scroll{overflow-x:auto;max-width:100%;margin:1em 0}
.scroll::-webkit-scrollbar{height:10px}.scroll::-webkit-scrollbar-thumb{background:#bbb;border-radius:5px}
.scroll::-webkit-scrollbar-track{background:#f0f0f0}
table{border-collapse:collapse;font-size:13px}
caption{text-align:left;font-weight:600;padding:.2em 0}
th,td{border:1px solid #ddd;padding:3px 8px;white-space:nowrap}th{background:#f3f3f3;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{white-space:normal;min-width:14em;max-width:30em}
figure{margin:1.5em 0;max-width:100%;overflow-x:auto}figcaption{font-weight:600;margin-bottom:.3em}
.machine{color:#555;font-size:13px}nav a{margin-right:1em}
.met{color:#1a7f37;font-weight:600}.missed{color:#b42318;font-weight:600}`;

function tableHtml(table: ReportTable): string {
  const parts = [`<div class="scroll"><table><caption>${escapeHtml(table.title)}</caption>`];
  parts.push(`<thead><tr>${table.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}`);
  parts.push("</tr></thead><tbody>");
  for (const row of table.rows) parts.push(`<tr>${row.map(cell).join("")}</tr>`);
  parts.push("</tbody></table></div>");
  return parts.join("");
}

/** The report's opening: each section's headline figure and whether its target is met. */
function summaryHtml(sections: readonly ReportSection[]): string {
  const rows = sections.filter((s) => s.headline !== undefined);
  if (rows.length === 0) return "";
  const body = rows
    .map((s) => {
      const h = s.headline;
      if (h === undefined) return "";
      const met = h.met ? `<td class="met">met</td>` : `<td class="missed">not met</td>`;
      return `<tr><td><a href="#${escapeHtml(s.id)}">${escapeHtml(s.title)}</a></td><td class="wrap">${escapeHtml(h.figure)}</td><td class="wrap">${escapeHtml(h.target)}</td>${met}</tr>`;
    })
    .join("");
  return `<section id="summary"><h2>Summary</h2><div class="scroll"><table><thead><tr><th>engine</th><th>headline figure</th><th>target</th><th>target met</th></tr></thead><tbody>${body}</tbody></table></div></section>`;
}

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
    for (const table of section.tables) parts.push(tableHtml(table));
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
${summaryHtml(sections)}
${parts.join("\n")}
</body></html>
`;
}
