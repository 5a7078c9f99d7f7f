import { onesComplementAdd, onesSum } from "./byte-checksum.js";
import { type ParsedFrame, PROTO_UDP, parseFrame } from "./frame.js";

/*
 * Captures taken on the sending host hold checksums the NIC was to fill in:
 * with checksum offload the stack hands the NIC a TCP or UDP checksum field
 * holding only the pseudo-header sum (Linux CHECKSUM_PARTIAL: the folded sum
 * of addresses, protocol and length, not complemented), and a capture on
 * that host, or on loopback, where no NIC ever fills it, shows it so.
 * Wireshark's "checksum offload" note explains the same: such a checksum is
 * not wrong on the wire, it was never computed. This module tells those
 * frames apart from bad ones and can fill their checksums in.
 */

/** How a replay treats a capture's checksums. */
export type ChecksumPolicy = "validate" | "trust" | "recompute";

/** What a capture's checksums look like, frame by frame. */
export interface ChecksumAudit {
  /** IP frames whose every checksum is valid as captured. */
  readonly valid: number;
  /** IP frames with a checksum that is not valid as captured. */
  readonly notValid: number;
  /** Of those, frames whose transport checksum holds just the pseudo-header sum (offload). */
  readonly partial: number;
}

/** The pseudo-header sum of a TCP/UDP frame: addresses, protocol, transport length. */
function pseudoSum(frame: Uint8Array, p: ParsedFrame): number {
  const n = p.ipVersion === 4 ? 4 : 16;
  const length = p.ipEnd - p.l4;
  const sum = onesSum(frame, p.dstAddress, n, onesSum(frame, p.srcAddress, n, p.protocol));
  return onesComplementAdd(onesComplementAdd(sum, length & 0xffff), Math.floor(length / 65536));
}

function checksumAt(p: ParsedFrame): number {
  return p.l4 + (p.protocol === PROTO_UDP ? 6 : 16);
}

function ipv4HeaderGood(frame: Uint8Array, p: ParsedFrame): boolean {
  const ihl = ((frame[p.l3] ?? 0) & 0x0f) * 4;
  return p.ipVersion !== 4 || onesSum(frame, p.l3, ihl) === 0xffff;
}

/** Whether a frame's transport checksum is valid, partial (offload), or neither. */
function transportState(frame: Uint8Array, p: ParsedFrame): "good" | "partial" | "bad" {
  if (p.l4 < 0) return "good";
  const at = checksumAt(p);
  const field = ((frame[at] ?? 0) << 8) | (frame[at + 1] ?? 0);
  // RFC 768: a UDP checksum of 0 means none was computed.
  if (p.protocol === PROTO_UDP && field === 0 && p.ipVersion === 4) return "good";
  const pseudo = pseudoSum(frame, p);
  if (onesSum(frame, p.l4, p.ipEnd - p.l4, pseudo) === 0xffff) return "good";
  return field === pseudo ? "partial" : "bad";
}

function parsed(frame: Uint8Array): ParsedFrame | null {
  try {
    const p = parseFrame(frame);
    return p.ipVersion === 0 ? null : p;
  } catch {
    return null;
  }
}

/** Counts the frames whose checksums are not valid as captured, and the partial ones. */
export function auditChecksums(frames: readonly Uint8Array[]): ChecksumAudit {
  let valid = 0;
  let notValid = 0;
  let partial = 0;
  for (const frame of frames) {
    const p = parsed(frame);
    if (!p) continue;
    const l4 = transportState(frame, p);
    if (ipv4HeaderGood(frame, p) && l4 === "good") valid++;
    else {
      notValid++;
      if (l4 === "partial") partial++;
    }
  }
  return { valid, notValid, partial };
}

/**
 * A copy of the frame with its IPv4 header checksum and (unless it is a
 * fragment, whose transport checksum covers the whole datagram) its TCP or
 * UDP checksum computed afresh; the frame itself when it is not IP.
 */
export function recomputeChecksums(frame: Uint8Array): Uint8Array {
  const p = parsed(frame);
  if (!p) return frame;
  const out = frame.slice();
  const v = new DataView(out.buffer);
  if (p.ipVersion === 4) {
    const ihl = ((out[p.l3] ?? 0) & 0x0f) * 4;
    v.setUint16(p.l3 + 10, 0);
    v.setUint16(p.l3 + 10, ~onesSum(out, p.l3, ihl) & 0xffff);
  }
  if (p.l4 >= 0) {
    const at = checksumAt(p);
    v.setUint16(at, 0);
    let c = ~onesSum(out, p.l4, p.ipEnd - p.l4, pseudoSum(out, p)) & 0xffff;
    if (p.protocol === PROTO_UDP && c === 0) c = 0xffff;
    v.setUint16(at, c);
  }
  return out;
}
