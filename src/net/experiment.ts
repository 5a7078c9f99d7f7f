import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";
import { readCapture } from "./capture.js";
import { CaptureError } from "./errors.js";
import { destinationMac, isGroupMac, parseFrame } from "./frame.js";
import { Segmenter } from "./lso.js";
import { type ReceiveConfig, ReceivePath, type RoundResult } from "./receive.js";
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

/**
 * Feeds a capture through the receive path: one VM per unicast destination
 * MAC in it (first seen, first served), one round per `rounds`.
 *
 * @throws CaptureError for a corrupt capture or one that is not Ethernet.
 */
export async function replayCapture(
  file: Uint8Array,
  o: VmqExperimentOptions,
): Promise<VmqExperiment> {
  if (file.length > MAX_REPLAY_BYTES)
    throw new CaptureError(
      "too-large",
      0,
      `capture of ${file.length} bytes is over ${MAX_REPLAY_BYTES}`,
    );
  const capture = readCapture(file);
  if (capture.linkType !== 1)
    throw new CaptureError(
      "unsupported-link-type",
      20,
      `link type ${capture.linkType} is not Ethernet (1)`,
    );
  const frames = capture.packets.map((p) => p.data);
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
  return runOnFrames({ ...o, vms: vms.length }, vms, frames);
}
