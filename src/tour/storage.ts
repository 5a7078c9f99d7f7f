import { join } from "node:path";
import type { ReportSection } from "../report/section.js";
import { type IoDisk, runStorageIo } from "../storage/io-run.js";
import { makeTemporaryDir, removeTemporary } from "../util/temporary.js";
import type { TourSection } from "./section.js";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** The tour's storage section: four disk types under one guest workload, one hot add and one hot remove. */
export const storageTourSection: TourSection = {
  id: "storage",
  title: "Dynamic VM storage: VHD types under guest I/O, hot add and remove",
  async run({ quick, seed, log }): Promise<ReportSection> {
    const dir = makeTemporaryDir("tour-storage");
    try {
      const size = (quick ? 16 : 128) * 1024 * 1024;
      const runtimeMs = quick ? 1200 : 4000;
      const disk = (type: "fixed" | "dynamic" | "differencing" | "raw"): IoDisk => ({
        name: type,
        path: join(dir, `${type}.${type === "raw" ? "img" : "vhd"}`),
        create: { type, size },
      });
      const disks = [disk("fixed"), disk("dynamic"), disk("differencing"), disk("raw")];
      const hot: IoDisk = {
        name: "hot-added",
        path: join(dir, "hot-added.vhd"),
        create: { type: "dynamic", size },
      };
      log(
        "  random 4 KiB reads and writes (70 % reads, iodepth 8, verify) on fixed, dynamic, differencing and raw disks...",
      );
      log("  hot add of a dynamic VHD, hot remove of the dynamic disk, while the I/O runs...");
      const report = await runStorageIo(
        disks,
        { rw: "randrw", rwmixread: 70, bs: 4096, iodepth: 8, runtimeMs, seed, verify: true },
        {
          events: [
            { kind: "add", atMs: runtimeMs / 4, disk: hot },
            { kind: "remove", atMs: runtimeMs / 2, disk: disks[1] as IoDisk },
          ],
        },
      );
      const removal = report.events.find((e) => e.kind === "remove");
      const added = report.events.find((e) => e.kind === "add");
      const timeline = report.disks.flatMap((d) =>
        d.timeline.map((iops, i) => ({
          disk: d.disk,
          ms: Math.round(d.startMs + (i + 0.5) * report.intervalMs),
          iops: Math.round(iops),
        })),
      );
      const marks = report.events.map((e) => ({
        ms: Math.round(e.atMs),
        change: `${e.kind} ${e.disk}`,
      }));
      const latency = report.disks.flatMap((d) =>
        d.histogram.map(([p, us]) => ({ disk: d.disk, percentile: p, us })),
      );
      const verifyErrors = report.disks.reduce((n, d) => n + d.verifyErrors, 0);
      return {
        id: "storage",
        title: "Dynamic VM storage: VHD types under guest I/O, hot add and remove",
        headline: {
          figure: `hot remove in ${removal?.tookMs.toFixed(1)} ms: ${removal?.failedInFlight} requests in flight failed, ${removal?.completedAfterRemoval} completed after it, ${removal?.acknowledgedIntact} of ${removal?.acknowledgedBlocks} acknowledged writes intact; ${verifyErrors} verify errors`,
          target:
            "nothing completes or reaches the file after a removal, every acknowledged write reads back, every read verifies",
          met:
            removal !== undefined &&
            removal.completedAfterRemoval === 0 &&
            removal.unchangedAfterRemoval === true &&
            removal.acknowledgedIntact === removal.acknowledgedBlocks &&
            verifyErrors === 0,
        },
        summary: [
          `Four disks of ${size / 2 ** 20} MiB on one VM's SCSI controller, one pool worker each, ran fio's randrw (70 % reads, 4 KiB, iodepth 8) for ${runtimeMs} ms with verify on: every block written carries its offset and generation, every read is checked (${verifyErrors} verify errors). I/O is buffered, so the host's page cache is in play.`,
          `Hot add of a dynamic VHD took ${added?.tookMs.toFixed(1)} ms to its first request. Hot remove of the dynamic disk took ${removal?.tookMs.toFixed(1)} ms: ${removal?.failedInFlight} requests in flight failed with DiskRemovedError, ${removal?.completedAfterRemoval} completed after the removal point, the file was ${removal?.unchangedAfterRemoval ? "unchanged" : "CHANGED"} afterwards, and ${removal?.acknowledgedIntact} of ${removal?.acknowledgedBlocks} acknowledged writes read back intact.`,
          "Timings vary with the machine and its load; `hvlab bench storage` compares VHD and raw I/O with peers in the same run.",
        ],
        tables: [
          {
            title: "Per disk",
            columns: [
              "disk",
              "reads",
              "writes",
              "IOPS",
              "MB/s",
              "p50 µs",
              "p99 µs",
              "p99.9 µs",
              "failed",
            ],
            rows: report.disks.map((d) => [
              d.disk,
              d.reads,
              d.writes,
              Math.round(d.iops),
              Number(d.mbps.toFixed(2)),
              d.p50Us,
              d.p99Us,
              d.p999Us,
              d.failed,
            ]),
          },
          {
            title: "Hot-plug changes",
            columns: [
              "change",
              "disk",
              "slot",
              "at ms",
              "took ms",
              "failed in flight",
              "acknowledged writes intact",
            ],
            rows: report.events.map((e) => [
              e.kind,
              e.disk,
              e.slot,
              Math.round(e.atMs),
              Number(e.tookMs.toFixed(2)),
              e.failedInFlight ?? null,
              e.acknowledgedBlocks === undefined
                ? null
                : `${e.acknowledgedIntact}/${e.acknowledgedBlocks}`,
            ]),
          },
        ],
        charts: [
          {
            title: "Throughput by disk type (IOPS)",
            spec: {
              $schema: SCHEMA,
              width: 360,
              height: 160,
              data: {
                values: report.disks.map((d) => ({ disk: d.disk, iops: Math.round(d.iops) })),
              },
              mark: "bar",
              encoding: {
                y: { field: "disk", type: "nominal", title: null, sort: null },
                x: { field: "iops", type: "quantitative", title: "I/Os per second" },
              },
            },
          },
          {
            title: "Completion latency by percentile (HdrHistogram), per disk",
            spec: {
              $schema: SCHEMA,
              width: 420,
              height: 220,
              data: { values: latency },
              mark: { type: "line", point: true },
              encoding: {
                x: { field: "percentile", type: "quantitative", title: "percentile" },
                y: { field: "us", type: "quantitative", title: "µs (log)", scale: { type: "log" } },
                color: { field: "disk", type: "nominal" },
              },
            },
          },
          {
            title: "Hot-plug timeline: IOPS per disk, add and remove marked",
            spec: {
              $schema: SCHEMA,
              width: 480,
              height: 220,
              layer: [
                {
                  data: { values: timeline },
                  mark: "line",
                  encoding: {
                    x: { field: "ms", type: "quantitative", title: "ms from start" },
                    y: { field: "iops", type: "quantitative", title: "IOPS" },
                    color: { field: "disk", type: "nominal" },
                  },
                },
                {
                  data: { values: marks },
                  mark: { type: "rule", strokeDash: [4, 3] },
                  encoding: {
                    x: { field: "ms", type: "quantitative" },
                    tooltip: { field: "change" },
                  },
                },
              ],
            },
          },
        ],
        data: report,
      };
    } finally {
      removeTemporary(dir);
    }
  },
};
