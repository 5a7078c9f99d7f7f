import type { ChecksumKernel } from "../wasm/checksum.js";
import type { Segmenter, SendPlan } from "./lso.js";

/*
 * A send with segmentation offload off: the stack itself cuts the payload
 * into MSS-sized packets, one at a time, as Linux does without GSO/TSO
 * (tcp_sendmsg building each skb). Per packet it copies the headers, fixes
 * the lengths, ID, sequence number and edge flags, and copies the payload
 * piece while summing it (csum_partial_copy), then writes both checksums.
 * It writes the same frames, at the same places, as the segmentation
 * kernel does with offload on, so the two can be compared and timed.
 */

const TCP_FIN_PSH = 0x09;
const TCP_CWR = 0x80;
const IPV4_DF = 0x4000;

function fold(a: number, b: number): number {
  let s = (a & 0xffff) + (b & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}

/**
 * Segments a planned send packet by packet with the checksum kernel, into
 * the segmenter's output region; returns the number of segments written.
 * The plan must come from `segmenter.plan` (template and payload loaded).
 */
export function segmentInSoftware(
  segmenter: Segmenter,
  plan: SendPlan,
  checksum: ChecksumKernel,
): number {
  const memory = segmenter.layout.memory;
  const p = plan.parsed;
  const hdr = plan.headerLength;
  const ipv6 = (plan.flags & 1) !== 0;
  const udp = (plan.flags & 2) !== 0;
  const idMode = (plan.flags >>> 2) & 3;
  const cwrOnAll = (plan.flags & 16) !== 0;
  const template = segmenter.template.bytes(memory).subarray(0, hdr);
  const tv = new DataView(template.buffer, template.byteOffset, hdr);
  const out = segmenter.output.bytes(memory);
  const ov = new DataView(out.buffer, out.byteOffset, out.byteLength);
  segmenter.output.check(0, plan.outputBytes, "segments");
  const table = new Uint32Array(
    memory.buffer,
    segmenter.table.check(0, plan.segments * 8, "segment table"),
    plan.segments * 2,
  );
  const checksumAt = p.l4 + (udp ? 6 : 16);
  const seed = tv.getUint16(checksumAt);
  const id0 = ipv6 ? 0 : tv.getUint16(p.l3 + 4);
  const seq0 = udp ? 0 : tv.getUint32(p.l4 + 4);
  let at = 0;
  for (let i = 0; i < plan.segments; i++) {
    const offset = i * plan.mss;
    const n = Math.min(plan.mss, plan.payloadLength - offset);
    out.set(template, at);
    if (ipv6) ov.setUint16(at + p.l3 + 4, hdr - p.l3 - 40 + n);
    else {
      ov.setUint16(at + p.l3 + 2, hdr - p.l3 + n);
      const id = idMode === 1 ? id0 : idMode === 2 ? (id0 + i) & 0x7fff : (id0 + i) & 0xffff;
      ov.setUint16(at + p.l3 + 4, id);
      ov.setUint16(at + p.l3 + 6, tv.getUint16(p.l3 + 6) & IPV4_DF);
      ov.setUint16(at + p.l3 + 10, 0);
      ov.setUint16(at + p.l3 + 10, checksum.checksum(segmenter.output, at + p.l3, p.l4 - p.l3));
    }
    const l4Length = hdr - p.l4 + n;
    if (udp) ov.setUint16(at + p.l4 + 4, l4Length);
    else {
      ov.setUint32(at + p.l4 + 4, (seq0 + offset) >>> 0);
      let flags = template[p.l4 + 13] ?? 0;
      if (i < plan.segments - 1) flags &= ~TCP_FIN_PSH;
      if (i > 0 && !cwrOnAll) flags &= ~TCP_CWR;
      out[at + p.l4 + 13] = flags;
    }
    ov.setUint16(at + checksumAt, 0);
    const payloadSum = checksum.copyAndSum(
      segmenter.output,
      at + hdr,
      segmenter.payload,
      offset,
      n,
    );
    const headerSum = checksum.sum(segmenter.output, at + p.l4, hdr - p.l4, fold(seed, l4Length));
    // The payload starts at an even offset from the transport header only
    // when the header length is even, which TCP and UDP headers always are.
    let c = ~fold(headerSum, payloadSum) & 0xffff;
    if (udp && c === 0) c = 0xffff;
    ov.setUint16(at + checksumAt, c);
    table[i * 2] = at;
    table[i * 2 + 1] = hdr + n;
    at += hdr + n;
  }
  return plan.segments;
}
