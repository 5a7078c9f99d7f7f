import { MemoryLayout } from "../memory/layout.js";
import { buildHeaders } from "../net/build.js";
import {
  runVmqExperiment,
  type VmqExperiment,
  type VmqExperimentOptions,
} from "../net/experiment.js";
import { Segmenter } from "../net/lso.js";
import { largeSendFrameSpec, payloadBytes } from "../net/send.js";
import { segmentInSoftware } from "../net/software-send.js";
import { lineChart, VEGA_LITE_SCHEMA } from "../report/chart.js";
import { formatNumber } from "../report/format.js";
import type { ReportSection } from "../report/section.js";
import { ChecksumKernel } from "../wasm/checksum.js";
import type { TourSection } from "./section.js";

/** Best-of-`reps` time of `calls` calls, in nanoseconds per call (the machine is shared: best is least disturbed). */
function bestNs(fn: () => unknown, calls: number, reps: number): number {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / calls);
  }
  return best;
}

interface TransmitRow {
  readonly mtu: number;
  readonly offload: "on (NIC segments: hvlab kernel)" | "off (stack segments each packet)";
  readonly segments: number;
  readonly nsPerSend: number;
  readonly gbps: number;
  readonly packetsPerSecond: number;
  readonly nsPerByte: number;
}

function transmit(quick: boolean): TransmitRow[] {
  const bytes = 65_536;
  const segmenter = new Segmenter(new MemoryLayout(), bytes);
  const payload = payloadBytes(bytes, 5);
  segmenter.loadPayload(payload);
  const checksum = ChecksumKernel.on(segmenter.layout.memory);
  const rows: TransmitRow[] = [];
  for (const mtu of [1500, 9000]) {
    const spec = {
      ipVersion: 4 as const,
      transport: "tcp" as const,
      offload: "lsov2" as const,
      mtu,
      bytes,
      seed: 5,
    };
    const { bytes: template } = buildHeaders(largeSendFrameSpec(spec), bytes);
    const plan = segmenter.plan(template, bytes, { offload: "lsov2", mtu });
    const on = bestNs(() => segmenter.run(plan), quick ? 200 : 2000, quick ? 5 : 15);
    const off = bestNs(
      () => segmentInSoftware(segmenter, plan, checksum),
      quick ? 20 : 200,
      quick ? 3 : 5,
    );
    for (const [offload, ns] of [
      ["on (NIC segments: hvlab kernel)", on],
      ["off (stack segments each packet)", off],
    ] as const) {
      rows.push({
        mtu,
        offload,
        segments: plan.segments,
        nsPerSend: ns,
        gbps: (bytes * 8) / ns,
        packetsPerSecond: plan.segments / (ns / 1e9),
        nsPerByte: ns / bytes,
      });
    }
  }
  return rows;
}

function loadRows(label: string, e: VmqExperiment) {
  return e.summary.processorBusyMs.map((ms, p) => ({
    config: label,
    processor: `cpu${p}`,
    busyMs: Number(ms.toFixed(2)),
  }));
}

/** The tour's networking section: offloads on and off, 1500 against 9000, VMQ against one queue. */
export const netTourSection: TourSection = {
  id: "net",
  title: "Networking offloads: LSO, jumbo frames, VMQ",
  async run({ quick, seed, log }): Promise<ReportSection> {
    log("  large sends with offload on and off at MTU 1500 and 9000...");
    const tx = transmit(quick);
    const base: VmqExperimentOptions = {
      vms: 4,
      mode: "vmq",
      queues: 5,
      processors: 2,
      rss: false,
      mtu: 1500,
      coalesce: true,
      rebalance: false,
      frames: quick ? 1500 : 6000,
      rounds: quick ? 2 : 4,
      skew: 1,
      ipVersion: 4,
      corruptFraction: 0.001,
      broadcastEvery: 200,
      seed,
    };
    log("  receiving for 4 VMs: VMQ, a single queue, a single queue with RSS...");
    const vmq = await runVmqExperiment(base);
    const single = await runVmqExperiment({ ...base, mode: "single", processors: 1 });
    const singleRss = await runVmqExperiment({ ...base, mode: "single", rss: true });
    log("  receiving at MTU 9000 (9014 jumbo packets)...");
    const jumbo = await runVmqExperiment({
      ...base,
      mtu: 9000,
      frames: Math.round(base.frames / 5),
    });
    log("  Dynamic VMQ: one busy VM, rebalancing between rounds...");
    const skewed = { ...base, skew: 4, rounds: quick ? 3 : 6 };
    const staticVmq = await runVmqExperiment(skewed);
    const dynamicVmq = await runVmqExperiment({ ...skewed, rebalance: true });

    const receiveConfigs = [
      ["VMQ, 5 queues, 2 processors", vmq],
      ["single queue, 1 processor (VMQ off)", single],
      ["single queue + RSS, 2 processors", singleRss],
      ["VMQ at MTU 9000", jumbo],
      ["VMQ, skewed, static", staticVmq],
      ["VMQ, skewed, Dynamic VMQ", dynamicVmq],
    ] as const;
    const rebalanceRounds = dynamicVmq.rounds.flatMap((r, i) =>
      r.processors.map((p) => ({
        round: i,
        processor: `cpu${p.processor}`,
        busyMs: p.result.busyNs / 1e6,
      })),
    );
    const txOn1500 = tx.find((r) => r.mtu === 1500 && r.offload.startsWith("on"));
    const txOff1500 = tx.find((r) => r.mtu === 1500 && r.offload.startsWith("off"));
    const txOn9000 = tx.find((r) => r.mtu === 9000 && r.offload.startsWith("on"));
    const lsoGain = (txOn1500?.gbps ?? 0) / (txOff1500?.gbps ?? Number.POSITIVE_INFINITY);
    const vmqGain = vmq.summary.framesPerSecond / single.summary.framesPerSecond;
    return {
      id: "net",
      title: "Networking offloads: LSO, jumbo frames, VMQ",
      headline: {
        figure: `large send offload ${formatNumber(lsoGain)}x the stack's segmentation at MTU 1500; VMQ ${formatNumber(vmqGain)}x a single queue's frames/s`,
        target: "offload faster than segmenting in the stack, VMQ faster than one queue",
        met: lsoGain > 1 && vmqGain > 1,
      },
      summary: [
        `Transmit: a 64 KiB TCP send cut into segments with IPv4 and TCP checksums written. With offload on (the NIC's engine, hvlab's SIMD kernel) it takes ${formatNumber(txOn1500?.nsPerSend ?? 0)} ns at MTU 1500 (${formatNumber(txOn1500?.gbps ?? 0)} Gbit/s); with offload off (the stack builds each packet and copies its payload while summing it, one packet at a time) ${formatNumber(txOff1500?.nsPerSend ?? 0)} ns. At MTU 9000 the send needs ${txOn9000?.segments ?? 0} segments instead of ${txOn1500?.segments ?? 0}.`,
        `Receive: ${formatNumber(base.frames)} frames per round for 4 VMs, checksums validated, TCP segments coalesced (RSC) and delivered into each VM's ring in shared memory by pool workers. VMQ sorts frames by destination MAC in the NIC, so no processor does the switch's lookup; with one queue one processor looks up and copies every frame (${formatNumber(single.summary.lookups)} lookups). Throughput: VMQ ${formatNumber(vmq.summary.framesPerSecond)} frames/s, single queue ${formatNumber(single.summary.framesPerSecond)}, single queue + RSS ${formatNumber(singleRss.summary.framesPerSecond)}.`,
        `Dynamic VMQ: with vm0 carrying 4x the traffic, the static round-robin affinity leaves the processors at ${staticVmq.summary.processorBusyMs.map(formatNumber).join(" / ")} ms busy; rebalancing moved ${dynamicVmq.summary.moves} queue(s) and ended at ${dynamicVmq.summary.processorBusyMs.map(formatNumber).join(" / ")} ms.`,
        "Timings vary with the machine and its load; `hvlab bench net` gives the benchmark figures with peers in the same run.",
      ],
      charts: [
        {
          // Linear, not log: a bar's length must start from zero to mean anything.
          title: "64 KiB large send: offload on against off, MTU 1500 against 9000 (Gbit/s)",
          spec: {
            $schema: VEGA_LITE_SCHEMA,
            data: {
              values: tx.map((r) => ({ ...r, mtu: `MTU ${r.mtu}`, label: formatNumber(r.gbps) })),
            },
            width: 480,
            height: { step: 22 },
            encoding: {
              y: { field: "mtu", type: "nominal", title: null },
              yOffset: { field: "offload" },
              x: { field: "gbps", type: "quantitative", title: "throughput (Gbit/s)" },
              color: { field: "offload", type: "nominal", title: "segmentation offload" },
            },
            layer: [
              { mark: "bar" },
              {
                mark: { type: "text", align: "left", dx: 3, fontSize: 10 },
                encoding: { text: { field: "label", type: "nominal" }, color: { value: "#333" } },
              },
            ],
          },
        },
        {
          title: "Receive throughput by configuration (frames/s)",
          spec: {
            $schema: VEGA_LITE_SCHEMA,
            width: 480,
            height: 200,
            data: {
              values: receiveConfigs.map(([config, e]) => ({
                config,
                framesPerSecond: Math.round(e.summary.framesPerSecond),
                mbps: Math.round((e.summary.bytesPerSecond * 8) / 1e6),
              })),
            },
            mark: "bar",
            encoding: {
              y: { field: "config", type: "nominal", title: null, sort: null },
              x: { field: "framesPerSecond", type: "quantitative", title: "throughput (frames/s)" },
            },
          },
        },
        {
          title: "Per-processor load: busy time of each receive processor",
          spec: {
            $schema: VEGA_LITE_SCHEMA,
            width: 480,
            height: 220,
            data: { values: receiveConfigs.flatMap(([label, e]) => loadRows(label, e)) },
            mark: "bar",
            encoding: {
              y: { field: "config", type: "nominal", title: null, sort: null },
              yOffset: { field: "processor" },
              x: { field: "busyMs", type: "quantitative", title: "busy time, all rounds (ms)" },
              color: { field: "processor", type: "nominal" },
            },
          },
        },
        lineChart({
          title: "Dynamic VMQ: per-processor busy time, round by round",
          data: rebalanceRounds,
          x: { field: "round", title: "receive round", whole: true },
          y: { field: "busyMs", title: "busy time (ms)" },
          series: "processor",
          seriesTitle: "processor",
          width: 480,
          height: 200,
        }),
      ],
      tables: [
        {
          title: "Large send (64 KiB, IPv4 TCP, LSOv2)",
          columns: [
            "MTU (bytes)",
            "offload",
            "segments",
            "time per send (ns)",
            "throughput (Gbit/s)",
            "packets/s",
            "time per byte (ns)",
          ],
          rows: tx.map((r) => [
            r.mtu,
            r.offload,
            r.segments,
            r.nsPerSend,
            r.gbps,
            r.packetsPerSecond,
            r.nsPerByte,
          ]),
        },
        {
          title: "Receive: VMQ against a single queue, 1500 against 9000",
          columns: [
            "configuration",
            "frames",
            "delivered",
            "frames/s",
            "Mbit/s",
            "switch lookups",
            "bad checksum (frames)",
            "oversize (frames)",
            "busy per processor (ms)",
            "queue moves",
          ],
          rows: receiveConfigs.map(([label, e]) => [
            label,
            e.summary.frames,
            e.summary.delivered,
            e.summary.framesPerSecond,
            (e.summary.bytesPerSecond * 8) / 1e6,
            e.summary.lookups,
            e.summary.badChecksum,
            e.summary.oversize,
            e.summary.processorBusyMs.map(formatNumber).join(" / "),
            e.summary.moves,
          ]),
        },
      ],
      data: {
        transmit: tx,
        receive: Object.fromEntries(
          receiveConfigs.map(([label, e]) => [label, { options: e.options, summary: e.summary }]),
        ),
      },
    };
  },
};
