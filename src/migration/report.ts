import { lineChart, type ReportChart, VEGA_LITE_SCHEMA } from "../report/chart.js";
import { recordsToTable } from "../report/csv.js";
import type { ReportSection, ReportTable } from "../report/section.js";
import { formatBytes } from "../util/units.js";
import type { MigrationResult, MigrationRound } from "./stats.js";
import type { SweepResult } from "./sweep.js";

/** The per-round table: every field of every round, in QEMU's names. */
export function roundsTable(result: MigrationResult): ReportTable {
  return {
    title: "Rounds",
    ...recordsToTable(result.rounds.map((r) => ({ ...r }) as Record<string, string | number>)),
  };
}

/** The summary as a two-column table (nested XBZRLE statistics flattened). */
export function summaryTable(result: MigrationResult): ReportTable {
  const rows: (string | number | null)[][] = [];
  for (const [key, value] of Object.entries(result.summary)) {
    if (value !== null && typeof value === "object") {
      for (const [inner, v] of Object.entries(value)) rows.push([`${key}.${inner}`, v as number]);
    } else
      rows.push([key, value === null ? null : typeof value === "boolean" ? String(value) : value]);
  }
  return { title: "Summary", columns: ["statistic", "value"], rows };
}

const MiB = 1024 ** 2;

/**
 * The convergence charts, round by round over the pre-copy rounds: bytes
 * still to send, pages sent against pages dirtied (a migration converges
 * while the first stays above the second), and the dirty rate against the
 * link's bandwidth estimate.
 */
export function convergenceCharts(result: MigrationResult, pageBytes: number): ReportChart[] {
  const precopy = result.rounds.filter((r: MigrationRound) => r.phase === "precopy");
  const round = { field: "round", title: "pre-copy round", whole: true } as const;
  const pages = precopy.flatMap((r) => [
    { round: r.round, pages: r["pages-sent"], series: "pages sent" },
    { round: r.round, pages: r["pages-dirtied"], series: "pages dirtied meanwhile" },
  ]);
  const rates = precopy.flatMap((r) => [
    { round: r.round, rate: (r["dirty-pages-rate"] * pageBytes) / 1e6, series: "dirty rate" },
    ...(r["bandwidth-estimate"] > 0
      ? [{ round: r.round, rate: r["bandwidth-estimate"] / 1e6, series: "bandwidth estimate" }]
      : []),
  ]);
  return [
    lineChart({
      title: "Pages sent against pages dirtied, round by round",
      data: pages,
      x: round,
      y: { field: "pages", title: `pages (${formatBytes(pageBytes)} each)` },
      series: "series",
    }),
    lineChart({
      title: "Remaining bytes after each pre-copy round",
      data: precopy.map((r) => ({ round: r.round, remaining: r.remaining / MiB })),
      x: round,
      y: { field: "remaining", title: "remaining (MiB)" },
    }),
    lineChart({
      title: "Dirty rate against bandwidth, round by round",
      data: rates,
      x: round,
      y: { field: "rate", title: "rate (MB/s)" },
      series: "series",
    }),
  ];
}

/** A report section for one migration: its summary, convergence charts and tables. */
export function migrationSection(
  result: MigrationResult,
  pageBytes: number,
  id = "migration",
  title = "Live migration",
): ReportSection {
  const s = result.summary;
  return {
    id,
    title,
    summary: [
      `${s.mode} mode, policy ${s.policy}: ${s.status}${s.reason ? ` (${s.reason})` : ""} after ${s.rounds} rounds; total time ${(s["total-time"] / 1000).toFixed(2)} s, downtime ${s.downtime.toFixed(1)} ms, ${formatBytes(s.transferred)} transferred for a ${formatBytes(s.total)} guest.`,
    ],
    charts: convergenceCharts(result, pageBytes),
    tables: [summaryTable(result), roundsTable(result)],
    data: result,
  };
}

/** The sweep as table rows, one per point. */
export function sweepTable(sweep: SweepResult): ReportTable {
  return {
    title: "Sweep",
    columns: [
      "policy",
      "bandwidth (MB/s)",
      "writes/s",
      "downtime-limit (ms)",
      "status",
      "rounds",
      "total-time (s)",
      "downtime (ms)",
      "transferred (MiB)",
    ],
    rows: sweep.points.map((p) => [
      p.policy,
      Number.isFinite(p.bandwidth) ? Math.round(p.bandwidth / 1e6) : "unlimited",
      p.writesPerSecond,
      p.downtimeLimitMs,
      p.summary.status,
      p.summary.rounds,
      Number((p.summary["total-time"] / 1000).toFixed(2)),
      Number(p.summary.downtime.toFixed(1)),
      Math.round(p.summary.transferred / 1024 ** 2),
    ]),
  };
}

/** The fill of cells whose migration did not complete: greys, never a colour of the scale. */
export const UNFINISHED_FILL = { "not-converged": "#bdbdbd", failed: "#636363" } as const;

/**
 * Heat maps of a sweep: total time and downtime over bandwidth x write rate,
 * one panel per policy and downtime limit. Both axes are numbers sorted as
 * numbers. Only completed points take the colour scale; a point that did not
 * converge (or failed) is a grey cell with its own legend and its status
 * written in it, so that its short "downtime" never reads as the best one.
 */
export function sweepHeatMaps(sweep: SweepResult): ReportChart[] {
  const values = sweep.points.map((p) => ({
    // Unlimited sorts after every finite bandwidth.
    bandwidth: Number.isFinite(p.bandwidth) ? Math.round(p.bandwidth / 1e6) : 1e12,
    rate: p.writesPerSecond,
    panel: `${p.policy}, limit ${p.downtimeLimitMs} ms`,
    totalS: p.summary["total-time"] / 1000,
    downtimeMs: p.summary.downtime,
    status: p.summary.status === "completed" ? "" : p.summary.status,
  }));
  const x = {
    field: "bandwidth",
    type: "ordinal" as const,
    sort: "ascending" as const,
    title: "bandwidth (MB/s)",
    axis: {
      labelAngle: 0,
      labelExpr: "datum.value >= 1e12 ? 'unlimited' : format(datum.value, ',')",
    },
  };
  const y = {
    field: "rate",
    type: "ordinal" as const,
    sort: "ascending" as const,
    title: "guest writes (per s)",
    axis: { format: "," },
  };
  const heat = (field: string, title: string, legend: string): ReportChart => ({
    title,
    spec: {
      $schema: VEGA_LITE_SCHEMA,
      data: { values },
      facet: { field: "panel", type: "nominal", title: null },
      columns: 3,
      resolve: { scale: { color: "independent" } },
      spec: {
        width: 180,
        height: 140,
        layer: [
          {
            transform: [{ filter: "datum.status === ''" }],
            mark: "rect",
            encoding: {
              x,
              y,
              color: { field, type: "quantitative", title: legend, scale: { scheme: "orangered" } },
            },
          },
          {
            transform: [{ filter: "datum.status !== ''" }],
            mark: "rect",
            encoding: {
              x,
              y,
              color: {
                field: "status",
                type: "nominal",
                title: "did not complete",
                // Below the panel: a second legend beside the colour scale's
                // would push three panels past the page.
                legend: { orient: "bottom" },
                scale: {
                  domain: Object.keys(UNFINISHED_FILL),
                  range: Object.values(UNFINISHED_FILL),
                },
              },
            },
          },
          {
            mark: { type: "text", fontSize: 9 },
            encoding: { x, y, text: { field: "status", type: "nominal" } },
          },
        ],
        resolve: { scale: { color: "independent" } },
      },
    },
  });
  return [
    heat("totalS", "Sweep: total time (grey: did not converge)", "total time (s)"),
    heat("downtimeMs", "Sweep: downtime (grey: did not converge)", "downtime (ms)"),
  ];
}

/** A report section for a sweep: heat maps and the table. */
export function sweepSection(sweep: SweepResult, id = "migration-sweep"): ReportSection {
  const converged = sweep.points.filter((p) => p.summary.status === "completed").length;
  return {
    id,
    title: "Migration sweep",
    summary: [
      `${sweep.points.length} migrations (bandwidth x dirty rate x downtime-limit x policy) on ${sweep.workers} workers in ${(sweep.wallMs / 1000).toFixed(1)} s of wall time; ${converged} completed.`,
    ],
    charts: sweepHeatMaps(sweep),
    tables: [sweepTable(sweep)],
    data: sweep,
  };
}
