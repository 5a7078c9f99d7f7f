import { formatIp } from "./address.js";
import { conversationKey } from "./conversations.js";
import { PROTO_TCP, parseFrame, TCP_FLAGS } from "./frame.js";

/*
 * The byte streams of TCP connections, rebuilt from what the VMs received
 * (frames and coalesced super-frames alike), as `tshark -z follow,tcp,raw`
 * shows them: each direction's payload in sequence order, a retransmitted
 * or overlapping byte taken once (its first copy). As in Wireshark's
 * follow_tcp_tap_listener (epan/dissectors/packet-tcp.c), a direction's
 * stream starts where the first segment seen in that direction starts,
 * with or without data: its sequence number, plus one if it is a SYN (RFC
 * 9293 section 3.4: the SYN takes one sequence number). A segment seen
 * later never moves that start, so bytes before it (a SYN captured late, a
 * segment that arrived out of order before the first one seen) are left
 * out, and a segment straddling it gives the bytes from the start on.
 * A SYN's own data (TCP Fast Open, RFC 7413 section 4; a SYN-ACK may carry
 * data too) begins one past the SYN's sequence number and belongs to the
 * stream, as tshark's follow shows it.
 */

interface Segment {
  readonly seq: number;
  readonly data: Uint8Array;
}

interface Direction {
  /** Sequence number of the stream's first byte, from the first segment seen; null before. */
  start: number | null;
  readonly segments: Segment[];
}

/** One connection's two byte streams, A being the side that sent first. */
export interface TcpStream {
  readonly key: string;
  readonly aToB: Uint8Array;
  readonly bToA: Uint8Array;
}

/** Largest payload kept per direction (a bound against hostile captures). */
export const MAX_STREAM_BYTES = 64 * 1024 * 1024;

/** Collects TCP payload per connection and direction. */
export class TcpStreams {
  private readonly connections = new Map<string, { forward: Direction; backward: Direction }>();

  /** Takes one received frame or super-frame; ignores what is not TCP. */
  add(frame: Uint8Array): void {
    let p: ReturnType<typeof parseFrame>;
    try {
      p = parseFrame(frame, 0, frame.length, { superFrame: true });
    } catch {
      return;
    }
    if (p.protocol !== PROTO_TCP || p.l4 < 0) return;
    const n = p.ipVersion === 4 ? 4 : 16;
    const src = formatIp(frame.subarray(p.srcAddress, p.srcAddress + n));
    const dst = formatIp(frame.subarray(p.l3 + (n === 4 ? 16 : 24), p.l3 + (n === 4 ? 20 : 40)));
    const sp = ((frame[p.l4] ?? 0) << 8) | (frame[p.l4 + 1] ?? 0);
    const dp = ((frame[p.l4 + 2] ?? 0) << 8) | (frame[p.l4 + 3] ?? 0);
    const { key, forward } = conversationKey(PROTO_TCP, src, sp, dst, dp);
    let c = this.connections.get(key);
    if (!c) {
      c = { forward: { start: null, segments: [] }, backward: { start: null, segments: [] } };
      this.connections.set(key, c);
    }
    const d = forward ? c.forward : c.backward;
    const seq =
      (((frame[p.l4 + 4] ?? 0) << 24) |
        ((frame[p.l4 + 5] ?? 0) << 16) |
        ((frame[p.l4 + 6] ?? 0) << 8) |
        (frame[p.l4 + 7] ?? 0)) >>>
      0;
    // The SYN takes the sequence number before its data's first byte.
    const first = ((frame[p.l4 + 13] ?? 0) & TCP_FLAGS.SYN ? seq + 1 : seq) >>> 0;
    d.start ??= first;
    if (p.payloadLength > 0)
      d.segments.push({ seq: first, data: frame.slice(p.payload, p.payload + p.payloadLength) });
  }

  /** The two streams of the connection between these endpoints, or null if none was seen. */
  stream(a: string, aPort: number, b: string, bPort: number): TcpStream | null {
    const { key, forward } = conversationKey(PROTO_TCP, a, aPort, b, bPort);
    const c = this.connections.get(key);
    if (!c) return null;
    const [ab, ba] = forward ? [c.forward, c.backward] : [c.backward, c.forward];
    return { key, aToB: assemble(ab), bToA: assemble(ba) };
  }
}

function assemble(d: Direction): Uint8Array {
  const base = d.start;
  if (base === null || d.segments.length === 0) return new Uint8Array(0);
  // Sequence numbers relative to the base, as signed 32-bit distances, so a
  // stream that wraps past 2^32 stays in order.
  const relative = d.segments
    .map((s) => ({ at: (s.seq - base) | 0, data: s.data }))
    // A segment ending at or before the start gives nothing; one straddling
    // it gives its bytes from the start on (end - at below).
    .filter((s) => s.at + s.data.length > 0)
    .sort((x, y) => x.at - y.at);
  const pieces: Uint8Array[] = [];
  let end = 0;
  for (const s of relative) {
    if (s.at > end) break;
    const fresh = s.data.subarray(end - s.at);
    if (fresh.length === 0) continue;
    if (end + fresh.length > MAX_STREAM_BYTES) break;
    pieces.push(fresh);
    end += fresh.length;
  }
  const out = new Uint8Array(end);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}
