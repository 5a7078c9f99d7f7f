import { onesAdd, onesSumOracle } from "./checksum.js";

/** How the oracle segments (the same choices the kernel takes as flags). */
export interface SegmentOracleOptions {
  readonly l3: number;
  readonly l4: number;
  readonly ipv6: boolean;
  readonly udp: boolean;
  readonly mss: number;
  readonly idMode: "increment" | "fixed" | "wrap15";
  /** Keep CWR on every segment (DPDK) rather than the first only (Linux). */
  readonly cwrOnAll: boolean;
}

/**
 * The plain TypeScript oracle for assembly/segment.ts: builds each segment of
 * a large send one at a time with a DataView and the byte-at-a-time checksum,
 * following NDIS's LSO rules and Linux's tcp_gso_segment rule by rule (docs/references.md).
 */
export function segmentOracle(
  template: Uint8Array,
  payload: Uint8Array,
  o: SegmentOracleOptions,
): Uint8Array[] {
  const hdr = template.length;
  const tv = new DataView(template.buffer, template.byteOffset, template.byteLength);
  const checksumAt = o.l4 + (o.udp ? 6 : 16);
  const seed = tv.getUint16(checksumAt);
  const count = payload.length === 0 ? 1 : Math.ceil(payload.length / o.mss);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const offset = i * o.mss;
    const n = Math.min(o.mss, payload.length - offset);
    const f = new Uint8Array(hdr + n);
    const v = new DataView(f.buffer);
    f.set(template);
    f.set(payload.subarray(offset, offset + n), hdr);
    if (o.ipv6) {
      v.setUint16(o.l3 + 4, hdr - o.l3 - 40 + n);
    } else {
      v.setUint16(o.l3 + 2, hdr - o.l3 + n);
      const id0 = tv.getUint16(o.l3 + 4);
      const id =
        o.idMode === "fixed"
          ? id0
          : o.idMode === "wrap15"
            ? (id0 + i) % 0x8000
            : (id0 + i) % 0x10000;
      v.setUint16(o.l3 + 4, id);
      v.setUint16(o.l3 + 6, tv.getUint16(o.l3 + 6) & 0x4000);
      v.setUint16(o.l3 + 10, 0);
      v.setUint16(o.l3 + 10, ~onesSumOracle(f, o.l3, o.l4 - o.l3) & 0xffff);
    }
    const l4Length = hdr - o.l4 + n;
    if (o.udp) {
      v.setUint16(o.l4 + 4, l4Length);
    } else {
      v.setUint32(o.l4 + 4, (tv.getUint32(o.l4 + 4) + offset) >>> 0);
      let flags = template[o.l4 + 13] ?? 0;
      if (i < count - 1) flags &= ~(0x01 | 0x08);
      if (i > 0 && !o.cwrOnAll) flags &= ~0x80;
      f[o.l4 + 13] = flags;
    }
    v.setUint16(checksumAt, 0);
    let c = ~onesSumOracle(f, o.l4, l4Length, onesAdd(seed, l4Length)) & 0xffff;
    if (o.udp && c === 0) c = 0xffff;
    v.setUint16(checksumAt, c);
    out.push(f);
  }
  return out;
}
