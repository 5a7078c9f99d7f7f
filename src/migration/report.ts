import type { ReportChart } from "../report/chart.js";
import { recordsToTable } from "../report/csv.js";
import type { ReportSection, ReportTable } from "../report/section.js";
import { formatBytes } from "../util/units.js";
import type { MigrationResult, MigrationRound } from "./stats.js";
import type { SweepResult } from "./sweep.js";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

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

/**
 * The convergence chart: remaining bytes after each round, and the dirty
 * rate (bytes/s) against the link's bandwidth estimate, round by round.
 */
export function convergenceCharts(result: MigrationResult, pageBytes: number): ReportChart[] {
  const precopy = result.rounds.filter((r: MigrationRound) => r.phase === "precopy");
  const remaining = precopy.map((r) => ({ round: r.round, bytes: r.remaining }));
  const rates = precopy.flatMap((r) => [
    { round: r.round, rate: r["dirty-pages-rate"] * pageBytes, series: "dirty rate" },
    ...(r["bandwidth-estimate"] > 0
      ? [{ round: r.round, rate: r["bandwidth-estimate"], series: "bandwidth" }]
      : []),
  ]);
  return [
    {
      title: "Remaining bytes after each pre-copy round",
      spec: {
        $schema: SCHEMA,
        width: 560,
        height: 220,
        data: { values: remaining },
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "round", type: "quantitative", title: "round" },
          y: { field: "bytes", type: "quantitative", title: "remaining (bytes)" },
        },
      },
    },
    {
      title: "Dirty rate against bandwidth, round by round",
      spec: {
        $schema: SCHEMA,
        width: 560,
        height: 220,
        data: { values: rates },
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "round", type: "quantitative", title: "round" },
          y: { field: "rate", type: "quantitative", title: "bytes per second" },
          color: { field: "series", type: "nominal" },
        },
      },
    },
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
 * one panel per policy and downtime limit. Only completed points take the
 * colour scale; a point that did not converge (or failed) is a grey cell
 * with its own legend and its status written in it, so that its short
 * "downtime" never reads as the best one.
 */
export function sweepHeatMaps(sweep: SweepResult): ReportChart[] {
  const values = sweep.points.map((p) => ({
    bandwidth: Number.isFinite(p.bandwidth) ? `${Math.round(p.bandwidth / 1e6)} MB/s` : "unlimited",
    rate: `${p.writesPerSecond.toLocaleString("en-US")} w/s`,
    panel: `${p.policy}, limit ${p.downtimeLimitMs} ms`,
    totalS: p.summary["total-time"] / 1000,
    downtimeMs: p.summary.downtime,
    status: p.summary.status === "completed" ? "" : p.summary.status,
  }));
  const cell = {
    x: { field: "bandwidth", type: "ordinal", title: "bandwidth" },
    y: { field: "rate", type: "ordinal", title: "dirty rate" },
  } as const;
  const heat = (field: string, title: string): ReportChart => ({
    title,
    spec: {
      $schema: SCHEMA,
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
              ...cell,
              color: { field, type: "quantitative", title, scale: { scheme: "orangered" } },
            },
          },
          {
            transform: [{ filter: "datum.status !== ''" }],
            mark: "rect",
            encoding: {
              ...cell,
              color: {
                field: "status",
                type: "nominal",
                title: "did not complete",
                scale: {
                  domain: Object.keys(UNFINISHED_FILL),
                  range: Object.values(UNFINISHED_FILL),
                },
              },
            },
          },
          {
            mark: { type: "text", fontSize: 9 },
            encoding: {
              x: { field: "bandwidth", type: "ordinal" },
              y: { field: "rate", type: "ordinal" },
              text: { field: "status", type: "nominal" },
            },
          },
        ],
        resolve: { scale: { color: "independent" } },
      },
    },
  });
  return [heat("totalS", "total time (s)"), heat("downtimeMs", "downtime (ms)")];
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
