/*
 * The report of `hvlab csv vms` (src/csv/vm-report.ts; docs/csv.md, "Live
 * and quick migration, measured"): when the VM scenario counts as clean
 * (the volume's check clean, every VHD's storage check clean, every block
 * the VM's last state calls acknowledged read back intact, no guest read
 * failing its verify check), and the section it writes: the headline's
 * downtimes against that target, the summary's words, the live-against-
 * quick table, the guest I/O per VM and node and the VHD table. Every
 * figure below is worked out by hand from the result the test builds, its
 * values chosen so that each rounding (whole ms, tenths of a ms, hundredths
 * of a MB/s, whole MiB) gives a different answer from its neighbours and
 * none falls on a tie. The text is checked whole: it is what a reader of
 * the report and of the tour sees. The section draws no chart.
 */
import { describe, expect, it } from "vitest";
import { vmScenarioClean, vmScenarioSection } from "../src/csv/vm-report.js";
import type { VmMove, VmRun, VmScenarioResult } from "../src/csv/vm-scenario.js";
import type { VmDiskCheck } from "../src/csv/vm-verify.js";

const MiB = 2 ** 20;

/** A VM's run on one node that read and wrote without a verify error. */
function run(fields: Partial<VmRun> & Pick<VmRun, "vm" | "node">): VmRun {
  return {
    vhd: `${fields.vm}.vhd`,
    reads: 100,
    writes: 100,
    iops: 1000,
    mbps: 4,
    p50Us: 50,
    p99Us: 400,
    p999Us: 900,
    verifyErrors: 0,
    verifyErrorOffsets: [],
    failed: 0,
    elapsedMs: 200,
    closeMs: 3,
    flushMs: 1,
    acknowledgedBlocks: 10,
    ...fields,
  };
}

/** A VHD whose structure is clean and whose acknowledged blocks all read back. */
function disk(vhd: string, acknowledged: number, fields: Partial<VmDiskCheck> = {}): VmDiskCheck {
  return {
    vhd,
    structure: { file: vhd, ok: true, problems: [] },
    acknowledgedBlocks: acknowledged,
    intactBlocks: acknowledged,
    badOffsets: [],
    unacknowledgedData: 0,
    ...fields,
  };
}

/** vm2 handed from node 2 to node 3: no LUN move. */
const LIVE: VmMove = {
  vm: "vm2",
  from: 2,
  to: 3,
  downtimeMs: 41.5,
  closeMs: 12.36,
  flushMs: 0.04,
  openMs: 7.26,
  resumeMs: 19.96,
};

/** vm1 moved with the LUN from node 1, the volume's owner, to node 2. */
const QUICK: VmMove = {
  vm: "vm1",
  from: 1,
  to: 2,
  downtimeMs: 1234.49,
  closeMs: 15,
  flushMs: 2.449,
  openMs: 30.06,
  resumeMs: 45.56,
  lunMoveMs: 987.6,
  lunMovePauseMs: 950,
};

/** Three nodes, one VM each, a live and a quick migration, nothing lost. */
const CLEAN: VmScenarioResult = {
  nodes: 3,
  type: "dynamic",
  diskBytes: 4.75 * MiB,
  spec: { rw: "randrw", bs: 4096, iodepth: 2 },
  thresholdMs: 1000,
  runs: [
    run({
      vm: "vm1",
      node: 1,
      iops: 1234.5,
      mbps: 5.0567,
      p50Us: 41.439,
      p99Us: 463.5,
      p999Us: 4177.919,
    }),
    run({ vm: "vm1", node: 2, iops: 99.49, mbps: 0.005, p50Us: 0.5, p99Us: 1.49, p999Us: 2.5 }),
    run({ vm: "vm2", node: 2 }),
    run({ vm: "vm2", node: 3 }),
    run({ vm: "vm3", node: 3 }),
  ],
  live: LIVE,
  quick: QUICK,
  check: { ok: true, problems: [] },
  disks: [disk("/run/vms/vm1.vhd", 100), disk("/run/vms/vm2.vhd", 50), disk("vm3.vhd", 2)],
  durationMs: 5000,
};

describe("vmScenarioClean: nothing lost, each condition on its own", () => {
  it("holds when the volume, every VHD and every read are clean", () => {
    expect(vmScenarioClean(CLEAN)).toBe(true);
  });

  // Each fault sits on the last disk or run, so that a rule that looked at
  // the first one only, or asked for any rather than every, would pass it.
  const last = <T>(list: readonly T[], change: (item: T) => T): T[] =>
    list.map((item, i) => (i === list.length - 1 ? change(item) : item));

  it.each<[string, VmScenarioResult]>([
    [
      "the volume's check found a problem",
      {
        ...CLEAN,
        check: { ok: false, problems: [{ offset: 4096, message: "bitmap: cluster 3 is free" }] },
      },
    ],
    [
      "a VHD's storage check found an error",
      {
        ...CLEAN,
        disks: last(CLEAN.disks, (d) => ({
          ...d,
          structure: {
            file: d.vhd,
            ok: false,
            problems: [{ severity: "error", offset: 512, message: "dynamic header: bad cookie" }],
          },
        })),
      },
    ],
    [
      "an acknowledged block did not read back",
      {
        ...CLEAN,
        disks: last(CLEAN.disks, (d) => ({ ...d, intactBlocks: d.acknowledgedBlocks - 1 })),
      },
    ],
    [
      "a bad block offset was reported",
      { ...CLEAN, disks: last(CLEAN.disks, (d) => ({ ...d, badOffsets: [8192] })) },
    ],
    [
      "a guest read failed its verify check",
      {
        ...CLEAN,
        runs: last(CLEAN.runs, (r) => ({ ...r, verifyErrors: 1, verifyErrorOffsets: [4096] })),
      },
    ],
  ])("does not hold when %s", (_, result) => {
    expect(vmScenarioClean(result)).toBe(false);
    expect(vmScenarioSection(result).headline?.met).toBe(false);
  });

  it("holds whatever data lies in blocks never acknowledged (a write in flight when its node died)", () => {
    const result = { ...CLEAN, disks: last(CLEAN.disks, (d) => ({ ...d, unacknowledgedData: 3 })) };
    expect(vmScenarioClean(result)).toBe(true);
  });
});

describe("vmScenarioSection", () => {
  // Each test builds the section itself: Stryker switches no mutant on in
  // code that runs while the file is collected (a describe's body).

  it("names the section and keeps the whole result as its data", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.id).toBe("csv-vms");
    expect(section.title).toBe("VMs on a Cluster Shared Volume: live against quick migration");
    expect(section.data).toBe(CLEAN);
    expect(section.charts).toEqual([]);
  });

  // Downtimes in whole ms (41.5 rounds up to 42, 1234.49 down to 1234), the
  // LUN move too (987.6 to 988); met when the scenario is clean.
  it("headlines both downtimes against the clean target", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.headline).toEqual({
      figure:
        "live migration paused 42 ms (VHD handover), quick migration 1234 ms (of which the LUN move 988 ms)",
      target: "the volume and every VHD check clean and every acknowledged write reads back",
      met: true,
    });
  });

  it("counts a quick migration without a measured LUN move as 0 ms of it", () => {
    const { lunMoveMs: _, ...quick } = QUICK;
    expect(vmScenarioSection({ ...CLEAN, quick }).headline?.figure).toBe(
      "live migration paused 42 ms (VHD handover), quick migration 1234 ms (of which the LUN move 0 ms)",
    );
  });

  // The disk in whole MiB: 4.75 MiB is written 5.
  it("says what ran, what moved and what the checks found", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.summary).toEqual([
      "3 node processes shared one LUN, the target process keeping its reservations, each running one VM: the storage engine's guest I/O workload (randrw, 4096-byte blocks, queue depth 2, verify mode) on a dynamic VHD of 5 MiB created on the volume through the coordinator; data went direct to the LUN at the file's extents, over each node's own path.",
      "Live migration moved vm2 from node 2 to node 3: the source closed the VHD and flushed its writes at the target, the destination opened it through the coordinator; the LUN did not move. Quick migration moved vm1 from node 1, the volume's owner, to node 2: the VM stopped, the disk resource went offline on the source and online on the destination (reservation released, then reserved, volume mounted, a new epoch), and the VM started there. Downtime is from the stop asked on the source to the first I/O due on the destination.",
      "Afterwards hvlab csv check found no problems; every VHD, copied off the volume, was checked by the storage engine and every block its VM's last state calls acknowledged was read back (152 of 152 intact). Timings depend on the machine and its load.",
    ]);
  });

  // The counts are summed over every disk: 99 + 50 + 1 of 100 + 50 + 2.
  it("counts the volume's problems and sums intact and acknowledged blocks over every disk", () => {
    const lossy: VmScenarioResult = {
      ...CLEAN,
      check: {
        ok: false,
        problems: [
          { offset: 4096, message: "bitmap: cluster 3 is free" },
          { offset: -1, message: "journal: stale" },
        ],
      },
      disks: [
        disk("/run/vms/vm1.vhd", 100, { intactBlocks: 99 }),
        disk("/run/vms/vm2.vhd", 50),
        disk("vm3.vhd", 2, { intactBlocks: 1 }),
      ],
    };
    expect(vmScenarioSection(lossy).summary[2]).toBe(
      "Afterwards hvlab csv check found 2 problems; every VHD, copied off the volume, was checked by the storage engine and every block its VM's last state calls acknowledged was read back (150 of 152 intact). Timings depend on the machine and its load.",
    );
  });

  // Each timing in tenths of a ms (12.36 to 12.4, 0.04 to 0, 2.449 to 2.4,
  // 19.96 to 20); a live migration moves no LUN, so its cell is empty.
  it("sets live against quick migration, step by step, in ms", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.tables[0]).toEqual({
      title: "Live against quick migration (ms)",
      columns: ["measure", "live (VHD handover)", "quick (LUN move)"],
      rows: [
        ["VM", "vm2 2->3", "vm1 1->2"],
        ["downtime: stop on source to first I/O on destination", 41.5, 1234.5],
        ["VHD closed on source", 12.4, 15],
        ["FLUSH at the target", 0, 2.4],
        ["LUN offline on source, online on destination", null, 987.6],
        ["VHD opened on destination through the coordinator", 7.3, 30.1],
        ["destination: start asked to first I/O due", 20, 45.6],
      ],
    });
  });

  it("leaves the quick migration's LUN move empty when it was not measured", () => {
    const { lunMoveMs: _, ...quick } = QUICK;
    expect(vmScenarioSection({ ...CLEAN, quick }).tables[0]?.rows[4]).toEqual([
      "LUN offline on source, online on destination",
      null,
      null,
    ]);
  });

  // IOPS and latencies in whole numbers (1234.5 up to 1235, 463.5 up to 464,
  // 1.49 down to 1, 0.5 up to 1), MB/s in hundredths (5.0567 to 5.06,
  // 0.005 to 0.01), one row per run in the result's order.
  it("tabulates each VM's guest I/O on each node it ran on", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.tables[1]).toEqual({
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
      rows: [
        ["vm1", 1, 1235, 5.06, 41, 464, 4178, 0],
        ["vm1", 2, 99, 0.01, 1, 1, 3, 0],
        ["vm2", 2, 1000, 4, 50, 400, 900, 0],
        ["vm2", 3, 1000, 4, 50, 400, 900, 0],
        ["vm3", 3, 1000, 4, 50, 400, 900, 0],
      ],
    });
  });

  it("puts a run's verify errors in its row", () => {
    const runs = [
      run({ vm: "vm1", node: 1, verifyErrors: 3, verifyErrorOffsets: [0, 4096, 8192] }),
    ];
    expect(vmScenarioSection({ ...CLEAN, runs }).tables[1]?.rows).toEqual([
      ["vm1", 1, 1000, 4, 50, 400, 900, 3],
    ]);
  });

  // A VHD is named by its file name, without the folder it was copied to.
  it("tabulates each VHD's storage check and its acknowledged and intact blocks", () => {
    const section = vmScenarioSection(CLEAN);
    expect(section.tables[2]).toEqual({
      title: "VHDs on the volume",
      columns: ["VHD", "storage check", "acknowledged blocks", "intact"],
      rows: [
        ["vm1.vhd", "clean", 100, 100],
        ["vm2.vhd", "clean", 50, 50],
        ["vm3.vhd", "clean", 2, 2],
      ],
    });
    expect(section.tables).toHaveLength(3);
  });

  // A failed check shows its first problem; one that failed without naming
  // a problem still says so.
  it("names a failed storage check by its first problem", () => {
    const failed = (problems: VmDiskCheck["structure"]["problems"]) =>
      disk("/run/vms/vm9.vhd", 4, {
        structure: { file: "/run/vms/vm9.vhd", ok: false, problems },
        intactBlocks: 0,
      });
    const disks = [
      failed([
        { severity: "error", offset: 512, message: "dynamic header: bad cookie" },
        { severity: "error", offset: 1536, message: "BAT entry 0 past the end" },
      ]),
      failed([]),
    ];
    expect(vmScenarioSection({ ...CLEAN, disks }).tables[2]?.rows).toEqual([
      ["vm9.vhd", "dynamic header: bad cookie", 4, 0],
      ["vm9.vhd", "PROBLEMS", 4, 0],
    ]);
  });
});
