// Large send offload (LSO/GSO) and UDP segmentation, and per-frame receive
// checksum validation: the NIC's side of checksum offload.
//
// A large send is a header template (Ethernet [+ 802.1Q] + IPv4/IPv6 [+
// options / extension headers] + TCP/UDP [+ options]) and a payload. As NDIS
// specifies for LSO, the template's TCP (or UDP) checksum field holds the
// pseudo-header partial sum of source, destination and protocol, without the
// length. segment() writes each segment, header then payload, back to back
// into `out`, and one table entry per segment into `table`:
//
//   out:   | hdr 0 | payload 0 (mss) | hdr 1 | payload 1 (mss) | ... | hdr n-1 | last |
//   table: | u32 offset 0 | u32 length 0 | u32 offset 1 | u32 length 1 | ...
//
// Per segment (NDIS LSO; Linux tcp_gso_segment): IPv4 total length / IPv6 payload
// length, IPv4 ID by mode, MF = 0 and fragment offset 0 (DF kept), TCP
// sequence advanced by the payload already sent, FIN and PSH on the last
// segment only, CWR on the first only (Linux; DPDK keeps it on all), options
// copied unaltered, IPv4 header checksum and TCP/UDP checksum computed.
// The caller (src/net/lso.ts) validates the template and sizes the regions.

import { copyAndSumRaw, copyShort, fold64, onesSum, swap16 } from "./checksum";

/** flags bit: the template is IPv6 (else IPv4). */
@inline const FLAG_IPV6: u32 = 1;
/** flags bit: UDP segmentation (else TCP). */
@inline const FLAG_UDP: u32 = 2;
/** flags bits 2-3: IPv4 ID mode. */
@inline const ID_MODE_SHIFT: u32 = 2;
/** ID mode: +1 per segment, wrapping at 0xFFFF. */
@inline const ID_INCREMENT: u32 = 0;
/** ID mode: every segment keeps the template's ID. */
@inline const ID_FIXED: u32 = 1;
/** ID mode: LSOv2's 15-bit wrap: 0x7FFE, 0x7FFF, 0x0000, ... */
@inline const ID_WRAP15: u32 = 2;
/** flags bit: keep CWR on every segment (DPDK) instead of the first only. */
@inline const FLAG_CWR_ALL: u32 = 16;

@inline const TCP_FIN: u32 = 0x01;
@inline const TCP_PSH: u32 = 0x08;
@inline const TCP_CWR: u32 = 0x80;
@inline const IPV4_DF: u32 = 0x4000;
@inline const IPV6_HEADER: u32 = 40;

/** checkFrame result bit: the IPv4 header checksum is good (always set for IPv6). */
@inline const GOOD_IP: u32 = 1;
/** checkFrame result bit: the TCP/UDP checksum is good. */
@inline const GOOD_L4: u32 = 2;

@inline function loadBE16(ptr: usize): u32 {
  return (<u32>load<u8>(ptr) << 8) | <u32>load<u8>(ptr, 1);
}

@inline function storeBE16(ptr: usize, value: u32): void {
  store<u16>(ptr, bswap<u16>(<u16>value));
}

@inline function loadBE32(ptr: usize): u32 {
  return bswap<u32>(load<u32>(ptr));
}

@inline function storeBE32(ptr: usize, value: u32): void {
  store<u32>(ptr, bswap<u32>(value));
}

/**
 * Folds a sum of a few 16-bit values (under 2^20 here: at most eight terms)
 * to 16 bits with end-around carries; two steps suffice below 2^32 - 2^16.
 */
@inline function fold32(x: u32): u32 {
  x = (x & 0xffff) + (x >> 16);
  return (x & 0xffff) + (x >> 16);
}

/** One's-complement addition of two partial sums (any u32 inputs). */
@inline function addSums(a: u32, b: u32): u32 {
  let s = <u64>a + <u64>b;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return <u32>s;
}

/**
 * Cuts a large send into segments of `mss` payload bytes (the last may be
 * shorter). `hdr`/`hdrLength`: the template; `l3`/`l4`: offsets of the IP and
 * TCP/UDP headers inside it. Returns the number of segments written.
 */
export function segment(
  hdr: usize,
  hdrLength: u32,
  l3: u32,
  l4: u32,
  flags: u32,
  payload: usize,
  payloadLength: u32,
  mss: u32,
  out: usize,
  table: usize,
): u32 {
  const ipv6 = (flags & FLAG_IPV6) != 0;
  const udp = (flags & FLAG_UDP) != 0;
  const idMode = (flags >> ID_MODE_SHIFT) & 3;
  const checksumAt: u32 = udp ? 6 : 16;
  const seed = loadBE16(hdr + l4 + checksumAt);
  const l4HeaderLength = hdrLength - l4;
  const seq0 = udp ? 0 : loadBE32(hdr + l4 + 4);
  const id0 = ipv6 ? 0 : loadBE16(hdr + l3 + 4);
  const fragment0 = ipv6 ? 0 : loadBE16(hdr + l3 + 6);
  const tcpFlags0 = udp ? 0 : <u32>load<u8>(hdr + l4 + 13);
  const count: u32 = payloadLength == 0 ? 1 : (payloadLength + mss - 1) / mss;
  // Header sums are taken once, from the template, without the fields that
  // change per segment (RFC 1624 style: adding ~x subtracts x); each segment
  // then adds its own values. This keeps per-segment work to a header copy,
  // a few stores and one fused copy-and-sum of the payload.
  let ipBase: u32 = 0;
  if (!ipv6) {
    const ipRaw = onesSum(hdr + l3, l4 - l3, 0);
    ipBase = addSums(ipRaw, ~loadBE16(hdr + l3 + 10) & 0xffff);
    ipBase = addSums(ipBase, ~loadBE16(hdr + l3 + 2) & 0xffff);
    ipBase = addSums(ipBase, ~id0 & 0xffff);
    ipBase = addSums(ipBase, ~fragment0 & 0xffff);
    ipBase = addSums(ipBase, fragment0 & IPV4_DF);
  }
  const l4Raw = onesSum(hdr + l4, l4HeaderLength, 0);
  let l4Base = addSums(l4Raw, ~seed & 0xffff);
  const word12 = udp ? 0 : loadBE16(hdr + l4 + 12);
  if (udp) {
    l4Base = addSums(l4Base, ~loadBE16(hdr + l4 + 4) & 0xffff);
  } else {
    l4Base = addSums(l4Base, ~(seq0 >>> 16) & 0xffff);
    l4Base = addSums(l4Base, ~seq0 & 0xffff);
    l4Base = addSums(l4Base, ~word12 & 0xffff);
  }
  // The pseudo-header's addresses and protocol, which the template carried.
  l4Base = addSums(l4Base, seed);
  let frame = out;
  let sent: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const segmentLength = min<u32>(mss, payloadLength - sent);
    copyShort(frame, hdr, hdrLength);
    if (ipv6) {
      storeBE16(frame + l3 + 4, hdrLength - l3 - IPV6_HEADER + segmentLength);
    } else {
      const totalLength = hdrLength - l3 + segmentLength;
      let id = id0;
      if (idMode == ID_INCREMENT) id = (id0 + i) & 0xffff;
      else if (idMode == ID_WRAP15) id = (id0 + i) & 0x7fff;
      else if (idMode != ID_FIXED) id = id0;
      storeBE16(frame + l3 + 2, totalLength);
      storeBE16(frame + l3 + 4, id);
      storeBE16(frame + l3 + 6, fragment0 & IPV4_DF);
      // Partial sums add as plain integers and fold once (16-bit values: no
      // carry is lost in a u64).
      storeBE16(frame + l3 + 10, ~fold32(ipBase + totalLength + id) & 0xffff);
    }
    const l4Length = l4HeaderLength + segmentLength;
    // The pseudo-header's length, then the header fields of this segment.
    let sum: u32 = l4Base + l4Length;
    if (udp) {
      storeBE16(frame + l4 + 4, l4Length);
      sum += l4Length;
    } else {
      const seq = seq0 + sent;
      storeBE32(frame + l4 + 4, seq);
      let f = tcpFlags0;
      if (i + 1 < count) f &= ~(TCP_FIN | TCP_PSH);
      if (i > 0 && (flags & FLAG_CWR_ALL) == 0) f &= ~TCP_CWR;
      store<u8>(frame + l4 + 13, <u8>f);
      sum += (seq >>> 16) + (seq & 0xffff) + ((word12 & 0xff00) | f);
    }
    const raw = copyAndSumRaw(frame + hdrLength, payload + sent, segmentLength);
    let checksum = ~fold32(sum + swap16(fold64(raw))) & 0xffff;
    // RFC 768: a computed UDP checksum of zero is sent as all ones.
    if (udp && checksum == 0) checksum = 0xffff;
    storeBE16(frame + l4 + checksumAt, checksum);
    store<u32>(table + (<usize>i << 3), <u32>(frame - out));
    store<u32>(table + (<usize>i << 3), hdrLength + segmentLength, 4);
    frame += <usize>(hdrLength + segmentLength);
    sent += segmentLength;
  }
  return count;
}

/**
 * Validates one received frame's checksums. `l3`/`l4`: offsets of the IP and
 * TCP/UDP headers, `end`: the IP datagram's end, `dst`: offset of the
 * destination address the pseudo-header uses (IPv6: the final destination),
 * all relative to `frame`. flags: FLAG_IPV6, FLAG_UDP.
 * Returns GOOD_IP | GOOD_L4 bits.
 */
export function checkFrame(frame: usize, l3: u32, l4: u32, end: u32, dst: u32, flags: u32): u32 {
  const ipv6 = (flags & FLAG_IPV6) != 0;
  const udp = (flags & FLAG_UDP) != 0;
  let good: u32 = 0;
  let pseudo: u32;
  const l4Length = end - l4;
  const protocol: u32 = udp ? 17 : 6;
  if (ipv6) {
    good |= GOOD_IP;
    pseudo = onesSum(frame + l3 + 8, 16, onesSum(frame + dst, 16, addSums(protocol, l4Length)));
  } else {
    if (onesSum(frame + l3, l4 - l3, 0) == 0xffff) good |= GOOD_IP;
    pseudo = onesSum(frame + l3 + 12, 4, onesSum(frame + dst, 4, addSums(protocol, l4Length)));
  }
  // RFC 768: an IPv4 UDP checksum of zero means "not computed".
  if (udp && !ipv6 && load<u16>(frame + l4 + 6) == 0) return good | GOOD_L4;
  if (onesSum(frame + l4, l4Length, pseudo) == 0xffff) good |= GOOD_L4;
  return good;
}
