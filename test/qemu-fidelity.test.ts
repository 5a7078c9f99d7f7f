import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { machineInfo } from "../src/bench/machine.js";
import type { QueryMigrateSummary } from "../src/migration/query-migrate.js";
import type { FigureError } from "../src/qemu/predict.js";
import { renderHtmlReport } from "../src/report/html.js";
import type { ReportSection } from "../src/report/section.js";
import { formatTable } from "../src/report/table.js";
import { hvlabAsync, requireTool } from "./support/cli.js";

/**
 * The fidelity suite: hvlab's prediction of a real QEMU migration (TCG,
 * loopback, a guest hvlab writes itself) against the migration itself, at
 * points across guest size, write pattern, bandwidth and downtime-limit.
 * The targets: where QEMU converges, total-time and bytes within 10 %,
 * dirty-sync-count within 2, downtime within 2x or 20 ms; where it cannot,
 * the prediction says so too. Each point migrates three times; every run's
 * prediction must call that run's convergence, and the figures are held as
 * the median prediction against the median migration. They hold the
 * prediction made at the sending
 * rate the run's own first pass showed (under TCG the rate moves with the
 * host's load between a probe and the run); the table shows the prediction
 * made before migrating, at the probe's rate, beside it.
 */
interface FidelityPoint {
  readonly name: string;
  readonly args: readonly string[];
}

const points: FidelityPoint[] = [
  ["128MiB uniform 10000/s 100MiB/s 100 ms", "128MiB uniform 10000 100MiB 100"],
  ["256MiB uniform 15000/s 100MiB/s 100 ms", "256MiB uniform 15000 100MiB 100"],
  ["512MiB uniform 10000/s 200MiB/s 300 ms", "512MiB uniform 10000 200MiB 300"],
  ["1GiB uniform 10000/s 200MiB/s 300 ms", "1GiB uniform 10000 200MiB 300"],
  ["256MiB hotset 20000/s 100MiB/s 100 ms", "256MiB hotset 20000 100MiB 100"],
  ["128MiB hotset 20000/s 50MiB/s 300 ms", "128MiB hotset 20000 50MiB 300"],
  ["128MiB uniform 5000/s 30MiB/s 300 ms", "128MiB uniform 5000 30MiB 300"],
  ["512MiB hotset 20000/s 150MiB/s 200 ms", "512MiB hotset 20000 150MiB 200"],
  ["128MiB uniform 5000/s 200MiB/s 30 ms", "128MiB uniform 5000 200MiB 30"],
  ["256MiB hotset 10000/s 150MiB/s 200 ms", "256MiB hotset 10000 150MiB 200"],
  [
    "128MiB uniform 40000/s 30MiB/s 30 ms (cannot converge)",
    "128MiB uniform 40000 30MiB 30 --timeout 6",
  ],
  [
    "128MiB uniform flat out 30MiB/s 100 ms, auto-converge",
    "128MiB uniform 0 30MiB 100 --auto-converge --timeout 6",
  ],
].map(([name, spec]) => {
  const [guest, pattern, rate, bandwidth, limit, ...rest] = (spec ?? "").split(" ");
  return {
    name: name ?? "",
    args: [
      "--guest",
      guest ?? "",
      "--pattern",
      pattern ?? "",
      "--rate",
      rate ?? "",
      "--bandwidth",
      bandwidth ?? "",
      "--downtime-limit",
      limit ?? "",
      ...rest,
    ],
  };
});

interface PredictOutput {
  readonly measured: { readonly probe: { readonly hostRate: number } | null };
  readonly predicted: QueryMigrateSummary;
  readonly real: QueryMigrateSummary;
  readonly comparison: FigureError[];
  readonly calibrated?: {
    readonly "first-pass": { readonly rate: number };
    readonly predicted: QueryMigrateSummary;
    readonly comparison: FigureError[];
  };
}

/** The targets, as the fidelity suite's contract states them. */
const TIME_AND_BYTES = 0.1;
const SYNCS = 2;
const DOWNTIME_FACTOR = 2;
const DOWNTIME_MS = 20;
/**
 * Migrations of each point. One migration under TCG on a 2-core host is one
 * draw: the 256 MiB hot set's downtime came to 14 to 21 ms in eight runs in
 * a row on a quiet host and 46 ms in one, with the same 25 MB sent. The
 * targets hold the median prediction against the median migration.
 */
const RUNS = 3;

const rows: (string | number)[][] = [];
/** The points whose prediction met every target. */
const held = new Set<string>();

function figure(comparison: readonly FigureError[], name: string): FigureError {
  const f = comparison.find((c) => c.figure.startsWith(name));
  if (!f) throw new Error(`no ${name} in the comparison`);
  return f;
}

/** The median of an odd count of figures. */
function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted[sorted.length >> 1];
  if (mid === undefined || sorted.length % 2 === 0) throw new Error("a median of an odd count");
  return mid;
}

/** One figure over the runs of a point: the median predicted against the median measured. */
function medianFigure(runs: readonly FigureError[]): FigureError {
  const predicted = median(runs.map((f) => f.predicted));
  const measured = median(runs.map((f) => f.measured));
  return {
    figure: runs[0]?.figure ?? "",
    predicted,
    measured,
    error: measured === 0 ? null : (predicted - measured) / measured,
  };
}

/** One `hvlab qemu predict --then-migrate` run of a point. */
async function predictThenMigrate(args: readonly string[]): Promise<PredictOutput> {
  const run = await hvlabAsync([
    "qemu",
    "predict",
    ...args,
    "--calc-times",
    "1",
    "--warmup",
    "500",
    "--then-migrate",
    "--json",
  ]);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  return JSON.parse(run.stdout) as PredictOutput;
}

const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu)("fidelity: hvlab's prediction against real QEMU (TCG)", () => {
  afterAll(async () => {
    // The suite's table, for docs/migration.md, and its report.
    const table = {
      columns: [
        "point",
        "MiB/s probe / run",
        "status",
        "syncs",
        "total-time ms",
        "MiB",
        "downtime ms",
        "at the probe's rate: status, time, MiB",
        "within targets",
      ],
      rows,
    };
    console.log(formatTable(table));
    const section: ReportSection = {
      id: "qemu-fidelity",
      title: "Predicted against real QEMU: the fidelity suite",
      summary: [
        `hvlab qemu predict --then-migrate at ${points.length} points: hvlab's model, fed what the guest and the host showed before migrating and the rates of the run's first second, against a real QEMU migration of the same guest under TCG on loopback, ${RUNS} times a point. Each cell is predicted / real, the medians of the runs (status: each run's; downtime: each run's in brackets).`,
        "Targets: each run's convergence predicted; where QEMU converges, the medians of total-time and bytes within 10 %, dirty-sync-count within 2, downtime within 2x or 20 ms; where it cannot, the prediction says not-converged too.",
      ],
      headline: {
        figure: `${held.size} of ${rows.length} points within their targets`,
        target: "every point within its targets",
        met: rows.length === points.length && held.size === points.length,
      },
      tables: [{ title: "Predicted / real at each point", ...table }],
      charts: [],
      data: { rows },
    };
    const out = resolve("reports");
    await mkdir(out, { recursive: true });
    const generatedAt = new Date();
    const machine = machineInfo();
    await writeFile(
      join(out, "qemu-fidelity.html"),
      await renderHtmlReport("hvlab QEMU fidelity", machine, [section], generatedAt),
    );
    await writeFile(
      join(out, "qemu-fidelity.json"),
      `${JSON.stringify({ generatedAt: generatedAt.toISOString(), machine, sections: [section] }, null, 2)}\n`,
    );
  });

  it.each(points)(
    "$name",
    async ({ args }) => {
      const runs: PredictOutput[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(await predictThenMigrate(args));
      const calibrated = runs.map((out) => {
        if (!out.calibrated) throw new Error("the run's first pass gave no rate to predict at");
        return out.calibrated;
      });
      const pct = (f: FigureError) =>
        f.error === null ? "" : ` (${f.error >= 0 ? "+" : ""}${Math.round(f.error * 100)} %)`;
      const time = medianFigure(calibrated.map((c) => figure(c.comparison, "total-time")));
      const bytes = medianFigure(calibrated.map((c) => figure(c.comparison, "transferred")));
      const syncs = medianFigure(calibrated.map((c) => figure(c.comparison, "rounds")));
      const downtime = medianFigure(calibrated.map((c) => figure(c.comparison, "downtime")));
      const probeTime = medianFigure(runs.map((o) => figure(o.comparison, "total-time")));
      const probeBytes = medianFigure(runs.map((o) => figure(o.comparison, "transferred")));
      const mib = (b: number) => Math.round(b / 2 ** 20);
      // Each run's prediction says whether that run converged; the figures
      // are held as medians, where every run converged.
      const converged = runs.map((o) => o.real.status === "completed");
      const statusMisses = runs.flatMap((o, i) => {
        const p = calibrated[i]?.predicted.status;
        if (o.real.status !== "completed")
          return p === "not-converged" ? [] : [`run ${i + 1} predicted to converge`];
        return p === "completed" ? [] : [`run ${i + 1} predicted not to converge`];
      });
      // Each target in the suite's words, checked below and named in the
      // report's last column.
      const downtimeWithin =
        Math.abs(downtime.predicted - downtime.measured) <= DOWNTIME_MS ||
        (downtime.predicted <= downtime.measured * DOWNTIME_FACTOR &&
          downtime.predicted * DOWNTIME_FACTOR >= downtime.measured);
      const figureMisses = converged.every(Boolean)
        ? [
            ...(Math.abs(time.error ?? 1) <= TIME_AND_BYTES ? [] : ["total-time"]),
            ...(Math.abs(bytes.error ?? 1) <= TIME_AND_BYTES ? [] : ["bytes"]),
            ...(Math.abs(syncs.predicted - syncs.measured) <= SYNCS ? [] : ["syncs"]),
            ...(downtimeWithin ? [] : ["downtime"]),
          ]
        : [];
      const misses = [...statusMisses, ...figureMisses];
      const each = (pick: (o: PredictOutput, i: number) => string) =>
        runs.map((o, i) => pick(o, i)).join(", ");
      // What every run said alike is said once.
      const alike = (pick: (o: PredictOutput, i: number) => string) =>
        [...new Set(runs.map((o, i) => pick(o, i)))].join(", ");
      rows.push([
        args.join(" "),
        `${mib(median(runs.map((o) => o.measured.probe?.hostRate ?? 0)))} / ${mib(median(calibrated.map((c) => c["first-pass"].rate)))}`,
        alike((o, i) => `${calibrated[i]?.predicted.status} / ${o.real.status}`),
        `${syncs.predicted} / ${syncs.measured}`,
        `${Math.round(time.predicted)} / ${Math.round(time.measured)}${pct(time)}`,
        `${mib(bytes.predicted)} / ${mib(bytes.measured)}${pct(bytes)}`,
        `${Math.round(downtime.predicted)} / ${Math.round(downtime.measured)} (${each((o, i) => `${Math.round(calibrated[i]?.predicted.downtime ?? 0)}/${Math.round(o.real.downtime)}`)})`,
        `${alike((o) => o.predicted.status)}, ${Math.round(probeTime.predicted)}${pct(probeTime)}, ${mib(probeBytes.predicted)}${pct(probeBytes)}`,
        misses.length === 0 ? "yes" : `no: ${misses.join(", ")}`,
      ]);
      expect(statusMisses).toEqual([]);
      if (converged.every(Boolean)) {
        expect(Math.abs(time.error ?? 1)).toBeLessThanOrEqual(TIME_AND_BYTES);
        expect(Math.abs(bytes.error ?? 1)).toBeLessThanOrEqual(TIME_AND_BYTES);
        expect(Math.abs(syncs.predicted - syncs.measured)).toBeLessThanOrEqual(SYNCS);
        expect(
          downtimeWithin,
          `downtime ${downtime.predicted} ms predicted, ${downtime.measured} ms real (medians of ${RUNS} runs)`,
        ).toBe(true);
      }
      expect(misses).toEqual([]);
      held.add(args.join(" "));
    },
    RUNS * 240_000,
  );
});
