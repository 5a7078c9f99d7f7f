import type { ReportSection } from "../report/section.js";
import type { VmScenarioResult } from "./vm-scenario.js";

const ms = (n: number | undefined) => (n === undefined ? null : Number(n.toFixed(1)));

/** Whether the VM scenario lost nothing: volume clean, every VHD sound, every acknowledged block intact, no read failed its check. */
export function vmScenarioClean(r: VmScenarioResult): boolean {
  return (
    r.check.ok &&
    r.disks.every(
      (d) => d.structure.ok && d.intactBlocks === d.acknowledgedBlocks && d.badOffsets.length === 0,
    ) &&
    r.runs.every((run) => run.verifyErrors === 0)
  );
}

/** The report section of `hvlab csv vms`: live and quick migration side by side, and each VM's I/O per node. */
export function vmScenarioSection(r: VmScenarioResult): ReportSection {
  const clean = vmScenarioClean(r);
  return {
    id: "csv-vms",
    title: "VMs on a Cluster Shared Volume: live against quick migration",
    headline: {
      figure: `live migration paused ${vm(r, "live")} ms (VHD handover), quick migration ${vm(r, "quick")} ms (of which the LUN move ${Math.round(r.quick.lunMoveMs ?? 0)} ms)`,
      target: "the volume and every VHD check clean and every acknowledged write reads back",
      met: clean,
    },
    summary: [
      `${r.nodes} node processes shared one LUN, the target process keeping its reservations, each running one VM: the storage engine's guest I/O workload (${r.spec.rw}, ${r.spec.bs}-byte blocks, queue depth ${r.spec.iodepth}, verify mode) on a ${r.type} VHD of ${(r.diskBytes / 2 ** 20).toFixed(0)} MiB created on the volume through the coordinator; data went direct to the LUN at the file's extents, over each node's own path.`,
      `Live migration moved ${r.live.vm} from node ${r.live.from} to node ${r.live.to}: the source closed the VHD and flushed its writes at the target, the destination opened it through the coordinator; the LUN did not move. Quick migration moved ${r.quick.vm} from node ${r.quick.from}, the volume's owner, to node ${r.quick.to}: the VM stopped, the disk resource went offline on the source and online on the destination (reservation released, then reserved, volume mounted, a new epoch), and the VM started there. Downtime is from the stop asked on the source to the first I/O due on the destination.`,
      `Afterwards hvlab csv check found ${r.check.problems.length === 0 ? "no problems" : `${r.check.problems.length} problems`}; every VHD, copied off the volume, was checked by the storage engine and every block its VM's last state calls acknowledged was read back (${r.disks.reduce((n, d) => n + d.intactBlocks, 0)} of ${r.disks.reduce((n, d) => n + d.acknowledgedBlocks, 0)} intact). Timings depend on the machine and its load.`,
    ],
    tables: [
      {
        title: "Live against quick migration (ms)",
        columns: ["measure", "live (VHD handover)", "quick (LUN move)"],
        rows: [
          [
            "VM",
            `${r.live.vm} ${r.live.from}->${r.live.to}`,
            `${r.quick.vm} ${r.quick.from}->${r.quick.to}`,
          ],
          [
            "downtime: stop on source to first I/O on destination",
            ms(r.live.downtimeMs),
            ms(r.quick.downtimeMs),
          ],
          ["VHD closed on source", ms(r.live.closeMs), ms(r.quick.closeMs)],
          ["FLUSH at the target", ms(r.live.flushMs), ms(r.quick.flushMs)],
          ["LUN offline on source, online on destination", null, ms(r.quick.lunMoveMs)],
          [
            "VHD opened on destination through the coordinator",
            ms(r.live.openMs),
            ms(r.quick.openMs),
          ],
          ["destination: start asked to first I/O due", ms(r.live.resumeMs), ms(r.quick.resumeMs)],
        ],
      },
      {
        title: "Guest I/O per VM and node",
        columns: [
          "VM",
          "node",
          "IOPS",
          "MB/s",
          "p50 (µs)",
          "p99 (µs)",
          "p99.9 (µs)",
          "verify errors",
        ],
        rows: r.runs.map((run) => [
          run.vm,
          run.node,
          Math.round(run.iops),
          Number(run.mbps.toFixed(2)),
          Math.round(run.p50Us),
          Math.round(run.p99Us),
          Math.round(run.p999Us),
          run.verifyErrors,
        ]),
      },
      {
        title: "VHDs on the volume",
        columns: ["VHD", "storage check", "acknowledged blocks", "intact"],
        rows: r.disks.map((d) => [
          d.vhd.split("/").pop() ?? d.vhd,
          d.structure.ok ? "clean" : (d.structure.problems[0]?.message ?? "PROBLEMS"),
          d.acknowledgedBlocks,
          d.intactBlocks,
        ]),
      },
    ],
    charts: [],
    data: r,
  };
}

function vm(r: VmScenarioResult, which: "live" | "quick"): number {
  return Math.round(r[which].downtimeMs);
}
