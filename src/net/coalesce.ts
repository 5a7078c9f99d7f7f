import { lengthField } from "./build.js";
import { onesSum } from "./byte-checksum.js";
import { type ParsedFrame, PROTO_TCP, PROTO_UDP, parseFrame, TCP_FLAGS } from "./frame.js";

/** How the receive side coalesces (GRO on Linux, RSC on Windows). */
export interface CoalesceOptions {
  /** Largest IP datagram a coalesced frame may reach (default 65,535: RSC's limit). */
  readonly maxBytes?: number;
  /** Coalesce UDP datagrams of one flow too (Linux UDP GRO; off by default). */
  readonly udp?: boolean;
}

/**
 * A received frame after coalescing: the headers of the super-frame, then the
 * payload pieces (views of the segments, not copies) in order. A frame that
 * is not TCP/UDP passes through as `header` alone.
 */
export interface CoalescedFrame {
  readonly header: Uint8Array;
  readonly pieces: readonly Uint8Array[];
  /** Segments merged into it (1 for a frame passed through). */
  readonly segments: number;
  /** Bytes of the super-frame: header plus pieces. */
  readonly length: number;
}

/** The bytes of a coalesced frame, header then payload. */
export function coalescedBytes(frame: CoalescedFrame): Uint8Array {
  const out = new Uint8Array(frame.length);
  out.set(frame.header);
  let at = frame.header.length;
  for (const piece of frame.pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

interface Group {
  readonly first: Uint8Array;
  readonly parsed: ParsedFrame;
  readonly udp: boolean;
  /** [start, end) pairs of the header bytes every segment must repeat (all but {@link mutableMask}'s). */
  readonly invariant: Int32Array;
  readonly pieces: Uint8Array[];
  readonly mss: number;
  readonly slot: number;
  payloadBytes: number;
  lastPayload: number;
  lastFlags: number;
  /** Candidate IPv4 ID modes still consistent: bit 0 increment, 1 fixed, 2 wrap15. */
  idModes: number;
  closed: boolean;
}

const FIN_PSH = TCP_FLAGS.FIN | TCP_FLAGS.PSH;
const EDGE_FLAGS = FIN_PSH | TCP_FLAGS.CWR;

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

function be32(b: Uint8Array, at: number): number {
  return (
    (((b[at] ?? 0) << 24) |
      ((b[at + 1] ?? 0) << 16) |
      ((b[at + 2] ?? 0) << 8) |
      (b[at + 3] ?? 0)) >>>
    0
  );
}

/** Header bytes that differ between segments of one send (lengths, ID, checksums, seq, flags). */
function mutableMask(p: ParsedFrame, udp: boolean): Uint8Array {
  const mask = new Uint8Array(p.payload);
  const mark = (at: number, n: number) => mask.fill(1, at, at + n);
  if (p.ipVersion === 4) {
    mark(p.l3 + 2, 4);
    mark(p.l3 + 10, 2);
  } else {
    mark(p.l3 + 4, 2);
  }
  if (udp) mark(p.l4 + 4, 4);
  else {
    mark(p.l4 + 4, 4);
    mark(p.l4 + 13, 1);
    mark(p.l4 + 16, 2);
  }
  return mask;
}

/**
 * The header bytes outside the mutable mask, as [start, end) ranges: a
 * handful per header, so a candidate segment is compared range by range
 * without a mask lookup per byte.
 */
function invariantRanges(p: ParsedFrame, udp: boolean): Int32Array {
  const mask = mutableMask(p, udp);
  const ranges: number[] = [];
  let at = 0;
  while (at < mask.length) {
    while (at < mask.length && mask[at] === 1) at++;
    const start = at;
    while (at < mask.length && mask[at] === 0) at++;
    if (at > start) ranges.push(start, at);
  }
  return Int32Array.from(ranges);
}

/**
 * A flow's key: VLAN, protocol, ports and addresses mixed into 32 bits
 * (a number, not a string: this runs once per received frame). Two flows
 * whose keys collide are still told apart: a frame joins a group only when
 * every header byte that does not change between segments (addresses and
 * ports among them) equals the group's first frame's.
 */
function flowKey(b: Uint8Array, p: ParsedFrame): number {
  let h = Math.imul((p.vlan ?? 0xfff) ^ (p.protocol << 12), 0x9e3779b1);
  h = Math.imul(h ^ be32(b, p.l4), 0x85ebca6b);
  const n = p.ipVersion === 4 ? 4 : 16;
  for (let i = 0; i < n; i += 4) {
    h = Math.imul(h ^ be32(b, p.srcAddress + i), 0xc2b2ae35);
    h = Math.imul(h ^ be32(b, p.dstAddress + i), 0x27d4eb2f);
  }
  return (h ^ (h >>> 15)) >>> 0;
}

function idOk(group: Group, id: number, index: number): number {
  const id0 = be16(group.first, group.parsed.l3 + 4);
  let modes = 0;
  if (id === ((id0 + index) & 0xffff)) modes |= 1;
  if (id === id0) modes |= 2;
  if (id === ((id0 + index) & 0x7fff)) modes |= 4;
  return group.idModes & modes;
}

/** Writes a group's super-frame header: the exact inverse of segmentation. */
function finish(group: Group): CoalescedFrame {
  const p = group.parsed;
  const header = group.first.slice(0, p.payload);
  const v = new DataView(header.buffer);
  const ipBytes = p.payload - p.l3 + group.payloadBytes;
  if (p.ipVersion === 4) {
    v.setUint16(p.l3 + 2, lengthField(ipBytes));
    v.setUint16(p.l3 + 10, 0);
    v.setUint16(p.l3 + 10, ~onesSum(header, p.l3, p.l4 - p.l3) & 0xffff);
  } else {
    v.setUint16(p.l3 + 4, lengthField(ipBytes - 40));
  }
  const n = p.ipVersion === 4 ? 4 : 16;
  const protocol = group.udp ? PROTO_UDP : PROTO_TCP;
  // The transport checksum field goes back to what the sending stack gave the
  // NIC: the pseudo-header sum of addresses and protocol, without the length.
  const pseudo = onesSum(header, p.dstAddress, n, onesSum(header, p.srcAddress, n, protocol));
  if (group.udp) {
    v.setUint16(p.l4 + 4, lengthField(p.payload - p.l4 + group.payloadBytes));
    v.setUint16(p.l4 + 6, pseudo);
  } else {
    header[p.l4 + 13] = ((header[p.l4 + 13] ?? 0) & ~FIN_PSH) | (group.lastFlags & FIN_PSH);
    v.setUint16(p.l4 + 16, pseudo);
  }
  return {
    header,
    pieces: group.pieces,
    segments: group.pieces.length,
    length: header.length + group.payloadBytes,
  };
}

/**
 * Coalesces received frames: consecutive segments of one flow whose headers
 * agree (except lengths, IDs, checksums, sequence and edge flags), whose
 * sequence numbers follow on, whose IPv4 IDs follow one of the LSO ID modes,
 * and whose payloads are all one MSS but the last, become one super-frame in
 * the form a large send had before segmentation. Frames must have passed
 * checksum validation already (coalescing drops the per-segment checksums).
 * Frames that do not parse pass through untouched. `parsed`, when given,
 * holds each frame's parse already done (the receive path parses every frame
 * to validate it), so it is not parsed twice.
 */
export function coalesce(
  frames: readonly Uint8Array[],
  options: CoalesceOptions = {},
  parsed?: readonly ParsedFrame[],
): CoalescedFrame[] {
  const maxBytes = options.maxBytes ?? 0xffff;
  const out: (CoalescedFrame | Group)[] = [];
  const open = new Map<number, Group>();
  const close = (key: number, group: Group) => {
    open.delete(key);
    group.closed = true;
  };
  for (let index = 0; index < frames.length; index++) {
    const frame = frames[index] as Uint8Array;
    let p: ParsedFrame;
    const known = parsed?.[index];
    if (known) p = known;
    else {
      try {
        p = parseFrame(frame, 0, frame.length, { superFrame: true });
      } catch {
        out.push({ header: frame, pieces: [], segments: 1, length: frame.length });
        continue;
      }
    }
    const udp = p.protocol === PROTO_UDP;
    if (p.l4 < 0 || (udp && !options.udp)) {
      out.push({ header: frame, pieces: [], segments: 1, length: frame.length });
      continue;
    }
    const payload = frame.subarray(p.payload, p.ipEnd);
    const flags = udp ? 0 : (frame[p.l4 + 13] ?? 0);
    const key = flowKey(frame, p);
    const group = open.get(key);
    if (group && canAppend(group, frame, p, payload, flags, maxBytes)) {
      group.pieces.push(payload);
      group.payloadBytes += payload.length;
      group.lastPayload = payload.length;
      group.lastFlags = flags;
      if (p.ipVersion === 4)
        group.idModes = idOk(group, be16(frame, p.l3 + 4), group.pieces.length - 1);
      if (flags & FIN_PSH || payload.length < group.mss) close(key, group);
      continue;
    }
    if (group) close(key, group);
    const fresh: Group = {
      first: frame,
      parsed: p,
      udp,
      invariant: invariantRanges(p, udp),
      pieces: [payload],
      mss: payload.length,
      slot: out.length,
      payloadBytes: payload.length,
      lastPayload: payload.length,
      lastFlags: flags,
      idModes: 7,
      closed: false,
    };
    out.push(fresh);
    if (flags & (FIN_PSH | TCP_FLAGS.SYN | TCP_FLAGS.RST) || payload.length === 0)
      fresh.closed = true;
    else open.set(key, fresh);
  }
  return out.map((item) => ("first" in item ? finish(item) : item));
}

function canAppend(
  group: Group,
  frame: Uint8Array,
  p: ParsedFrame,
  payload: Uint8Array,
  flags: number,
  maxBytes: number,
): boolean {
  const g = group.parsed;
  if (group.closed || p.payload !== g.payload || p.l4 !== g.l4 || p.l3 !== g.l3) return false;
  if (payload.length === 0 || payload.length > group.mss || group.lastPayload !== group.mss)
    return false;
  if (p.payload - p.l3 + group.payloadBytes + payload.length > maxBytes) return false;
  const first = group.first;
  const ranges = group.invariant;
  for (let r = 0; r < ranges.length; r += 2) {
    const end = ranges[r + 1] ?? 0;
    for (let i = ranges[r] ?? 0; i < end; i++) if (frame[i] !== first[i]) return false;
  }
  if (!group.udp) {
    const firstFlags = first[g.l4 + 13] ?? 0;
    if ((flags & ~EDGE_FLAGS) !== (firstFlags & ~EDGE_FLAGS)) return false;
    // CWR only on the first segment, unless the sender kept it on all (DPDK).
    if (flags & TCP_FLAGS.CWR && !(firstFlags & TCP_FLAGS.CWR)) return false;
    if (be32(frame, p.l4 + 4) !== (be32(first, g.l4 + 4) + group.payloadBytes) >>> 0) return false;
  }
  if (p.ipVersion === 4 && idOk(group, be16(frame, p.l3 + 4), group.pieces.length) === 0)
    return false;
  return true;
}
