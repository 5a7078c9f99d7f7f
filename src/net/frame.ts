import { FrameError } from "./errors.js";

/*
 * Frame layout as hvlab parses and builds it (all fields big-endian):
 *
 *   0        6        12         (16)        14/18
 *   +--------+--------+----------+-----------+---------------------------+
 *   | dst MAC| src MAC| [0x8100  | TCI]      | EtherType | IP header ...  |
 *   +--------+--------+----------+-----------+---------------------------+
 *                      802.1Q tag: PCP(3) DEI(1) VLAN ID(12)
 *
 *   IPv4 (IHL * 4 bytes, 20 to 60)          IPv6 (40 bytes + extension headers)
 *   0  ver|IHL  tos  total length           0  ver|class|flow label
 *   4  ID           flags|fragment offset   4  payload length  next  hop limit
 *   8  TTL  proto   header checksum         8  source (16)
 *   12 source       16 destination          24 destination (16)
 *   20 options ...                          40 hop-by-hop(0) / routing(43) /
 *                                              fragment(44) / dest options(60)
 *
 *   TCP (data offset * 4 bytes, 20 to 60)   UDP (8 bytes)
 *   0  src port  dst port                   0  src port  dst port
 *   4  sequence number                      4  length    checksum
 *   8  acknowledgment number
 *   12 offset|flags  window
 *   16 checksum  urgent pointer
 *   20 options (MSS, SACK, timestamps ...)
 */

/** EtherType of IPv4. */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType of IPv6. */
export const ETHERTYPE_IPV6 = 0x86dd;
/** EtherType (TPID) of an 802.1Q VLAN tag. */
export const ETHERTYPE_VLAN = 0x8100;
/** IP protocol number of TCP. */
export const PROTO_TCP = 6;
/** IP protocol number of UDP. */
export const PROTO_UDP = 17;
/** Bytes of an Ethernet II header without a tag. */
export const ETHERNET_HEADER = 14;
/** Bytes of an 802.1Q tag. */
export const VLAN_TAG = 4;
/** TCP flag bits (byte 13 of the TCP header). */
export const TCP_FLAGS = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** Extension headers followed before giving up (a bound against hostile chains). */
const MAX_EXTENSION_HEADERS = 8;

/** What {@link parseFrame} found, as offsets relative to the frame's start. */
export interface ParsedFrame {
  /** Bytes of the frame (the buffer given; may include Ethernet padding). */
  readonly length: number;
  /** 802.1Q VLAN ID, when tagged. */
  readonly vlan: number | null;
  /** EtherType after any tag. */
  readonly etherType: number;
  /** Offset of the IP header, or -1 when the frame is not IP. */
  readonly l3: number;
  /** 4, 6, or 0 when not IP. */
  readonly ipVersion: 0 | 4 | 6;
  /** Offset one past the IP datagram (from its length field): trailing bytes are padding. */
  readonly ipEnd: number;
  /** Upper-layer protocol (after IPv6 extension headers); -1 when not IP or none. */
  readonly protocol: number;
  /** A fragment (MF set or offset non-zero): no transport header is parsed. */
  readonly fragment: boolean;
  /** Offset of the source address (4 or 16 bytes). */
  readonly srcAddress: number;
  /** Offset of the destination address the pseudo-header uses (IPv6: the final one). */
  readonly dstAddress: number;
  /** Offset of the TCP/UDP header, or -1. */
  readonly l4: number;
  /** Bytes of the TCP/UDP header (TCP: with options). */
  readonly l4HeaderLength: number;
  /** Offset of the transport payload. */
  readonly payload: number;
  /** Bytes of transport payload. */
  readonly payloadLength: number;
}

/** How declared lengths are read. */
export interface ParseOptions {
  /**
   * A coalesced super-frame or a large send's template: an IPv4 total length,
   * IPv6 payload length or UDP length of 0 means "to the end of the buffer"
   * (the send is larger than the 16-bit field), as Linux BIG TCP writes them.
   */
  readonly superFrame?: boolean;
  /**
   * Bytes of payload that follow the buffer elsewhere (a large send's
   * template: the length fields count a payload the buffer does not hold).
   * Headers must still lie wholly inside the buffer.
   */
  readonly payloadBeyond?: number;
}

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

/**
 * Parses and bounds-checks a frame in `bytes[start, start + length)`: every
 * field is checked against the buffer before it is read.
 *
 * @throws FrameError naming the field and its offset when a check fails.
 */
export function parseFrame(
  bytes: Uint8Array,
  start = 0,
  length = bytes.length - start,
  options: ParseOptions = {},
): ParsedFrame {
  if (start < 0 || length < 0 || start + length > bytes.length) {
    throw new FrameError(
      "truncated",
      0,
      `frame [${start}, ${start + length}) is outside its buffer of ${bytes.length} bytes`,
    );
  }
  const b = start === 0 && length === bytes.length ? bytes : bytes.subarray(start, start + length);
  const superFrame = options.superFrame === true;
  const beyond = options.payloadBeyond ?? 0;
  if (!Number.isSafeInteger(beyond) || beyond < 0) {
    throw new FrameError(
      "too-large",
      0,
      `payload beyond the buffer must be a byte count, not ${beyond}`,
    );
  }
  // Length fields are checked against everything the datagram holds; header
  // reads against the bytes actually here.
  const declared = length + beyond;
  if (length < ETHERNET_HEADER) {
    throw new FrameError("truncated", 0, `${length} bytes is shorter than an Ethernet header (14)`);
  }
  let etherType = be16(b, 12);
  let l3 = ETHERNET_HEADER;
  let vlan: number | null = null;
  if (etherType === ETHERTYPE_VLAN) {
    if (length < ETHERNET_HEADER + VLAN_TAG) {
      throw new FrameError("truncated", 12, `${length} bytes is too short for an 802.1Q tag`);
    }
    vlan = be16(b, 14) & 0x0fff;
    etherType = be16(b, 16);
    l3 += VLAN_TAG;
  }
  let ipVersion: 4 | 6;
  let ipEnd: number;
  let protocol: number;
  let l4: number;
  let fragment = false;
  let srcAddress: number;
  let dstAddress: number;
  if (etherType === ETHERTYPE_IPV4) {
    ipVersion = 4;
    if (length < l3 + 20)
      throw new FrameError("truncated", l3, `IPv4 header needs 20 bytes, ${length - l3} left`);
    const version = (b[l3] ?? 0) >>> 4;
    if (version !== 4)
      throw new FrameError("bad-version", l3, `EtherType IPv4 but IP version ${version}`);
    const ihl = (b[l3] ?? 0) & 0x0f;
    if (ihl < 5) throw new FrameError("bad-ihl", l3, `IHL ${ihl} is under the minimum of 5`);
    if (l3 + ihl * 4 > length) {
      throw new FrameError(
        "bad-ihl",
        l3,
        `IHL ${ihl} (${ihl * 4} bytes) runs past the frame's end (${length - l3} bytes left)`,
      );
    }
    const total = be16(b, l3 + 2);
    if (total === 0 && superFrame && declared - l3 > 0xffff) ipEnd = declared;
    else {
      if (total < ihl * 4 || l3 + total > declared || (beyond > 0 && l3 + total !== declared)) {
        throw new FrameError(
          "bad-total-length",
          l3 + 2,
          `total length ${total} disagrees with header ${ihl * 4} and buffer ${declared - l3} bytes`,
        );
      }
      ipEnd = l3 + total;
    }
    const fragmentField = be16(b, l3 + 6);
    fragment = (fragmentField & 0x2000) !== 0 || (fragmentField & 0x1fff) !== 0;
    protocol = b[l3 + 9] ?? 0;
    l4 = l3 + ihl * 4;
    srcAddress = l3 + 12;
    dstAddress = l3 + 16;
  } else if (etherType === ETHERTYPE_IPV6) {
    ipVersion = 6;
    if (length < l3 + 40)
      throw new FrameError("truncated", l3, `IPv6 header needs 40 bytes, ${length - l3} left`);
    const version = (b[l3] ?? 0) >>> 4;
    if (version !== 6)
      throw new FrameError("bad-version", l3, `EtherType IPv6 but IP version ${version}`);
    const payloadLength = be16(b, l3 + 4);
    if (payloadLength === 0 && superFrame && declared - l3 - 40 > 0xffff) ipEnd = declared;
    else {
      if (
        l3 + 40 + payloadLength > declared ||
        (beyond > 0 && l3 + 40 + payloadLength !== declared)
      ) {
        throw new FrameError(
          "bad-total-length",
          l3 + 4,
          `payload length ${payloadLength} disagrees with the ${declared - l3 - 40} bytes after the header`,
        );
      }
      ipEnd = l3 + 40 + payloadLength;
    }
    srcAddress = l3 + 8;
    dstAddress = l3 + 24;
    let next = b[l3 + 6] ?? 0;
    let at = l3 + 40;
    for (let n = 0; ; n++) {
      if (next !== 0 && next !== 43 && next !== 44 && next !== 60) break;
      if (n >= MAX_EXTENSION_HEADERS) {
        throw new FrameError(
          "bad-extension-header",
          at,
          `more than ${MAX_EXTENSION_HEADERS} extension headers`,
        );
      }
      if (at + 8 > Math.min(ipEnd, length))
        throw new FrameError(
          "bad-extension-header",
          at,
          "extension header runs past the datagram's end",
        );
      const headerLength = next === 44 ? 8 : ((b[at + 1] ?? 0) + 1) * 8;
      if (at + headerLength > Math.min(ipEnd, length)) {
        throw new FrameError(
          "bad-extension-header",
          at,
          `extension header of ${headerLength} bytes runs past the datagram's end`,
        );
      }
      if (next === 44) {
        const field = be16(b, at + 2);
        if ((field & 0xfff8) !== 0 || (field & 1) !== 0) fragment = true;
      } else if (next === 43) {
        // RFC 8200 section 8.1: with a routing header, the pseudo-header
        // carries the final destination.
        const type = b[at + 2] ?? 0;
        const segmentsLeft = b[at + 3] ?? 0;
        const addresses = Math.floor(((b[at + 1] ?? 0) * 8) / 16);
        if (segmentsLeft > 0 && addresses > 0) {
          if (type === 0 || type === 2) dstAddress = at + 8 + (addresses - 1) * 16;
          else if (type === 4) dstAddress = at + 8;
        }
      }
      next = b[at] ?? 0;
      at += headerLength;
    }
    protocol = next;
    l4 = at;
    if (l4 > length)
      throw new FrameError("truncated", length, "extension headers run past the buffer");
  } else {
    return {
      length,
      vlan,
      etherType,
      l3: -1,
      ipVersion: 0,
      ipEnd: length,
      protocol: -1,
      fragment: false,
      srcAddress: -1,
      dstAddress: -1,
      l4: -1,
      l4HeaderLength: 0,
      payload: l3,
      payloadLength: length - l3,
    };
  }
  if (fragment || (protocol !== PROTO_TCP && protocol !== PROTO_UDP)) {
    return {
      length,
      vlan,
      etherType,
      l3,
      ipVersion,
      ipEnd,
      protocol,
      fragment,
      srcAddress,
      dstAddress,
      l4: -1,
      l4HeaderLength: 0,
      payload: l4,
      payloadLength: ipEnd - l4,
    };
  }
  let l4HeaderLength: number;
  // Transport headers must lie inside both the datagram and the buffer.
  const limit = Math.min(ipEnd, length);
  if (protocol === PROTO_TCP) {
    if (l4 + 20 > limit)
      throw new FrameError(
        "truncated",
        l4,
        `TCP header needs 20 bytes, ${ipEnd - l4} left in the datagram`,
      );
    const dataOffset = (b[l4 + 12] ?? 0) >>> 4;
    if (dataOffset < 5)
      throw new FrameError(
        "bad-data-offset",
        l4 + 12,
        `TCP data offset ${dataOffset} is under the minimum of 5`,
      );
    if (l4 + dataOffset * 4 > limit) {
      throw new FrameError(
        "bad-data-offset",
        l4 + 12,
        `TCP data offset ${dataOffset} (${dataOffset * 4} bytes) runs past the datagram's end (${ipEnd - l4} bytes left)`,
      );
    }
    l4HeaderLength = dataOffset * 4;
  } else {
    if (l4 + 8 > limit)
      throw new FrameError(
        "truncated",
        l4,
        `UDP header needs 8 bytes, ${ipEnd - l4} left in the datagram`,
      );
    const udpLength = be16(b, l4 + 4);
    if (!(udpLength === 0 && superFrame && ipEnd - l4 > 0xffff) && udpLength !== ipEnd - l4) {
      throw new FrameError(
        "bad-udp-length",
        l4 + 4,
        `UDP length ${udpLength} disagrees with the datagram (${ipEnd - l4} bytes)`,
      );
    }
    l4HeaderLength = 8;
  }
  // One object literal of one shape for every return: parsing is on the
  // receive path's per-frame budget.
  return {
    length,
    vlan,
    etherType,
    l3,
    ipVersion,
    ipEnd,
    protocol,
    fragment,
    srcAddress,
    dstAddress,
    l4,
    l4HeaderLength,
    payload: l4 + l4HeaderLength,
    payloadLength: ipEnd - l4 - l4HeaderLength,
  };
}

/** The destination MAC address of a frame as a 48-bit number (for filter lookups). */
export function destinationMac(bytes: Uint8Array, start = 0): number {
  let mac = 0;
  for (let i = 0; i < 6; i++) mac = mac * 256 + (bytes[start + i] ?? 0);
  return mac;
}

/** Whether a MAC address (48-bit number) is a group address: multicast or broadcast. */
export function isGroupMac(mac: number): boolean {
  return Math.floor(mac / 2 ** 40) % 2 === 1;
}
