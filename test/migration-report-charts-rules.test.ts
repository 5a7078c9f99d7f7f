/*
 * What the migration report's charts and summary table mean (src/migration/
 * report.ts), read the way Vega-Lite reads a spec: an encoding's field must
 * be a key of every record, or the mark has nothing to draw; the colour
 * channel is what tells a chart's series apart; axis and legend titles are
 * what a reader sees. Every expected figure is worked out by hand from the
 * rounds built here. Each report function is called inside its test, never
 * while the file is collected, so that each test sees the code it checks.
 */
import { describe, expect, it } from "vitest";
import { convergenceCharts, summaryTable, sweepHeatMaps } from "../src/migration/report.js";
import type { MigrationResult, MigrationRound, MigrationSummary } from "../src/migration/stats.js";
import type { SweepPoint } from "../src/migration/sweep.js";
import { type ReportChart, renderChartSvg } from "../src/report/chart.js";
import { EMPTY_SUMMARY } from "./support/migration-summary.js";

const PAGE = 4096;
const MiB = 1024 ** 2;

/** The numeric figures of a round (qapi/migration.json's names plus hvlab's). */
const FIGURES = [
  "start-ms",
  "duration-ms",
  "pages-sent",
  "pages-dirtied",
  "bytes-sent",
  "remaining",
  "transferred",
  "dirty-pages-rate",
  "mbps",
  "bandwidth-estimate",
  "expected-downtime",
  "cpu-throttle-percentage",
] as const;
type Figures = Partial<Record<(typeof FIGURES)[number], number>>;

/** A round of `phase` whose figures are zero but those given. */
function roundOf(round: number, phase: MigrationRound["phase"], figures: Figures): MigrationRound {
  const counted = Object.fromEntries(FIGURES.map((name) => [name, figures[name] ?? 0]));
  return { round, phase, decision: "continue", reason: "", ...counted } as MigrationRound;
}

/**
 * Setup, two pre-copy rounds, stop-and-copy. Round 1 sends 2,048 pages
 * while 512 are dirtied (2 MiB left) at 1,000 dirty pages/s, before the
 * link's bandwidth is known (estimate 0); round 2 sends 512 while 64 are
 * dirtied (0.25 MiB left) at 250 pages/s on a link estimated at 125 MB/s.
 * Setup and stop-and-copy carry figures of their own that no convergence
 * chart may show.
 */
const RESULT: MigrationResult = {
  rounds: [
    roundOf(0, "setup", { "pages-sent": 9, remaining: 64 * MiB, "bandwidth-estimate": 1e9 }),
    roundOf(1, "precopy", {
      "pages-sent": 2048,
      "pages-dirtied": 512,
      remaining: 512 * PAGE,
      "dirty-pages-rate": 1000,
    }),
    roundOf(2, "precopy", {
      "pages-sent": 512,
      "pages-dirtied": 64,
      remaining: 64 * PAGE,
      "dirty-pages-rate": 250,
      "bandwidth-estimate": 125e6,
    }),
    roundOf(3, "stop-and-copy", { "pages-sent": 64, "bandwidth-estimate": 100e6 }),
  ],
  summary: EMPTY_SUMMARY,
};

interface Encoded {
  field: string;
  type: string;
  title: string | null;
}
interface LineSpec {
  data: { values: unknown[] };
  encoding: { x: Encoded; y: Encoded; color?: Encoded };
}

/**
 * The points a line chart draws, as Vega-Lite finds them: [x, y] or, with a
 * colour channel, [x, y, series]. A field that is not a key of a record
 * draws nothing, so it fails here.
 */
function drawn(chart: ReportChart): unknown[][] {
  const { data, encoding } = chart.spec as unknown as LineSpec;
  const channels = [encoding.x, encoding.y, ...(encoding.color ? [encoding.color] : [])];
  return data.values.map((record) => {
    expect(record).toBeTypeOf("object");
    const fields = record as Record<string, unknown>;
    for (const channel of channels) expect(Object.keys(fields)).toContain(channel.field);
    return channels.map((channel) => fields[channel.field]);
  });
}

const axes = (chart: ReportChart) => (chart.spec as unknown as LineSpec).encoding;

describe("convergence charts draw the pre-copy rounds", () => {
  // A migration converges while each round sends more pages than the guest
  // dirties meanwhile: the two are two series over the pre-copy rounds only
  // (QEMU's setup and completion are not iterations), in pages.
  it("draws pages sent and pages dirtied as two series per pre-copy round", () => {
    const [pages] = convergenceCharts(RESULT, PAGE);
    expect(drawn(pages as ReportChart)).toEqual([
      [1, 2048, "pages sent"],
      [1, 512, "pages dirtied meanwhile"],
      [2, 512, "pages sent"],
      [2, 64, "pages dirtied meanwhile"],
    ]);
    const { x, y, color } = axes(pages as ReportChart);
    expect(x.title).toBe("pre-copy round");
    expect(y.title).toBe("pages (4.0 KiB each)");
    // The series name is the legend's entry: colour by it, nominally.
    expect(color?.type).toBe("nominal");
  });

  // remaining is in bytes (QEMU's ram.remaining); the chart reads MiB.
  it("draws the bytes left after each pre-copy round in MiB, as one line", () => {
    const [, remaining] = convergenceCharts(RESULT, PAGE);
    expect(drawn(remaining as ReportChart)).toEqual([
      [1, 2],
      [2, 0.25],
    ]);
    expect(axes(remaining as ReportChart).y.title).toBe("remaining (MiB)");
    expect(axes(remaining as ReportChart).x.title).toBe("pre-copy round");
  });

  // The dirty rate is pages/s x page size, in MB/s (10^6 bytes), beside
  // the link's estimate in MB/s; a round with no estimate yet (0, as QEMU's
  // bandwidth before the first measured iteration) has no estimate point.
  it("draws the dirty rate in MB/s against the estimate, once it is known", () => {
    const [, , rates] = convergenceCharts(RESULT, PAGE);
    expect(drawn(rates as ReportChart)).toEqual([
      [1, 4.096, "dirty rate"],
      [2, 1.024, "dirty rate"],
      [2, 125, "bandwidth estimate"],
    ]);
    expect(axes(rates as ReportChart).y.title).toBe("rate (MB/s)");
    expect(axes(rates as ReportChart).color?.type).toBe("nominal");
    // With 2 MiB pages the same page rate dirties 512 times the bytes.
    const [, , huge] = convergenceCharts(RESULT, 2 * MiB);
    expect(drawn(huge as ReportChart)[0]).toEqual([1, 2097.152, "dirty rate"]);
  });

  // Only pre-copy rounds are drawn: a migration that went straight from
  // setup to stop-and-copy has nothing on any chart.
  it("draws nothing from setup or stop-and-copy rounds", () => {
    const quick = { ...RESULT, rounds: RESULT.rounds.filter((r) => r.phase !== "precopy") };
    for (const chart of convergenceCharts(quick, PAGE)) expect(drawn(chart)).toEqual([]);
  });
});

describe("summary table", () => {
  const summary: MigrationSummary = {
    ...EMPTY_SUMMARY,
    "total-time": 2500,
    downtime: 31.5,
    verified: true,
    "xbzrle-cache": {
      "cache-size": 1 * MiB,
      bytes: 4096,
      pages: 8,
      "cache-miss": 3,
      "cache-miss-rate": 0.375,
      "encoding-rate": 4,
      overflow: 0,
    },
  };

  // QEMU reports xbzrle-cache as a nested object (qapi/migration.json,
  // XBZRLECacheStats): each statistic is a row "xbzrle-cache.<name>" with
  // its number; numbers stay numbers (sortable, not text), booleans are words.
  it("flattens the nested cache statistics and keeps numbers as numbers", () => {
    const rows = new Map(summaryTable({ rounds: [], summary }).rows.map((r) => [r[0], r[1]]));
    expect(rows.get("xbzrle-cache.cache-size")).toBe(MiB);
    expect(rows.get("xbzrle-cache.pages")).toBe(8);
    expect(rows.get("xbzrle-cache.cache-miss-rate")).toBe(0.375);
    expect(rows.has("xbzrle-cache")).toBe(false);
    expect(rows.get("total-time")).toBe(2500);
    expect(rows.get("downtime")).toBe(31.5);
    expect(rows.get("verified")).toBe("true");
    expect(rows.get("reason")).toBeNull();
    // Every other statistic once, plus the cache's seven.
    expect(rows.size).toBe(Object.keys(summary).length - 1 + 7);
  });
});

/** A completed sweep point on one panel with its total time. */
function completed(bandwidth: number, totalMs: number): SweepPoint {
  return {
    bandwidth,
    writesPerSecond: 1000,
    downtimeLimitMs: 300,
    policy: "qemu",
    summary: { ...EMPTY_SUMMARY, "total-time": totalMs, downtime: 10 },
  };
}

describe("sweep heat map colours", () => {
  // A heat map reads hot for slow: completed cells take a warm scale, pale
  // for the fastest and dark red for the slowest, so that no colour of the
  // scale is a grey of the cells that did not complete (r = g = b).
  it("colours completed cells warm, darker for longer migrations", async () => {
    const sweep = { workers: 1, wallMs: 1, points: [completed(100e6, 8000), completed(1e9, 800)] };
    const svg = await renderChartSvg(sweepHeatMaps(sweep)[0] as ReportChart);
    const fills = new Map(
      [
        ...svg.matchAll(
          /aria-label="bandwidth \(MB\/s\): (\d+);[^"]*" role="graphics-symbol" aria-roledescription="rect mark" d="[^"]*" fill="rgb\((\d+), (\d+), (\d+)\)"/g,
        ),
      ].map((m) => [Number(m[1]), [Number(m[2]), Number(m[3]), Number(m[4])]]),
    );
    expect([...fills.keys()].sort((a, b) => a - b)).toEqual([100, 1000]);
    for (const [r = 0, g = 0, b = 0] of fills.values()) {
      expect(r).toBeGreaterThan(g);
      expect(g).toBeGreaterThanOrEqual(b);
    }
    const lightness = (rgb: number[] | undefined) => (rgb ?? []).reduce((a, c) => a + c, 0);
    expect(lightness(fills.get(100))).toBeLessThan(lightness(fills.get(1000)));
  });
});
