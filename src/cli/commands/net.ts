import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { MemoryLayout } from "../../memory/layout.js";
import { writeCapture } from "../../net/capture.js";
import type { ChecksumPolicy } from "../../net/checksum-audit.js";
import {
  type ReplayReport,
  replayCapture,
  runVmqExperiment,
  type VmqExperiment,
  type VmqExperimentOptions,
} from "../../net/experiment.js";
import { parseFrame, TCP_FLAGS } from "../../net/frame.js";
import {
  type IpIdMode,
  LSOV2_DEFAULT_MAX_SEND,
  type OffloadKind,
  Segmenter,
} from "../../net/lso.js";
import { type LargeSendSpec, runLargeSend } from "../../net/send.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";
import {
  checkOutputFlags,
  csvOption,
  integerOption,
  jsonOption,
  numberOption,
  seedOption,
  sizeOption,
  UsageError,
} from "../options.js";

interface SendFlags {
  offload: string;
  ip: number;
  mtu: number;
  mss?: number;
  bytes: number;
  ipId?: string;
  cwr: string;
  tcpFlags: string;
  vlan?: number;
  timestamps?: boolean;
  maxSend: number;
  seed: number;
  json?: boolean;
  csv?: boolean;
}

const OFFLOADS = ["lsov1", "lsov2", "uso"];
const ID_MODES = ["increment", "fixed", "wrap15"];

function addSendOptions(command: Command): Command {
  return command
    .option("--offload <kind>", `segmentation offload: ${OFFLOADS.join(", ")} (uso: UDP)`, "lsov2")
    .option("--ip <version>", "IP version: 4 or 6", integerOption(4, 6), 4)
    .option(
      "--mtu <bytes>",
      "link MTU (1500, or 9000 for jumbo frames)",
      integerOption(68, 65_535),
      1500,
    )
    .option(
      "--mss <bytes>",
      "payload bytes per segment (default: from the MTU)",
      integerOption(0, 65_535),
    )
    .option(
      "--bytes <size>",
      "payload of the large send",
      sizeOption(0, 16 * 1024 * 1024),
      64 * 1024,
    )
    .option(
      "--ip-id <mode>",
      `IPv4 ID per segment: ${ID_MODES.join(", ")} (default: lsov2 wrap15, else increment)`,
    )
    .option("--tcp-flags <list>", "TCP flags of the send, e.g. ACK,PSH,FIN,CWR", "ACK,PSH")
    .option("--cwr <which>", "segments that keep CWR: first (Linux) or all (DPDK)", "first")
    .option("--vlan <id>", "tag frames with an 802.1Q VLAN ID", integerOption(0, 4095))
    .option("--timestamps", "carry the TCP timestamps option (MSS 12 bytes smaller)")
    .option(
      "--max-send <size>",
      "largest LSOv2/USO send the NIC accepts",
      sizeOption(1, 16 * 1024 * 1024),
      LSOV2_DEFAULT_MAX_SEND,
    )
    .addOption(seedOption("seed of the payload bytes"));
}

function sendSpec(flags: SendFlags): LargeSendSpec {
  if (!OFFLOADS.includes(flags.offload))
    throw new UsageError(`--offload must be one of ${OFFLOADS.join(", ")}`);
  if (flags.ip !== 4 && flags.ip !== 6) throw new UsageError("--ip must be 4 or 6");
  if (flags.cwr !== "first" && flags.cwr !== "all")
    throw new UsageError("--cwr must be first or all");
  let tcpFlags = 0;
  for (const name of flags.tcpFlags.split(",").map((f) => f.trim().toUpperCase())) {
    const bit = TCP_FLAGS[name as keyof typeof TCP_FLAGS];
    if (bit === undefined) {
      throw new UsageError(`unknown TCP flag '${name}' (${Object.keys(TCP_FLAGS).join(", ")})`);
    }
    tcpFlags |= bit;
  }
  if (flags.ipId !== undefined && !ID_MODES.includes(flags.ipId))
    throw new UsageError(`--ip-id must be one of ${ID_MODES.join(", ")}`);
  return {
    ipVersion: flags.ip,
    transport: flags.offload === "uso" ? "udp" : "tcp",
    offload: flags.offload as OffloadKind,
    mtu: flags.mtu,
    bytes: flags.bytes,
    seed: flags.seed,
    ...(flags.mss !== undefined ? { mss: flags.mss } : {}),
    ...(flags.vlan !== undefined ? { vlan: flags.vlan } : {}),
    ...(flags.timestamps ? { timestamps: true } : {}),
    ...(flags.ipId !== undefined ? { ipId: flags.ipId as IpIdMode } : {}),
    cwr: flags.cwr,
    tcpFlags,
    maxSend: flags.maxSend,
  };
}

/** One row per segment: what each header carries. */
function segmentRecords(frames: Uint8Array[]) {
  return frames.map((f, i) => {
    const p = parseFrame(f);
    const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const tcp = p.protocol === 6;
    const flags = tcp ? (f[p.l4 + 13] ?? 0) : 0;
    const names = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"].filter(
      (_, b) => flags & (1 << b),
    );
    return {
      segment: i,
      frameBytes: f.length,
      payload: p.payloadLength,
      ipId:
        p.ipVersion === 4
          ? `0x${v
              .getUint16(p.l3 + 4)
              .toString(16)
              .padStart(4, "0")}`
          : "",
      seq: tcp ? v.getUint32(p.l4 + 4) : "",
      flags: tcp ? names.join(",") : "",
      ipChecksum:
        p.ipVersion === 4
          ? `0x${v
              .getUint16(p.l3 + 10)
              .toString(16)
              .padStart(4, "0")}`
          : "",
      l4Checksum: `0x${v
        .getUint16(p.l4 + (tcp ? 16 : 6))
        .toString(16)
        .padStart(4, "0")}`,
    };
  });
}

interface VmqFlags {
  vms: number;
  mode: string;
  queues: number;
  processors: number;
  rss?: boolean;
  mtu: number;
  jumbo?: number;
  frames: number;
  rounds: number;
  rebalance?: boolean;
  deliverBad?: boolean;
  coalesce: boolean;
  skew: number;
  ip: number;
  corrupt: number;
  broadcastEvery: number;
  seed: number;
  json?: boolean;
  csv?: boolean;
}

function addReceiveOptions(command: Command, withTraffic: boolean): Command {
  command
    .option(
      "--mode <mode>",
      "vmq (a queue per VM) or single (one queue, the switch looks up every frame)",
      "vmq",
    )
    .option("--queues <n>", "receive queues including the default queue", integerOption(1, 64), 8)
    .option(
      "--processors <n>",
      "processors (pool workers) taking receive interrupts",
      integerOption(1, 64),
      2,
    )
    .option("--rss", "spread the default queue's flows over processors by Toeplitz hash")
    .option(
      "--jumbo <bytes>",
      "jumbo packet setting: 1514 or 9014 (default: MTU + 14)",
      integerOption(64, 65_535),
    )
    .option("--no-coalesce", "deliver segments as they came (no RSC)")
    .option(
      "--deliver-bad",
      "deliver frames whose checksums fail, marked bad, instead of dropping them",
    )
    .option("--rebalance", "move queues between processors by load after each round (Dynamic VMQ)")
    .option("--rounds <n>", "receive rounds", integerOption(1, 1000), withTraffic ? 5 : 1)
    .option(
      "--mtu <bytes>",
      withTraffic
        ? "MTU the senders segment for"
        : "MTU of the link (sets the jumbo packet default)",
      integerOption(68, 65_535),
      1500,
    );
  if (withTraffic) {
    command
      .option("--vms <n>", "virtual machines", integerOption(1, 64), 4)
      .option("--frames <n>", "frames per round", integerOption(1, 1_000_000), 4000)
      .option(
        "--skew <w>",
        "traffic weight of vm0 against each other VM",
        numberOption(0.01, 1000),
        1,
      )
      .option("--ip <version>", "IP version: 4 or 6", integerOption(4, 6), 4)
      .option(
        "--corrupt <fraction>",
        "fraction of frames with a bad TCP checksum",
        numberOption(0, 1),
        0,
      )
      .option(
        "--broadcast-every <n>",
        "a broadcast every n frames (0: none)",
        integerOption(0, 1_000_000),
        0,
      )
      .addOption(seedOption("seed of the traffic"));
  }
  return command
    .addOption(jsonOption("print the records as JSON"))
    .addOption(csvOption("print the per-round records as CSV"));
}

function experimentOptions(flags: VmqFlags): VmqExperimentOptions {
  if (flags.mode !== "vmq" && flags.mode !== "single")
    throw new UsageError("--mode must be vmq or single");
  return {
    vms: flags.vms ?? 1,
    mode: flags.mode,
    queues: flags.queues,
    processors: flags.processors,
    rss: flags.rss === true,
    mtu: flags.mtu ?? 1500,
    ...(flags.jumbo !== undefined ? { jumboPacket: flags.jumbo } : {}),
    coalesce: flags.coalesce,
    rebalance: flags.rebalance === true,
    deliverBad: flags.deliverBad === true,
    frames: flags.frames ?? 1,
    rounds: flags.rounds,
    skew: flags.skew ?? 1,
    ipVersion: flags.ip === 6 ? 6 : 4,
    corruptFraction: flags.corrupt ?? 0,
    broadcastEvery: flags.broadcastEvery ?? 0,
    seed: flags.seed ?? 1,
  };
}

function roundRecords(e: VmqExperiment) {
  return e.rounds.map((r, i) => ({
    round: i,
    frames: r.frames,
    delivered: r.delivered,
    coalescedSegments: r.coalescedSegments,
    oversize: r.oversize,
    badChecksum: r.badChecksum,
    malformed: r.malformed,
    unknownMac: r.unknownMac,
    ringFull: r.ringFull,
    lookups: r.lookups,
    framesPerSecond: Math.round(r.framesPerSecond),
    mbps: Math.round((r.bytesPerSecond * 8) / 1e6),
    ...Object.fromEntries(
      r.processors.map((p) => [
        `cpu${p.processor}BusyMs`,
        Number((p.result.busyNs / 1e6).toFixed(3)),
      ]),
    ),
    moved: r.moved ? `queue ${r.moved.queue}: cpu${r.moved.from} -> cpu${r.moved.to}` : "",
  }));
}

function printExperiment(e: VmqExperiment, flags: { json?: boolean; csv?: boolean }): void {
  if (flags.json) {
    console.log(JSON.stringify(e, null, 2));
    return;
  }
  const table = recordsToTable(roundRecords(e));
  if (flags.csv) {
    process.stdout.write(toCsv(table));
    return;
  }
  const o = e.options;
  console.log(
    `${o.mode === "vmq" ? `VMQ, ${o.queues} queues` : "single queue (VMQ off)"}${o.rss ? " + RSS" : ""}, ${o.processors} processor(s), ${e.vms.length} VM(s), coalescing ${o.coalesce ? "on" : "off"}${o.rebalance ? ", Dynamic VMQ rebalancing" : ""}`,
  );
  console.log(formatTable(table));
  const s = e.summary;
  console.log(
    `${s.frames.toLocaleString("en-US")} frames, ${s.delivered.toLocaleString("en-US")} delivered, ${Math.round(s.framesPerSecond).toLocaleString("en-US")} frames/s, ${formatBytes(s.bytesPerSecond)}/s; busy per processor: ${s.processorBusyMs.map((ms) => `${ms.toFixed(1)} ms`).join(", ")}`,
  );
}

const CHECKSUM_POLICIES = ["validate", "trust", "recompute"];

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

function printReplay(r: ReplayReport, flags: { json?: boolean; csv?: boolean }): void {
  if (flags.json) {
    const { streams, ...rest } = r;
    const out = {
      ...rest,
      ...(streams
        ? { streams: streams.map((s) => ({ aToB: hex(s.aToB), bToA: hex(s.bToA) })) }
        : {}),
    };
    console.log(JSON.stringify(out, null, 2));
    return;
  }
  printExperiment(r, flags);
  if (flags.csv) return;
  const c = r.capture;
  const skipped = Object.entries(c.skippedLinkTypes)
    .map(([type, n]) => `${n} of link type ${type}`)
    .join(", ");
  console.log(
    `capture: ${c.format}, ${c.frames.toLocaleString("en-US")} frames, ${c.bytes.toLocaleString("en-US")} bytes${skipped ? `; skipped ${skipped}` : ""}`,
  );
  if (c.truncated)
    console.log(`capture is cut short at byte ${c.truncated.offset}: ${c.truncated.detail}`);
  const k = r.checksums;
  if (k.notValid > 0)
    console.log(
      `checksums (${k.policy}): ${k.notValid} frame(s) not valid as captured${k.partial > 0 ? `, ${k.partial} of them holding only the pseudo-header sum (checksum offload on the capturing host: --checksums trust or recompute)` : ""}`,
    );
  console.log(
    `conversations: ${r.conversations.tcp.length} TCP, ${r.conversations.udp.length} UDP`,
  );
  const last = r.rounds[r.rounds.length - 1];
  if (last) {
    console.log(
      formatTable(
        recordsToTable(
          last.queues.map((q) => ({
            queue: q.queue,
            processor: q.processor,
            frames: q.frames,
            bytes: q.bytes,
          })),
        ),
      ),
    );
  }
  for (const [i, s] of (r.streams ?? []).entries()) {
    const t = r.conversations.tcp[i];
    if (t)
      console.log(
        `stream ${i}: ${t.a}:${t.aPort} -> ${t.b}:${t.bPort} ${s.aToB.length} bytes, back ${s.bToA.length} bytes`,
      );
  }
}

/** `hvlab net ...`: large send offload, captures, VMQ receive. */
export function registerNet(program: Command): void {
  const net = program
    .command("net")
    .description(
      "networking offloads: checksum and large send offload, jumbo frames, VMQ with RSS, captures",
    );

  addSendOptions(
    net
      .command("lso")
      .description("segment one large send (LSOv1, LSOv2 or USO) and show every segment's headers"),
  )
    .addOption(jsonOption("print the segments as JSON"))
    .addOption(csvOption("print the segments as CSV"))
    .action((flags: SendFlags) => {
      checkOutputFlags(flags);
      const spec = sendSpec(flags);
      const segmenter = new Segmenter(new MemoryLayout(), Math.max(spec.bytes, 64));
      const result = runLargeSend(segmenter, spec);
      // The kernel alone, run again over the same send (the first run paid for
      // compiling it): what the segmentation itself costs.
      const started = process.hrtime.bigint();
      segmenter.run(result.send.plan);
      const ns = Number(process.hrtime.bigint() - started);
      const records = segmentRecords(result.frames);
      const summary = {
        offload: spec.offload,
        ipVersion: spec.ipVersion,
        mtu: spec.mtu,
        mss: result.send.plan.mss,
        payloadBytes: spec.bytes,
        segments: result.frames.length,
        wireBytes: result.frames.reduce((a, f) => a + f.length, 0),
        headerBytes: result.template.length,
      };
      if (flags.json) {
        console.log(JSON.stringify({ summary, segments: records }, null, 2));
        return;
      }
      const table = recordsToTable(records);
      if (flags.csv) {
        process.stdout.write(toCsv(table));
        return;
      }
      console.log(formatTable(table));
      console.log(
        `${spec.offload}: ${formatBytes(spec.bytes)} in ${summary.segments} segments of MSS ${summary.mss} at MTU ${spec.mtu} (${summary.wireBytes} bytes on the wire, ${summary.headerBytes}-byte headers); the kernel took ${(ns / 1000).toFixed(1)} us`,
      );
    });

  addSendOptions(
    net
      .command("send")
      .description("write the segmented frames of a large send to a pcap or pcapng capture"),
  )
    .requiredOption("--out <file>", "capture to write (.pcap or .pcapng)")
    .option("--format <format>", "pcap or pcapng (default: from the file name)")
    .addOption(jsonOption("print what was written as JSON"))
    .action(async (flags: SendFlags & { out: string; format?: string }) => {
      const format = flags.format ?? (flags.out.endsWith(".pcap") ? "pcap" : "pcapng");
      if (format !== "pcap" && format !== "pcapng")
        throw new UsageError("--format must be pcap or pcapng");
      const spec = sendSpec(flags);
      const segmenter = new Segmenter(new MemoryLayout(), Math.max(spec.bytes, 64));
      const result = runLargeSend(segmenter, spec);
      const start = Math.floor(Date.now() / 1000);
      // Frames 1.2 us apart: back to back at 10 GbE for a 1514-byte frame.
      const bytes = writeCapture(
        result.frames.map((data, i) => ({
          data,
          seconds: start + Math.floor((i * 1200) / 1e9),
          nanoseconds: (i * 1200) % 1e9,
        })),
        { format },
      );
      await writeFile(flags.out, bytes);
      const summary = {
        file: flags.out,
        format,
        frames: result.frames.length,
        mss: result.send.plan.mss,
        payloadBytes: spec.bytes,
        fileBytes: bytes.length,
      };
      if (flags.json) console.log(JSON.stringify(summary, null, 2));
      else
        console.log(
          `wrote ${summary.frames} frames (MSS ${summary.mss}, ${formatBytes(spec.bytes)} of payload) to ${flags.out} (${format})`,
        );
    });

  addReceiveOptions(
    net
      .command("vmq")
      .description("receive generated traffic for VMs through VMQ (or one queue) on pool workers"),
    true,
  ).action(async (flags: VmqFlags) => {
    checkOutputFlags(flags);
    printExperiment(await runVmqExperiment(experimentOptions(flags)), flags);
  });

  addReceiveOptions(
    net
      .command("replay")
      .description(
        "feed a pcap or pcapng capture through the receive path (validate, coalesce, deliver)",
      ),
    false,
  )
    .argument(
      "<capture>",
      "pcap or pcapng file (Ethernet, raw IP, or Linux cooked SLL/SLL2 packets)",
    )
    .option(
      "--checksums <policy>",
      `${CHECKSUM_POLICIES.join(", ")}: drop frames whose checksums fail, take them all as good (a capture taken with checksum offload), or fill them in first`,
      "validate",
    )
    .option("--rss-udp-ports", "RSS hashes UDP ports too (NDIS 6.80's UDP hash types)")
    .option("--follow", "rebuild each TCP conversation's byte streams from what the VMs received")
    .action(
      async (
        file: string,
        flags: VmqFlags & { checksums: string; rssUdpPorts?: boolean; follow?: boolean },
      ) => {
        checkOutputFlags(flags);
        if (!CHECKSUM_POLICIES.includes(flags.checksums))
          throw new UsageError(`--checksums must be one of ${CHECKSUM_POLICIES.join(", ")}`);
        const bytes = new Uint8Array(await readFile(file));
        const report = await replayCapture(bytes, {
          ...experimentOptions(flags),
          checksums: flags.checksums as ChecksumPolicy,
          rssUdpPorts: flags.rssUdpPorts === true,
          follow: flags.follow === true,
        });
        printReplay(report, flags);
      },
    );
}
