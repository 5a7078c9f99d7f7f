import { formatIp } from "./address.js";
import { PROTO_TCP, PROTO_UDP, parseFrame } from "./frame.js";

/*
 * TCP and UDP conversations counted the way `tshark -z conv,tcp` and
 * `conv,udp` count them: one per pair of endpoints (address and port), in
 * the order first seen, endpoint A being the first packet's source; frames
 * and bytes (each frame's length on the wire) per direction. As tshark
 * reassembles IPv4 fragments by default, a fragmented datagram counts once,
 * at the fragment that completes it, with that frame's length. A datagram
 * completes when the byte ranges received cover every byte from 0 to the
 * last fragment's end (RFC 791 section 3.2; RFC 815's hole descriptors):
 * a duplicated or overlapping fragment fills no hole, as in Wireshark's
 * reassembly (epan/reassemble.c), which leaves such a datagram in pieces.
 */

/** A TCP or UDP conversation between endpoints A and B. */
export interface Conversation {
  readonly protocol: "tcp" | "udp";
  readonly a: string;
  readonly aPort: number;
  readonly b: string;
  readonly bPort: number;
  framesAtoB: number;
  bytesAtoB: number;
  framesBtoA: number;
  bytesBtoA: number;
}

/** A frame of a capture and its length on the wire. */
export interface WireFrame {
  readonly frame: Uint8Array;
  readonly wireLength: number;
}

/** IPv4 fragments of one datagram seen so far. */
interface Reassembly {
  /** Byte ranges of the payload received, [start, end), sorted, disjoint and not touching. */
  readonly ranges: { start: number; end: number }[];
  /** Bytes of the whole datagram's payload, once the last fragment is seen; -1 before. */
  total: number;
  ports: { src: number; dst: number } | null;
}

/** Largest number of datagrams in reassembly at once (a bound against hostile captures). */
const MAX_REASSEMBLIES = 65_536;

/** Adds [start, end) to sorted, disjoint ranges, merging what it overlaps or touches. */
function addRange(ranges: { start: number; end: number }[], start: number, end: number): void {
  let i = 0;
  while (i < ranges.length && (ranges[i]?.end ?? 0) < start) i++;
  let j = i;
  while (j < ranges.length && (ranges[j]?.start ?? 0) <= end) {
    const r = ranges[j] as { start: number; end: number };
    start = Math.min(start, r.start);
    end = Math.max(end, r.end);
    j++;
  }
  ranges.splice(i, j - i, { start, end });
}

/** Whether the ranges hold every byte of [0, total). */
function covers(ranges: readonly { start: number; end: number }[], total: number): boolean {
  const first = ranges[0];
  return first !== undefined && first.start === 0 && first.end >= total;
}

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

/** The endpoints' key, the same for both directions. */
export function conversationKey(
  protocol: number,
  src: string,
  srcPort: number,
  dst: string,
  dstPort: number,
): { key: string; forward: boolean } {
  const s = `${src}|${srcPort}`;
  const d = `${dst}|${dstPort}`;
  return s <= d
    ? { key: `${protocol}|${s}|${d}`, forward: true }
    : { key: `${protocol}|${d}|${s}`, forward: false };
}

/** Counts the TCP and UDP conversations of a capture's frames. */
export function countConversations(frames: readonly WireFrame[]): Conversation[] {
  const byKey = new Map<string, { c: Conversation; aKeyFirst: boolean }>();
  const fragments = new Map<string, Reassembly>();
  const out: Conversation[] = [];
  for (const { frame, wireLength } of frames) {
    let p: ReturnType<typeof parseFrame>;
    try {
      p = parseFrame(frame);
    } catch {
      continue;
    }
    if (p.ipVersion === 0 || (p.protocol !== PROTO_TCP && p.protocol !== PROTO_UDP)) continue;
    const n = p.ipVersion === 4 ? 4 : 16;
    const src = formatIp(frame.subarray(p.srcAddress, p.srcAddress + n));
    const dst = formatIp(frame.subarray(p.l3 + (n === 4 ? 16 : 24), p.l3 + (n === 4 ? 20 : 40)));
    let ports: { src: number; dst: number } | null = null;
    if (p.fragment) {
      if (p.ipVersion !== 4) continue;
      const field = be16(frame, p.l3 + 6);
      const offset = (field & 0x1fff) * 8;
      const more = (field & 0x2000) !== 0;
      const id = `${src}|${dst}|${p.protocol}|${be16(frame, p.l3 + 4)}`;
      let r = fragments.get(id);
      if (!r) {
        if (fragments.size >= MAX_REASSEMBLIES) continue;
        r = { ranges: [], total: -1, ports: null };
        fragments.set(id, r);
      }
      const bytes = p.ipEnd - p.payload;
      if (bytes > 0) addRange(r.ranges, offset, offset + bytes);
      if (!more) r.total = offset + bytes;
      if (offset === 0 && bytes >= 4)
        r.ports = { src: be16(frame, p.payload), dst: be16(frame, p.payload + 2) };
      if (r.total < 0 || !covers(r.ranges, r.total) || !r.ports) continue;
      fragments.delete(id);
      ports = r.ports;
    } else {
      ports = { src: be16(frame, p.l4), dst: be16(frame, p.l4 + 2) };
    }
    const { key, forward } = conversationKey(p.protocol, src, ports.src, dst, ports.dst);
    let entry = byKey.get(key);
    if (!entry) {
      const c: Conversation = {
        protocol: p.protocol === PROTO_TCP ? "tcp" : "udp",
        a: src,
        aPort: ports.src,
        b: dst,
        bPort: ports.dst,
        framesAtoB: 0,
        bytesAtoB: 0,
        framesBtoA: 0,
        bytesBtoA: 0,
      };
      entry = { c, aKeyFirst: forward };
      byKey.set(key, entry);
      out.push(c);
    }
    if (forward === entry.aKeyFirst) {
      entry.c.framesAtoB++;
      entry.c.bytesAtoB += wireLength;
    } else {
      entry.c.framesBtoA++;
      entry.c.bytesBtoA += wireLength;
    }
  }
  return out;
}
