import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/receive.ts. */
export interface ReceiveExports {
  receiveBatch(job: number): number;
}

/**
 * Bytes of a job's header and results (drawn in assembly/receive.ts); the
 * ring entries, the switch entries and the kernel's scratch follow it.
 */
export const RECEIVE_JOB_BYTES = 128;
/** Offset of the results in a job. */
const RESULTS = 64;
const RECORD_BYTES = 32;
const GROUP_BYTES = 32;
const HASH_ENTRY_BYTES = 12;
const RING_ENTRY_BYTES = 16;
const SWITCH_ENTRY_BYTES = 16;
/** A ring's header and a slot's header (src/net/ring.ts). */
const RING_HEADER = 64;
const SLOT_HEADER = 8;
/** Work-list target meaning "the switch looks the destination MAC up". */
const SWITCH_LOOKUP = 0xffffffff;
/** Job flag bits (assembly/receive.ts FLAG_*). */
const FLAG_COALESCE = 1;
const FLAG_DELIVER_BAD = 2;
const FLAG_TRUST = 4;
/** Job header fields, as u32 indices. */
const Job = {
  frames: 0,
  frameBytes: 1,
  table: 2,
  tableEntries: 3,
  work: 4,
  count: 5,
  ringCount: 6,
  switchCount: 7,
  flags: 8,
  maxCoalesce: 9,
  fanout: 10,
} as const;

/** A VM's receive ring as the kernel writes it (laid out in src/net/ring.ts). */
export interface RingTarget {
  readonly region: Region;
  readonly slots: number;
  readonly slotBytes: number;
}

/** The virtual switch's MAC table: [MAC as a 48-bit number, VLAN or -1, ring]. */
export type SwitchTable = readonly (readonly [number, number, number])[];

/** One processor's share of a receive round. */
export interface ReceiveJob {
  /** The NIC's receive buffer and its frame table (u32 offset, u32 length per frame). */
  readonly frames: Region;
  readonly table: Region;
  /** The work list (u32 frame index, u32 ring or 0xFFFFFFFF) and this job's span of it. */
  readonly work: Region;
  readonly first: number;
  readonly count: number;
  readonly rings: readonly RingTarget[];
  readonly switchTable: SwitchTable;
  readonly coalesce: boolean;
  /** Largest IP datagram coalescing may build. */
  readonly maxCoalesce: number;
  readonly deliverBad: boolean;
  readonly trustChecksums: boolean;
  /** This processor's own region: the job, its results and the kernel's scratch. */
  readonly scratch: Region;
}

/** What the kernel counted for a job. */
export interface ReceiveCounts {
  readonly frames: number;
  readonly delivered: number;
  readonly coalescedSegments: number;
  readonly badChecksum: number;
  readonly malformed: number;
  readonly unknownMac: number;
  readonly lookups: number;
  readonly ringFull: number;
  readonly bytes: number;
}

/** Most rings one unicast MAC and VLAN reach in a switch table (at least 1). */
function fanoutOf(switchTable: SwitchTable): number {
  const seen = new Map<number, number>();
  let most = 1;
  for (const [mac, vlan] of switchTable) {
    const key = mac * 8192 + (vlan + 1);
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    if (n > most) most = n;
  }
  return most;
}

/**
 * Typed, bounds-checked calls into the receive kernel: one call per
 * processor per round parses, validates, sorts, coalesces and delivers all
 * of its frames. Every region the kernel reads or writes is checked here
 * before wasm runs; the frames' own contents the kernel checks itself.
 */
export class ReceiveKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: ReceiveExports,
  ) {
    checkKernelLayout("receive", k, {
      JOB_BYTES: RECEIVE_JOB_BYTES,
      RESULTS,
      RECORD_BYTES,
      GROUP_BYTES,
      HASH_ENTRY_BYTES,
      RING_ENTRY_BYTES,
      SWITCH_ENTRY_BYTES,
      RING_HEADER,
      SLOT_HEADER,
    });
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): ReceiveKernel {
    return new ReceiveKernel(
      memory,
      instantiateKernel<ReceiveExports>(compileKernel("receive"), memory),
    );
  }

  /**
   * Bytes of the scratch region a job of `count` frames needs, with
   * `rings` rings and this switch table (drawn in assembly/receive.ts).
   */
  static scratchBytes(count: number, rings: number, switchTable: SwitchTable): number {
    // One ring's list holds at most count * fan-out records.
    const perRing = count * fanoutOf(switchTable);
    let hashSlots = 16;
    while (hashSlots < 2 * perRing) hashSlots *= 2;
    return (
      RECEIVE_JOB_BYTES +
      rings * RING_ENTRY_BYTES +
      switchTable.length * SWITCH_ENTRY_BYTES +
      count * RECORD_BYTES +
      rings * 8 +
      perRing * 8 +
      count * 4 +
      perRing * 8 +
      perRing * GROUP_BYTES +
      hashSlots * HASH_ENTRY_BYTES
    );
  }

  /**
   * Runs one processor's share of a round.
   *
   * @throws RangeError or RegionBoundsError, naming what, when a region,
   * a ring or the switch table is not what the kernel needs.
   */
  receive(job: ReceiveJob): ReceiveCounts {
    const { count, rings, switchTable, scratch } = job;
    if (!Number.isSafeInteger(count) || count < 0 || count > 1 << 24) {
      throw new RangeError(`a receive job has 0 to 2^24 frames, not ${count}`);
    }
    if (rings.length > 1 << 20) throw new RangeError(`${rings.length} rings are too many`);
    const work = job.work.check(job.first * 8, count * 8, "work list");
    const frames = job.frames.check(0, job.frames.byteLength, "receive buffer");
    const table = job.table.check(0, job.table.byteLength, "frame table");
    const need = ReceiveKernel.scratchBytes(count, rings.length, switchTable);
    const base = scratch.check(0, need, "receive scratch");
    for (const input of [job.frames, job.table, job.work]) {
      if (input.offset < scratch.end && scratch.offset < input.end) {
        throw new RangeError(`receive scratch '${scratch.name}' overlaps '${input.name}'`);
      }
    }
    if (
      !Number.isSafeInteger(job.maxCoalesce) ||
      job.maxCoalesce < 0 ||
      job.maxCoalesce > 2 ** 32 - 1
    ) {
      throw new RangeError(`largest coalesced datagram ${job.maxCoalesce} is not a u32`);
    }
    const buffer = this.memory.buffer;
    const words = new Uint32Array(buffer, base, RECEIVE_JOB_BYTES >>> 2);
    const ringsAt = base + RECEIVE_JOB_BYTES;
    const ringWords = new Uint32Array(buffer, ringsAt, rings.length * 4);
    for (const [i, ring] of rings.entries()) {
      const { region, slots, slotBytes } = ring;
      if (!Number.isSafeInteger(slots) || slots < 1 || slots > 1 << 20) {
        throw new RangeError(`ring '${region.name}' has 1 to 2^20 slots, not ${slots}`);
      }
      if (!Number.isSafeInteger(slotBytes) || slotBytes < 64 || slotBytes % 8 !== 0) {
        throw new RangeError(
          `ring '${region.name}' slots are a multiple of 8 bytes, at least 64, not ${slotBytes}`,
        );
      }
      ringWords[i * 4] = region.check(0, RING_HEADER + slots * slotBytes, "receive ring");
      ringWords[i * 4 + 1] = slots;
      ringWords[i * 4 + 2] = slotBytes;
      if (region.offset < scratch.end && scratch.offset < region.end) {
        throw new RangeError(`receive scratch '${scratch.name}' overlaps ring '${region.name}'`);
      }
    }
    const switchAt = ringsAt + rings.length * RING_ENTRY_BYTES;
    const switchWords = new Uint32Array(buffer, switchAt, switchTable.length * 4);
    for (const [i, [mac, vlan, ring]] of switchTable.entries()) {
      if (!Number.isSafeInteger(mac) || mac < 0 || mac >= 2 ** 48) {
        throw new RangeError(`switch entry ${i}: MAC ${mac} is not 48 bits`);
      }
      if (!Number.isSafeInteger(vlan) || vlan < -1 || vlan > 4095) {
        throw new RangeError(`switch entry ${i}: VLAN ${vlan} is not -1 (none) or 0 to 4095`);
      }
      if (!Number.isSafeInteger(ring) || ring < 0 || ring >= rings.length) {
        throw new RangeError(`switch entry ${i}: ring ${ring} is not one of the ${rings.length}`);
      }
      switchWords[i * 4] = Math.floor(mac / 2 ** 32);
      switchWords[i * 4 + 1] = mac % 2 ** 32;
      switchWords[i * 4 + 2] = vlan;
      switchWords[i * 4 + 3] = ring;
    }
    words[Job.frames] = frames;
    words[Job.frameBytes] = job.frames.byteLength;
    words[Job.table] = table;
    words[Job.tableEntries] = job.table.byteLength >>> 3;
    words[Job.work] = work;
    words[Job.count] = count;
    words[Job.ringCount] = rings.length;
    words[Job.switchCount] = switchTable.length;
    words[Job.flags] =
      (job.coalesce ? FLAG_COALESCE : 0) |
      (job.deliverBad ? FLAG_DELIVER_BAD : 0) |
      (job.trustChecksums ? FLAG_TRUST : 0);
    words[Job.maxCoalesce] = job.maxCoalesce;
    words[Job.fanout] = fanoutOf(switchTable);
    this.k.receiveBatch(base);
    const r = RESULTS >>> 2;
    return {
      frames: words[r] ?? 0,
      delivered: words[r + 1] ?? 0,
      coalescedSegments: words[r + 2] ?? 0,
      badChecksum: words[r + 3] ?? 0,
      malformed: words[r + 4] ?? 0,
      unknownMac: words[r + 5] ?? 0,
      lookups: words[r + 6] ?? 0,
      ringFull: words[r + 7] ?? 0,
      bytes: (words[r + 8] ?? 0) + (words[r + 9] ?? 0) * 2 ** 32,
    };
  }
}

export { SWITCH_LOOKUP as RECEIVE_SWITCH_LOOKUP };
