/*
 * The migration report (src/migration/report.ts): the per-round and summary
 * tables in QEMU's names (qapi/migration.json, MigrationInfo), the
 * convergence charts over the pre-copy rounds, the sweep table and the sweep
 * heat maps (docs/migration.md: "draws the convergence chart and sweep heat
 * maps in the HTML report"). Every figure below is worked out by hand from
 * the records the test builds.
 */
import { describe, expect, it } from "vitest";
import {
  convergenceCharts,
  migrationSection,
  roundsTable,
  summaryTable,
  sweepHeatMaps,
  sweepSection,
  sweepTable,
  UNFINISHED_FILL,
} from "../src/migration/report.js";
import type { MigrationResult, MigrationRound, MigrationSummary } from "../src/migration/stats.js";
import type { SweepPoint, SweepResult } from "../src/migration/sweep.js";
import { type ReportChart, renderChartSvg } from "../src/report/chart.js";
import { EMPTY_SUMMARY } from "./support/migration-summary.js";

const PAGE = 4096;
const MiB = 1024 ** 2;

/** A round with every figure zero; each test sets what it reads. */
function round(fields: Partial<MigrationRound> & Pick<MigrationRound, "round" | "phase">) {
  return {
    "start-ms": 0,
    "duration-ms": 0,
    "pages-sent": 0,
    "pages-dirtied": 0,
    "bytes-sent": 0,
    remaining: 0,
    transferred: 0,
    "dirty-pages-rate": 0,
    mbps: 0,
    "bandwidth-estimate": 0,
    "expected-downtime": 0,
    "cpu-throttle-percentage": 0,
    decision: "continue",
    reason: "",
    ...fields,
  } satisfies MigrationRound;
}

/**
 * Two pre-copy rounds between a setup and a stop-and-copy round: the first
 * sends 1,000 pages while 400 are dirtied (1.5625 MiB left) at 2,000 dirty
 * pages/s on a link estimated at 50 MB/s; the second sends 400 while 100
 * are dirtied (0.390625 MiB left) at 500 pages/s with no estimate yet.
 */
const ROUNDS: MigrationRound[] = [
  round({ round: 0, phase: "setup", remaining: 8 * MiB, "pages-sent": 7 }),
  round({
    round: 1,
    phase: "precopy",
    "pages-sent": 1000,
    "pages-dirtied": 400,
    remaining: 400 * PAGE,
    "dirty-pages-rate": 2000,
    "bandwidth-estimate": 50e6,
  }),
  round({
    round: 2,
    phase: "precopy",
    "pages-sent": 400,
    "pages-dirtied": 100,
    remaining: 100 * PAGE,
    "dirty-pages-rate": 500,
    "bandwidth-estimate": 0,
    decision: "stop-and-copy",
    reason: "expected downtime under the limit",
  }),
  round({ round: 3, phase: "stop-and-copy", "pages-sent": 100, "bandwidth-estimate": 80e6 }),
];

const SUMMARY: MigrationSummary = {
  ...EMPTY_SUMMARY,
  policy: "xen",
  rounds: 3,
  "total-time": 1234,
  downtime: 45.67,
  transferred: 3 * MiB,
  total: 4 * MiB,
  verified: true,
  "xbzrle-cache": {
    "cache-size": 65536,
    bytes: 1200,
    pages: 3,
    "cache-miss": 2,
    "cache-miss-rate": 0.4,
    "encoding-rate": 2.5,
    overflow: 1,
  },
  "postcopy-vcpu-blocktime": [5, 7],
};

const RESULT: MigrationResult = { rounds: ROUNDS, summary: SUMMARY };

/** A chart's inline records and its encodings, as the report writes them. */
interface PlainChart {
  data: { values: Record<string, unknown>[] };
  encoding: Record<string, { field: string; title: string; axis?: unknown }>;
}
const plain = (chart: ReportChart) => chart.spec as unknown as PlainChart;

describe("rounds table", () => {
  // Every field of every round, in QEMU's names, one row per round in order.
  it("has one column per round field and one row per round", () => {
    const table = roundsTable(RESULT);
    expect(table.title).toBe("Rounds");
    expect(table.columns).toEqual(Object.keys(ROUNDS[0] ?? {}));
    expect(table.columns).toContain("pages-dirtied");
    expect(table.rows).toHaveLength(4);
    const dirtied = table.columns.indexOf("pages-dirtied");
    const phase = table.columns.indexOf("phase");
    expect(table.rows.map((r) => r[dirtied])).toEqual([0, 400, 100, 0]);
    expect(table.rows.map((r) => r[phase])).toEqual([
      "setup",
      "precopy",
      "precopy",
      "stop-and-copy",
    ]);
  });
});

describe("summary table", () => {
  const rows = new Map(summaryTable(RESULT).rows.map((r) => [r[0], r[1]]));

  // Two columns, statistic and value, under the title "Summary".
  it("is a two-column statistic/value table", () => {
    const table = summaryTable(RESULT);
    expect(table.title).toBe("Summary");
    expect(table.columns).toEqual(["statistic", "value"]);
    expect(table.rows.every((r) => r.length === 2)).toBe(true);
  });

  // Numbers stay numbers; a null (no reason: it completed) stays empty; a
  // boolean is written as a word.
  it("keeps numbers, leaves null empty and writes booleans as words", () => {
    expect(rows.get("total-time")).toBe(1234);
    expect(rows.get("downtime")).toBe(45.67);
    expect(rows.get("status")).toBe("completed");
    expect(rows.get("reason")).toBeNull();
    expect(rows.get("verified")).toBe("true");
    const refused = summaryTable({ rounds: [], summary: { ...SUMMARY, verified: false } });
    expect(refused.rows.find((r) => r[0] === "verified")?.[1]).toBe("false");
  });

  // QEMU's xbzrle-cache statistics are nested in the summary: flattened to
  // one row each, named "xbzrle-cache.<statistic>".
  it("flattens the XBZRLE cache statistics into one row each", () => {
    expect(rows.has("xbzrle-cache")).toBe(false);
    expect(rows.get("xbzrle-cache.cache-size")).toBe(65536);
    expect(rows.get("xbzrle-cache.cache-miss-rate")).toBe(0.4);
    expect(rows.get("xbzrle-cache.overflow")).toBe(1);
    // Each vCPU's post-copy blocktime is a row of its own too.
    expect(rows.get("postcopy-vcpu-blocktime.0")).toBe(5);
    expect(rows.get("postcopy-vcpu-blocktime.1")).toBe(7);
    // Every top-level statistic but the two nested ones has its own row.
    const scalars = Object.keys(SUMMARY).length - 2;
    expect(rows.size).toBe(scalars + 7 + 2);
  });

  // No XBZRLE cache (null): a single empty row, nothing flattened.
  it("writes an absent XBZRLE cache as one empty row", () => {
    const table = summaryTable({ rounds: [], summary: EMPTY_SUMMARY });
    expect(table.rows.filter((r) => String(r[0]).startsWith("xbzrle-cache"))).toEqual([
      ["xbzrle-cache", null],
    ]);
    expect(table.rows).toHaveLength(Object.keys(EMPTY_SUMMARY).length);
  });
});

describe("convergence charts", () => {
  // Over the pre-copy rounds only (setup and stop-and-copy are not
  // iterations): pages sent against pages dirtied, bytes still to send, and
  // the dirty rate against the link's bandwidth estimate.
  const [pages, remaining, rates] = convergenceCharts(RESULT, PAGE).map(plain);

  it("draws three charts with their titles", () => {
    expect(convergenceCharts(RESULT, PAGE).map((c) => c.title)).toEqual([
      "Pages sent against pages dirtied, round by round",
      "Remaining bytes after each pre-copy round",
      "Dirty rate against bandwidth, round by round",
    ]);
  });

  it("sets pages sent against pages dirtied for each pre-copy round", () => {
    expect(pages?.data.values).toEqual([
      { round: 1, pages: 1000, series: "pages sent" },
      { round: 1, pages: 400, series: "pages dirtied meanwhile" },
      { round: 2, pages: 400, series: "pages sent" },
      { round: 2, pages: 100, series: "pages dirtied meanwhile" },
    ]);
    // The axis says how big a page is; rounds are whole numbers.
    expect(pages?.encoding.y?.title).toBe("pages (4.0 KiB each)");
    expect(pages?.encoding.x?.title).toBe("pre-copy round");
    expect(pages?.encoding.x?.field).toBe("round");
    expect(pages?.encoding.x?.axis).toEqual({ tickMinStep: 1, format: ",d" });
    const huge = plain(convergenceCharts(RESULT, 2 * MiB)[0] as ReportChart);
    expect(huge.encoding.y?.title).toBe("pages (2.0 MiB each)");
  });

  it("draws the bytes left after each pre-copy round in MiB", () => {
    expect(remaining?.data.values).toEqual([
      { round: 1, remaining: 1.5625 },
      { round: 2, remaining: 0.390625 },
    ]);
    expect(remaining?.encoding.y?.title).toBe("remaining (MiB)");
  });

  // Dirty rate in MB/s is dirty pages/s x page size / 1e6; the bandwidth
  // estimate is drawn only for a round that had one (0: not measured yet).
  it("sets the dirty rate against the bandwidth estimate, in MB/s", () => {
    expect(rates?.data.values).toEqual([
      { round: 1, rate: (2000 * 4096) / 1e6, series: "dirty rate" },
      { round: 1, rate: 50, series: "bandwidth estimate" },
      { round: 2, rate: (500 * 4096) / 1e6, series: "dirty rate" },
    ]);
    expect(rates?.encoding.y?.title).toBe("rate (MB/s)");
  });

  it("has empty charts when no pre-copy round ran (quick migration)", () => {
    const quick = convergenceCharts(
      { rounds: [ROUNDS[0], ROUNDS[3]] as MigrationRound[], summary: SUMMARY },
      PAGE,
    );
    expect(quick.map((c) => plain(c).data.values)).toEqual([[], [], []]);
  });
});

describe("migration section", () => {
  // One line: mode, policy, status (with its reason when there is one),
  // rounds, total time in s, downtime in ms, bytes moved for the guest's size.
  it("sums the run up in one line", () => {
    const section = migrationSection(RESULT, PAGE);
    expect(section.id).toBe("migration");
    expect(section.title).toBe("Live migration");
    expect(section.summary).toEqual([
      "metadata mode, policy xen: completed after 3 rounds; total time 1.23 s, downtime 45.7 ms, 3.0 MiB transferred for a 4.0 MiB guest.",
    ]);
    expect(section.data).toBe(RESULT);
  });

  it("names why a run did not converge", () => {
    const stuck = migrationSection(
      {
        rounds: ROUNDS,
        summary: { ...SUMMARY, status: "not-converged", reason: "dirtying outran the link" },
      },
      PAGE,
      "run-2",
      "Second run",
    );
    expect(stuck.id).toBe("run-2");
    expect(stuck.title).toBe("Second run");
    expect(stuck.summary[0]).toMatch(
      /^metadata mode, policy xen: not-converged \(dirtying outran the link\) after 3 rounds;/,
    );
  });

  // Charts as convergenceCharts draws them; the summary table, then the rounds.
  it("holds the convergence charts, the summary and the rounds", () => {
    const section = migrationSection(RESULT, PAGE);
    expect(section.charts).toEqual(convergenceCharts(RESULT, PAGE));
    expect(section.tables.map((t) => t.title)).toEqual(["Summary", "Rounds"]);
    expect(section.tables[0]).toEqual(summaryTable(RESULT));
    expect(section.tables[1]).toEqual(roundsTable(RESULT));
  });
});

/** A sweep point ending as `summary` says. */
function point(
  bandwidth: number,
  writesPerSecond: number,
  summary: Partial<MigrationSummary>,
  policy: SweepPoint["policy"] = "qemu",
  downtimeLimitMs = 300,
): SweepPoint {
  return {
    bandwidth,
    writesPerSecond,
    downtimeLimitMs,
    policy,
    summary: { ...EMPTY_SUMMARY, ...summary },
  };
}

/**
 * A 2 x 2 grid on one panel plus one point on a second: 124.6 MB/s and an
 * unlimited link at 1,000 and 20,000 writes/s. Two complete, one does not
 * converge, one fails.
 */
const SWEEP: SweepResult = {
  workers: 2,
  wallMs: 1500,
  points: [
    point(124.6e6, 1000, {
      "total-time": 12_340,
      downtime: 45.66,
      transferred: 3.6 * MiB,
      rounds: 4,
    }),
    point(124.6e6, 20_000, { status: "not-converged", "total-time": 60_000, downtime: 0 }),
    point(Number.POSITIVE_INFINITY, 1000, {
      "total-time": 1500,
      downtime: 12.5,
      transferred: 3.4 * MiB,
    }),
    point(Number.POSITIVE_INFINITY, 20_000, { status: "failed", "total-time": 2000, downtime: 0 }),
    point(1250e6, 1000, { "total-time": 500, downtime: 8 }, "xen", 1000),
  ],
};

describe("sweep table", () => {
  // One row per point: bandwidth in whole MB/s ("unlimited" for no cap),
  // times in s to 2 decimals, downtime to 0.1 ms, transferred in whole MiB.
  it("writes one row per point in the units of its headers", () => {
    const table = sweepTable(SWEEP);
    expect(table.title).toBe("Sweep");
    expect(table.columns).toEqual([
      "policy",
      "bandwidth (MB/s)",
      "writes/s",
      "downtime-limit (ms)",
      "status",
      "rounds",
      "total-time (s)",
      "downtime (ms)",
      "transferred (MiB)",
    ]);
    expect(table.rows[0]).toEqual(["qemu", 125, 1000, 300, "completed", 4, 12.34, 45.7, 4]);
    expect(table.rows[2]).toEqual(["qemu", "unlimited", 1000, 300, "completed", 3, 1.5, 12.5, 3]);
    expect(table.rows[4]).toEqual(["xen", 1250, 1000, 1000, "completed", 3, 0.5, 8, 0]);
    expect(table.rows.map((r) => r[4])).toEqual([
      "completed",
      "not-converged",
      "completed",
      "failed",
      "completed",
    ]);
  });
});

/** The rect cells of a rendered heat map: their label (x, y and value) and fill ("" for none). */
function cells(svg: string): { label: string; fill: string }[] {
  return [
    ...svg.matchAll(
      /aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="rect mark" d="[^"]*"(?: fill="([^"]*)")?/g,
    ),
  ].map((m) => ({ label: m[1] ?? "", fill: m[2] ?? "" }));
}

/** Text written in the cells. */
function cellTexts(svg: string): string[] {
  return [...svg.matchAll(/aria-roledescription="text mark"[^>]*?(?:\/>|>([^<]*)<\/text>)/g)].map(
    (m) => m[1] ?? "",
  );
}

/** Labels of the axis whose title is `title`, in drawing order. */
function axisLabels(svg: string, title: string): string[] {
  const at = svg.indexOf(`titled '${title}'`);
  const end = svg.indexOf("role-axis-title", at);
  return [...svg.slice(at, end).matchAll(/opacity="1">([^<]*)<\/text>/g)].map((m) => m[1] ?? "");
}

describe("sweep heat maps", () => {
  // Total time and downtime over bandwidth x write rate, one panel per
  // policy and downtime limit; only completed points take the colour scale,
  // the rest are grey cells with their status written in them.
  it("draws total time and downtime, each with its own legend", async () => {
    const [total, downtime] = sweepHeatMaps(SWEEP);
    expect(total?.title).toBe("Sweep: total time (grey: did not converge)");
    expect(downtime?.title).toBe("Sweep: downtime (grey: did not converge)");
    const totalSvg = await renderChartSvg(total as ReportChart);
    const downSvg = await renderChartSvg(downtime as ReportChart);
    expect(totalSvg).toContain("Gradient legend titled 'total time (s)'");
    expect(downSvg).toContain("Gradient legend titled 'downtime (ms)'");
    expect(totalSvg).toContain("Symbol legend titled 'did not complete'");
    // Completed cells carry their value on the colour scale, never grey.
    const totalCells = cells(totalSvg);
    // One cell per point: a completed point is never drawn grey as well.
    expect(totalCells).toHaveLength(5);
    const coloured = totalCells.filter((c) => c.fill.startsWith("rgb("));
    expect(coloured.map((c) => c.label)).toEqual([
      "bandwidth (MB/s): 125; guest writes (per s): 1000; total time (s): 12.34",
      "bandwidth (MB/s): 1000000000000; guest writes (per s): 1000; total time (s): 1.5",
      "bandwidth (MB/s): 1250; guest writes (per s): 1000; total time (s): 0.5",
    ]);
    expect(
      cells(downSvg)
        .filter((c) => c.fill.startsWith("rgb("))
        .map((c) => c.label),
    ).toEqual([
      "bandwidth (MB/s): 125; guest writes (per s): 1000; downtime (ms): 45.66",
      "bandwidth (MB/s): 1000000000000; guest writes (per s): 1000; downtime (ms): 12.5",
      "bandwidth (MB/s): 1250; guest writes (per s): 1000; downtime (ms): 8",
    ]);
    // The two that did not complete: grey, each in its own shade.
    expect(totalCells.filter((c) => !c.fill.startsWith("rgb("))).toEqual([
      {
        label:
          "bandwidth (MB/s): 125; guest writes (per s): 20000; did not complete: not-converged",
        fill: UNFINISHED_FILL["not-converged"],
      },
      {
        label:
          "bandwidth (MB/s): 1000000000000; guest writes (per s): 20000; did not complete: failed",
        fill: UNFINISHED_FILL.failed,
      },
    ]);
    // Their status is written in the cell; a completed cell has no text.
    expect(cellTexts(totalSvg).filter((t) => t !== "")).toEqual(["not-converged", "failed"]);
    expect(cellTexts(totalSvg)).toHaveLength(5);
  });

  // Both axes are numbers sorted as numbers; an unlimited link sorts last
  // and reads "unlimited"; thousands get separators.
  it("sorts the axes as numbers with the unlimited link last", async () => {
    const svg = await renderChartSvg(sweepHeatMaps(SWEEP)[0] as ReportChart);
    expect(axisLabels(svg, "bandwidth (MB/s)")).toEqual(["125", "1,250", "unlimited"]);
    expect(axisLabels(svg, "guest writes (per s)")).toEqual(["1,000", "20,000"]);
    // One panel per policy and downtime limit, each headed so.
    expect(svg).toContain("Title text 'qemu, limit 300 ms'");
    expect(svg).toContain("Title text 'xen, limit 1000 ms'");
    // 200 before 1,250 (as text, "1250" would come first).
    const links = sweepHeatMaps({
      ...SWEEP,
      points: [point(1250e6, 1000, {}), point(200e6, 1000, {})],
    });
    const linksSvg = await renderChartSvg(links[0] as ReportChart);
    expect(axisLabels(linksSvg, "bandwidth (MB/s)")).toEqual(["200", "1,250"]);
  });

  // The grey legend sits below the panels (beside the colour scale's it
  // would push three panels past the page); three panels a row.
  it("lays panels three a row with the grey legend below", () => {
    const spec = sweepHeatMaps(SWEEP)[0]?.spec as unknown as {
      columns: number;
      facet: { field: string };
      spec: { layer: { encoding: { color?: { legend?: { orient: string } } } }[] };
    };
    expect(spec.columns).toBe(3);
    expect(spec.facet.field).toBe("panel");
    expect(spec.spec.layer[1]?.encoding.color?.legend).toEqual({ orient: "bottom" });
  });
});

describe("sweep section", () => {
  // How many migrations on how many workers in how much wall time, and how
  // many completed; the heat maps and the table.
  it("sums the sweep up in one line", () => {
    const section = sweepSection(SWEEP);
    expect(section.id).toBe("migration-sweep");
    expect(section.title).toBe("Migration sweep");
    expect(section.summary).toEqual([
      "5 migrations (bandwidth x dirty rate x downtime-limit x policy) on 2 workers in 1.5 s of wall time; 3 completed.",
    ]);
    expect(section.charts).toEqual(sweepHeatMaps(SWEEP));
    expect(section.tables).toEqual([sweepTable(SWEEP)]);
    expect(section.data).toBe(SWEEP);
    expect(sweepSection(SWEEP, "grid").id).toBe("grid");
  });
});
