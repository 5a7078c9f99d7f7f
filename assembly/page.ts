// Per-page migration work: zero-page check, XXH3-64 page hashes, QEMU's
// XBZRLE delta encoding and decoding, and the sender's and receiver's page
// stream (encode a batch of dirty pages into a packet, decode a packet into
// destination RAM).
//
// The page stream (QEMU's RAM section records, migration/ram.c, without the
// RAMBlock names: one guest, one block):
//
//   +-----------------------------------------------+
//   | be64: page address (page << pageShift) | flag |   8 bytes
//   +-----------------------------------------------+
//   flag 0x02 ZERO   : u8 fill byte (0)                     ->  9 bytes
//   flag 0x08 PAGE   : the page's bytes                     ->  8 + page bytes
//   flag 0x40 XBZRLE : u8 1 (ENCODING_FLAG_XBZRLE),
//                      be16 encoded length, encoded bytes   -> 11 + length
//
// XBZRLE encoding (migration/xbzrle.c) of a page against its previous
// version: alternating runs, the last unchanged run left out,
//
//   uleb128(unchanged bytes) uleb128(changed bytes) changed bytes ...
//
// with uleb128 values of at most two bytes (< 16384). An encoding longer
// than the page is an overflow (-1); an unchanged page encodes to 0 bytes.
//
// XBZRLE cache (migration/page_cache.c), direct-mapped on the page number:
//
//   tags  (u32 per slot): page + 1 of the version held, 0 = empty
//   data  (page bytes per slot): that version
//   slot = page & (slots - 1), slots a power of two
//
// Page hash tables (encodePages with option bit 2, decodePages with a
// table): one little-endian u64 per guest page, indexed by page number,
//
//   table + 8 * page : XXH3-64 of that page's bytes as last encoded (source)
//                      or as last written by the decoder (destination)
//
// Each hash is taken while the page is in L1 from the encode or decode step
// (the source page read before it is copied into the packet; the destination
// page read back after the decoder wrote it), so RAM is streamed once per side.
//
// Encoder statistics (u32 each, zeroed by the caller, added to by a call;
// bad page is set, not added):
//
//   byte 0  bytes written       16 xbzrle pages         32 unchanged pages
//        4  normal pages        20 xbzrle encoded bytes 36 bad page: index + 1
//                                                       of a page past RAM
//        8  zero pages          24 cache misses
//       12  (reserved)          28 overflows

import { xxh3LongAt } from "./lib/xxh3";
import { xxh64At } from "./lib/xxh64";
import { isZeroAt } from "./lib/zero";

@inline const FLAG_ZERO: u64 = 0x02;
@inline const FLAG_PAGE: u64 = 0x08;
@inline const FLAG_XBZRLE: u64 = 0x40;
@inline const FLAG_MASK: u64 = 0xfff;
@inline const ENCODING_FLAG_XBZRLE: u8 = 1;
@inline const HEADER_BYTES: u32 = 8;
@inline const ZERO_RECORD_BYTES: u32 = 9;
@inline const XBZRLE_OVERHEAD: u32 = 11;

@inline const S_BYTES: usize = 0;
@inline const S_NORMAL: usize = 4;
@inline const S_ZERO: usize = 8;
@inline const S_XBZRLE_PAGES: usize = 16;
@inline const S_XBZRLE_BYTES: usize = 20;
@inline const S_CACHE_MISS: usize = 24;
@inline const S_OVERFLOW: usize = 28;
@inline const S_UNCHANGED: usize = 32;
@inline const S_BAD_PAGE: usize = 36;

@inline const OPT_ZERO: u32 = 1;
@inline const OPT_XBZRLE: u32 = 2;
@inline const OPT_HASH: u32 = 4;

// Decoder errors (negative return values).
@inline const E_TRUNCATED: i32 = -1;
@inline const E_BAD_FLAG: i32 = -2;
@inline const E_BAD_PAGE: i32 = -3;
@inline const E_BAD_XBZRLE: i32 = -4;

/** Returns 1 if `len` bytes at `ptr` are all zero, else 0. */
export function isZero(ptr: usize, len: u32): u32 {
  return isZeroAt(ptr, <usize>len) ? 1 : 0;
}

/**
 * Copies a page (a multiple of 64 bytes) 64 bytes at a time with SIMD: for
 * page-sized copies this beats memory.copy on a shared memory, whose small
 * copies go through the engine's generic path.
 */
@inline
function copyPage(dst: usize, src: usize, len: u32): void {
  for (let i: usize = 0; i < <usize>len; i += 64) {
    const a = v128.load(src + i);
    const b = v128.load(src + i, 16);
    const c = v128.load(src + i, 32);
    const d = v128.load(src + i, 48);
    v128.store(dst + i, a);
    v128.store(dst + i, b, 16);
    v128.store(dst + i, c, 32);
    v128.store(dst + i, d, 48);
  }
}

/** Writes XXH64 (seed 0) of `len` bytes at `ptr` as a little-endian u64 at `out`. */
export function hash64(ptr: usize, len: u32, out: usize): void {
  store<u64>(out, xxh64At(ptr, <usize>len));
}

/**
 * Writes XXH3-64 (seed 0) of `len` bytes at `ptr`, `len` over 240 (the page
 * hash), as a little-endian u64 at `out`.
 */
export function hash3(ptr: usize, len: u32, out: usize): void {
  store<u64>(out, xxh3LongAt(ptr, <usize>len));
}

/**
 * Hashes `count` pages of `1 << pageShift` bytes starting at `first` (page
 * number) of the RAM at `ram`: XXH3-64 of page `first + i` goes to `out + 8 i`.
 */
export function hashPages(ram: usize, pageShift: u32, first: u32, count: u32, out: usize): void {
  const pageBytes = (<u32>1) << pageShift;
  for (let i: u32 = 0; i < count; i++) {
    const page = ram + ((<usize>(first + i)) << pageShift);
    store<u64>(out + ((<usize>i) << 3), xxh3LongAt(page, <usize>pageBytes));
  }
}

@inline
function ulebSmall(dst: usize, value: u32): u32 {
  if (value < 0x80) {
    store<u8>(dst, <u8>value);
    return 1;
  }
  store<u8>(dst, <u8>((value & 0x7f) | 0x80));
  store<u8>(dst, <u8>(value >>> 7), 1);
  return 2;
}

/** Bytes from `i` (below `n`) while `a` and `b` are equal; word at a time. */
@inline
function equalRun(a: usize, b: usize, i: u32, n: u32): u32 {
  const start = i;
  while (i + 8 <= n) {
    const x = load<u64>(a + <usize>i) ^ load<u64>(b + <usize>i);
    if (x != 0) return i + (<u32>ctz<u64>(x) >>> 3) - start;
    i += 8;
  }
  while (i < n && load<u8>(a + <usize>i) == load<u8>(b + <usize>i)) i++;
  return i - start;
}

/** Bytes from `i` (below `n`) while `a` and `b` differ in every byte. */
@inline
function differentRun(a: usize, b: usize, i: u32, n: u32): u32 {
  const start = i;
  const ones: u64 = 0x0101010101010101;
  while (i + 8 <= n) {
    const x = load<u64>(a + <usize>i) ^ load<u64>(b + <usize>i);
    // A zero byte in x is an equal byte: the run ends at the first one.
    const zeroBytes = (x - ones) & ~x & (ones << 7);
    if (zeroBytes != 0) return i + (<u32>ctz<u64>(zeroBytes) >>> 3) - start;
    i += 8;
  }
  while (i < n && load<u8>(a + <usize>i) != load<u8>(b + <usize>i)) i++;
  return i - start;
}

/**
 * XBZRLE-encodes `len` bytes at `next` against their previous version at
 * `prev` into `dst` (at most `cap` bytes), as QEMU's xbzrle_encode_buffer
 * (same output and the same overflow checks). Returns the encoded length, 0
 * if unchanged, or -1 if it would pass `cap`.
 */
export function xbzrleEncode(prev: usize, next: usize, len: u32, dst: usize, cap: u32): i32 {
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < len) {
    if (d + 2 > cap) return -1;
    const zrun = equalRun(prev, next, i, len);
    if (zrun == len) return 0;
    i += zrun;
    // The last unchanged run is not sent.
    if (i == len) return <i32>d;
    d += ulebSmall(dst + <usize>d, zrun);
    if (d + 2 > cap) return -1;
    const nzrun = differentRun(prev, next, i, len);
    d += ulebSmall(dst + <usize>d, nzrun);
    if (d + nzrun > cap) return -1;
    memory.copy(dst + <usize>d, next + <usize>i, nzrun);
    d += nzrun;
    i += nzrun;
  }
  return <i32>d;
}

/** Reads a small uleb128 (1 or 2 bytes) at `src`; returns value | (bytes << 16), or -1. */
@inline
function readUlebSmall(src: usize): i32 {
  const b0 = <u32>load<u8>(src);
  if ((b0 & 0x80) == 0) return <i32>(b0 | (1 << 16));
  const b1 = <u32>load<u8>(src, 1);
  if (b1 & 0x80) return -1;
  return <i32>((b0 & 0x7f) | (b1 << 7) | (2 << 16));
}

/**
 * Applies `slen` XBZRLE bytes at `src` to the `dlen`-byte page at `dst`, as
 * QEMU's xbzrle_decode_buffer (same checks). Returns the bytes of the page
 * covered, or -1 for a malformed or overflowing encoding; it never writes
 * past `dst + dlen`.
 */
export function xbzrleDecode(src: usize, slen: u32, dst: usize, dlen: u32): i32 {
  let i: u32 = 0;
  let d: u32 = 0;
  while (i < slen) {
    if (slen - i < 2) return -1;
    let r = readUlebSmall(src + <usize>i);
    if (r < 0) return -1;
    let count = <u32>(r & 0xffff);
    if (i != 0 && count == 0) return -1;
    i += <u32>r >>> 16;
    d += count;
    if (d > dlen) return -1;
    if (slen - i < 2) return -1;
    r = readUlebSmall(src + <usize>i);
    if (r < 0) return -1;
    count = <u32>(r & 0xffff);
    if (count == 0) return -1;
    i += <u32>r >>> 16;
    if (d + count > dlen || i + count > slen) return -1;
    memory.copy(dst + <usize>d, src + <usize>i, count);
    d += count;
    i += count;
  }
  return <i32>d;
}

@inline
function storeBe64(at: usize, value: u64): void {
  store<u64>(at, bswap<u64>(value));
}

/**
 * Encodes dirty pages into a packet of the page stream. Pages are the u32
 * page numbers at `list` (`count` of them); each becomes a ZERO record (when
 * `options` has bit 0 and the page is all zero), an XBZRLE record (bit 1, a
 * cache hit whose encoding fits), or a PAGE record. Stops before the packet
 * would pass `cap` bytes. The XBZRLE cache (tags, data, `slots` a power of
 * two) is looked up and updated per page; with bit 1 clear it is not touched.
 * A page number at or past `pages` stops encoding before it is read (its
 * index + 1 goes to the statistics). Adds to the statistics at `stats`.
 * With bit 2 the XXH3-64 of every consumed page goes to its slot of the page
 * hash table at `hashes` (8 bytes per page number).
 * Returns how many pages were consumed.
 */
export function encodePages(
  ram: usize,
  pageShift: u32,
  list: usize,
  count: u32,
  out: usize,
  cap: u32,
  options: u32,
  tags: usize,
  data: usize,
  slots: u32,
  scratch: usize,
  stats: usize,
  pages: u32,
  hashes: usize,
): u32 {
  const pageBytes = (<u32>1) << pageShift;
  let d: u32 = 0;
  let done: u32 = 0;
  for (; done < count; done++) {
    // Room for the worst case, a PAGE record, before touching anything.
    if (d + HEADER_BYTES + pageBytes > cap) break;
    const page = load<u32>(list + ((<usize>done) << 2));
    // A page past guest RAM is never read: stop, and say where.
    if (page >= pages) {
      store<u32>(stats + S_BAD_PAGE, done + 1);
      break;
    }
    let src = ram + ((<usize>page) << pageShift);
    const address = (<u64>page) << <u64>pageShift;
    const body = out + <usize>(d + HEADER_BYTES);
    if (options & OPT_XBZRLE) {
      // A running guest may write the page while it is encoded: everything
      // below reads one snapshot, taken into the PAGE record's own data area
      // (the cap check left room), so the cache keeps exactly the bytes the
      // destination gets (QEMU's save_xbzrle_page copies the page to
      // current_buf first, for the same reason).
      copyPage(body, src, pageBytes);
      src = body;
    }
    // The page as it leaves: hashed before any branch, so every consumed page
    // (zero, XBZRLE, unchanged or whole) has its slot rewritten.
    if (options & OPT_HASH) store<u64>(hashes + ((<usize>page) << 3), xxh3LongAt(src, <usize>pageBytes));
    if (options & OPT_ZERO && isZeroAt(src, <usize>pageBytes)) {
      storeBe64(out + <usize>d, address | FLAG_ZERO);
      store<u8>(out + <usize>d, 0, 8);
      d += ZERO_RECORD_BYTES;
      store<u32>(stats + S_ZERO, load<u32>(stats + S_ZERO) + 1);
      if (options & OPT_XBZRLE) {
        // The destination now holds zeros: so must the cache, or a later
        // delta would apply to a version it no longer has (QEMU's
        // xbzrle_cache_zero_page, migration/ram.c).
        const slot = page & (slots - 1);
        store<u32>(tags + ((<usize>slot) << 2), page + 1);
        memory.fill(data + ((<usize>slot) << pageShift), 0, pageBytes);
      }
      continue;
    }
    if (options & OPT_XBZRLE) {
      const slot = page & (slots - 1);
      const tag = tags + ((<usize>slot) << 2);
      const cached = data + ((<usize>slot) << pageShift);
      if (load<u32>(tag) != page + 1) {
        // A miss: keep this version for next time and send the page whole.
        store<u32>(stats + S_CACHE_MISS, load<u32>(stats + S_CACHE_MISS) + 1);
        store<u32>(tag, page + 1);
        memory.copy(cached, src, pageBytes);
      } else {
        const encoded = xbzrleEncode(cached, src, pageBytes, scratch, pageBytes);
        memory.copy(cached, src, pageBytes);
        if (encoded == 0) {
          store<u32>(stats + S_UNCHANGED, load<u32>(stats + S_UNCHANGED) + 1);
          continue;
        }
        if (encoded > 0) {
          const length = <u32>encoded;
          storeBe64(out + <usize>d, address | FLAG_XBZRLE);
          store<u8>(out + <usize>d, ENCODING_FLAG_XBZRLE, 8);
          store<u16>(out + <usize>d, bswap<u16>(<u16>length), 9);
          memory.copy(out + <usize>(d + XBZRLE_OVERHEAD), scratch, length);
          d += XBZRLE_OVERHEAD + length;
          store<u32>(stats + S_XBZRLE_PAGES, load<u32>(stats + S_XBZRLE_PAGES) + 1);
          store<u32>(stats + S_XBZRLE_BYTES, load<u32>(stats + S_XBZRLE_BYTES) + length);
          continue;
        }
        store<u32>(stats + S_OVERFLOW, load<u32>(stats + S_OVERFLOW) + 1);
      }
    }
    storeBe64(out + <usize>d, address | FLAG_PAGE);
    if (src != body) copyPage(body, src, pageBytes);
    d += HEADER_BYTES + pageBytes;
    store<u32>(stats + S_NORMAL, load<u32>(stats + S_NORMAL) + 1);
  }
  store<u32>(stats + S_BYTES, load<u32>(stats + S_BYTES) + d);
  return done;
}

/**
 * Decodes `length` bytes of the page stream at `src` into the destination
 * RAM at `ram` of `pages` pages. Every record is checked before it writes:
 * a page past the end, an unknown flag, a truncated record or a malformed
 * XBZRLE encoding stops decoding with a negative code (-1 truncated, -2 bad
 * flag, -3 bad page, -4 bad XBZRLE) and the record's offset as u32 at
 * `errorAt`. Returns the number of pages written (>= 0) on success.
 * With `hashOn` non-zero, each page written is read back and its XXH3-64 goes
 * to its slot of the page hash table at `hashes` (8 bytes per page number).
 */
export function decodePages(
  src: usize,
  length: u32,
  ram: usize,
  pageShift: u32,
  pages: u32,
  errorAt: usize,
  hashes: usize,
  hashOn: u32,
): i32 {
  const pageBytes = (<u32>1) << pageShift;
  let i: u32 = 0;
  let written: i32 = 0;
  while (i < length) {
    store<u32>(errorAt, i);
    if (length - i < HEADER_BYTES) return E_TRUNCATED;
    const header = bswap<u64>(load<u64>(src + <usize>i));
    const flag = header & FLAG_MASK;
    const address = header & ~FLAG_MASK;
    const page64 = address >>> <u64>pageShift;
    if ((address & (<u64>pageBytes - 1)) != 0 || page64 >= <u64>pages) return E_BAD_PAGE;
    const dst = ram + ((<usize>page64) << pageShift);
    i += HEADER_BYTES;
    if (flag == FLAG_ZERO) {
      if (length - i < 1) return E_TRUNCATED;
      memory.fill(dst, load<u8>(src + <usize>i), pageBytes);
      i += 1;
    } else if (flag == FLAG_PAGE) {
      if (length - i < pageBytes) return E_TRUNCATED;
      copyPage(dst, src + <usize>i, pageBytes);
      i += pageBytes;
    } else if (flag == FLAG_XBZRLE) {
      if (length - i < 3) return E_TRUNCATED;
      if (load<u8>(src + <usize>i) != ENCODING_FLAG_XBZRLE) return E_BAD_XBZRLE;
      const encoded = <u32>bswap<u16>(load<u16>(src + <usize>i, 1));
      i += 3;
      if (length - i < encoded) return E_TRUNCATED;
      if (encoded > pageBytes) return E_BAD_XBZRLE;
      if (xbzrleDecode(src + <usize>i, encoded, dst, pageBytes) < 0) return E_BAD_XBZRLE;
      i += encoded;
    } else {
      return E_BAD_FLAG;
    }
    // Read back from the destination page itself (still in L1), not the packet.
    if (hashOn) store<u64>(hashes + (<usize>page64 << 3), xxh3LongAt(dst, <usize>pageBytes));
    written++;
  }
  return written;
}

/**
 * Fills pages [first, first + count) of the RAM at `ram` with seeded
 * content: a page whose splitmix64 hash of (seed, page) falls below
 * `zeroThreshold` (out of 2^32) stays all zero; every other page gets
 * pseudo-random words. Gives a guest a realistic starting image.
 */
export function seedPages(
  ram: usize,
  pageShift: u32,
  first: u32,
  count: u32,
  seed: u32,
  zeroThreshold: u32,
): void {
  const words = (<usize>1) << (pageShift - 3);
  for (let i: u32 = 0; i < count; i++) {
    const page = first + i;
    const base = ram + ((<usize>page) << pageShift);
    let state = mix(((<u64>seed) << 32) ^ (<u64>page) ^ 0x5851f42d4c957f2d);
    if (<u32>(state >>> 32) < zeroThreshold) {
      memory.fill(base, 0, (<usize>1) << pageShift);
      continue;
    }
    for (let w: usize = 0; w < words; w++) {
      state += 0x9e3779b97f4a7c15;
      store<u64>(base + (w << 3), mix(state));
    }
  }
}

// splitmix64's output function (Steele, Lea and Flood 2014).
@inline
function mix(z: u64): u64 {
  z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >>> 27)) * 0x94d049bb133111eb;
  return z ^ (z >>> 31);
}

// The layouts drawn above, exported as globals for the TypeScript side: its
// wrapper (src/wasm/page.ts) reads them when it loads the module and refuses
// a module whose values differ from the ones it lays memory out with.
export const LAYOUT_FLAG_ZERO: u32 = <u32>FLAG_ZERO;
export const LAYOUT_FLAG_PAGE: u32 = <u32>FLAG_PAGE;
export const LAYOUT_FLAG_XBZRLE: u32 = <u32>FLAG_XBZRLE;
export const LAYOUT_HEADER_BYTES: u32 = HEADER_BYTES;
export const LAYOUT_ZERO_RECORD_BYTES: u32 = ZERO_RECORD_BYTES;
export const LAYOUT_XBZRLE_OVERHEAD: u32 = XBZRLE_OVERHEAD;
export const LAYOUT_S_BYTES: u32 = <u32>S_BYTES;
export const LAYOUT_S_NORMAL: u32 = <u32>S_NORMAL;
export const LAYOUT_S_ZERO: u32 = <u32>S_ZERO;
export const LAYOUT_S_XBZRLE_PAGES: u32 = <u32>S_XBZRLE_PAGES;
export const LAYOUT_S_XBZRLE_BYTES: u32 = <u32>S_XBZRLE_BYTES;
export const LAYOUT_S_CACHE_MISS: u32 = <u32>S_CACHE_MISS;
export const LAYOUT_S_OVERFLOW: u32 = <u32>S_OVERFLOW;
export const LAYOUT_S_UNCHANGED: u32 = <u32>S_UNCHANGED;
export const LAYOUT_S_BAD_PAGE: u32 = <u32>S_BAD_PAGE;
export const LAYOUT_OPT_ZERO: u32 = OPT_ZERO;
export const LAYOUT_OPT_XBZRLE: u32 = OPT_XBZRLE;
export const LAYOUT_OPT_HASH: u32 = OPT_HASH;
