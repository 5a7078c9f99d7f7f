import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { type CaptureTruncation, readCapture } from "./capture.js";
import {
  auditChecksums,
  type ChecksumAudit,
  type ChecksumPolicy,
  recomputeChecksums,
} from "./checksum-audit.js";
import { type Conversation, countConversations } from "./conversations.js";
import { CaptureError } from "./errors.js";
import { destinationMac, isGroupMac, parseFrame } from "./frame.js";
import { linkTypeSupported, toEthernet } from "./link.js";
import { Segmenter } from "./lso.js";
import { type ReceiveConfig, ReceivePath, type RoundResult } from "./receive.js";
import { TcpStreams } from "./tcp-streams.js";
import { generateTraffic } from "./traffic.js";
import { JUMBO_PACKET_9014, JUMBO_PACKET_DEFAULT, type VmPort } from "./vmq.js";

/** A VMQ receive experiment: generated traffic for some VMs, several rounds. */
export interface VmqExperimentOptions {
  readonly vms: number;
  readonly mode: "vmq" | "single";
  /** Queues including the default one (vmq mode). */
  readonly queues: number;
  readonly processors: number;
  readonly rss: boolean;
  readonly mtu: number;
  /** Jumbo packet setting; default MTU + 14. */
  readonly jumboPacket?: number;
  readonly coalesce: boolean;
  readonly rebalance: boolean;
  /** Frames per round. */
  readonly frames: number;
  readonly rounds: number;
  /** Traffic weight of the first VM relative to each other VM (1: even). */
  readonly skew: number;
  readonly ipVersion: 4 | 6;
  readonly corruptFraction: number;
  readonly broadcastEvery: number;
  /** Deliver frames with bad checksums marked bad instead of dropping them. */
  readonly deliverBad?: boolean;
  readonly seed: number;
}

/** What an experiment measured. */
export interface VmqExperiment {
  readonly options: VmqExperimentOptions;
  readonly vms: readonly VmPort[];
  readonly rounds: readonly RoundResult[];
  readonly summary: {
    readonly frames: number;
    readonly delivered: number;
    readonly bytes: number;
    readonly framesPerSecond: number;
    readonly bytesPerSecond: number;
    /** Busy time per processor over all rounds, in milliseconds. */
    readonly processorBusyMs: readonly number[];
    readonly oversize: number;
    readonly badChecksum: number;
    readonly lookups: number;
    readonly moves: number;
  };
}

/** The VMs of an experiment: synthetic Hyper-V MACs (00:15:5d is Microsoft's prefix). */
export function experimentVms(count: number): VmPort[] {
  return Array.from({ length: count }, (_, i) => ({
    name: `vm${i}`,
    mac: `00:15:5d:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}`,
  }));
}

function summarize(
  options: VmqExperimentOptions,
  vms: VmPort[],
  rounds: RoundResult[],
): VmqExperiment {
  const total = (f: (r: RoundResult) => number) => rounds.reduce((a, r) => a + f(r), 0);
  const wallNs = total((r) => r.wallNs);
  const processorBusyMs = Array.from(
    { length: options.processors },
    (_, p) => total((r) => r.processors[p]?.result.busyNs ?? 0) / 1e6,
  );
  return {
    options,
    vms,
    rounds,
    summary: {
      frames: total((r) => r.frames),
      delivered: total((r) => r.delivered),
      bytes: total((r) => r.bytes),
      framesPerSecond: total((r) => r.frames) / (wallNs / 1e9),
      bytesPerSecond: total((r) => r.bytes) / (wallNs / 1e9),
      processorBusyMs,
      oversize: total((r) => r.oversize),
      badChecksum: total((r) => r.badChecksum),
      lookups: total((r) => r.lookups),
      moves: rounds.filter((r) => r.moved).length,
    },
  };
}

function receiveConfig(
  o: VmqExperimentOptions,
  bufferBytes: number,
  ringSlots: number,
): ReceiveConfig {
  return {
    mode: o.mode,
    queues: o.queues,
    processors: o.processors,
    rss: o.rss,
    jumboPacket: o.jumboPacket ?? (o.mtu > 1500 ? JUMBO_PACKET_9014 : JUMBO_PACKET_DEFAULT),
    coalesce: o.coalesce,
    rebalance: o.rebalance,
    ringSlots,
    bufferBytes,
    deliverBad: o.deliverBad === true,
  };
}

/**
 * Runs a VMQ experiment: generates the traffic once, then runs `rounds`
 * receive rounds on pool workers (one per processor), rebalancing between
 * rounds when asked.
 */
export async function runVmqExperiment(o: VmqExperimentOptions): Promise<VmqExperiment> {
  if (o.frames < 1 || o.frames > 1_000_000)
    throw new RangeError(`frames per round must be 1 to 1,000,000, not ${o.frames}`);
  const vms = experimentVms(o.vms).map((vm, i) => ({ ...vm, weight: i === 0 ? o.skew : 1 }));
  const segmenter = new Segmenter(new MemoryLayout(), 256 * 1024);
  const traffic = generateTraffic(segmenter, {
    vms,
    flowsPerVm: 4,
    frames: o.frames,
    mtu: o.mtu,
    ipVersion: o.ipVersion,
    sendBytes: o.mtu > 1500 ? 8 * (o.mtu - 40) : 44 * (o.mtu - 40),
    burst: 8,
    broadcastEvery: o.broadcastEvery,
    corruptFraction: o.corruptFraction,
    seed: o.seed,
  });
  return runOnFrames(o, vms, traffic);
}

async function runOnFrames(
  o: VmqExperimentOptions,
  vms: VmPort[],
  frames: Uint8Array[],
): Promise<VmqExperiment> {
  const bytes = frames.reduce((a, f) => a + f.length, 0);
  const layout = new MemoryLayout();
  const pool = new KernelPool(layout, { threads: o.processors, domains: ["net"] });
  try {
    // Enough slots for a round: every frame, or (coalescing into 64 KiB
    // slots) 256 super-frames per VM; beyond that drops are counted as ringFull.
    const ringSlots = Math.min(frames.length + 16, o.coalesce ? 256 : 65_536);
    const path = new ReceivePath(layout, receiveConfig(o, Math.max(4096, bytes), ringSlots), vms);
    path.load(frames);
    // One round first, not counted: fresh workers compile the receive code
    // as they first run it, and that is not what a round costs.
    await path.round(pool, undefined, false);
    const rounds: RoundResult[] = [];
    for (let r = 0; r < o.rounds; r++) rounds.push(await path.round(pool));
    return summarize(o, vms, rounds);
  } finally {
    await pool.close();
  }
}

/** Largest capture `hvlab net replay` loads (bytes). */
export const MAX_REPLAY_BYTES = 512 * 1024 * 1024;

/** Frames of a capture replayed in one receive round, and each VM's ring slots. */
export const REPLAY_ROUND_FRAMES = 256;

/** How a capture is replayed, beyond the receive path's options. */
export interface ReplayOptions extends VmqExperimentOptions {
  /** validate (drop bad), trust (take every checksum as good) or recompute (fill them in first). */
  readonly checksums?: ChecksumPolicy;
  /** RSS hashes UDP ports too (NDIS 6.80's UDP hash types). */
  readonly rssUdpPorts?: boolean;
  /** Rebuild every TCP connection's byte streams from what the VMs received. */
  readonly follow?: boolean;
}

/** What a replay read and found, beside the receive rounds. */
export interface ReplayReport extends VmqExperiment {
  readonly capture: {
    readonly format: "pcap" | "pcapng";
    /** Packets in the file, and their bytes on the wire (as tshark counts them). */
    readonly frames: number;
    readonly bytes: number;
    /** Packets skipped for a link type the receive path does not take, by link type. */
    readonly skippedLinkTypes: Readonly<Record<string, number>>;
    readonly truncated: CaptureTruncation | null;
  };
  readonly checksums: ChecksumAudit & { readonly policy: ChecksumPolicy };
  readonly conversations: { readonly tcp: Conversation[]; readonly udp: Conversation[] };
  /** With `follow`: each TCP conversation's streams, in conversation order. */
  readonly streams?: readonly { readonly aToB: Uint8Array; readonly bToA: Uint8Array }[];
}

/** One VM per unicast destination MAC (first seen, first served). */
function replayVms(frames: readonly Uint8Array[]): VmPort[] {
  const seen = new Map<number, VmPort>();
  for (const f of frames) {
    if (f.length < 14) continue;
    const mac = destinationMac(f);
    if (isGroupMac(mac) || seen.has(mac)) continue;
    let vlan: number | undefined;
    try {
      vlan = parseFrame(f).vlan ?? undefined;
    } catch {
      vlan = undefined;
    }
    const hex = Array.from(f.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
    seen.set(mac, { name: `vm${seen.size}`, mac: hex, ...(vlan !== undefined ? { vlan } : {}) });
  }
  const vms = [...seen.values()];
  if (vms.length === 0) vms.push(...experimentVms(1));
  return vms;
}

/** The rounds of one pass over a capture, as one round. */
function mergeRounds(parts: readonly RoundResult[]): RoundResult {
  const sum = (f: (r: RoundResult) => number) => parts.reduce((a, r) => a + f(r), 0);
  const wallNs = sum((r) => r.wallNs);
  const frames = sum((r) => r.frames);
  const bytes = sum((r) => r.bytes);
  const first = parts[0] as RoundResult;
  const queues = new Map<
    string,
    { queue: number; processor: number; frames: number; bytes: number }
  >();
  for (const r of parts) {
    for (const q of r.queues) {
      const k = `${q.queue}:${q.processor}`;
      const e = queues.get(k) ?? { queue: q.queue, processor: q.processor, frames: 0, bytes: 0 };
      e.frames += q.frames;
      e.bytes += q.bytes;
      queues.set(k, e);
    }
  }
  return {
    rounds: sum((r) => r.rounds),
    frames,
    oversize: sum((r) => r.oversize),
    runts: sum((r) => r.runts),
    delivered: sum((r) => r.delivered),
    coalescedSegments: sum((r) => r.coalescedSegments),
    badChecksum: sum((r) => r.badChecksum),
    malformed: sum((r) => r.malformed),
    unknownMac: sum((r) => r.unknownMac),
    ringFull: sum((r) => r.ringFull),
    lookups: sum((r) => r.lookups),
    bytes,
    wallNs,
    framesPerSecond: frames / (wallNs / 1e9),
    bytesPerSecond: bytes / (wallNs / 1e9),
    processors: first.processors.map((p) => {
      const of = parts.map((r) => r.processors[p.processor]?.result);
      const total = (key: keyof typeof p.result) => of.reduce((a, x) => a + (x?.[key] ?? 0), 0);
      return {
        processor: p.processor,
        queues: p.queues,
        result: {
          frames: total("frames"),
          delivered: total("delivered"),
          coalescedSegments: total("coalescedSegments"),
          badChecksum: total("badChecksum"),
          malformed: total("malformed"),
          unknownMac: total("unknownMac"),
          lookups: total("lookups"),
          ringFull: total("ringFull"),
          bytes: total("bytes"),
          busyNs: total("busyNs"),
        },
      };
    }),
    queues: [...queues.values()].sort((a, b) => a.queue - b.queue || a.processor - b.processor),
    vms: first.vms.map((vm, i) => ({
      ...vm,
      delivered: parts.reduce((a, r) => a + (r.vms[i]?.delivered ?? 0), 0),
      bytes: parts.reduce((a, r) => a + (r.vms[i]?.bytes ?? 0), 0),
    })),
    moved: parts.find((r) => r.moved)?.moved ?? null,
  };
}

/** The frames of each receive round of a replay: the capture cut into pieces. */
function roundsOf(frames: readonly Uint8Array[]): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  for (let i = 0; i < frames.length; i += REPLAY_ROUND_FRAMES)
    out.push(frames.slice(i, i + REPLAY_ROUND_FRAMES));
  return out.length > 0 ? out : [[]];
}

/**
 * Feeds a capture through the receive path: one VM per unicast destination
 * MAC in it (first seen, first served), the whole capture once per round.
 * A replay is offline, so it drains as a receive path does: the capture goes
 * through in receive rounds of {@link REPLAY_ROUND_FRAMES} frames, each VM's
 * ring emptied after each, and no frame is dropped for want of a slot.
 * Packets of other link types than Ethernet are given an Ethernet header
 * (raw IP, Linux cooked captures) or skipped with a count.
 *
 * @throws CaptureError for a corrupt capture.
 */
export async function replayCapture(file: Uint8Array, o: ReplayOptions): Promise<ReplayReport> {
  if (file.length > MAX_REPLAY_BYTES)
    throw new CaptureError(
      "too-large",
      0,
      `capture of ${file.length} bytes is over ${MAX_REPLAY_BYTES}`,
    );
  const capture = readCapture(file);
  const skipped: Record<string, number> = {};
  const wire: { frame: Uint8Array; wireLength: number }[] = [];
  let wireBytes = 0;
  for (const packet of capture.packets) {
    wireBytes += packet.originalLength;
    const frame = linkTypeSupported(packet.linkType) ? toEthernet(packet) : null;
    if (!frame) {
      skipped[packet.linkType] = (skipped[packet.linkType] ?? 0) + 1;
      continue;
    }
    wire.push({ frame, wireLength: packet.originalLength });
  }
  const policy = o.checksums ?? "validate";
  const asCaptured = wire.map((w) => w.frame);
  const audit = auditChecksums(asCaptured);
  const frames = policy === "recompute" ? asCaptured.map(recomputeChecksums) : asCaptured;
  const conversations = countConversations(wire);
  const vms = replayVms(frames);
  const largest = frames.reduce((a, f) => Math.max(a, f.length), 0);
  // The NIC takes what the capture holds: a loopback capture's frames reach
  // 65,549 bytes (MTU 65,536), over any jumbo packet setting.
  const jumboPacket =
    o.jumboPacket ?? Math.max(o.mtu > 1500 ? JUMBO_PACKET_9014 : JUMBO_PACKET_DEFAULT, largest);
  const chunks = roundsOf(frames);
  const chunkBytes = chunks.reduce(
    (a, c) =>
      Math.max(
        a,
        c.reduce((b, f) => b + f.length, 0),
      ),
    0,
  );
  const layout = new MemoryLayout();
  const pool = new KernelPool(layout, { threads: o.processors, domains: ["net"] });
  const streams = o.follow ? new TcpStreams() : null;
  try {
    const config: ReceiveConfig = {
      ...receiveConfig({ ...o, jumboPacket }, Math.max(4096, chunkBytes), REPLAY_ROUND_FRAMES),
      maxFrames: REPLAY_ROUND_FRAMES,
      trustChecksums: policy === "trust",
      rssUdpPorts: o.rssUdpPorts === true,
    };
    const path = new ReceivePath(layout, config, vms);
    const rounds: RoundResult[] = [];
    for (let r = 0; r < Math.max(1, o.rounds); r++) {
      const parts: RoundResult[] = [];
      const onDeliver =
        streams && r === 0
          ? (_vm: number, slots: readonly { bytes: Uint8Array }[]) => {
              for (const slot of slots) streams.add(slot.bytes);
            }
          : undefined;
      for (const chunk of chunks) {
        path.load(chunk);
        parts.push(await path.round(pool, onDeliver));
      }
      rounds.push(mergeRounds(parts));
    }
    const experiment = summarize({ ...o, vms: vms.length, jumboPacket }, vms, rounds);
    const tcp = conversations.filter((c) => c.protocol === "tcp");
    return {
      ...experiment,
      capture: {
        format: capture.format,
        frames: capture.packets.length,
        bytes: wireBytes,
        skippedLinkTypes: skipped,
        truncated: capture.truncated,
      },
      checksums: { ...audit, policy },
      conversations: { tcp, udp: conversations.filter((c) => c.protocol === "udp") },
      ...(streams
        ? {
            streams: tcp.map(
              (c) =>
                streams.stream(c.a, c.aPort, c.b, c.bPort) ?? {
                  aToB: new Uint8Array(0),
                  bToA: new Uint8Array(0),
                },
            ),
          }
        : {}),
    };
  } finally {
    await pool.close();
  }
}
