import type { Region } from "../memory/region.js";
import type { ChecksumKernel } from "../wasm/checksum.js";
import { FRAME_CHECKSUMS_GOOD, type SegmentKernel } from "../wasm/segment.js";
import { coalesce } from "./coalesce.js";
import { destinationMac, isGroupMac, type ParsedFrame, PROTO_UDP, parseFrame } from "./frame.js";
import { type ReceiveRing, RX_CHECKSUM_GOOD, RX_COALESCED, type SharedCopy } from "./ring.js";
import { type ReceiveResult, SWITCH_LOOKUP } from "./task-types.js";

/** The kernels and shared memory a processor receives with. */
export interface ReceiveKernels {
  readonly memory: WebAssembly.Memory;
  readonly segment: SegmentKernel;
  readonly checksum: ChecksumKernel;
}

/** One processor's share of a round, with its regions opened. */
export interface ReceiveBatch {
  readonly frames: Region;
  readonly table: Region;
  readonly work: Region;
  readonly first: number;
  readonly count: number;
  readonly rings: readonly ReceiveRing[];
  readonly switchTable: readonly (readonly [number, number, number])[];
  readonly coalesce: boolean;
  readonly maxCoalesce: number;
  /** Deliver frames that failed validation, marked bad, instead of dropping them. */
  readonly deliverBad: boolean;
  /** Skip checksum validation: every frame is taken as good (a capture's checksums trusted). */
  readonly trustChecksums?: boolean;
}

const checkAt = { l3: 0, l4: 0, end: 0, dst: 0, flags: 0 };

/**
 * Validates a frame's checksums in the kernel. Returns true when every
 * checksum the frame carries is good (non-IP frames carry none).
 */
export function checksumsGood(
  k: ReceiveKernels,
  frames: Region,
  start: number,
  p: ParsedFrame,
): boolean {
  if (p.ipVersion === 0) return true;
  if (p.l4 < 0) {
    // A fragment, or IP carrying neither TCP nor UDP (ICMP, GRE, ...): only
    // the IPv4 header has a checksum to validate, over its IHL bytes (the
    // parser leaves `payload` just past the IP header for these). A
    // fragment's transport checksum covers the whole datagram, which this
    // frame does not hold.
    return p.ipVersion === 6 || k.checksum.sum(frames, start + p.l3, p.payload - p.l3) === 0xffff;
  }
  // One record reused for every frame: this runs once per received frame.
  const at = checkAt;
  at.l3 = p.l3;
  at.l4 = p.l4;
  at.end = p.ipEnd;
  at.dst = p.dstAddress;
  at.flags = (p.ipVersion === 6 ? 1 : 0) | (p.protocol === PROTO_UDP ? 2 : 0);
  return k.segment.checkFrame(frames, start, at) === FRAME_CHECKSUMS_GOOD;
}

/**
 * A processor's receive work: for each frame of its share, parse (every
 * field bounds-checked), validate checksums, find the VM (the switch's MAC
 * lookup, when the NIC did not sort it into the VM's queue), coalesce each
 * VM's frames, and write them into the VM's receive ring.
 */
export function receiveBatch(k: ReceiveKernels, b: ReceiveBatch): Omit<ReceiveResult, "busyNs"> {
  const buffer = k.memory.buffer;
  const entries = new Uint32Array(
    buffer,
    b.work.check(b.first * 8, b.count * 8, "work list"),
    b.count * 2,
  );
  const tableEntries = b.table.byteLength >>> 3;
  const table = new Uint32Array(buffer, b.table.offset, tableEntries * 2);
  const all = new Uint8Array(buffer, b.frames.offset, b.frames.byteLength);
  const macs = new Map<number, number[]>();
  for (const [mac, vlan, ring] of b.switchTable) {
    const key = mac * 8192 + (vlan + 1);
    const list = macs.get(key) ?? [];
    list.push(ring);
    macs.set(key, list);
  }
  const everyRing = b.rings.map((_, i) => i);
  const perRing: Uint8Array[][] = b.rings.map(() => []);
  const perRingParsed: ParsedFrame[][] = b.rings.map(() => []);
  const bad = new Set<Uint8Array>();
  let malformed = 0;
  let badChecksum = 0;
  let unknownMac = 0;
  let lookups = 0;
  for (let i = 0; i < b.count; i++) {
    const index = entries[i * 2] ?? 0;
    const target = entries[i * 2 + 1] ?? 0;
    if (index >= tableEntries) {
      malformed++;
      continue;
    }
    const offset = table[index * 2] ?? 0;
    const length = table[index * 2 + 1] ?? 0;
    if (offset + length > b.frames.byteLength) {
      malformed++;
      continue;
    }
    const frame = all.subarray(offset, offset + length);
    let parsed: ParsedFrame;
    try {
      parsed = parseFrame(frame);
    } catch {
      malformed++;
      continue;
    }
    if (b.trustChecksums !== true && !checksumsGood(k, b.frames, offset, parsed)) {
      badChecksum++;
      if (!b.deliverBad) continue;
      bad.add(frame);
    }
    if (target !== SWITCH_LOOKUP) {
      const list = perRing[target];
      if (list) {
        list.push(frame);
        perRingParsed[target]?.push(parsed);
      } else malformed++;
      continue;
    }
    lookups++;
    const mac = destinationMac(frame);
    const rings = isGroupMac(mac) ? everyRing : macs.get(mac * 8192 + ((parsed.vlan ?? -1) + 1));
    if (!rings) {
      unknownMac++;
      continue;
    }
    for (const r of rings) {
      perRing[r]?.push(frame);
      perRingParsed[r]?.push(parsed);
    }
  }
  // Frames and payload pieces are views of the receive buffer: the copy
  // kernel moves them (its sum unused), checked against both regions. Its
  // inline SIMD loop costs about half of what memory.copy does per
  // 1,448-byte piece (an out-of-line call in V8 11.3).
  const copy: SharedCopy = (target, at, address, length) => {
    k.checksum.copyAndSum(target, at, b.frames, address - b.frames.offset, length);
  };
  let delivered = 0;
  let coalescedSegments = 0;
  let ringFull = 0;
  let bytes = 0;
  for (const [r, list] of perRing.entries()) {
    const ring = b.rings[r];
    if (!ring || list.length === 0) continue;
    // Bad frames (when delivered at all) are never coalesced: they go after
    // the good ones, marked bad.
    const good = bad.size > 0 ? list.filter((f) => !bad.has(f)) : list;
    const goodParsed = bad.size > 0 ? undefined : perRingParsed[r];
    const items = b.coalesce
      ? coalesce(good, { maxBytes: b.maxCoalesce }, goodParsed)
      : good.map((f) => ({ header: f, pieces: [], segments: 1, length: f.length }));
    const goodItems = items.length;
    if (bad.size > 0) {
      for (const f of list) {
        if (bad.has(f)) items.push({ header: f, pieces: [], segments: 1, length: f.length });
      }
    }
    for (const [n, item] of items.entries()) {
      const flags = n < goodItems ? RX_CHECKSUM_GOOD | (item.segments > 1 ? RX_COALESCED : 0) : 0;
      if (ring.write(item.header, item.pieces, item.length, flags, item.segments, copy)) {
        delivered++;
        bytes += item.length;
        if (item.segments > 1) coalescedSegments += item.segments;
      } else ringFull++;
    }
  }
  return {
    // Every work entry is one frame the processor handled (a flooded
    // broadcast is one frame however many rings it reaches).
    frames: b.count,
    delivered,
    coalescedSegments,
    badChecksum,
    malformed,
    unknownMac,
    lookups,
    ringFull,
    bytes,
  };
}
