// Virtual hard disk kernels: the VHD sector bitmap, zero-block detection,
// the footer and dynamic-header checksum, and the guest I/O workload's data
// pattern (generate and verify).
//
// Sector bitmap (Microsoft, Virtual Hard Disk Image Format Specification
// 1.0, 2006, "Block Format"): one bit per 512-byte sector of a block, most
// significant bit first; 1 = the sector's data is in this block (in a
// differencing disk, 0 = read it from the parent):
//
//   byte 0                     byte 1
//   +--+--+--+--+--+--+--+--+  +--+--+--+--+--+--+--+--+
//   |s0|s1|s2|s3|s4|s5|s6|s7|  |s8|s9|  ...              sector s: byte s >> 3,
//   +--+--+--+--+--+--+--+--+  +--+--+--+--+--+--+--+--+  mask 0x80 >> (s & 7)
//    0x80                0x01
//
// Workload data pattern, one header per I/O block (every block of
// blockSize bytes, blockSize a multiple of 512, in the style of fio's
// verify header), little-endian:
//
//   byte 0 +------------------------------+
//          | disk offset of the block u64 |
//        8 +---------------+--------------+
//          | generation u32| check u32    |  check = low 32 bits of
//       16 +---------------+--------------+        mix(offset ^ gen << 32 ^ seed ^ MAGIC)
//          | payload: u64 words w[k] = base + k * GOLDEN, k = 0, 1, ...
//          |   base = mix(seed ^ offset * GOLDEN ^ gen)
//          +------------------------------+
//
// A block of generation 0 has never been written: it must read as zeros.
// The payload is a function of (offset, generation, seed), so regenerating
// and comparing it checks every byte, which is stronger than a checksum and
// costs one add and one compare per 16 bytes.

import { isZeroAt } from "./lib/zero";

@inline const HEADER_BYTES: usize = 16;
@inline const GOLDEN: u64 = 0x9e3779b97f4a7c15;
// "hvio" as a little-endian u32 in the high word: keeps an all-zero header
// (offset 0, generation 0) from having check 0.
@inline const MAGIC: u64 = 0x6f697668_00000000;

// splitmix64's finaliser (Steele, Lea and Flood 2014).
@inline
function mix(z: u64): u64 {
  z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >>> 27)) * 0x94d049bb133111eb;
  return z ^ (z >>> 31);
}

// ---------------------------------------------------------------- bitmaps

/**
 * Sets sectors [first, first + count) in the bitmap at `bm`. Returns how many
 * of them were clear before (0 = the bitmap did not change, no write needed).
 */
export function bitmapSet(bm: usize, first: u32, count: u32): u32 {
  const was = bitmapCount(bm, first, count);
  let s = first;
  const end = first + count;
  // Head: bits up to the next byte boundary.
  while (s < end && (s & 7) != 0) {
    store<u8>(bm + (s >>> 3), load<u8>(bm + (s >>> 3)) | (<u8>0x80 >>> <u8>(s & 7)));
    s++;
  }
  const fullBytes = (end - s) >>> 3;
  if (fullBytes > 0) {
    memory.fill(bm + (s >>> 3), 0xff, fullBytes);
    s += fullBytes << 3;
  }
  while (s < end) {
    store<u8>(bm + (s >>> 3), load<u8>(bm + (s >>> 3)) | (<u8>0x80 >>> <u8>(s & 7)));
    s++;
  }
  return count - was;
}

/** Counts the set sectors in [first, first + count). */
export function bitmapCount(bm: usize, first: u32, count: u32): u32 {
  let s = first;
  const end = first + count;
  let n: u32 = 0;
  while (s < end && (s & 7) != 0) {
    n += (load<u8>(bm + (s >>> 3)) >>> <u8>(7 - (s & 7))) & 1;
    s++;
  }
  // Whole u64 words: bit order inside does not matter to a population count.
  while (s + 64 <= end) {
    n += <u32>popcnt<u64>(load<u64>(bm + (s >>> 3)));
    s += 64;
  }
  while (s + 8 <= end) {
    n += popcnt<u32>(<u32>load<u8>(bm + (s >>> 3)));
    s += 8;
  }
  while (s < end) {
    n += (load<u8>(bm + (s >>> 3)) >>> <u8>(7 - (s & 7))) & 1;
    s++;
  }
  return n;
}

/**
 * Returns the first sector in [first, limit) whose bit equals `value` (0 or
 * 1), or `limit` when there is none: the end of the run that starts at
 * `first`, when called with the opposite of first's bit.
 */
export function bitmapScan(bm: usize, first: u32, limit: u32, value: u32): u32 {
  let s = first;
  // Bytes that are all the other value are skipped whole.
  const skip: u8 = value != 0 ? 0x00 : 0xff;
  const skip64: u64 = value != 0 ? 0 : 0xffffffffffffffff;
  while (s < limit && (s & 7) != 0) {
    if (((load<u8>(bm + (s >>> 3)) >>> <u8>(7 - (s & 7))) & 1) == value) return s;
    s++;
  }
  while (s + 64 <= limit && load<u64>(bm + (s >>> 3)) == skip64) s += 64;
  while (s + 8 <= limit) {
    const b = load<u8>(bm + (s >>> 3));
    if (b != skip) {
      // MSB first: the first matching sector is the byte's highest matching bit.
      const bits: u32 = value != 0 ? <u32>b : <u32>(~b & 0xff);
      return s + (clz<u32>(bits) - 24);
    }
    s += 8;
  }
  while (s < limit) {
    if (((load<u8>(bm + (s >>> 3)) >>> <u8>(7 - (s & 7))) & 1) == value) return s;
    s++;
  }
  return limit;
}

// ---------------------------------------------------------------- zero blocks

/** Returns 1 if the `len` bytes at `ptr` are all zero, else 0. */
export function isZero(ptr: usize, len: usize): u32 {
  return isZeroAt(ptr, len) ? 1 : 0;
}

// ---------------------------------------------------------------- checksums

/**
 * The VHD checksum (specification, "Hard Disk Footer Format", Checksum): the
 * one's complement of the sum of all bytes of the structure, with the four
 * bytes of the checksum field at `skipAt` counted as zero.
 */
export function vhdChecksum(ptr: usize, len: usize, skipAt: usize): u32 {
  let sum: u32 = 0;
  for (let i: usize = 0; i < len; i++) {
    if (i - skipAt < 4) continue;
    sum += <u32>load<u8>(ptr + i);
  }
  return ~sum;
}

// ---------------------------------------------------------------- I/O pattern

@inline
function headerCheck(offset: u64, gen: u32, seed: u64): u32 {
  return <u32>mix(offset ^ (<u64>gen << 32) ^ seed ^ MAGIC);
}

@inline
function payloadBase(offset: u64, gen: u32, seed: u64): u64 {
  return mix(seed ^ (offset * GOLDEN) ^ <u64>gen);
}

/**
 * Fills `len` bytes at `ptr` (whole blocks of `blockSize`) with the pattern
 * of the blocks starting at disk offset `diskOffset`, all of generation `gen`.
 */
export function patternFill(
  ptr: usize,
  len: usize,
  blockSize: usize,
  diskOffset: u64,
  gen: u32,
  seed: u64,
): void {
  for (let at: usize = 0; at + blockSize <= len; at += blockSize) {
    const p = ptr + at;
    const offset = diskOffset + <u64>at;
    store<u64>(p, offset);
    store<u32>(p, gen, 8);
    store<u32>(p, headerCheck(offset, gen, seed), 12);
    const base = payloadBase(offset, gen, seed);
    // Two words per 16-byte store; the payload starts 16-byte aligned.
    let v = i64x2(<i64>base, <i64>(base + GOLDEN));
    const step = i64x2.splat(<i64>(GOLDEN * 2));
    for (let i = HEADER_BYTES; i < blockSize; i += 16) {
      v128.store(p + i, v);
      v = i64x2.add(v, step);
    }
  }
}

/**
 * Checks `len` bytes at `ptr` (whole blocks of `blockSize`, the first at disk
 * offset `diskOffset`) against the generations the writer recorded: u32
 * `gens[firstBlock + i]` for block i. Returns the index of the first block
 * that differs from what it must hold, or -1 when every block is intact.
 */
export function patternVerify(
  ptr: usize,
  len: usize,
  blockSize: usize,
  diskOffset: u64,
  gens: usize,
  firstBlock: u32,
  seed: u64,
): i32 {
  let index: i32 = 0;
  for (let at: usize = 0; at + blockSize <= len; at += blockSize, index++) {
    const p = ptr + at;
    const gen = load<u32>(gens + ((<usize>firstBlock + <usize>index) << 2));
    if (gen == 0) {
      if (!isZeroAt(p, blockSize)) return index;
      continue;
    }
    const offset = diskOffset + <u64>at;
    if (load<u64>(p) != offset || load<u32>(p, 8) != gen) return index;
    if (load<u32>(p, 12) != headerCheck(offset, gen, seed)) return index;
    const base = payloadBase(offset, gen, seed);
    let v = i64x2(<i64>base, <i64>(base + GOLDEN));
    const step = i64x2.splat(<i64>(GOLDEN * 2));
    let diff = i64x2.splat(0);
    for (let i = HEADER_BYTES; i < blockSize; i += 16) {
      diff = v128.or(diff, v128.xor(v128.load(p + i), v));
      v = i64x2.add(v, step);
    }
    if (v128.any_true(diff)) return index;
  }
  return -1;
}
