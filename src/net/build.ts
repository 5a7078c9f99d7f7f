import { parseIp, parseMac } from "./address.js";
import { onesComplementAdd, onesSum } from "./byte-checksum.js";
import {
  ETHERNET_HEADER,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_VLAN,
  PROTO_TCP,
  PROTO_UDP,
  VLAN_TAG,
} from "./frame.js";

/** The Ethernet II header, with an optional 802.1Q tag. */
export interface EthernetSpec {
  readonly dst: string;
  readonly src: string;
  /** VLAN ID (1 to 4094) to tag the frame with. */
  readonly vlan?: number;
  /** 802.1Q priority code point (0 to 7). */
  readonly pcp?: number;
}

/** An IPv4 header. */
export interface Ipv4Spec {
  readonly version: 4;
  readonly src: string;
  readonly dst: string;
  readonly ttl?: number;
  readonly tos?: number;
  /** Identification of the (first) datagram. */
  readonly id?: number;
  readonly dontFragment?: boolean;
  /** Options, a multiple of 4 bytes, at most 40. */
  readonly options?: Uint8Array;
}

/** An IPv6 extension header the builder chains in. */
export interface Ipv6Extension {
  /** 0 hop-by-hop options or 60 destination options. */
  readonly type: 0 | 60;
  /** The option bytes after next-header and length: 6, 14, 22 ... bytes. */
  readonly options: Uint8Array;
}

/** An IPv6 header and its extension headers. */
export interface Ipv6Spec {
  readonly version: 6;
  readonly src: string;
  readonly dst: string;
  readonly hopLimit?: number;
  readonly trafficClass?: number;
  readonly flowLabel?: number;
  readonly extensions?: readonly Ipv6Extension[];
}

/** A TCP header. */
export interface TcpSpec {
  readonly kind: "tcp";
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack?: number;
  /** Flag bits (TCP_FLAGS); default ACK. */
  readonly flags?: number;
  readonly window?: number;
  /** Options, a multiple of 4 bytes, at most 40. */
  readonly options?: Uint8Array;
}

/** A UDP header. */
export interface UdpSpec {
  readonly kind: "udp";
  readonly srcPort: number;
  readonly dstPort: number;
}

/** Everything above the payload of a frame. */
export interface FrameSpec {
  readonly ethernet: EthernetSpec;
  readonly ip: Ipv4Spec | Ipv6Spec;
  readonly l4: TcpSpec | UdpSpec;
}

/** Where the headers {@link buildHeaders} wrote lie. */
export interface BuiltHeaders {
  readonly bytes: Uint8Array;
  readonly l3: number;
  readonly l4: number;
}

/** TCP options NOP, NOP, timestamps (RFC 7323): 12 bytes. */
export function timestampOption(tsval: number, tsecr: number): Uint8Array {
  const o = new Uint8Array(12);
  const v = new DataView(o.buffer);
  o[0] = 1;
  o[1] = 1;
  o[2] = 8;
  o[3] = 10;
  v.setUint32(4, tsval >>> 0);
  v.setUint32(8, tsecr >>> 0);
  return o;
}

/** A 16-bit length field's value: the length, or 0 when it does not fit (BIG TCP). */
export function lengthField(length: number): number {
  return length > 0xffff ? 0 : length;
}

function checkOptions(options: Uint8Array | undefined, what: string): number {
  const n = options?.length ?? 0;
  if (n % 4 !== 0 || n > 40)
    throw new RangeError(`${what} options must be a multiple of 4 bytes, at most 40 (got ${n})`);
  return n;
}

/**
 * Writes the headers of a frame carrying `payloadLength` bytes of payload.
 * Length fields hold the true lengths ({@link lengthField} when over 16 bits).
 * Checksum fields: the IPv4 header checksum is computed; the TCP/UDP checksum
 * holds the pseudo-header partial sum without the length, which is what an
 * offloading stack hands the NIC (NDIS LSO and checksum offload).
 */
export function buildHeaders(spec: FrameSpec, payloadLength: number): BuiltHeaders {
  const { ethernet, ip, l4 } = spec;
  const l3 = ETHERNET_HEADER + (ethernet.vlan !== undefined ? VLAN_TAG : 0);
  const ipOptions = ip.version === 4 ? checkOptions(ip.options, "IPv4") : 0;
  const extensions = ip.version === 6 ? (ip.extensions ?? []) : [];
  let extBytes = 0;
  for (const ext of extensions) {
    if ((ext.options.length + 2) % 8 !== 0) {
      throw new RangeError(
        `IPv6 extension options must be 6, 14, 22 ... bytes (got ${ext.options.length})`,
      );
    }
    extBytes += ext.options.length + 2;
  }
  const ipHeader = ip.version === 4 ? 20 + ipOptions : 40 + extBytes;
  const l4Header = l4.kind === "tcp" ? 20 + checkOptions(l4.options, "TCP") : 8;
  const l4at = l3 + ipHeader;
  const bytes = new Uint8Array(l4at + l4Header);
  const v = new DataView(bytes.buffer);
  bytes.set(parseMac(ethernet.dst), 0);
  bytes.set(parseMac(ethernet.src), 6);
  if (ethernet.vlan !== undefined) {
    if (!Number.isInteger(ethernet.vlan) || ethernet.vlan < 0 || ethernet.vlan > 4095) {
      throw new RangeError(`VLAN ID must be 0 to 4095, not ${ethernet.vlan}`);
    }
    v.setUint16(12, ETHERTYPE_VLAN);
    v.setUint16(14, (((ethernet.pcp ?? 0) & 7) << 13) | ethernet.vlan);
  }
  v.setUint16(l3 - 2, ip.version === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
  const protocol = l4.kind === "tcp" ? PROTO_TCP : PROTO_UDP;
  const l4Length = l4Header + payloadLength;
  let pseudo: number;
  if (ip.version === 4) {
    const src = parseIp(ip.src);
    const dst = parseIp(ip.dst);
    if (src.length !== 4 || dst.length !== 4)
      throw new RangeError("IPv4 header with non-IPv4 addresses");
    bytes[l3] = 0x40 | (ipHeader / 4);
    bytes[l3 + 1] = ip.tos ?? 0;
    v.setUint16(l3 + 2, lengthField(ipHeader + l4Length));
    v.setUint16(l3 + 4, (ip.id ?? 0) & 0xffff);
    v.setUint16(l3 + 6, ip.dontFragment === false ? 0 : 0x4000);
    bytes[l3 + 8] = ip.ttl ?? 64;
    bytes[l3 + 9] = protocol;
    bytes.set(src, l3 + 12);
    bytes.set(dst, l3 + 16);
    if (ip.options) bytes.set(ip.options, l3 + 20);
    v.setUint16(l3 + 10, ~onesSum(bytes, l3, ipHeader) & 0xffff);
    pseudo = onesSum(bytes, l3 + 12, 8, protocol);
  } else {
    const src = parseIp(ip.src);
    const dst = parseIp(ip.dst);
    if (src.length !== 16 || dst.length !== 16)
      throw new RangeError("IPv6 header with non-IPv6 addresses");
    v.setUint32(
      l3,
      (6 << 28) | (((ip.trafficClass ?? 0) & 0xff) << 20) | ((ip.flowLabel ?? 0) & 0xfffff),
    );
    v.setUint16(l3 + 4, lengthField(extBytes + l4Length));
    bytes[l3 + 6] = extensions[0]?.type ?? protocol;
    bytes[l3 + 7] = ip.hopLimit ?? 64;
    bytes.set(src, l3 + 8);
    bytes.set(dst, l3 + 24);
    let at = l3 + 40;
    for (const [i, ext] of extensions.entries()) {
      bytes[at] = extensions[i + 1]?.type ?? protocol;
      bytes[at + 1] = (ext.options.length + 2) / 8 - 1;
      bytes.set(ext.options, at + 2);
      at += ext.options.length + 2;
    }
    pseudo = onesSum(bytes, l3 + 8, 32, protocol);
  }
  v.setUint16(l4at, l4.srcPort);
  v.setUint16(l4at + 2, l4.dstPort);
  if (l4.kind === "tcp") {
    v.setUint32(l4at + 4, l4.seq >>> 0);
    v.setUint32(l4at + 8, (l4.ack ?? 0) >>> 0);
    bytes[l4at + 12] = (l4Header / 4) << 4;
    bytes[l4at + 13] = l4.flags ?? 0x10;
    v.setUint16(l4at + 14, l4.window ?? 0xffff);
    v.setUint16(l4at + 16, pseudo);
    if (l4.options) bytes.set(l4.options, l4at + 20);
  } else {
    v.setUint16(l4at + 4, lengthField(l4Length));
    v.setUint16(l4at + 6, pseudo);
  }
  return { bytes, l3, l4: l4at };
}

/**
 * Builds a complete frame with every checksum filled in (by the checksum
 * kernel): what a stack without offload puts on the wire.
 */
export function buildFrame(spec: FrameSpec, payload: Uint8Array): Uint8Array {
  const headers = buildHeaders(spec, payload.length);
  const frame = new Uint8Array(headers.bytes.length + payload.length);
  frame.set(headers.bytes);
  frame.set(payload, headers.bytes.length);
  const v = new DataView(frame.buffer);
  const at = headers.l4 + (spec.l4.kind === "tcp" ? 16 : 6);
  const l4Length = frame.length - headers.l4;
  // The field holds the pseudo-header sum without the length: add the length
  // (as the 32-bit IPv6 length or the 16-bit IPv4 one, folded) and the segment.
  const seed = onesComplementAdd(
    onesComplementAdd(v.getUint16(at), l4Length & 0xffff),
    Math.floor(l4Length / 65536),
  );
  v.setUint16(at, 0);
  let checksum = ~onesSum(frame, headers.l4, l4Length, seed) & 0xffff;
  if (spec.l4.kind === "udp" && checksum === 0) checksum = 0xffff;
  v.setUint16(at, checksum);
  return frame;
}
