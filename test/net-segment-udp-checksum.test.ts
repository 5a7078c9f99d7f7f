import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { SegmentFlag, SegmentKernel } from "../src/wasm/segment.js";

/*
 * UDP segmentation's checksum (assembly/segment.ts), on datagrams written
 * and summed by hand in this file. RFC 768: the checksum is the one's
 * complement of the one's complement sum of the pseudo-header, the UDP
 * header and the data; "if the computed checksum is zero, it is transmitted
 * as all ones", since a zero field means no checksum was computed. RFC 8200
 * section 8.1 keeps the rule for IPv6, where a zero field is never valid.
 *
 * The template's checksum field holds the pseudo-header sum of addresses
 * and protocol without the length, as NDIS hands a large send to the NIC.
 */

const ETHERNET = 14;
const PAYLOAD = 600;

let layout: MemoryLayout;
let kernel: SegmentKernel;
let template: Region;
let payload: Region;
let out: Region;
let table: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = SegmentKernel.on(layout.memory);
  template = layout.allocate("udp template", 128);
  payload = layout.allocate("udp payload", 2048);
  out = layout.allocate("udp segments", 4096);
  table = layout.allocate("udp segment table", 64);
});

/** RFC 1071's one's complement sum of `bytes` (an odd last byte padded with zero), from `sum`. */
function onesSum(bytes: Uint8Array, sum = 0): number {
  let s = sum;
  for (let i = 0; i < bytes.length; i += 2) s += ((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

interface Datagram {
  readonly ipVersion: 4 | 6;
  readonly headers: Uint8Array;
  readonly l3: number;
  readonly l4: number;
  readonly src: Uint8Array;
  readonly dst: Uint8Array;
}

/** Ethernet + IPv4 or IPv6 + UDP (53 -> 5353) headers; the checksum field holds the NDIS seed. */
function udpTemplate(ipVersion: 4 | 6): Datagram {
  const l3 = ETHERNET;
  const ipBytes = ipVersion === 4 ? 20 : 40;
  const l4 = l3 + ipBytes;
  const headers = new Uint8Array(l4 + 8);
  const view = new DataView(headers.buffer);
  headers.set([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
  view.setUint16(12, ipVersion === 4 ? 0x0800 : 0x86dd);
  let src: Uint8Array;
  let dst: Uint8Array;
  if (ipVersion === 4) {
    headers[l3] = 0x45;
    view.setUint16(l3 + 2, ipBytes + 8 + PAYLOAD);
    view.setUint16(l3 + 4, 7);
    headers[l3 + 8] = 64;
    headers[l3 + 9] = 17;
    src = Uint8Array.of(10, 0, 0, 1);
    dst = Uint8Array.of(10, 0, 0, 2);
    headers.set(src, l3 + 12);
    headers.set(dst, l3 + 16);
  } else {
    headers[l3] = 0x60;
    view.setUint16(l3 + 4, 8 + PAYLOAD);
    headers[l3 + 6] = 17;
    headers[l3 + 7] = 64;
    src = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 1 : 0));
    dst = Uint8Array.from({ length: 16 }, (_, i) => (i === 0 ? 0xfd : i === 15 ? 2 : 0));
    headers.set(src, l3 + 8);
    headers.set(dst, l3 + 24);
  }
  view.setUint16(l4, 53);
  view.setUint16(l4 + 2, 5353);
  view.setUint16(l4 + 4, 8 + PAYLOAD);
  // NDIS: addresses and protocol, summed, not complemented, no length.
  view.setUint16(l4 + 6, onesSum(Uint8Array.of(0, 17), onesSum(dst, onesSum(src))));
  return { ipVersion, headers, l3, l4, src, dst };
}

/** RFC 768's checksum, complemented, of the datagram with `data`, before the zero rule. */
function computedChecksum(d: Datagram, data: Uint8Array): number {
  const length = 8 + data.length;
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, (53 << 16) | 5353);
  new DataView(header.buffer).setUint16(4, length);
  // The pseudo-header: addresses, then (IPv4) zero, protocol, UDP length;
  // (IPv6) the 32-bit upper-layer length, three zero bytes, next header.
  let sum = onesSum(d.dst, onesSum(d.src));
  sum = onesSum(Uint8Array.of(0, 0, length >>> 8, length & 0xff, 0, 0, 0, 17), sum);
  return ~onesSum(data, onesSum(header, sum)) & 0xffff;
}

/** A payload whose checksum computes to zero: its last word brings the whole sum to 0xFFFF. */
function payloadSummingToZero(d: Datagram): Uint8Array {
  const data = Uint8Array.from({ length: PAYLOAD }, (_, i) => (i * 37 + 11) & 0xff);
  data[PAYLOAD - 2] = 0;
  data[PAYLOAD - 1] = 0;
  const sum = ~computedChecksum(d, data) & 0xffff;
  const word = 0xffff - sum;
  data[PAYLOAD - 2] = word >>> 8;
  data[PAYLOAD - 1] = word & 0xff;
  return data;
}

/** Segments the datagram in one piece (MSS 1200) and returns the frame's UDP checksum field. */
function sentChecksum(d: Datagram, data: Uint8Array): number {
  template.bytes(layout.memory).set(d.headers);
  payload.bytes(layout.memory).set(data);
  const count = kernel.segment({
    template,
    headerLength: d.headers.length,
    l3: d.l3,
    l4: d.l4,
    flags: SegmentFlag.udp | (d.ipVersion === 6 ? SegmentFlag.ipv6 : 0),
    payload,
    payloadLength: data.length,
    mss: 1200,
    out,
    table,
  });
  expect(count).toBe(1);
  const frame = out.bytes(layout.memory);
  return (frame[d.l4 + 6] ?? 0) * 256 + (frame[d.l4 + 7] ?? 0);
}

describe("UDP segmentation: a checksum that computes to zero goes out as all ones (RFC 768)", () => {
  for (const ipVersion of [4, 6] as const) {
    it(`IPv${ipVersion}: an ordinary datagram carries the checksum worked out by hand`, () => {
      const d = udpTemplate(ipVersion);
      const data = Uint8Array.from({ length: PAYLOAD }, (_, i) => (i * 37 + 11) & 0xff);
      const want = computedChecksum(d, data);
      expect(want).not.toBe(0);
      expect(sentChecksum(d, data)).toBe(want);
    });

    it(`IPv${ipVersion}: a datagram whose checksum computes to zero is sent with 0xFFFF`, () => {
      const d = udpTemplate(ipVersion);
      const data = payloadSummingToZero(d);
      // The case is the one asked for: the computed checksum is zero.
      expect(computedChecksum(d, data)).toBe(0);
      expect(sentChecksum(d, data)).toBe(0xffff);
    });
  }
});
