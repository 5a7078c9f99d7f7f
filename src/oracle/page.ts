/**
 * The plain TypeScript oracle for the page kernels (assembly/page.ts): zero
 * check, XXH64, XBZRLE encode and decode, and the page stream, one byte at a
 * time with BigInt arithmetic. Property tests hold the kernels equal to it.
 */

import { xxh3Long } from "./xxh3.js";

const MASK64 = (1n << 64n) - 1n;
// XXH64 primes (xxHash specification).
const P1 = 0x9e3779b185ebca87n;
const P2 = 0xc2b2ae3d27d4eb4fn;
const P3 = 0x165667b19e3779f9n;
const P4 = 0x85ebca77c2b2ae63n;
const P5 = 0x27d4eb2f165667c5n;

/** Whether every byte is zero, one byte at a time. */
export function isZeroOneByOne(bytes: Uint8Array): boolean {
  for (const byte of bytes) if (byte !== 0) return false;
  return true;
}

function rotl(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK64;
}

function readLE(bytes: Uint8Array, at: number, n: number): bigint {
  let value = 0n;
  for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] ?? 0);
  return value;
}

function xxRound(acc: bigint, input: bigint): bigint {
  return (rotl((acc + input * P2) & MASK64, 31n) * P1) & MASK64;
}

/** XXH64 with seed 0, straight from the specification. */
export function xxh64(bytes: Uint8Array): bigint {
  const n = bytes.length;
  let i = 0;
  let h: bigint;
  if (n >= 32) {
    let v1 = (P1 + P2) & MASK64;
    let v2 = P2;
    let v3 = 0n;
    let v4 = (0n - P1) & MASK64;
    for (; i + 32 <= n; i += 32) {
      v1 = xxRound(v1, readLE(bytes, i, 8));
      v2 = xxRound(v2, readLE(bytes, i + 8, 8));
      v3 = xxRound(v3, readLE(bytes, i + 16, 8));
      v4 = xxRound(v4, readLE(bytes, i + 24, 8));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & MASK64;
    for (const v of [v1, v2, v3, v4]) h = (((h ^ xxRound(0n, v)) * P1 + P4) & MASK64) as bigint;
  } else {
    h = P5;
  }
  h = (h + BigInt(n)) & MASK64;
  for (; i + 8 <= n; i += 8) {
    h ^= xxRound(0n, readLE(bytes, i, 8));
    h = (rotl(h, 27n) * P1 + P4) & MASK64;
  }
  if (i + 4 <= n) {
    h ^= (readLE(bytes, i, 4) * P1) & MASK64;
    h = (rotl(h, 23n) * P2 + P3) & MASK64;
    i += 4;
  }
  for (; i < n; i++) {
    h ^= (BigInt(bytes[i] ?? 0) * P5) & MASK64;
    h = (rotl(h, 11n) * P1) & MASK64;
  }
  h ^= h >> 33n;
  h = (h * P2) & MASK64;
  h ^= h >> 29n;
  h = (h * P3) & MASK64;
  h ^= h >> 32n;
  return h;
}

function ulebSmall(value: number): number[] {
  return value < 0x80 ? [value] : [(value & 0x7f) | 0x80, value >>> 7];
}

/**
 * QEMU's XBZRLE encoding of `next` against `prev`, one byte at a time, with
 * its overflow checks against `cap`: the bytes, 0 if unchanged, -1 on overflow.
 */
export function xbzrleEncodeOneByOne(
  prev: Uint8Array,
  next: Uint8Array,
  cap: number,
): Uint8Array | 0 | -1 {
  const len = next.length;
  const out: number[] = [];
  let i = 0;
  while (i < len) {
    if (out.length + 2 > cap) return -1;
    let zrun = 0;
    while (i < len && prev[i] === next[i]) {
      zrun++;
      i++;
    }
    if (zrun === len) return 0;
    if (i === len) return Uint8Array.from(out);
    out.push(...ulebSmall(zrun));
    if (out.length + 2 > cap) return -1;
    const start = i;
    while (i < len && prev[i] !== next[i]) i++;
    const nzrun = i - start;
    out.push(...ulebSmall(nzrun));
    if (out.length + nzrun > cap) return -1;
    for (let j = start; j < i; j++) out.push(next[j] ?? 0);
  }
  return Uint8Array.from(out);
}

function readUlebSmall(src: Uint8Array, at: number): [number, number] | null {
  const b0 = src[at] ?? 0;
  if ((b0 & 0x80) === 0) return [b0, 1];
  const b1 = src[at + 1] ?? 0;
  if (b1 & 0x80) return null;
  return [(b0 & 0x7f) | (b1 << 7), 2];
}

/** QEMU's XBZRLE decode into `page` (in place): bytes covered, or -1 if malformed. */
export function xbzrleDecodeOneByOne(src: Uint8Array, page: Uint8Array): number {
  const slen = src.length;
  const dlen = page.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (slen - i < 2) return -1;
    const z = readUlebSmall(src, i);
    if (!z || (i !== 0 && z[0] === 0)) return -1;
    i += z[1];
    d += z[0];
    if (d > dlen) return -1;
    if (slen - i < 2) return -1;
    const nz = readUlebSmall(src, i);
    if (!nz || nz[0] === 0) return -1;
    i += nz[1];
    const count = nz[0];
    if (d + count > dlen || i + count > slen) return -1;
    for (let j = 0; j < count; j++) page[d + j] = src[i + j] ?? 0;
    d += count;
    i += count;
  }
  return d;
}

/** A page stream record as the oracle builds and reads it. */
export type OracleRecord =
  | { readonly kind: "zero"; readonly page: number }
  | { readonly kind: "page"; readonly page: number; readonly bytes: Uint8Array }
  | { readonly kind: "xbzrle"; readonly page: number; readonly encoded: Uint8Array };

/** Serializes records into the page stream (layout in assembly/page.ts). */
export function writeStream(records: readonly OracleRecord[], pageShift: number): Uint8Array {
  const out: number[] = [];
  for (const record of records) {
    const flag = record.kind === "zero" ? 0x02n : record.kind === "page" ? 0x08n : 0x40n;
    const header = (BigInt(record.page) << BigInt(pageShift)) | flag;
    for (let b = 7; b >= 0; b--) out.push(Number((header >> BigInt(8 * b)) & 0xffn));
    if (record.kind === "zero") out.push(0);
    else if (record.kind === "page") out.push(...record.bytes);
    else {
      out.push(1, record.encoded.length >>> 8, record.encoded.length & 0xff, ...record.encoded);
    }
  }
  return Uint8Array.from(out);
}

/** The XBZRLE cache as the oracle keeps it: direct-mapped, page -> previous version. */
export class XbzrleCacheOracle {
  readonly tags: (number | undefined)[];
  readonly data: (Uint8Array | undefined)[];
  constructor(readonly slots: number) {
    this.tags = new Array(slots).fill(undefined);
    this.data = new Array(slots).fill(undefined);
  }
}

/** Counts as the kernel's encoder statistics count them. */
export interface OracleEncodeCounts {
  normal: number;
  zero: number;
  xbzrlePages: number;
  xbzrleBytes: number;
  cacheMiss: number;
  overflow: number;
  unchanged: number;
}

/**
 * Encodes `pages` of `ram` into records one page at a time, as the kernel's
 * encodePages does (zero check, then XBZRLE against the cache, else whole).
 */
export function encodePagesOneByOne(
  ram: Uint8Array,
  pageShift: number,
  pages: readonly number[],
  options: { zeroPages: boolean; cache?: XbzrleCacheOracle },
  counts: OracleEncodeCounts,
): OracleRecord[] {
  const pageBytes = 2 ** pageShift;
  const records: OracleRecord[] = [];
  for (const page of pages) {
    const bytes = ram.slice(page * pageBytes, (page + 1) * pageBytes);
    if (options.zeroPages && isZeroOneByOne(bytes)) {
      records.push({ kind: "zero", page });
      counts.zero++;
      if (options.cache) {
        // The cache keeps what the destination now has: zeros.
        const slot = page % options.cache.slots;
        options.cache.tags[slot] = page;
        options.cache.data[slot] = new Uint8Array(pageBytes);
      }
      continue;
    }
    const cache = options.cache;
    if (cache) {
      const slot = page % cache.slots;
      const prev = cache.data[slot];
      if (cache.tags[slot] !== page || !prev) {
        counts.cacheMiss++;
        cache.tags[slot] = page;
        cache.data[slot] = bytes;
      } else {
        const encoded = xbzrleEncodeOneByOne(prev, bytes, pageBytes);
        cache.data[slot] = bytes;
        if (encoded === 0) {
          counts.unchanged++;
          continue;
        }
        if (encoded !== -1) {
          records.push({ kind: "xbzrle", page, encoded });
          counts.xbzrlePages++;
          counts.xbzrleBytes += encoded.length;
          continue;
        }
        counts.overflow++;
      }
    }
    records.push({ kind: "page", page, bytes });
    counts.normal++;
  }
  return records;
}

/**
 * Applies a page stream to `ram` one record at a time. Returns pages written,
 * or the first bad record's code (as the kernel's) and offset.
 */
export function decodeStreamOneByOne(
  stream: Uint8Array,
  ram: Uint8Array,
  pageShift: number,
): number | { code: number; offset: number } {
  const pageBytes = 2 ** pageShift;
  const pages = Math.floor(ram.length / pageBytes);
  let i = 0;
  let written = 0;
  while (i < stream.length) {
    const offset = i;
    if (stream.length - i < 8) return { code: -1, offset };
    let header = 0n;
    for (let b = 0; b < 8; b++) header = (header << 8n) | BigInt(stream[i + b] ?? 0);
    const flag = Number(header & 0xfffn);
    const address = header & ~0xfffn;
    const page = address >> BigInt(pageShift);
    if ((address & BigInt(pageBytes - 1)) !== 0n || page >= BigInt(pages)) {
      return { code: -3, offset };
    }
    const at = Number(page) * pageBytes;
    i += 8;
    if (flag === 0x02) {
      if (stream.length - i < 1) return { code: -1, offset };
      ram.fill(stream[i] ?? 0, at, at + pageBytes);
      i += 1;
    } else if (flag === 0x08) {
      if (stream.length - i < pageBytes) return { code: -1, offset };
      ram.set(stream.subarray(i, i + pageBytes), at);
      i += pageBytes;
    } else if (flag === 0x40) {
      if (stream.length - i < 3) return { code: -1, offset };
      if (stream[i] !== 1) return { code: -4, offset };
      const encoded = ((stream[i + 1] ?? 0) << 8) | (stream[i + 2] ?? 0);
      i += 3;
      if (stream.length - i < encoded) return { code: -1, offset };
      if (encoded > pageBytes) return { code: -4, offset };
      const target = ram.subarray(at, at + pageBytes);
      if (xbzrleDecodeOneByOne(stream.subarray(i, i + encoded), target) < 0) {
        return { code: -4, offset };
      }
      i += encoded;
    } else {
      return { code: -2, offset };
    }
    written++;
  }
  return written;
}

/**
 * What a page hash table holds after pages were encoded or decoded with one:
 * `table` (a slot per page number, by page number) with the XXH3-64 of each
 * page in `pages` read from `ram` afterwards; other slots as they were.
 */
export function pageHashesOneByOne(
  ram: Uint8Array,
  pageShift: number,
  pages: readonly number[],
  table: bigint[],
): bigint[] {
  const pageBytes = 2 ** pageShift;
  const out = table.slice();
  for (const page of pages) {
    out[page] = xxh3Long(ram.subarray(page * pageBytes, (page + 1) * pageBytes));
  }
  return out;
}
