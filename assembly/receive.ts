// One processor's share of a VMQ receive round in one call: for every frame
// of its work list, parse (every field bounds-checked), validate the IPv4
// header checksum and the TCP/UDP checksum with its pseudo-header, find the
// VM (the queue's, or the switch's MAC lookup), then per VM coalesce TCP
// segments (RSC/GRO) and write the frames into the VM's receive ring. No
// JavaScript runs per frame; the counters land in the job's result fields.
// The TypeScript oracle (src/oracle/receive.ts) does the same job one frame
// at a time with parseFrame and coalesce(); property tests hold them equal.
//
// The wrapper (src/wasm/receive.ts) checks every region before the call:
// the receive buffer, its frame table, the work list, every ring, the switch
// table and the scratch. The kernel checks what the frames say: a table
// entry outside the buffer, or a header that runs past its frame, is
// counted malformed, never read.
//
// Job (one per processor, in its own region: no line shared between two):
//
//   0        4        8       12       16       20       24       28
//   +--------+--------+-------+--------+--------+--------+--------+--------+
//   | frames | bytes  | table |entries | work   | count  | nrings |nswitch |
//   +--------+--------+-------+--------+--------+--------+--------+--------+
//   32       36       40       44                                        64
//   +--------+--------+--------+-------------------------------------------+
//   | flags  |maxCoal | fanout | (pad)                                     |
//   +--------+--------+--------+-------------------------------------------+
//   64: results (u32): frames, delivered, coalescedSegments, badChecksum,
//       malformed, unknownMac, lookups, ringFull; 96: u64 bytes delivered
//   128: nrings ring entries, then nswitch switch entries, then the
//        scratch (records, per-ring lists, coalescing groups), see below
//
//   work entry (8 B):   | u32 frame index | u32 ring, or 0xFFFFFFFF: switch lookup |
//   table entry (8 B):  | u32 offset in the receive buffer | u32 length |
//   ring entry (16 B):  | u32 address | u32 slots | u32 slotBytes | (pad) |
//   switch entry (16 B):| u32 MAC high 16 bits | u32 MAC low 32 bits | i32 VLAN or -1 | u32 ring |
//
// A ring is drawn in src/net/ring.ts: a 64-byte header (head, tail, slots,
// slotBytes, delivered, ringFull, bytes) then slots of | u32 length | u16
// flags | u16 segments | frame |. Producers claim a slot by compare-and-swap
// on head (with RSS several processors fill one ring).

import { onesSum } from "./checksum";

@inline const JOB_FRAMES: u32 = 0;
@inline const JOB_FRAME_BYTES: u32 = 4;
@inline const JOB_TABLE: u32 = 8;
@inline const JOB_TABLE_ENTRIES: u32 = 12;
@inline const JOB_WORK: u32 = 16;
@inline const JOB_COUNT: u32 = 20;
@inline const JOB_RING_COUNT: u32 = 24;
@inline const JOB_SWITCH_COUNT: u32 = 28;
@inline const JOB_FLAGS: u32 = 32;
@inline const JOB_MAX_COALESCE: u32 = 36;
@inline const JOB_FANOUT: u32 = 40;
@inline const JOB_RESULTS: u32 = 64;
@inline const JOB_BYTES: u32 = 128;

@inline const RESULT_FRAMES: u32 = 0;
@inline const RESULT_DELIVERED: u32 = 4;
@inline const RESULT_COALESCED: u32 = 8;
@inline const RESULT_BAD_CHECKSUM: u32 = 12;
@inline const RESULT_MALFORMED: u32 = 16;
@inline const RESULT_UNKNOWN_MAC: u32 = 20;
@inline const RESULT_LOOKUPS: u32 = 24;
@inline const RESULT_RING_FULL: u32 = 28;
@inline const RESULT_BYTES: u32 = 32;

/** Job flag: coalesce each VM's TCP segments. */
@inline const FLAG_COALESCE: u32 = 1;
/** Job flag: deliver frames that failed validation, marked bad, after the good ones. */
@inline const FLAG_DELIVER_BAD: u32 = 2;
/** Job flag: take every checksum as good (a capture's, trusted). */
@inline const FLAG_TRUST: u32 = 4;

@inline const WORK_ENTRY: u32 = 8;
@inline const TABLE_ENTRY: u32 = 8;
@inline const RING_ENTRY: u32 = 16;
@inline const SWITCH_ENTRY: u32 = 16;
@inline const SWITCH_LOOKUP: u32 = 0xffffffff;

// Ring header fields (src/net/ring.ts RxRingField) and slot layout.
@inline const RING_HEAD: u32 = 0;
@inline const RING_TAIL: u32 = 4;
@inline const RING_DELIVERED: u32 = 16;
@inline const RING_FULL: u32 = 20;
@inline const RING_BYTES: u32 = 24;
@inline const RING_HEADER: u32 = 64;
@inline const SLOT_HEADER: u32 = 8;
@inline const SLOT_CHECKSUM_GOOD: u32 = 1;
@inline const SLOT_COALESCED: u32 = 2;

// Scratch, after the switch entries, for a job of n work entries, r rings, fan-out f
// (most switch entries for one unicast MAC and VLAN), m = n * f (most
// records one ring's list can hold), h = hash slots (a power of two, at
// least 2m and 16):
//
//   records  n x 32 B  one per frame that reached a ring (below)
//   heads    r x 8 B   | u32 first entry | u32 last entry | of each ring's list
//   entries  m x 8 B   | u32 record | u32 next entry |
//   flood    n x 4 B   records of frames to a group MAC (every ring), in order
//   seq      m x 4 B   one ring's records in arrival order (rebuilt per ring)
//   link     m x 4 B   next piece of a coalescing group, by position in seq
//   groups   m x 32 B  one ring's delivery items in order (below)
//   hash     h x 12 B  | u32 ring + 1 (0: empty) | u32 flow key | u32 group |
//
//   record (32 B): | u32 offset | u32 length | u32 ipEnd | u16 l3 | u16 l4
//                  | u16 payload | u16 dst | u16 vlan+1 | u8 kind | u8 bad | (pad to 32)
//   group (32 B):  | u32 record | u32 first piece | u32 last piece | u32 segments
//                  | u32 payload bytes | u32 mss | u32 last payload | u8 last flags
//                  | u8 ID modes | u8 closed | u8 kind |
@inline const RECORD: u32 = 32;
@inline const GROUP: u32 = 32;
@inline const HASH_ENTRY: u32 = 12;
@inline const NONE: u32 = 0xffffffff;

// record.kind: what the parse found.
@inline const KIND_OTHER: u32 = 0; // not IP: no checksum, passes through
@inline const KIND_IP_ONLY: u32 = 1; // fragment, or IP that is neither TCP nor UDP
@inline const KIND_TCP: u32 = 2;
@inline const KIND_UDP: u32 = 3;
@inline const KIND_IPV6: u32 = 4; // bit added to the kinds above for IPv6

// group.kind: a frame delivered as it came, or a TCP group's super-frame.
@inline const ITEM_FRAME: u8 = 0;
@inline const ITEM_GROUP: u8 = 1;

@inline const TCP_FIN: u32 = 0x01;
@inline const TCP_SYN: u32 = 0x02;
@inline const TCP_RST: u32 = 0x04;
@inline const TCP_PSH: u32 = 0x08;
@inline const TCP_CWR: u32 = 0x80;
@inline const FIN_PSH: u32 = TCP_FIN | TCP_PSH;
@inline const EDGE_FLAGS: u32 = FIN_PSH | TCP_CWR;
/** IPv6 extension headers followed before a frame is malformed (src/net/frame.ts). */
@inline const MAX_EXTENSION_HEADERS: u32 = 8;

export const LAYOUT_JOB_BYTES: u32 = JOB_BYTES;
export const LAYOUT_RESULTS: u32 = JOB_RESULTS;
export const LAYOUT_RECORD_BYTES: u32 = RECORD;
export const LAYOUT_GROUP_BYTES: u32 = GROUP;
export const LAYOUT_HASH_ENTRY_BYTES: u32 = HASH_ENTRY;
export const LAYOUT_RING_ENTRY_BYTES: u32 = RING_ENTRY;
export const LAYOUT_SWITCH_ENTRY_BYTES: u32 = SWITCH_ENTRY;
export const LAYOUT_RING_HEADER: u32 = RING_HEADER;
export const LAYOUT_SLOT_HEADER: u32 = SLOT_HEADER;

@inline function be16(p: usize): u32 {
  return (<u32>load<u8>(p) << 8) | <u32>load<u8>(p, 1);
}

@inline function be32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}

@inline function storeBE16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}

/** Copies `n` bytes (a frame or a payload piece): 64 bytes a step, then 16, then the tail. */
@inline function copy(dst: usize, src: usize, n: u32): void {
  const end = src + <usize>n;
  const delta = dst - src;
  let at = src;
  for (; at + 64 <= end; at += 64) {
    const a = v128.load(at);
    const b = v128.load(at, 16);
    const c = v128.load(at, 32);
    const d = v128.load(at, 48);
    v128.store(at + delta, a);
    v128.store(at + delta, b, 16);
    v128.store(at + delta, c, 32);
    v128.store(at + delta, d, 48);
  }
  for (; at + 16 <= end; at += 16) v128.store(at + delta, v128.load(at));
  for (; at + 4 <= end; at += 4) store<u32>(at + delta, load<u32>(at));
  for (; at < end; at++) store<u8>(at + delta, load<u8>(at));
}

/** Whether `n` bytes at `a` and `b` are equal (8 at a time, then bytes). */
@inline function same(a: usize, b: usize, n: u32): bool {
  let i: usize = 0;
  const end = <usize>n;
  for (; i + 8 <= end; i += 8) if (load<u64>(a + i) != load<u64>(b + i)) return false;
  for (; i < end; i++) if (load<u8>(a + i) != load<u8>(b + i)) return false;
  return true;
}

// Per-job state, set by receiveBatch: module globals (one job at a time per
// instance, and each thread has its own instance).
let records: usize = 0;
let heads: usize = 0;
let entries: usize = 0;
let flood: usize = 0;
let seq: usize = 0;
let link: usize = 0;
let groups: usize = 0;
let hash: usize = 0;
let hashMask: u32 = 0;
let entryCount: u32 = 0;
let floodCount: u32 = 0;

// What parse() found, for the frame it was last given.
let pL3: u32 = 0;
let pL4: u32 = 0;
let pPayload: u32 = 0;
let pIpEnd: u32 = 0;
let pDst: u32 = 0;
let pVlan: u32 = 0; // VLAN ID + 1; 0 when untagged
let pKind: u32 = 0;

/**
 * Parses the frame of `length` bytes at `f` as src/net/frame.ts's
 * parseFrame does for a received frame (no super-frame lengths): every
 * field checked against the frame before it is read. Returns false where
 * parseFrame throws.
 */
function parse(f: usize, length: u32): bool {
  if (length < 14) return false;
  let etherType = be16(f + 12);
  let l3: u32 = 14;
  pVlan = 0;
  if (etherType == 0x8100) {
    if (length < 18) return false;
    pVlan = (be16(f + 14) & 0x0fff) + 1;
    etherType = be16(f + 16);
    l3 = 18;
  }
  pL3 = l3;
  let ipEnd: u32;
  let protocol: u32;
  let l4: u32;
  let fragment = false;
  let v6: u32 = 0;
  if (etherType == 0x0800) {
    if (length < l3 + 20) return false;
    const first = <u32>load<u8>(f + l3);
    if (first >> 4 != 4) return false;
    const ihl = first & 0x0f;
    if (ihl < 5 || l3 + ihl * 4 > length) return false;
    const total = be16(f + l3 + 2);
    if (total < ihl * 4 || l3 + total > length) return false;
    ipEnd = l3 + total;
    const fragmentField = be16(f + l3 + 6);
    fragment = (fragmentField & 0x3fff) != 0;
    protocol = <u32>load<u8>(f + l3 + 9);
    l4 = l3 + ihl * 4;
    pDst = l3 + 16;
  } else if (etherType == 0x86dd) {
    if (length < l3 + 40) return false;
    if (<u32>load<u8>(f + l3) >> 4 != 6) return false;
    const payloadLength = be16(f + l3 + 4);
    if (l3 + 40 + payloadLength > length) return false;
    ipEnd = l3 + 40 + payloadLength;
    v6 = KIND_IPV6;
    pDst = l3 + 24;
    let next = <u32>load<u8>(f + l3 + 6);
    let at = l3 + 40;
    for (let n: u32 = 0; ; n++) {
      if (next != 0 && next != 43 && next != 44 && next != 60) break;
      if (n >= MAX_EXTENSION_HEADERS || at + 8 > ipEnd) return false;
      const headerLength: u32 = next == 44 ? 8 : (<u32>load<u8>(f + at + 1) + 1) * 8;
      if (at + headerLength > ipEnd) return false;
      if (next == 44) {
        const field = be16(f + at + 2);
        if ((field & 0xfff9) != 0) fragment = true;
      } else if (next == 43) {
        // RFC 8200 section 8.1: with a routing header, the pseudo-header
        // carries the final destination.
        const type = <u32>load<u8>(f + at + 2);
        const segmentsLeft = <u32>load<u8>(f + at + 3);
        const addresses = (<u32>load<u8>(f + at + 1) * 8) / 16;
        if (segmentsLeft > 0 && addresses > 0) {
          if (type == 0 || type == 2) pDst = at + 8 + (addresses - 1) * 16;
          else if (type == 4) pDst = at + 8;
        }
      }
      next = <u32>load<u8>(f + at);
      at += headerLength;
    }
    protocol = next;
    l4 = at;
  } else {
    pKind = KIND_OTHER;
    pL4 = 0;
    pPayload = l3;
    pIpEnd = length;
    return true;
  }
  pIpEnd = ipEnd;
  pL4 = l4;
  if (fragment || (protocol != 6 && protocol != 17)) {
    pKind = KIND_IP_ONLY | v6;
    pPayload = l4;
    return true;
  }
  if (protocol == 6) {
    if (l4 + 20 > ipEnd) return false;
    const dataOffset = <u32>load<u8>(f + l4 + 12) >> 4;
    if (dataOffset < 5 || l4 + dataOffset * 4 > ipEnd) return false;
    pKind = KIND_TCP | v6;
    pPayload = l4 + dataOffset * 4;
  } else {
    if (l4 + 8 > ipEnd || be16(f + l4 + 4) != ipEnd - l4) return false;
    pKind = KIND_UDP | v6;
    pPayload = l4 + 8;
  }
  return true;
}

/** Whether the parsed frame's checksums are good (assembly/segment.ts checkFrame's rules). */
function checksumsGood(f: usize): bool {
  const kind = pKind & 3;
  const v6 = (pKind & KIND_IPV6) != 0;
  if (kind == KIND_OTHER) return true;
  if (kind == KIND_IP_ONLY) {
    // Only the IPv4 header has a checksum: a fragment's transport checksum
    // covers a datagram this frame does not hold.
    return v6 || onesSum(f + pL3, pL4 - pL3, 0) == 0xffff;
  }
  const udp = kind == KIND_UDP;
  const l4Length = pIpEnd - pL4;
  // The pseudo-header's protocol and length, folded to 16 bits (lengths
  // reach 2^18: two end-around carries).
  let pseudo = <u32>(udp ? 17 : 6) + l4Length;
  pseudo = (pseudo & 0xffff) + (pseudo >> 16);
  pseudo = (pseudo & 0xffff) + (pseudo >> 16);
  if (v6) {
    pseudo = onesSum(f + pL3 + 8, 16, onesSum(f + pDst, 16, pseudo));
  } else {
    if (onesSum(f + pL3, pL4 - pL3, 0) != 0xffff) return false;
    pseudo = onesSum(f + pL3 + 12, 4, onesSum(f + pDst, 4, pseudo));
    // RFC 768: an IPv4 UDP checksum of zero means "not computed".
    if (udp && load<u16>(f + pL4 + 6) == 0) return true;
  }
  return onesSum(f + pL4, l4Length, pseudo) == 0xffff;
}

@inline function recordAt(r: u32): usize {
  return records + <usize>r * RECORD;
}

/** Appends record `r` to ring `ring`'s list. */
@inline function append(ring: u32, r: u32): void {
  const e = entryCount++;
  const entry = entries + <usize>e * 8;
  store<u32>(entry, r);
  store<u32>(entry, NONE, 4);
  const head = heads + <usize>ring * 8;
  const last = load<u32>(head, 4);
  if (last == NONE) store<u32>(head, e);
  else store<u32>(entries + <usize>last * 8, e, 4);
  store<u32>(head, e, 4);
}

/**
 * A flow's key, as src/net/coalesce.ts's flowKey mixes it: VLAN, protocol,
 * ports and addresses into 32 bits. A collision only stops two flows from
 * merging (every invariant header byte is compared before a segment joins).
 */
function flowKey(f: usize, rec: usize): u32 {
  const vlan1 = <u32>load<u16>(rec, 20);
  const kind = <u32>load<u8>(rec, 22);
  const v6 = (kind & KIND_IPV6) != 0;
  const l3 = <u32>load<u16>(rec, 12);
  const l4 = <u32>load<u16>(rec, 14);
  const protocol: u32 = (kind & 3) == KIND_UDP ? 17 : 6;
  let h = ((vlan1 == 0 ? 0xfff : vlan1 - 1) ^ (protocol << 12)) * 0x9e3779b1;
  h = (h ^ be32(f + l4)) * 0x85ebca6b;
  const src = f + l3 + (v6 ? 8 : 12);
  const dst = f + <u32>load<u16>(rec, 18);
  const n: u32 = v6 ? 16 : 4;
  for (let i: u32 = 0; i < n; i += 4) {
    h = (h ^ be32(src + i)) * 0xc2b2ae35;
    h = (h ^ be32(dst + i)) * 0x27d4eb2f;
  }
  return h ^ (h >> 15);
}

/** The hash slot of `key` for ring stamp `stamp`: its own, or the empty one that ends its probe. */
function hashSlot(stamp: u32, key: u32): usize {
  let i = (key * 0x9e3779b1) >> 7;
  for (;;) {
    const slot = hash + <usize>(i & hashMask) * HASH_ENTRY;
    if (load<u32>(slot) != stamp || load<u32>(slot, 4) == key) return slot;
    i++;
  }
  return 0; // not reached: the table is never more than half full
}

/** IPv4 ID modes (bit 0 +1, bit 1 fixed, bit 2 15-bit wrap) `id` keeps for segment `index`. */
@inline function idModes(id0: u32, id: u32, index: u32, modes: u32): u32 {
  let m: u32 = 0;
  if (id == ((id0 + index) & 0xffff)) m |= 1;
  if (id == id0) m |= 2;
  if (id == ((id0 + index) & 0x7fff)) m |= 4;
  return modes & m;
}

/**
 * Whether the segment (record `rec` of frame `f`) follows on group `g`
 * (src/net/coalesce.ts canAppend): same header layout, a full previous
 * segment, room under `maxBytes`, every header byte equal but lengths, ID,
 * checksums, sequence and edge flags, the next sequence number and an ID
 * that keeps one ID mode.
 */
function canAppend(g: usize, f: usize, rec: usize, payloadLength: u32, flags: u32, maxBytes: u32, frames: usize): bool {
  const first = recordAt(load<u32>(g));
  const l3 = <u32>load<u16>(rec, 12);
  const l4 = <u32>load<u16>(rec, 14);
  const payload = <u32>load<u16>(rec, 16);
  if (l3 != <u32>load<u16>(first, 12) || l4 != <u32>load<u16>(first, 14) || payload != <u32>load<u16>(first, 16))
    return false;
  const mss = load<u32>(g, 20);
  if (payloadLength == 0 || payloadLength > mss || load<u32>(g, 24) != mss) return false;
  const payloadBytes = load<u32>(g, 16);
  if (<u64>(payload - l3) + <u64>payloadBytes + <u64>payloadLength > <u64>maxBytes) return false;
  const a = frames + <usize>load<u32>(first);
  const v6 = (<u32>load<u8>(rec, 22) & KIND_IPV6) != 0;
  // The bytes that change between segments: IPv4 total length, ID and
  // header checksum (IPv6 payload length); TCP sequence, flags, checksum.
  if (v6) {
    if (!same(a, f, l3 + 4) || !same(a + l3 + 6, f + l3 + 6, l4 + 4 - l3 - 6)) return false;
  } else {
    if (!same(a, f, l3 + 2) || !same(a + l3 + 6, f + l3 + 6, 4)) return false;
    if (!same(a + l3 + 12, f + l3 + 12, l4 + 4 - l3 - 12)) return false;
  }
  if (!same(a + l4 + 8, f + l4 + 8, 5) || !same(a + l4 + 14, f + l4 + 14, 2)) return false;
  if (!same(a + l4 + 18, f + l4 + 18, payload - l4 - 18)) return false;
  const firstFlags = <u32>load<u8>(a + l4 + 13);
  if ((flags & ~EDGE_FLAGS) != (firstFlags & ~EDGE_FLAGS)) return false;
  // CWR only on the first segment, unless the sender kept it on all (DPDK).
  if ((flags & TCP_CWR) != 0 && (firstFlags & TCP_CWR) == 0) return false;
  if (be32(f + l4 + 4) != be32(a + l4 + 4) + payloadBytes) return false;
  if (!v6 && idModes(be16(a + l3 + 4), be16(f + l3 + 4), load<u32>(g, 12), <u32>load<u8>(g, 29)) == 0)
    return false;
  return true;
}

/**
 * Builds ring `ring`'s delivery items from its records in `seq` (good ones
 * only): TCP segments into groups when coalescing, every other frame as it
 * came. Returns how many.
 */
function coalesceRing(stamp: u32, n: u32, coalesce: bool, maxBytes: u32, frames: usize): u32 {
  let items: u32 = 0;
  for (let pos: u32 = 0; pos < n; pos++) {
    const r = load<u32>(seq + <usize>pos * 4);
    const rec = recordAt(r);
    if (load<u8>(rec, 23) != 0) continue; // bad: delivered after the good ones, if at all
    const kind = <u32>load<u8>(rec, 22) & 3;
    const g = groups + <usize>items * GROUP;
    if (!coalesce || kind != KIND_TCP) {
      store<u32>(g, r);
      store<u8>(g, ITEM_FRAME, 31);
      items++;
      continue;
    }
    const f = frames + <usize>load<u32>(rec);
    const l4 = <u32>load<u16>(rec, 14);
    const payloadLength = load<u32>(rec, 8) - <u32>load<u16>(rec, 16);
    const flags = <u32>load<u8>(f + l4 + 13);
    const key = flowKey(f, rec);
    const slot = hashSlot(stamp, key);
    let open: usize = 0;
    if (load<u32>(slot) == stamp) {
      const o = groups + <usize>load<u32>(slot, 8) * GROUP;
      if (load<u8>(o, 30) == 0) open = o;
    }
    if (open != 0 && canAppend(open, f, rec, payloadLength, flags, maxBytes, frames)) {
      store<u32>(link + <usize>load<u32>(open, 8) * 4, pos);
      store<u32>(link + <usize>pos * 4, NONE);
      store<u32>(open, pos, 8);
      const segments = load<u32>(open, 12);
      if ((<u32>load<u8>(rec, 22) & KIND_IPV6) == 0) {
        const a = frames + <usize>load<u32>(recordAt(load<u32>(open)));
        const l3 = <u32>load<u16>(rec, 12);
        store<u8>(open, <u8>idModes(be16(a + l3 + 4), be16(f + l3 + 4), segments, <u32>load<u8>(open, 29)), 29);
      }
      store<u32>(open, segments + 1, 12);
      store<u32>(open, load<u32>(open, 16) + payloadLength, 16);
      store<u32>(open, payloadLength, 24);
      store<u8>(open, <u8>flags, 28);
      if ((flags & FIN_PSH) != 0 || payloadLength < load<u32>(open, 20)) store<u8>(open, 1, 30);
      continue;
    }
    if (open != 0) store<u8>(open, 1, 30);
    store<u32>(g, r);
    store<u32>(g, pos, 4);
    store<u32>(g, pos, 8);
    store<u32>(g, 1, 12);
    store<u32>(g, payloadLength, 16);
    store<u32>(g, payloadLength, 20);
    store<u32>(g, payloadLength, 24);
    store<u8>(g, <u8>flags, 28);
    store<u8>(g, 7, 29);
    store<u8>(g, ITEM_GROUP, 31);
    store<u32>(link + <usize>pos * 4, NONE);
    if ((flags & (FIN_PSH | TCP_SYN | TCP_RST)) != 0 || payloadLength == 0) {
      store<u8>(g, 1, 30);
    } else {
      store<u8>(g, 0, 30);
      store<u32>(slot, stamp);
      store<u32>(slot, key, 4);
      store<u32>(slot, items, 8);
    }
    items++;
  }
  return items;
}

/** Claims the ring's next slot; returns its address, or 0 when the ring is full. */
@inline function claim(ring: usize, slots: u32, slotBytes: u32): usize {
  for (;;) {
    const head = atomic.load<u32>(ring + RING_HEAD);
    if (head - atomic.load<u32>(ring + RING_TAIL) >= slots) return 0;
    if (atomic.cmpxchg<u32>(ring + RING_HEAD, head, head + 1) == head) {
      return ring + RING_HEADER + <usize>(head % slots) * slotBytes;
    }
  }
  return 0; // not reached
}

/**
 * Writes a group's super-frame into `slot`: the first segment's headers,
 * rewritten as the large send was before segmentation (src/net/coalesce.ts
 * finish), then every segment's payload. Returns its length.
 */
function writeGroup(slot: usize, g: usize, frames: usize): u32 {
  const rec = recordAt(load<u32>(g));
  const f = frames + <usize>load<u32>(rec);
  const l3 = <u32>load<u16>(rec, 12);
  const l4 = <u32>load<u16>(rec, 14);
  const payload = <u32>load<u16>(rec, 16);
  const payloadBytes = load<u32>(g, 16);
  const out = slot + SLOT_HEADER;
  copy(out, f, payload);
  const ipBytes = payload - l3 + payloadBytes;
  const v6 = (<u32>load<u8>(rec, 22) & KIND_IPV6) != 0;
  // A length over 16 bits is written as 0, as Linux BIG TCP writes it.
  if (v6) {
    storeBE16(out + l3 + 4, ipBytes - 40 > 0xffff ? 0 : ipBytes - 40);
  } else {
    storeBE16(out + l3 + 2, ipBytes > 0xffff ? 0 : ipBytes);
    store<u16>(out + l3 + 10, 0);
    storeBE16(out + l3 + 10, ~onesSum(out + l3, l4 - l3, 0) & 0xffff);
  }
  const n: u32 = v6 ? 16 : 4;
  const src = out + l3 + (v6 ? 8 : 12);
  // The TCP checksum field goes back to what the sending stack gave the NIC:
  // the pseudo-header sum of addresses and protocol, without the length.
  const pseudo = onesSum(out + <u32>load<u16>(rec, 18), n, onesSum(src, n, 6));
  const lastFlags = <u32>load<u8>(g, 28);
  store<u8>(out + l4 + 13, <u8>((<u32>load<u8>(out + l4 + 13) & ~FIN_PSH) | (lastFlags & FIN_PSH)));
  storeBE16(out + l4 + 16, pseudo);
  let at = out + payload;
  let pos = load<u32>(g, 4);
  while (pos != NONE) {
    const piece = recordAt(load<u32>(seq + <usize>pos * 4));
    const start = <u32>load<u16>(piece, 16);
    const bytes = load<u32>(piece, 8) - start;
    copy(at, frames + <usize>load<u32>(piece) + start, bytes);
    at += bytes;
    pos = load<u32>(link + <usize>pos * 4);
  }
  return payload + payloadBytes;
}

/**
 * Runs the job at `job` (laid out above, checked by the wrapper). Returns
 * the frames delivered; every counter is in the job's result fields.
 */
export function receiveBatch(job: usize): u32 {
  const frames = <usize>load<u32>(job + JOB_FRAMES);
  const frameBytes = <u64>load<u32>(job + JOB_FRAME_BYTES);
  const table = <usize>load<u32>(job + JOB_TABLE);
  const tableEntries = load<u32>(job + JOB_TABLE_ENTRIES);
  const work = <usize>load<u32>(job + JOB_WORK);
  const count = load<u32>(job + JOB_COUNT);
  const ringCount = load<u32>(job + JOB_RING_COUNT);
  const switchCount = load<u32>(job + JOB_SWITCH_COUNT);
  const rings = job + JOB_BYTES;
  const switches = rings + <usize>ringCount * RING_ENTRY;
  const flags = load<u32>(job + JOB_FLAGS);
  const maxCoalesce = load<u32>(job + JOB_MAX_COALESCE);
  const fanout = load<u32>(job + JOB_FANOUT);
  const coalesce = (flags & FLAG_COALESCE) != 0;
  const deliverBad = (flags & FLAG_DELIVER_BAD) != 0;
  const trust = (flags & FLAG_TRUST) != 0;

  // A ring's list holds at most count * fanout records: a switch table may
  // name one ring several times for one MAC and VLAN.
  const perRing = <usize>count * <usize>fanout;
  let hashSlots: usize = 16;
  while (hashSlots < 2 * perRing) hashSlots <<= 1;
  records = switches + <usize>switchCount * SWITCH_ENTRY;
  heads = records + <usize>count * RECORD;
  entries = heads + <usize>ringCount * 8;
  flood = entries + perRing * 8;
  seq = flood + <usize>count * 4;
  link = seq + perRing * 4;
  groups = link + perRing * 4;
  hash = groups + perRing * GROUP;
  hashMask = <u32>hashSlots - 1;
  entryCount = 0;
  floodCount = 0;
  memory.fill(heads, 0xff, <usize>ringCount * 8);
  memory.fill(hash, 0, hashSlots * HASH_ENTRY);

  let malformed: u32 = 0;
  let badChecksum: u32 = 0;
  let unknownMac: u32 = 0;
  let lookups: u32 = 0;
  let anyBad = false;
  let recordCount: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const index = load<u32>(work + <usize>i * WORK_ENTRY);
    const target = load<u32>(work + <usize>i * WORK_ENTRY, 4);
    if (index >= tableEntries) {
      malformed++;
      continue;
    }
    const offset = load<u32>(table + <usize>index * TABLE_ENTRY);
    const length = load<u32>(table + <usize>index * TABLE_ENTRY, 4);
    if (<u64>offset + <u64>length > frameBytes) {
      malformed++;
      continue;
    }
    const f = frames + <usize>offset;
    if (!parse(f, length)) {
      malformed++;
      continue;
    }
    let bad = false;
    if (!trust && !checksumsGood(f)) {
      badChecksum++;
      if (!deliverBad) continue;
      bad = true;
      anyBad = true;
    }
    const r = recordCount;
    const rec = recordAt(r);
    if (target != SWITCH_LOOKUP) {
      if (target >= ringCount) {
        malformed++;
        continue;
      }
      append(target, r);
    } else {
      lookups++;
      if ((load<u8>(f) & 1) != 0) {
        // A group address (multicast, broadcast): every VM's ring.
        store<u32>(flood + <usize>floodCount * 4, r);
        floodCount++;
      } else {
        const macHigh = be16(f);
        const macLow = be32(f + 2);
        const vlan: i32 = <i32>pVlan - 1;
        let found = false;
        for (let s: u32 = 0; s < switchCount; s++) {
          const e = switches + <usize>s * SWITCH_ENTRY;
          if (load<u32>(e) == macHigh && load<u32>(e, 4) == macLow && load<i32>(e, 8) == vlan) {
            const ring = load<u32>(e, 12);
            if (ring < ringCount) {
              append(ring, r);
              found = true;
            }
          }
        }
        if (!found) {
          unknownMac++;
          continue;
        }
      }
    }
    store<u32>(rec, offset);
    store<u32>(rec, length, 4);
    store<u32>(rec, pIpEnd, 8);
    store<u16>(rec, <u16>pL3, 12);
    store<u16>(rec, <u16>pL4, 14);
    store<u16>(rec, <u16>pPayload, 16);
    store<u16>(rec, <u16>pDst, 18);
    store<u16>(rec, <u16>pVlan, 20);
    store<u8>(rec, <u8>pKind, 22);
    store<u8>(rec, bad ? 1 : 0, 23);
    recordCount++;
  }

  let delivered: u32 = 0;
  let coalescedSegments: u32 = 0;
  let ringFull: u32 = 0;
  let bytes: u64 = 0;
  for (let ringIndex: u32 = 0; ringIndex < ringCount; ringIndex++) {
    // This ring's records and the flooded ones, merged in arrival order.
    let e = load<u32>(heads + <usize>ringIndex * 8);
    let fl: u32 = 0;
    let n: u32 = 0;
    while (e != NONE || fl < floodCount) {
      const own = e != NONE ? load<u32>(entries + <usize>e * 8) : NONE;
      const flooded = fl < floodCount ? load<u32>(flood + <usize>fl * 4) : NONE;
      if (own < flooded) {
        store<u32>(seq + <usize>n * 4, own);
        e = load<u32>(entries + <usize>e * 8, 4);
      } else {
        store<u32>(seq + <usize>n * 4, flooded);
        fl++;
      }
      n++;
    }
    if (n == 0) continue;
    const ringEntry = rings + <usize>ringIndex * RING_ENTRY;
    const ring = <usize>load<u32>(ringEntry);
    const slots = load<u32>(ringEntry, 4);
    const slotBytes = load<u32>(ringEntry, 8);
    const maxFrame = slotBytes - SLOT_HEADER;
    const items = coalesceRing(ringIndex + 1, n, coalesce, maxCoalesce, frames);
    let ringDelivered: u32 = 0;
    let ringBytes: u32 = 0;
    let ringDropped: u32 = 0;
    // The good items in order, then (when delivered at all) the bad frames.
    const total = items + (anyBad ? n : 0);
    for (let k: u32 = 0; k < total; k++) {
      let rec: usize;
      let group: usize = 0;
      let slotFlags: u32 = SLOT_CHECKSUM_GOOD;
      if (k < items) {
        const g = groups + <usize>k * GROUP;
        rec = recordAt(load<u32>(g));
        if (load<u8>(g, 31) == ITEM_GROUP) group = g;
      } else {
        rec = recordAt(load<u32>(seq + <usize>(k - items) * 4));
        if (load<u8>(rec, 23) == 0) continue;
        slotFlags = 0;
      }
      const segments: u32 = group != 0 ? load<u32>(group, 12) : 1;
      const length: u32 =
        group != 0 ? <u32>load<u16>(rec, 16) + load<u32>(group, 16) : load<u32>(rec, 4);
      if (length > maxFrame) {
        ringDropped++;
        continue;
      }
      const slot = claim(ring, slots, slotBytes);
      if (slot == 0) {
        ringDropped++;
        continue;
      }
      if (segments > 1) slotFlags |= SLOT_COALESCED;
      store<u32>(slot, length);
      store<u16>(slot, <u16>slotFlags, 4);
      store<u16>(slot, <u16>min<u32>(segments, 0xffff), 6);
      if (group != 0) writeGroup(slot, group, frames);
      else copy(slot + SLOT_HEADER, frames + <usize>load<u32>(rec), length);
      ringDelivered++;
      ringBytes += length;
      bytes += <u64>length;
      if (segments > 1) coalescedSegments += segments;
    }
    atomic.add<u32>(ring + RING_DELIVERED, ringDelivered);
    atomic.add<u32>(ring + RING_BYTES, ringBytes);
    if (ringDropped > 0) atomic.add<u32>(ring + RING_FULL, ringDropped);
    delivered += ringDelivered;
    ringFull += ringDropped;
  }

  const results = job + JOB_RESULTS;
  store<u32>(results + RESULT_FRAMES, count);
  store<u32>(results + RESULT_DELIVERED, delivered);
  store<u32>(results + RESULT_COALESCED, coalescedSegments);
  store<u32>(results + RESULT_BAD_CHECKSUM, badChecksum);
  store<u32>(results + RESULT_MALFORMED, malformed);
  store<u32>(results + RESULT_UNKNOWN_MAC, unknownMac);
  store<u32>(results + RESULT_LOOKUPS, lookups);
  store<u32>(results + RESULT_RING_FULL, ringFull);
  store<u64>(results + RESULT_BYTES, bytes);
  return delivered;
}
