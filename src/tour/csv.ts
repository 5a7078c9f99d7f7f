import { type CsvBenchOptions, type CsvBenchResult, runCsvBench } from "../csv/bench.js";
import { vmScenarioClean, vmScenarioSection } from "../csv/vm-report.js";
import {
  runVmScenario,
  type VmScenarioOptions,
  type VmScenarioResult,
} from "../csv/vm-scenario.js";
import { lineChart } from "../report/chart.js";
import type { ReportSection } from "../report/section.js";
import type { TourSection } from "./section.js";

const TITLE =
  "Cluster Shared Volumes: the coordinator killed under load, live against quick migration";

/** The failover scenario the tour runs: short heartbeats, so that it takes seconds. */
export function tourCsvOptions(quick: boolean): CsvBenchOptions {
  return {
    nodes: 4,
    heartbeatMs: 100,
    misses: 5,
    beforeMs: quick ? 1500 : 3000,
    afterMs: quick ? 2000 : 4000,
    intervalMs: 100,
    pollMs: 20,
    files: 4,
    fileBytes: 16 * 1024,
    lunBytes: 64 * 1024 * 1024,
    planned: true,
  };
}

/** The VM scenario the tour runs (`hvlab csv vms`, small): three nodes, a 4 MiB dynamic VHD each. */
export function tourVmOptions(quick: boolean): VmScenarioOptions {
  return {
    nodes: 3,
    type: "dynamic",
    diskBytes: 4 << 20,
    rw: "randrw",
    bs: 4096,
    iodepth: 1,
    beforeMs: quick ? 600 : 1500,
    afterMs: quick ? 600 : 1500,
    heartbeatMs: 200,
    misses: 5,
    lunBytes: 64 << 20,
  };
}

/**
 * The tour's CSV section: the failover scenario's section, followed by the
 * VM scenario's live migration (VHD handover) against quick migration (LUN
 * move), side by side.
 */
export function csvTourReport(bench: CsvBenchResult, vms: VmScenarioResult): ReportSection {
  const failover = csvBenchSection(bench);
  const moves = vmScenarioSection(vms);
  return {
    ...failover,
    headline: {
      figure: `${failover.headline?.figure ?? ""}; ${moves.headline?.figure ?? ""}`,
      target: `${failover.headline?.target ?? ""}; for the VMs, ${moves.headline?.target ?? ""}`,
      met: (failover.headline?.met ?? false) && vmScenarioClean(vms),
    },
    summary: [...failover.summary, ...moves.summary],
    tables: [...failover.tables, ...moves.tables],
    charts: [...failover.charts, ...moves.charts],
    data: { ...bench, vms },
  };
}

/** The report section of one `hvlab csv bench` run: the timeline with the pause marked, and the checks. */
export function csvBenchSection(r: CsvBenchResult): ReportSection {
  const met = r.pauseOverThreshold <= 2;
  const clean = r.check.ok && r.acks.intact === r.acks.checked;
  return {
    id: "csv",
    title: TITLE,
    headline: {
      figure: `I/O paused ${Math.round(r.pauseMs)} ms after the coordinator was killed, ${r.pauseOverThreshold.toFixed(2)}x the ${r.thresholdMs} ms heartbeat threshold; node ${r.successor.node} took over in epoch ${r.successor.epoch}`,
      target:
        "pause at most 2x the heartbeat threshold, the volume checks clean and every acknowledged write reads back",
      met: met && clean,
    },
    summary: [
      `${r.nodes} node processes shared one LUN, the target process keeping its persistent reservations (over loopback TCP), each running a storm of metadata operations (create, resize, delete through the coordinator) and 4 KiB direct writes to its files over its own path to the LUN, with heartbeats every ${r.heartbeatMs} ms and a peer dead after ${r.misses} misses (${r.thresholdMs} ms). Each node's counters were read over its control socket every ${r.pollMs} ms.`,
      `The coordinator, node ${r.killed.node} (pid ${r.killed.pid}, epoch ${r.killed.epoch}), was killed with SIGKILL ${Math.round(r.killed.atMs)} ms in. Node ${r.successor.node} preempted its reservation${r.successor.preempted ? ` (key ${r.successor.preempted})` : ""} and opened epoch ${r.successor.epoch} ${Math.round(r.takeoverMs)} ms after the kill; the first metadata operation completed ${Math.round(r.pauseMs)} ms after it (within ${r.pollMs} ms). Direct writes to extents a node already held went on meanwhile; each node stalled at its next metadata operation.`,
      r.redirected
        ? `Node ${r.redirected.node}'s storage path was cut ${Math.round(r.redirected.cutAtMs)} ms in and restored ${Math.round(r.redirected.restoredAtMs)} ms in (cut-path and restore-path on its control socket): meanwhile it sent ${r.redirected.redirectedWrites} writes (${(r.redirected.redirectedBytes / 2 ** 20).toFixed(2)} MiB) through the coordinator over the cluster network (redirected access), drawn as their own line, and then wrote direct again.`
        : "No storage path was cut in this run.",
      r.planned
        ? `Then the role was moved on purpose (hvlab csv failover) from node ${r.planned.from} to node ${r.planned.to}: the old coordinator released the reservation after its queued operations and the new one opened epoch ${r.planned.epoch} ${r.planned.pauseMs.toFixed(1)} ms later, with no heartbeat threshold to wait for.`
        : "No planned move was made in this run.",
      `Afterwards hvlab csv check found ${r.check.problems.length === 0 ? "no problems" : `${r.check.problems.length} problems`} (epoch ${r.check.epoch} on the volume), and ${r.acks.intact} of ${r.acks.checked} blocks whose latest acknowledged write is on a file still present read back that write or a later one (${r.acks.logged} acknowledged writes logged). Timings depend on the machine and its load.`,
    ],
    tables: [
      {
        title: "Failover",
        columns: ["measure", "value"],
        rows: [
          ["heartbeat threshold (ms)", r.thresholdMs],
          ["kill to new epoch (ms)", Math.round(r.takeoverMs)],
          ["kill to first metadata operation (ms)", Math.round(r.pauseMs)],
          ["pause / threshold", Number(r.pauseOverThreshold.toFixed(2))],
          [
            "planned move, release to new epoch (ms)",
            r.planned ? Number(r.planned.pauseMs.toFixed(1)) : null,
          ],
          [
            "writes redirected through the coordinator while a path was cut",
            r.redirected ? r.redirected.redirectedWrites : null,
          ],
          ["volume check", r.check.ok ? "clean" : "PROBLEMS"],
          ["acknowledged blocks intact", `${r.acks.intact}/${r.acks.checked}`],
        ],
      },
      {
        title: "A VM's storage moved: live migration against quick migration",
        columns: ["migration", "what moves", "measured (ms)"],
        rows: [
          [
            "live migration (Hyper-V 2.0, CSV)",
            "the VHD: closed on A (FLUSH), opened on B through the coordinator; the LUN stays",
            r.vhdHandoverMs === null ? null : Number(r.vhdHandoverMs.toFixed(2)),
          ],
          [
            "quick migration (Hyper-V 1.0)",
            "the LUN: the disk resource offline on A (RELEASE), online on B (RESERVE, mount, new epoch)",
            r.planned ? Number(r.planned.pauseMs.toFixed(2)) : null,
          ],
        ],
      },
      {
        title: "Per node",
        columns: ["node", "writes", "MiB written", "metadata ops", "metadata retries", "killed"],
        rows: r.perNode.map((n) => [
          n.node,
          n.writes,
          Number((n.bytesWritten / 2 ** 20).toFixed(2)),
          n.metadataOps,
          n.metadataRetries,
          n.killed ? "yes" : "",
        ]),
      },
    ],
    charts: [
      lineChart({
        title: `I/O per node per ${r.intervalMs} ms: the coordinator killed, the new coordinator named`,
        data: [
          ...r.timeline.map((p) => ({ node: `node ${p.node}`, ms: p.ms, ios: p.ios })),
          // The writes of a node whose path was cut, through the coordinator: their own line.
          ...(r.redirected
            ? r.timeline
                .filter((p) => p.node === r.redirected?.node)
                .map((p) => ({
                  node: `node ${p.node} redirected`,
                  ms: p.ms,
                  ios: p.redirectedWrites,
                }))
            : []),
        ],
        x: { field: "ms", title: "time from start (ms)", zero: true },
        y: { field: "ios", title: `I/O completed (ops per ${r.intervalMs} ms)`, whole: true },
        series: "node",
        seriesTitle: "node",
        marks: {
          // A coordinator chosen before sampling began is told in the text, not drawn off the axis.
          data: r.marks
            .filter((m) => m.ms >= 0)
            .map((m) => ({ ms: Math.round(m.ms), what: m.what })),
          label: "what",
        },
        width: 640,
      }),
    ],
    data: r,
  };
}

/** The tour's CSV section: the failover scenario of `hvlab csv bench`, then `hvlab csv vms`'s live and quick migration. */
export const csvTourSection: TourSection = {
  id: "csv",
  title: TITLE,
  async run({ quick, log }): Promise<ReportSection> {
    const bench = await runCsvBench({ ...tourCsvOptions(quick), log });
    log("tour: VMs on the volume, live against quick migration...");
    const vms = await runVmScenario({ ...tourVmOptions(quick), log });
    return csvTourReport(bench, vms);
  },
};
