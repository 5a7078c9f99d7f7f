import { buildHeaders, type FrameSpec, timestampOption } from "./build.js";
import { TCP_FLAGS } from "./frame.js";
import type { IpIdMode, OffloadKind, SegmentedSend, Segmenter } from "./lso.js";

/** A large send as the commands and the tour describe one. */
export interface LargeSendSpec {
  readonly ipVersion: 4 | 6;
  readonly transport: "tcp" | "udp";
  readonly offload: OffloadKind;
  readonly mtu: number;
  /** Payload bytes handed to the NIC in one send. */
  readonly bytes: number;
  readonly mss?: number;
  readonly vlan?: number;
  /** TCP timestamps option on every segment. */
  readonly timestamps?: boolean;
  readonly ipId?: IpIdMode;
  /** TCP flags of the send (TCP_FLAGS bits); default ACK and PSH. */
  readonly tcpFlags?: number;
  /** Which segments keep CWR: the first (Linux, default) or all (DPDK). */
  readonly cwr?: "first" | "all";
  /** Seed of the payload bytes. */
  readonly seed: number;
  /** First TCP sequence number. */
  readonly seq?: number;
  /** Largest LSOv2 or USO send the NIC accepts (its MaxOffLoadSize). */
  readonly maxSend?: number;
}

/**
 * Destination port of the UDP sends: one of the dynamic range, which IANA
 * never assigns (RFC 6335 section 6) and Wireshark has no dissector for, so
 * tools show the datagrams as plain data (4789, VXLAN's, made Wireshark
 * decode the payload as VXLAN and flag it malformed).
 */
export const USO_DESTINATION_PORT = 49_153;

/** The headers of a large send between two fixed endpoints. */
export function largeSendFrameSpec(spec: LargeSendSpec): FrameSpec {
  return {
    ethernet: {
      dst: "00:15:5d:00:00:02",
      src: "00:15:5d:00:00:01",
      ...(spec.vlan !== undefined ? { vlan: spec.vlan } : {}),
    },
    ip:
      spec.ipVersion === 4
        ? { version: 4, src: "192.0.2.1", dst: "192.0.2.2", id: 0x7ff0 }
        : { version: 6, src: "2001:db8::1", dst: "2001:db8::2" },
    l4:
      spec.transport === "tcp"
        ? {
            kind: "tcp",
            srcPort: 49152,
            dstPort: 445,
            seq: spec.seq ?? 1,
            ack: 1,
            flags: spec.tcpFlags ?? TCP_FLAGS.ACK | TCP_FLAGS.PSH,
            ...(spec.timestamps ? { options: timestampOption(123456, 654321) } : {}),
          }
        : { kind: "udp", srcPort: 49152, dstPort: USO_DESTINATION_PORT },
  };
}

/** Deterministic payload bytes for a seed (a 32-bit LCG: only a fill pattern). */
export function payloadBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** What one large send produced. */
export interface LargeSendResult {
  readonly template: Uint8Array;
  readonly payload: Uint8Array;
  readonly send: SegmentedSend;
  readonly frames: Uint8Array[];
}

/** Builds and segments one large send; returns its frames (copied out). */
export function runLargeSend(segmenter: Segmenter, spec: LargeSendSpec): LargeSendResult {
  const payload = payloadBytes(spec.bytes, spec.seed);
  const { bytes: template } = buildHeaders(largeSendFrameSpec(spec), payload.length);
  const send = segmenter.segment(template, payload, {
    offload: spec.offload,
    mtu: spec.mtu,
    ...(spec.mss !== undefined ? { mss: spec.mss } : {}),
    ...(spec.ipId !== undefined ? { ipId: spec.ipId } : {}),
    ...(spec.cwr !== undefined ? { cwr: spec.cwr } : {}),
    ...(spec.maxSend !== undefined ? { maxSend: spec.maxSend } : {}),
  });
  return { template, payload, send, frames: segmenter.copyFrames(send) };
}
