/**
 * The plain TypeScript oracle for the receive kernel (assembly/receive.ts):
 * one frame at a time, with parseFrame, byte-at-a-time checksums, the
 * switch's lookup in a Map, coalesce() per VM and ReceiveRing.write. It is
 * the receive path as it was before the kernel; property tests hold the
 * kernel equal to it, ring byte for ring byte, and benchmarks run it as the
 * baseline.
 */
import type { Region } from "../memory/region.js";
import { coalesce } from "../net/coalesce.js";
import {
  destinationMac,
  isGroupMac,
  type ParsedFrame,
  PROTO_UDP,
  parseFrame,
} from "../net/frame.js";
import { type ReceiveRing, RX_CHECKSUM_GOOD, RX_COALESCED } from "../net/ring.js";
import type { SwitchTable } from "../wasm/receive.js";
import { onesSumOracle } from "./checksum.js";

/** Work-list target meaning "the switch looks the destination MAC up". */
const SWITCH_LOOKUP = 0xffffffff;

/** One processor's share of a round, for the oracle. */
export interface ReceiveOracleJob {
  readonly frames: Region;
  readonly table: Region;
  readonly work: Region;
  readonly first: number;
  readonly count: number;
  readonly rings: readonly ReceiveRing[];
  readonly switchTable: SwitchTable;
  readonly coalesce: boolean;
  readonly maxCoalesce: number;
  readonly deliverBad: boolean;
  readonly trustChecksums: boolean;
}

/** What the oracle counted (the kernel's ReceiveCounts). */
export interface ReceiveOracleCounts {
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

/**
 * Whether a parsed frame's checksums are good: the IPv4 header sum, and the
 * TCP/UDP sum over the IPv4 or IPv6 pseudo-header (an IPv4 UDP checksum of 0
 * means none, RFC 768). Fragments and IP that is neither TCP nor UDP have
 * only the IPv4 header's; non-IP frames none.
 */
export function checksumsGoodOracle(frame: Uint8Array, p: ParsedFrame): boolean {
  if (p.ipVersion === 0) return true;
  const ipHeaderGood =
    p.ipVersion === 6 ||
    onesSumOracle(frame, p.l3, (p.l4 < 0 ? p.payload : p.l4) - p.l3) === 0xffff;
  if (p.l4 < 0 || !ipHeaderGood) return ipHeaderGood;
  const udp = p.protocol === PROTO_UDP;
  const length = p.ipEnd - p.l4;
  const n = p.ipVersion === 4 ? 4 : 16;
  let pseudo = onesSumOracle(frame, p.srcAddress, n, 0);
  pseudo = onesSumOracle(frame, p.dstAddress, n, pseudo);
  pseudo = onesSumOracle(
    Uint8Array.of(
      0,
      p.protocol,
      length >>> 24,
      (length >>> 16) & 0xff,
      (length >>> 8) & 0xff,
      length & 0xff,
    ),
    0,
    6,
    pseudo,
  );
  if (udp && p.ipVersion === 4 && frame[p.l4 + 6] === 0 && frame[p.l4 + 7] === 0) return true;
  return onesSumOracle(frame, p.l4, length, pseudo) === 0xffff;
}

/**
 * A processor's receive work, frame by frame: parse, validate checksums,
 * find the VM (the switch's MAC lookup when the NIC did not sort the frame
 * into the VM's queue), coalesce each VM's frames, write them into its ring.
 */
export function receiveBatchOracle(
  memory: WebAssembly.Memory,
  b: ReceiveOracleJob,
): ReceiveOracleCounts {
  const buffer = memory.buffer;
  const entries = new Uint32Array(buffer, b.work.check(b.first * 8, b.count * 8), b.count * 2);
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
    if (!b.trustChecksums && !checksumsGoodOracle(frame, parsed)) {
      badChecksum++;
      if (!b.deliverBad) continue;
      bad.add(frame);
    }
    if (target !== SWITCH_LOOKUP) {
      const list = perRing[target];
      if (list) list.push(frame);
      else malformed++;
      continue;
    }
    lookups++;
    const mac = destinationMac(frame);
    const rings = isGroupMac(mac) ? everyRing : macs.get(mac * 8192 + ((parsed.vlan ?? -1) + 1));
    if (!rings) {
      unknownMac++;
      continue;
    }
    for (const r of rings) perRing[r]?.push(frame);
  }
  let delivered = 0;
  let coalescedSegments = 0;
  let ringFull = 0;
  let bytes = 0;
  for (const [r, list] of perRing.entries()) {
    const ring = b.rings[r];
    if (!ring || list.length === 0) continue;
    // Bad frames (when delivered at all) are never coalesced: they go after
    // the good ones, marked bad.
    const good = list.filter((f) => !bad.has(f));
    const items = b.coalesce
      ? coalesce(good, { maxBytes: b.maxCoalesce })
      : good.map((f) => ({ header: f, pieces: [], segments: 1, length: f.length }));
    const goodItems = items.length;
    for (const f of list) {
      if (bad.has(f)) items.push({ header: f, pieces: [], segments: 1, length: f.length });
    }
    for (const [n, item] of items.entries()) {
      const flags = n < goodItems ? RX_CHECKSUM_GOOD | (item.segments > 1 ? RX_COALESCED : 0) : 0;
      if (ring.write(item.header, item.pieces, item.length, flags, item.segments)) {
        delivered++;
        bytes += item.length;
        if (item.segments > 1) coalescedSegments += item.segments;
      } else ringFull++;
    }
  }
  return {
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
