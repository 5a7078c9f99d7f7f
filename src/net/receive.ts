import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { GATE_BYTES, StartGate } from "../pool/gate.js";
import type { KernelPool } from "../pool/pool.js";
import { ReceiveKernel, type SwitchTable } from "../wasm/receive.js";
import { sumCounts } from "./receive-counts.js";
import { ReceiveRing, type RxSlot } from "./ring.js";
import { ROUND_BARRIER_BYTES, RoundBarrier } from "./round-barrier.js";
import { ToeplitzHasher } from "./rss.js";
import {
  MAX_ROUNDS_PER_TASK,
  type ReceiveResult,
  type ReceiveTask,
  type ReceiveTaskResult,
  SWITCH_LOOKUP,
} from "./task-types.js";
import { macNumber, rebalance, VirtualNic, type VmPort } from "./vmq.js";

/** How the host receives. */
export interface ReceiveConfig {
  /**
   * "vmq": the NIC sorts frames into per-VM queues, each bound to a processor;
   * "single": one queue, one processor doing the switch's MAC lookup and copy
   * for every VM (VMQ off).
   */
  readonly mode: "vmq" | "single";
  /** Queues including the default (vmq mode). */
  readonly queues: number;
  /** Processors (pool workers) taking receive interrupts. */
  readonly processors: number;
  /** Spread the default queue's flows over processors by Toeplitz hash. */
  readonly rss: boolean;
  /** RSS hashes UDP ports too (NDIS 6.80's UDP hash types; NDIS 6.20: addresses only). */
  readonly rssUdpPorts?: boolean;
  /** Jumbo packet setting (1514 or 9014). */
  readonly jumboPacket: number;
  /** Coalesce TCP segments (RSC) before delivery. */
  readonly coalesce: boolean;
  /** Move queues between processors by load after each round (Dynamic VMQ). */
  readonly rebalance: boolean;
  /** Slots of each VM's receive ring. */
  readonly ringSlots: number;
  /**
   * Deliver frames whose checksums failed, marked bad (slot flags without
   * RX_CHECKSUM_GOOD), for the VM's stack to drop; default: drop and count.
   */
  readonly deliverBad?: boolean;
  /** Bytes the NIC's receive buffer takes in one round. */
  readonly bufferBytes: number;
  /**
   * Frames the receive buffer's table takes in one round; default one per
   * 14 bytes of buffer (a frame is at least an Ethernet header; runts
   * shorter still are counted against this limit, not the bytes).
   */
  readonly maxFrames?: number;
  /** Take every frame's checksums as good without validating them (a capture's, trusted). */
  readonly trustChecksums?: boolean;
}

/** One receive queue's part of a round, as the NIC sorted frames into it. */
export interface QueueTraffic {
  readonly queue: number;
  readonly processor: number;
  readonly frames: number;
  readonly bytes: number;
}

/** One processor's part of a round. */
export interface ProcessorLoad {
  readonly processor: number;
  readonly queues: readonly number[];
  readonly result: ReceiveResult;
}

/** What one receive round (or a batch of rounds over the same frames) did. */
export interface RoundResult {
  /** Rounds over the loaded frames (1 for {@link ReceivePath.round}); every count is their sum. */
  readonly rounds: number;
  readonly frames: number;
  readonly oversize: number;
  readonly runts: number;
  readonly delivered: number;
  readonly coalescedSegments: number;
  readonly badChecksum: number;
  readonly malformed: number;
  readonly unknownMac: number;
  readonly ringFull: number;
  readonly lookups: number;
  readonly bytes: number;
  /** Wall time from dispatch to the last processor's finish (of a batch's last round). */
  readonly wallNs: number;
  readonly framesPerSecond: number;
  readonly bytesPerSecond: number;
  readonly processors: readonly ProcessorLoad[];
  /** Frames and bytes each receive queue took from the NIC (RSS spreads queue 0 over processors). */
  readonly queues: readonly QueueTraffic[];
  /** Frames and bytes each VM's ring received. */
  readonly vms: readonly {
    readonly name: string;
    readonly queue: number;
    readonly delivered: number;
    readonly bytes: number;
  }[];
  /** The Dynamic VMQ move made after the round, if any. */
  readonly moved: { queue: number; from: number; to: number } | null;
}

/** Queue codes of frames the NIC dropped on arrival. */
const DROP_OVERSIZE = -1;
const DROP_RUNT = -2;
/** Lanes of a queue's traffic: 0 its own processor, 1 + p processor p by RSS (the default queue). */
const LANE_STRIDE = 256;

/** A processor's span of the work lists and the rings its frames go to. */
interface WorkSpan {
  readonly first: number;
  readonly count: number;
  /** Rings this processor's work list names (by the NIC's queue filters). */
  readonly rings: readonly number[];
  /** Some frames go through the switch's MAC lookup: any ring may be written. */
  readonly lookups: boolean;
}

/** The NIC classifier's decisions for the loaded frames. */
interface SortedFrames {
  /** Each frame's queue, or DROP_OVERSIZE / DROP_RUNT. */
  readonly queue: Int32Array;
  /** The processor RSS picked for a default-queue frame; -1 for every other frame. */
  readonly rssProcessor: Int32Array;
  oversize: number;
  runts: number;
  /** Frames and bytes by lane (queue x LANE_STRIDE + lane). */
  readonly lanes: Map<number, { frames: number; bytes: number }>;
}

/** Largest super-frame RSC builds (Windows' RSC limit: one IP datagram). */
export const RSC_MAX_BYTES = 65_535;

/**
 * The host's receive path: the NIC's receive buffer and classifier, one
 * receive ring per VM, and processors that run as pool workers (or on this
 * thread when no pool is given).
 */
export class ReceivePath {
  readonly nic: VirtualNic;
  readonly rings: ReceiveRing[];
  readonly buffer: Region;
  readonly table: Region;
  readonly work: Region;
  readonly gate: Region;
  /** The barrier between a batch's rounds when processors share rings. */
  readonly barrier: Region;
  private loaded = 0;
  private readonly maxFrames: number;
  /** What the NIC's classifier decided for each loaded frame (see {@link load}). */
  private sorted: SortedFrames = {
    queue: new Int32Array(0),
    rssProcessor: new Int32Array(0),
    oversize: 0,
    runts: 0,
    lanes: new Map(),
  };
  /** The queues' processors and VMs the work lists were last written for, and their spans. */
  private written: { key: string; spans: WorkSpan[]; sharedRings: boolean } | null = null;
  /** Each processor's region for the receive kernel's job and scratch, grown as rounds need. */
  private readonly scratch: Region[] = [];
  private scratchGrown = 0;
  private readonly local: ReceiveKernel;

  constructor(
    readonly layout: MemoryLayout,
    readonly config: ReceiveConfig,
    readonly vms: readonly VmPort[],
    readonly name = "net.rx",
  ) {
    const queues = config.mode === "vmq" ? config.queues : 1;
    const processors = config.mode === "vmq" || config.rss ? config.processors : 1;
    const hasher = config.rss ? new ToeplitzHasher(layout, undefined, `${name}.rss`) : undefined;
    this.nic = new VirtualNic({
      queues,
      processors,
      jumboPacket: config.jumboPacket,
      rss: config.rss,
      hashUdpPorts: config.rssUdpPorts === true,
      ...(hasher ? { hasher } : {}),
    });
    for (const vm of vms) this.nic.attach(vm);
    const slotBytes =
      (Math.max(config.coalesce ? RSC_MAX_BYTES + 14 + 4 : config.jumboPacket + 4, 64) + 8 + 7) &
      ~7;
    this.rings = vms.map((vm, i) =>
      ReceiveRing.allocate(layout, `${name}.ring${i}.${vm.name}`, config.ringSlots, slotBytes),
    );
    this.buffer = layout.allocate(`${name}.buffer`, config.bufferBytes);
    this.maxFrames = config.maxFrames ?? Math.ceil(config.bufferBytes / 14);
    if (!Number.isSafeInteger(this.maxFrames) || this.maxFrames < 1 || this.maxFrames > 1 << 24) {
      throw new RangeError(
        `a receive buffer's frame table holds 1 to 2^24 frames, not ${this.maxFrames}`,
      );
    }
    this.table = layout.allocate(`${name}.table`, this.maxFrames * 8);
    this.work = layout.allocate(`${name}.work`, this.maxFrames * 8);
    this.gate = layout.allocate(`${name}.gate`, GATE_BYTES);
    this.barrier = layout.allocate(`${name}.barrier`, ROUND_BARRIER_BYTES);
    this.local = ReceiveKernel.on(layout.memory);
  }

  /**
   * Processor `p`'s scratch for a job of `count` frames. Regions never move
   * or shrink: a larger job lays out one twice the size (so a path that
   * loads ever more frames lays out O(log n) of them).
   */
  private scratchFor(p: number, count: number, switchTable: SwitchTable): Region {
    const need = ReceiveKernel.scratchBytes(count, this.rings.length, switchTable);
    const have = this.scratch[p];
    if (have && have.byteLength >= need) return have;
    this.scratchGrown++;
    const region = this.layout.allocate(
      `${this.name}.scratch${p}.${this.scratchGrown}`,
      Math.max(need, 2 * (have?.byteLength ?? 0)),
    );
    this.scratch[p] = region;
    return region;
  }

  /** Frames waiting in the receive buffer. */
  get pending(): number {
    return this.loaded;
  }

  /**
   * Puts received frames in the NIC's receive buffer (as its DMA would).
   * @throws RangeError when they do not fit the buffer.
   */
  load(frames: readonly Uint8Array[]): void {
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    if (bytes > this.buffer.byteLength) {
      throw new RangeError(
        `${frames.length} frames of ${bytes} bytes do not fit the receive buffer of ${this.buffer.byteLength} bytes`,
      );
    }
    if (frames.length > this.maxFrames) {
      throw new RangeError(
        `${frames.length} frames are more than the receive buffer's table holds (${this.maxFrames})`,
      );
    }
    const data = this.buffer.bytes(this.layout.memory);
    const table = new Uint32Array(this.layout.memory.buffer, this.table.offset, frames.length * 2);
    const sorted: SortedFrames = {
      queue: new Int32Array(frames.length),
      rssProcessor: new Int32Array(frames.length).fill(-1),
      oversize: 0,
      runts: 0,
      lanes: new Map(),
    };
    let at = 0;
    for (const [i, f] of frames.entries()) {
      data.set(f, at);
      table[i * 2] = at;
      table[i * 2 + 1] = f.length;
      at += f.length;
      // The NIC sorts a frame into its queue as the frame arrives (its
      // classifier is hardware, before any processor is interrupted), so a
      // round's processors find their queues filled.
      const c = this.nic.classify(f);
      if (c.drop !== null) {
        sorted.queue[i] = c.drop === "oversize" ? DROP_OVERSIZE : DROP_RUNT;
        if (c.drop === "oversize") sorted.oversize++;
        else sorted.runts++;
        continue;
      }
      sorted.queue[i] = c.queue;
      // Only the default queue under RSS spreads by hash; every other
      // queue's frames go to the queue's processor, whatever it is then.
      const spread = c.queue === 0 && this.config.rss;
      if (spread) sorted.rssProcessor[i] = c.processor;
      const lane = c.queue * LANE_STRIDE + (spread ? c.processor + 1 : 0);
      const l = sorted.lanes.get(lane);
      if (l) {
        l.frames++;
        l.bytes += f.length;
      } else sorted.lanes.set(lane, { frames: 1, bytes: f.length });
    }
    this.sorted = sorted;
    this.written = null;
    this.loaded = frames.length;
  }

  /**
   * Writes each processor's work list (frame index, target ring) in arrival
   * order, one list after another in the work region, for the queues'
   * processors as they are now. Skipped when neither the frames nor any
   * queue's processor changed since the last round: a round then costs this
   * thread nothing per frame. Returns each processor's span, and whether
   * two processors may write one ring (RSS spreading a queue, or switch
   * lookups on more than one processor).
   */
  private workLists(processors: number): { spans: WorkSpan[]; sharedRings: boolean } {
    const nic = this.nic;
    const key = nic.queues.map((q) => `${q.processor}:${q.vm}`).join(",");
    if (this.written?.key === key) return this.written;
    const { queue, rssProcessor } = this.sorted;
    const processorOf = Int32Array.from(nic.queues, (q) => q.processor);
    const targetOf = Uint32Array.from(nic.queues, (q) => (q.vm >= 0 ? q.vm : SWITCH_LOOKUP));
    const counts = new Int32Array(processors);
    const processorOfFrame = new Int32Array(this.loaded);
    for (let i = 0; i < this.loaded; i++) {
      const q = queue[i] ?? DROP_RUNT;
      if (q < 0) {
        processorOfFrame[i] = -1;
        continue;
      }
      const rss = rssProcessor[i] ?? -1;
      const p = rss >= 0 ? rss : (processorOf[q] ?? 0);
      processorOfFrame[i] = p;
      counts[p] = (counts[p] ?? 0) + 1;
    }
    const firsts: number[] = [];
    const next = new Int32Array(processors);
    let first = 0;
    for (let p = 0; p < processors; p++) {
      firsts.push(first);
      next[p] = first;
      first += counts[p] ?? 0;
    }
    const ringsOf = Array.from({ length: processors }, () => new Set<number>());
    const lookupsOf = new Array<boolean>(processors).fill(false);
    const work = new Uint32Array(this.layout.memory.buffer, this.work.offset, first * 2);
    for (let i = 0; i < this.loaded; i++) {
      const p = processorOfFrame[i] ?? -1;
      if (p < 0) continue;
      const at = next[p] ?? 0;
      const target = targetOf[queue[i] ?? 0] ?? SWITCH_LOOKUP;
      work[at * 2] = i;
      work[at * 2 + 1] = target;
      next[p] = at + 1;
      if (target === SWITCH_LOOKUP) lookupsOf[p] = true;
      else ringsOf[p]?.add(target);
    }
    const spans: WorkSpan[] = firsts.map((f, p) => ({
      first: f,
      count: counts[p] ?? 0,
      rings: [...(ringsOf[p] ?? [])].sort((a, b) => a - b),
      lookups: lookupsOf[p] === true,
    }));
    const active = spans.filter((s) => s.count > 0);
    const owners = new Map<number, number>();
    for (const s of active) for (const r of s.rings) owners.set(r, (owners.get(r) ?? 0) + 1);
    const sharedRings =
      [...owners.values()].some((n) => n > 1) ||
      (active.length > 1 && active.some((s) => s.lookups));
    this.written = { key, spans, sharedRings };
    return this.written;
  }

  /**
   * Runs one receive round over the loaded frames: every processor
   * validates, coalesces and delivers its share at once (the NIC sorted the
   * frames into queues when they were loaded). The VMs then consume their
   * rings (`onDeliver` sees what each received), and queues are rebalanced
   * when the config (or `rebalanceAfter`) asks.
   */
  round(
    pool?: KernelPool,
    onDeliver?: (vm: number, slots: RxSlot[]) => void,
    rebalanceAfter = this.config.rebalance,
  ): Promise<RoundResult> {
    return this.rounds(1, pool, onDeliver, rebalanceAfter);
  }

  /**
   * Runs `count` receive rounds over the loaded frames in one dispatch, as
   * a driver's processors take interrupt after interrupt without asking the
   * host between them: one task per processor for the whole batch, each
   * processor running its rounds back to back and consuming its own VMs'
   * rings between them (the VMs read them), so no thread waits for another
   * unless two processors fill one ring (then the last to finish a round
   * consumes the rings and releases the others). The result sums the
   * rounds; `onDeliver` sees what each VM received in the last round, and a
   * Dynamic VMQ rebalance, when asked for, follows the batch.
   *
   * @throws RangeError when `count` is not a whole number from 1 to 2^20,
   *   or the pool has fewer workers than the NIC has processors.
   */
  async rounds(
    count: number,
    pool?: KernelPool,
    onDeliver?: (vm: number, slots: RxSlot[]) => void,
    rebalanceAfter = this.config.rebalance,
  ): Promise<RoundResult> {
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_ROUNDS_PER_TASK) {
      throw new RangeError(`a batch runs 1 to ${MAX_ROUNDS_PER_TASK} rounds, not ${count}`);
    }
    const nic = this.nic;
    const processors = nic.options.processors;
    if (pool && pool.threads < processors) {
      throw new RangeError(
        `${processors} processors need a pool of at least ${processors} workers (it has ${pool.threads})`,
      );
    }
    const memory = this.layout.memory;
    const { oversize, runts, lanes } = this.sorted;
    const started = process.hrtime.bigint();
    const { spans, sharedRings } = this.workLists(processors);
    const switchTable = this.vms.map((vm, i) => [macNumber(vm.mac), vm.vlan ?? -1, i] as const);
    const rings = this.rings.map((r) => r.toDescriptor());
    const allRings = this.rings.map((_, i) => i);
    const active = spans
      .map((s, p) => ({ ...s, p }))
      .filter((s) => s.count > 0)
      .map((s) => ({
        ...s,
        scratch: this.scratchFor(s.p, s.count, switchTable),
        // Shared rings are consumed by whichever processor finishes a round
        // last; a processor doing the switch's lookups may fill any ring.
        consume: sharedRings || s.lookups ? allRings : s.rings,
      }));
    let results: ReceiveTaskResult[];
    if (pool) {
      // The last processor to arrive opens the gate: the processors start
      // together without a wake-up of this thread between.
      new StartGate(memory, this.gate).reset(active.length);
      const barrier = count > 1 && sharedRings && active.length > 1;
      if (barrier) new RoundBarrier(memory, this.barrier.toDescriptor()).reset(active.length);
      const tasks = active.map((s) =>
        pool.run<ReceiveTask>({
          type: "net.receive",
          frames: this.buffer.toDescriptor(),
          table: this.table.toDescriptor(),
          work: this.work.toDescriptor(),
          first: s.first,
          count: s.count,
          rings,
          switchTable,
          coalesce: this.config.coalesce,
          maxCoalesce: RSC_MAX_BYTES,
          deliverBad: this.config.deliverBad === true,
          trustChecksums: this.config.trustChecksums === true,
          scratch: s.scratch.toDescriptor(),
          gate: this.gate.toDescriptor(),
          rounds: count,
          consume: count > 1 ? s.consume : [],
          ...(barrier ? { barrier: this.barrier.toDescriptor() } : {}),
        }),
      );
      results = await Promise.all(tasks);
    } else {
      results = this.roundsHere(count, active, switchTable);
    }
    const wallNs = Number(process.hrtime.bigint() - started);
    const byProcessor = new Map<number, ReceiveResult>();
    for (const [i, s] of active.entries()) {
      const r = results[i];
      if (r) {
        const { consumed: _, ...counts } = r;
        byProcessor.set(s.p, counts);
      }
    }
    const empty: ReceiveResult = { ...sumCounts().counts, busyNs: 0 };
    const loads: ProcessorLoad[] = [];
    for (let p = 0; p < processors; p++) {
      loads.push({
        processor: p,
        queues: nic.queues.filter((q) => q.processor === p).map((q) => q.index),
        result: byProcessor.get(p) ?? empty,
      });
    }
    const sum = (key: keyof ReceiveResult) => results.reduce((a, r) => a + r[key], 0);
    // What the rings took in the rounds before the last (consumed by the processors).
    const earlier = this.rings.map(() => ({ delivered: 0, bytes: 0 }));
    for (const r of results) {
      for (const [ring, delivered, bytes] of r.consumed) {
        const e = earlier[ring];
        if (e) {
          e.delivered += delivered;
          e.bytes += bytes;
        }
      }
    }
    const vms = this.vms.map((vm, i) => {
      const ring = this.rings[i] as ReceiveRing;
      const c = ring.counters;
      if (onDeliver) onDeliver(i, ring.drain());
      ring.reset();
      const e = earlier[i] ?? { delivered: 0, bytes: 0 };
      return {
        name: vm.name,
        queue: nic.queueOf(i).index,
        delivered: e.delivered + c.delivered,
        bytes: e.bytes + c.bytes,
      };
    });
    let moved: RoundResult["moved"] = null;
    const queueFrames: QueueTraffic[] = [];
    for (const [lane, l] of lanes) {
      const queue = Math.floor(lane / LANE_STRIDE);
      const spread = lane % LANE_STRIDE;
      const processor = spread > 0 ? spread - 1 : (nic.queues[queue]?.processor ?? 0);
      queueFrames.push({ queue, processor, frames: l.frames * count, bytes: l.bytes * count });
    }
    if (rebalanceAfter && this.config.mode === "vmq") {
      // Each queue's share of the busy time of the processor that took its
      // frames, by bytes: a processor's bytes include the default queue's
      // frames RSS spread to it, whichever processor that queue is bound to.
      const handled = new Array<number>(processors).fill(0);
      for (const t of queueFrames) handled[t.processor] = (handled[t.processor] ?? 0) + t.bytes;
      const queueLoads = nic.queues.map((q) => {
        let busyNs = 0;
        for (const t of queueFrames) {
          const bytes = handled[t.processor] ?? 0;
          if (t.queue !== q.index || bytes === 0) continue;
          busyNs += ((loads[t.processor]?.result.busyNs ?? 0) * t.bytes) / bytes;
        }
        return { queue: q.index, busyNs };
      });
      moved = rebalance(
        nic,
        queueLoads,
        loads.map((l) => l.result.busyNs),
      );
    }
    const frames = this.loaded * count;
    const bytes = sum("bytes");
    return {
      rounds: count,
      frames,
      oversize: oversize * count,
      runts: runts * count,
      delivered: sum("delivered"),
      coalescedSegments: sum("coalescedSegments"),
      badChecksum: sum("badChecksum"),
      malformed: sum("malformed"),
      unknownMac: sum("unknownMac"),
      ringFull: sum("ringFull"),
      lookups: sum("lookups"),
      bytes,
      wallNs,
      framesPerSecond: frames / (wallNs / 1e9),
      bytesPerSecond: bytes / (wallNs / 1e9),
      processors: loads,
      queues: queueFrames.sort((a, b) => a.queue - b.queue || a.processor - b.processor),
      vms,
      moved,
    };
  }

  /**
   * A batch on this thread (no pool): round by round, each processor's
   * share in turn, the rings consumed between rounds as the workers do.
   */
  private roundsHere(
    count: number,
    active: readonly { p: number; first: number; count: number; scratch: Region }[],
    switchTable: SwitchTable,
  ): ReceiveTaskResult[] {
    const totals = active.map(() => ({ sum: sumCounts(), busyNs: 0 }));
    const consumed = this.rings.map(() => [0, 0, 0]);
    for (let r = 0; r < count; r++) {
      for (const [i, s] of active.entries()) {
        const t0 = process.hrtime.bigint();
        const counts = this.local.receive({
          frames: this.buffer,
          table: this.table,
          work: this.work,
          first: s.first,
          count: s.count,
          rings: this.rings,
          switchTable,
          coalesce: this.config.coalesce,
          maxCoalesce: RSC_MAX_BYTES,
          deliverBad: this.config.deliverBad === true,
          trustChecksums: this.config.trustChecksums === true,
          scratch: s.scratch,
        });
        const t = totals[i];
        if (t) {
          t.sum.add(counts);
          t.busyNs += Number(process.hrtime.bigint() - t0);
        }
      }
      if (r === count - 1) break;
      for (const [i, ring] of this.rings.entries()) {
        const c = ring.counters;
        const into = consumed[i];
        if (into) {
          into[0] = (into[0] ?? 0) + c.delivered;
          into[1] = (into[1] ?? 0) + c.bytes;
          into[2] = (into[2] ?? 0) + c.ringFull;
        }
        ring.reset();
      }
    }
    // Every ring's earlier rounds are reported once, with the first processor.
    return totals.map((t, i) => ({
      ...t.sum.counts,
      busyNs: t.busyNs,
      consumed:
        i === 0 ? consumed.map(([d, b, f], ring) => [ring, d ?? 0, b ?? 0, f ?? 0] as const) : [],
    }));
  }
}
