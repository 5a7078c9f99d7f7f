// multifd channels, both ends, after QEMU's multifd (migration/multifd.c,
// multifd.h, multifd-nocomp.c). A channel sends packets of a header and page
// data; the header lists where each page goes, the pages themselves follow
// on the wire straight from guest RAM (QEMU writes them from iovecs into
// RAM, never through a buffer), and the receiver reads each page straight
// into its place in the destination's RAM once the header has been checked.
//
// MultiFDPacket_t, big-endian, packed (QEMU 9: zero pages in the header):
//
//   byte   0  be32 magic 0x11223344      24  be64 packet_num
//          4  be32 version 1             32  be32 zero_pages
//          8  be32 flags (0: no compr.)  36  be32 reserved
//         12  be32 pages_alloc           40  be64 reserved[3]
//         16  be32 normal_pages          64  char ramblock[256] "pc.ram"
//         20  be32 next_packet_size     320  be64 offset[normal_pages + zero_pages]
//                  (= normal_pages x page bytes)    byte offsets in the RAM block,
//                                                   normal pages first, then zero pages
//   then the normal pages' bytes, in the order of their offsets.
//
// A zero page travels as its offset only; the receiver makes it zero.
//
// The sender also writes the normal pages' numbers (u32) at `sent` for the
// link to read the pages from, and the page numbers of the zero pages at
// `sent + 4 * alloc`. The receiver's check writes the numbers of the pages it
// accepted (normal then zero, u32) at `place`; the link writes each normal
// page's bytes to its place, then `receiveFinish` zeroes the zero pages and
// hashes every page the packet brought.
//
// Statistics at `stats` use the page stream's layout (assembly/page.ts):
// byte 0 bytes on the wire, 4 normal pages, 8 zero pages, 36 bad page
// (index + 1 of a page number past RAM, which stops the packet before it).

import { xxh3LongAt } from "./lib/xxh3";
import { isZeroAt } from "./lib/zero";

@inline const MAGIC: u32 = 0x11223344;
@inline const VERSION: u32 = 1;
@inline const HEADER: u32 = 320;
@inline const H_MAGIC: usize = 0;
@inline const H_VERSION: usize = 4;
@inline const H_FLAGS: usize = 8;
@inline const H_PAGES_ALLOC: usize = 12;
@inline const H_NORMAL: usize = 16;
@inline const H_NEXT_SIZE: usize = 20;
@inline const H_PACKET_NUM: usize = 24;
@inline const H_ZERO: usize = 32;
@inline const H_RAMBLOCK: usize = 64;
@inline const RAMBLOCK_BYTES: usize = 256;
/** "pc.ram" as a little-endian u64 with its NUL: the one RAM block hvlab's guest has. */
@inline const RAMBLOCK_NAME: u64 = 0x0000_6d61_722e_6370;

@inline const OPT_ZERO: u32 = 1;
@inline const OPT_HASH: u32 = 4;

@inline const S_BYTES: usize = 0;
@inline const S_NORMAL: usize = 4;
@inline const S_ZERO: usize = 8;
@inline const S_BAD_PAGE: usize = 36;

// Receiver errors (negative results; the offending byte offset goes to errorAt).
@inline const E_TRUNCATED: i32 = -1;
@inline const E_MAGIC: i32 = -2;
@inline const E_VERSION: i32 = -3;
@inline const E_FLAGS: i32 = -4;
@inline const E_PAGES: i32 = -5;
@inline const E_SIZE: i32 = -6;
@inline const E_RAMBLOCK: i32 = -7;
@inline const E_OFFSET: i32 = -8;

@inline function loadBe32(at: usize): u32 {
  return bswap<u32>(load<u32>(at));
}

@inline function storeBe32(at: usize, value: u32): void {
  store<u32>(at, bswap<u32>(value));
}

@inline function storeBe64(at: usize, value: u64): void {
  store<u64>(at, bswap<u64>(value));
}

/**
 * Sends up to `count` pages (u32 page numbers at `list`, at most `alloc`)
 * as one packet header at `packet` (`cap` bytes). With OPT_HASH each page's
 * XXH3-64 goes to its slot of the page hash table at `hashes`; with OPT_ZERO
 * all-zero pages go as zero pages. Page numbers of normal pages go to `sent`,
 * of zero pages to `sent + 4 alloc`. A page number at or past `pages` stops
 * the packet before it is read. Returns the pages consumed (0 if the header
 * cannot fit `cap`).
 */
export function sendPacket(
  ram: usize,
  pageShift: u32,
  list: usize,
  count: u32,
  alloc: u32,
  packet: usize,
  cap: u32,
  options: u32,
  stats: usize,
  pages: u32,
  hashes: usize,
  packetNum: f64,
  sent: usize,
): u32 {
  if (count > alloc) count = alloc;
  if (<u64>HEADER + (<u64>count << 3) > <u64>cap) return 0;
  const pageBytes = <usize>1 << pageShift;
  const zeros = sent + ((<usize>alloc) << 2);
  let normal: u32 = 0;
  let zero: u32 = 0;
  let done: u32 = 0;
  for (; done < count; done++) {
    const page = load<u32>(list + ((<usize>done) << 2));
    if (page >= pages) {
      store<u32>(stats + S_BAD_PAGE, done + 1);
      break;
    }
    const src = ram + ((<usize>page) << pageShift);
    if (options & OPT_HASH) store<u64>(hashes + ((<usize>page) << 3), xxh3LongAt(src, pageBytes));
    if (options & OPT_ZERO && isZeroAt(src, pageBytes)) {
      store<u32>(zeros + ((<usize>zero) << 2), page);
      zero++;
    } else {
      store<u32>(sent + ((<usize>normal) << 2), page);
      normal++;
    }
  }
  storeBe32(packet + H_MAGIC, MAGIC);
  storeBe32(packet + H_VERSION, VERSION);
  storeBe32(packet + H_FLAGS, 0);
  storeBe32(packet + H_PAGES_ALLOC, alloc);
  storeBe32(packet + H_NORMAL, normal);
  storeBe32(packet + H_NEXT_SIZE, normal << pageShift);
  storeBe64(packet + H_PACKET_NUM, <u64>packetNum);
  storeBe32(packet + H_ZERO, zero);
  memory.fill(packet + 36, 0, H_RAMBLOCK - 36);
  memory.fill(packet + H_RAMBLOCK, 0, RAMBLOCK_BYTES);
  store<u64>(packet + H_RAMBLOCK, RAMBLOCK_NAME);
  let at = packet + HEADER;
  for (let i: u32 = 0; i < normal; i++, at += 8) {
    storeBe64(at, (<u64>load<u32>(sent + ((<usize>i) << 2))) << <u64>pageShift);
  }
  for (let i: u32 = 0; i < zero; i++, at += 8) {
    storeBe64(at, (<u64>load<u32>(zeros + ((<usize>i) << 2))) << <u64>pageShift);
  }
  const bytes = HEADER + ((normal + zero) << 3) + (normal << pageShift);
  store<u32>(stats + S_BYTES, load<u32>(stats + S_BYTES) + bytes);
  store<u32>(stats + S_NORMAL, load<u32>(stats + S_NORMAL) + normal);
  store<u32>(stats + S_ZERO, load<u32>(stats + S_ZERO) + zero);
  return done;
}

/**
 * Checks a received packet header of `length` bytes at `packet`, as QEMU's
 * multifd_recv_unfill_packet does, before any page is written: magic,
 * version, flags (no compression), pages_alloc at most `alloc`, page counts
 * within it, next_packet_size equal to the normal pages' bytes, the RAM block
 * name, and every offset page-aligned and inside the destination's `pages`
 * pages. Writes the accepted page numbers (normal then zero, u32) to `place`.
 * Returns 0, or a negative code with the offending byte offset at `errorAt`.
 */
export function checkPacket(
  packet: usize,
  length: u32,
  pageShift: u32,
  pages: u32,
  alloc: u32,
  place: usize,
  errorAt: usize,
): i32 {
  if (length < HEADER) return fail(errorAt, length, E_TRUNCATED);
  if (loadBe32(packet + H_MAGIC) != MAGIC) return fail(errorAt, <u32>H_MAGIC, E_MAGIC);
  if (loadBe32(packet + H_VERSION) != VERSION) return fail(errorAt, <u32>H_VERSION, E_VERSION);
  if (loadBe32(packet + H_FLAGS) != 0) return fail(errorAt, <u32>H_FLAGS, E_FLAGS);
  const pagesAlloc = loadBe32(packet + H_PAGES_ALLOC);
  if (pagesAlloc > alloc) return fail(errorAt, <u32>H_PAGES_ALLOC, E_PAGES);
  const normal = loadBe32(packet + H_NORMAL);
  if (normal > pagesAlloc) return fail(errorAt, <u32>H_NORMAL, E_PAGES);
  const zero = loadBe32(packet + H_ZERO);
  if (zero > pagesAlloc - normal) return fail(errorAt, <u32>H_ZERO, E_PAGES);
  if (<u64>loadBe32(packet + H_NEXT_SIZE) != (<u64>normal << <u64>pageShift)) {
    return fail(errorAt, <u32>H_NEXT_SIZE, E_SIZE);
  }
  // A C string: "pc.ram" and its NUL; what follows the NUL does not count.
  if ((load<u64>(packet + H_RAMBLOCK) & 0x00ff_ffff_ffff_ffff) != RAMBLOCK_NAME) {
    return fail(errorAt, <u32>H_RAMBLOCK, E_RAMBLOCK);
  }
  const entries = normal + zero;
  if (<u64>length < <u64>HEADER + (<u64>entries << 3)) return fail(errorAt, length, E_TRUNCATED);
  const align: u64 = ((<u64>1) << <u64>pageShift) - 1;
  for (let i: u32 = 0; i < entries; i++) {
    const at = packet + HEADER + ((<usize>i) << 3);
    const offset = bswap<u64>(load<u64>(at));
    const page = offset >> <u64>pageShift;
    if ((offset & align) != 0 || page >= <u64>pages) {
      return fail(errorAt, HEADER + (i << 3), E_OFFSET);
    }
    store<u32>(place + ((<usize>i) << 2), <u32>page);
  }
  return 0;
}

@inline function fail(errorAt: usize, offset: u32, code: i32): i32 {
  store<u32>(errorAt, offset);
  return code;
}

/**
 * After the link wrote the normal pages into place: makes the `zero` zero
 * pages (numbers at `place + 4 normal`) zero where they are not already, and
 * with `hashOn` reads back every page the packet brought and writes its
 * XXH3-64 to its slot of the page hash table at `hashes`.
 */
export function receiveFinish(
  place: usize,
  normal: u32,
  zero: u32,
  ram: usize,
  pageShift: u32,
  hashes: usize,
  hashOn: u32,
): void {
  const pageBytes = <usize>1 << pageShift;
  const entries = normal + zero;
  for (let i: u32 = normal; i < entries; i++) {
    const dst = ram + ((<usize>load<u32>(place + ((<usize>i) << 2))) << pageShift);
    if (!isZeroAt(dst, pageBytes)) memory.fill(dst, 0, pageBytes);
  }
  if (hashOn == 0) return;
  for (let i: u32 = 0; i < entries; i++) {
    const page = <usize>load<u32>(place + ((<usize>i) << 2));
    store<u64>(hashes + (page << 3), xxh3LongAt(ram + (page << pageShift), pageBytes));
  }
}

/**
 * XXH3-64 of each of the `count` pages whose numbers (u32) are at `list`,
 * each into its slot of the page hash table at `hashes`. Both ends call it on
 * a few pages at a time, around the link's copy of them, so each page is
 * hashed while it is still in cache: the sender just before its bytes leave,
 * the receiver just after they landed. A page number at or past `pages`
 * stops it before that page is read. Returns 0, or the index + 1 of the
 * first bad page number.
 */
export function hashListed(
  ram: usize,
  pageShift: u32,
  pages: u32,
  list: usize,
  count: u32,
  hashes: usize,
): u32 {
  const pageBytes = <usize>1 << pageShift;
  for (let i: u32 = 0; i < count; i++) {
    const page = load<u32>(list + ((<usize>i) << 2));
    if (page >= pages) return i + 1;
    store<u64>(hashes + ((<usize>page) << 3), xxh3LongAt(ram + ((<usize>page) << pageShift), pageBytes));
  }
  return 0;
}
