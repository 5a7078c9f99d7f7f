import { MemoryLayout } from "../memory/layout.js";
import { buildHeaders } from "../net/build.js";
import {
  runVmqExperiment,
  type VmqExperiment,
  type VmqExperimentOptions,
} from "../net/experiment.js";
import { ChecksumKernel } from "../net/kernels.js";
import { Segmenter } from "../net/lso.js";
import { largeSendFrameSpec, payloadBytes } from "../net/send.js";
import { segmentInSoftware } from "../net/software-send.js";
import type { ReportSection } from "../report/section.js";
import type { TourSection } from "./section.js";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

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
        busyMs: Number((p.result.busyNs / 1e6).toFixed(3)),
      })),
    );
    const txOn1500 = tx.find((r) => r.mtu === 1500 && r.offload.startsWith("on"));
    const txOff1500 = tx.find((r) => r.mtu === 1500 && r.offload.startsWith("off"));
    const txOn9000 = tx.find((r) => r.mtu === 9000 && r.offload.startsWith("on"));
    return {
      id: "net",
      title: "Networking offloads: LSO, jumbo frames, VMQ",
      summary: [
        `Transmit: a 64 KiB TCP send cut into segments with IPv4 and TCP checksums written. With offload on (the NIC's engine, hvlab's SIMD kernel) it takes ${Math.round(txOn1500?.nsPerSend ?? 0).toLocaleString("en-US")} ns at MTU 1500 (${(txOn1500?.gbps ?? 0).toFixed(1)} Gbit/s); with offload off (the stack builds each packet and copies its payload while summing it, one packet at a time) ${Math.round(txOff1500?.nsPerSend ?? 0).toLocaleString("en-US")} ns. At MTU 9000 the send needs ${txOn9000?.segments ?? 0} segments instead of ${txOn1500?.segments ?? 0}.`,
        `Receive: ${base.frames.toLocaleString("en-US")} frames per round for 4 VMs, checksums validated, TCP segments coalesced (RSC) and delivered into each VM's ring in shared memory by pool workers. VMQ sorts frames by destination MAC in the NIC, so no processor does the switch's lookup; with one queue one processor looks up and copies every frame (${single.summary.lookups.toLocaleString("en-US")} lookups). Throughput: VMQ ${Math.round(vmq.summary.framesPerSecond).toLocaleString("en-US")} frames/s, single queue ${Math.round(single.summary.framesPerSecond).toLocaleString("en-US")}, single queue + RSS ${Math.round(singleRss.summary.framesPerSecond).toLocaleString("en-US")}.`,
        `Dynamic VMQ: with vm0 carrying 4x the traffic, the static round-robin affinity leaves the processors at ${staticVmq.summary.processorBusyMs.map((m) => m.toFixed(1)).join(" / ")} ms busy; rebalancing moved ${dynamicVmq.summary.moves} queue(s) and ended at ${dynamicVmq.summary.processorBusyMs.map((m) => m.toFixed(1)).join(" / ")} ms.`,
        "Timings come from a shared 2-core machine and are noisy; `hvlab bench net` gives the benchmark figures with peers in the same run.",
      ],
      charts: [
        {
          title: "64 KiB large send: offload on against off, MTU 1500 against 9000 (Gbit/s)",
          spec: {
            $schema: SCHEMA,
            width: 320,
            height: 220,
            data: { values: tx.map((r) => ({ ...r, mtu: `MTU ${r.mtu}` })) },
            mark: "bar",
            encoding: {
              x: { field: "mtu", type: "nominal", title: null },
              xOffset: { field: "offload" },
              y: {
                field: "gbps",
                type: "quantitative",
                title: "Gbit/s (log)",
                scale: { type: "log" },
              },
              color: { field: "offload", type: "nominal" },
            },
          },
        },
        {
          title: "Receive throughput by configuration (frames/s)",
          spec: {
            $schema: SCHEMA,
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
              x: { field: "framesPerSecond", type: "quantitative", title: "frames per second" },
            },
          },
        },
        {
          title: "Per-processor load: busy time of each receive processor",
          spec: {
            $schema: SCHEMA,
            width: 480,
            height: 220,
            data: { values: receiveConfigs.flatMap(([label, e]) => loadRows(label, e)) },
            mark: "bar",
            encoding: {
              y: { field: "config", type: "nominal", title: null, sort: null },
              yOffset: { field: "processor" },
              x: { field: "busyMs", type: "quantitative", title: "busy ms (all rounds)" },
              color: { field: "processor", type: "nominal" },
            },
          },
        },
        {
          title: "Dynamic VMQ: per-processor busy time, round by round",
          spec: {
            $schema: SCHEMA,
            width: 480,
            height: 200,
            data: { values: rebalanceRounds },
            mark: { type: "line", point: true },
            encoding: {
              x: { field: "round", type: "ordinal" },
              y: { field: "busyMs", type: "quantitative", title: "busy ms" },
              color: { field: "processor", type: "nominal" },
            },
          },
        },
      ],
      tables: [
        {
          title: "Large send (64 KiB, IPv4 TCP, LSOv2)",
          columns: [
            "MTU",
            "offload",
            "segments",
            "ns per send",
            "Gbit/s",
            "packets/s",
            "ns per byte",
          ],
          rows: tx.map((r) => [
            r.mtu,
            r.offload,
            r.segments,
            Math.round(r.nsPerSend),
            Number(r.gbps.toFixed(2)),
            Math.round(r.packetsPerSecond),
            Number(r.nsPerByte.toFixed(4)),
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
            "bad checksum",
            "oversize",
            "busy ms per processor",
            "queue moves",
          ],
          rows: receiveConfigs.map(([label, e]) => [
            label,
            e.summary.frames,
            e.summary.delivered,
            Math.round(e.summary.framesPerSecond),
            Math.round((e.summary.bytesPerSecond * 8) / 1e6),
            e.summary.lookups,
            e.summary.badChecksum,
            e.summary.oversize,
            e.summary.processorBusyMs.map((m) => m.toFixed(1)).join(" / "),
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
