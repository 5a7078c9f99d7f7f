// Guest write workloads: generators that act like vCPUs, picking guest pages
// to write, writing real bytes into guest RAM (content mode) or not (metadata
// mode), and marking the dirty bitmap or the vCPU's dirty ring as they go.
//
// Workload descriptor (one per vCPU, 96 bytes, little-endian):
//
//   byte  0 +-----------------------------+
//           | rng state u64 (splitmix64)  |
//         8 +--------------+--------------+
//           | kind u32     | flags u32    |   kind: 0 uniform, 1 hot set,
//        16 +--------------+--------------+         2 sequential, 3 zipf
//           | lastPage u32 | hotBase u32  |   flags: bit 0 content, bit 1 ring
//        24 +--------------+--------------+
//           | hotPages u32 | pageShift u32|
//        32 +-----------------------------+
//           | hotThreshold u64 (p * 2^32) |
//        40 +--------------+--------------+
//           | cursor u32   | stride u32   |   sequential sweep position, step
//        48 +--------------+--------------+
//           | scatter u32  | (reserved)   |   zipf rank -> page multiplier
//        56 +-----------------------------+
//           | zipf s f64                  |
//        64 | zipf hIntegralX1 f64        |
//        72 | zipf hIntegralN f64         |
//        80 | zipf sDiv f64               |
//        88 | writes u64 (total so far)   |
//        96 +-----------------------------+

import { epochEnter, epochFollow, epochLeave, markPage, ringPush } from "./dirty";

@inline const DESCRIPTOR_BYTES: usize = 96;
@inline const D_RNG: usize = 0;
@inline const D_KIND: usize = 8;
@inline const D_FLAGS: usize = 12;
@inline const D_LAST_PAGE: usize = 16;
@inline const D_HOT_BASE: usize = 20;
@inline const D_HOT_PAGES: usize = 24;
@inline const D_PAGE_SHIFT: usize = 28;
@inline const D_HOT_THRESHOLD: usize = 32;
@inline const D_CURSOR: usize = 40;
@inline const D_STRIDE: usize = 44;
@inline const D_SCATTER: usize = 48;
@inline const D_ZIPF_S: usize = 56;
@inline const D_ZIPF_X1: usize = 64;
@inline const D_ZIPF_N: usize = 72;
@inline const D_ZIPF_SDIV: usize = 80;
@inline const D_WRITES: usize = 88;

@inline const KIND_UNIFORM: u32 = 0;
@inline const KIND_HOT_SET: u32 = 1;
@inline const KIND_SEQUENTIAL: u32 = 2;
@inline const KIND_ZIPF: u32 = 3;
@inline const FLAG_CONTENT: u32 = 1;
@inline const FLAG_RING: u32 = 2;

// splitmix64 (Steele, Lea and Flood 2014): one add, two multiplies per value.
@inline
function mix(z: u64): u64 {
  z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >>> 27)) * 0x94d049bb133111eb;
  return z ^ (z >>> 31);
}
@inline const GOLDEN: u64 = 0x9e3779b97f4a7c15;

// Lemire's multiply-shift: a 32-bit random number scaled to [0, n), n <= 2^32.
@inline
function below(r32: u64, n: u64): u64 {
  return (r32 * n) >>> 32;
}

// Rejection-inversion Zipf sampling (Hoermann and Derflinger 1996), as in
// Apache Commons RNG: exact for any exponent s > 0, s != 1 handled smoothly.
@inline
function helper1(x: f64): f64 {
  return Math.abs(x) > 1e-8 ? Math.log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x));
}
@inline
function helper2(x: f64): f64 {
  return Math.abs(x) > 1e-8 ? Math.expm1(x) / x : 1 + x * 0.5 * (1 + (x * (1 + 0.25 * x)) / 3.0);
}
function hIntegral(x: f64, s: f64): f64 {
  const logX = Math.log(x);
  return helper2((1 - s) * logX) * logX;
}
function h(x: f64, s: f64): f64 {
  return Math.exp(-s * Math.log(x));
}
function hIntegralInverse(x: f64, s: f64): f64 {
  let t = x * (1 - s);
  if (t < -1) t = -1;
  return Math.exp(helper1(t) * x);
}

/** One Zipf rank in [1, n]; advances the rng state at `desc`. */
function zipfRank(desc: usize, n: f64): u64 {
  const s = load<f64>(desc + D_ZIPF_S);
  const x1 = load<f64>(desc + D_ZIPF_X1);
  const hn = load<f64>(desc + D_ZIPF_N);
  const sDiv = load<f64>(desc + D_ZIPF_SDIV);
  let state = load<u64>(desc + D_RNG);
  for (;;) {
    state += GOLDEN;
    const u01 = <f64>(mix(state) >>> 11) * 1.1102230246251565e-16; // 2^-53
    const u = hn + u01 * (x1 - hn);
    const x = hIntegralInverse(u, s);
    let k = Math.floor(x + 0.5);
    if (k < 1) k = 1;
    else if (k > n) k = n;
    if (k - x <= sDiv || u >= hIntegral(k + 0.5, s) - h(k, s)) {
      store<u64>(desc + D_RNG, state);
      return <u64>k;
    }
  }
  return 0; // not reached
}

/**
 * Runs `count` guest writes of the vCPU described at `desc`. Each picks a
 * page, writes 8 random bytes at a random 8-byte-aligned offset of it in
 * `ram` (content mode), and marks it in `bitmap`, or logs it in the ring at
 * `ring` of `ringSize` entries (ring mode, falling back to the bitmap when
 * full). Returns how many writes found their page clean (bitmap) or were
 * logged (ring).
 */
export function runWrites(
  desc: usize,
  count: u32,
  bitmap: usize,
  ram: usize,
  ring: usize,
  ringSize: u32,
): u32 {
  const kind = load<u32>(desc + D_KIND);
  const flags = load<u32>(desc + D_FLAGS);
  const pages = <u64>load<u32>(desc + D_LAST_PAGE) + 1;
  const shift = load<u32>(desc + D_PAGE_SHIFT);
  const offsetMask = ((<u32>1) << shift) - 8;
  let newly: u32 = 0;

  if (kind == KIND_UNIFORM && flags == 0) {
    // The hot path: uniform writes in metadata mode, marking the bitmap.
    let state = load<u64>(desc + D_RNG);
    for (let i: u32 = 0; i < count; i++) {
      state += GOLDEN;
      newly += markPage(bitmap, <u32>below(mix(state) >>> 32, pages));
    }
    store<u64>(desc + D_RNG, state);
    store<u64>(desc + D_WRITES, load<u64>(desc + D_WRITES) + <u64>count);
    return newly;
  }

  const hotBase = <u64>load<u32>(desc + D_HOT_BASE);
  const hotPages = <u64>load<u32>(desc + D_HOT_PAGES);
  const hotThreshold = load<u64>(desc + D_HOT_THRESHOLD);
  const stride = <u64>load<u32>(desc + D_STRIDE);
  const scatter = <u64>load<u32>(desc + D_SCATTER);
  let cursor = <u64>load<u32>(desc + D_CURSOR);
  for (let i: u32 = 0; i < count; i++) {
    let page: u64;
    if (kind == KIND_ZIPF) {
      // Scatter ranks over the guest so that hot pages are not all adjacent.
      page = ((zipfRank(desc, <f64>pages) - 1) * scatter) % pages;
    } else {
      let state = load<u64>(desc + D_RNG) + GOLDEN;
      store<u64>(desc + D_RNG, state);
      const r = mix(state);
      if (kind == KIND_HOT_SET) {
        page =
          (r & 0xffffffff) < hotThreshold
            ? hotBase + below(r >>> 32, hotPages)
            : below(r >>> 32, pages);
      } else if (kind == KIND_SEQUENTIAL) {
        page = cursor;
        cursor = (cursor + stride) % pages;
      } else {
        page = below(r >>> 32, pages);
      }
    }
    if (flags & FLAG_CONTENT) {
      let state = load<u64>(desc + D_RNG) + GOLDEN;
      store<u64>(desc + D_RNG, state);
      const value = mix(state);
      const at = ram + (<usize>page << shift) + (<usize>((<u32>value) & offsetMask));
      store<u64>(at, value);
    }
    if (flags & FLAG_RING) newly += ringPush(ring, ringSize, <u32>page, bitmap);
    else newly += markPage(bitmap, <u32>page);
  }
  store<u32>(desc + D_CURSOR, <u32>cursor);
  store<u64>(desc + D_WRITES, load<u64>(desc + D_WRITES) + <u64>count);
  return newly;
}

// Writes between two reads of the epoch in pair mode: a flip waits for at most
// one batch of a running vCPU (about 5 us of uniform writes).
@inline const PAIR_BATCH: u32 = 1024;

/**
 * Runs `count` writes of the vCPU described at `desc` (as `runWrites`, bitmap
 * mode) as writer `slot` of an epoch-swapped bitmap pair whose control block
 * is at `control` (layout in dirty.ts): it enters the current epoch, marks
 * that epoch's bitmap (`bitmapA` for even epochs, `bitmapB` for odd),
 * re-reads the epoch after every batch of writes, acknowledging a flip, and
 * leaves at the end. Returns how many writes found their page clean in the
 * bitmap they marked.
 */
export function runWritesInPair(
  desc: usize,
  count: u32,
  control: usize,
  slot: u32,
  bitmapA: usize,
  bitmapB: usize,
  ram: usize,
): u32 {
  let epoch = epochEnter(control, slot);
  let newly: u32 = 0;
  let left = count;
  while (left > 0) {
    const take = min<u32>(left, PAIR_BATCH);
    newly += runWrites(desc, take, epoch & 1 ? bitmapB : bitmapA, ram, 0, 0);
    left -= take;
    epoch = epochFollow(control, slot, epoch);
  }
  epochLeave(control, slot);
  return newly;
}

// The descriptor layout drawn above, exported as globals for the TypeScript
// side: its wrapper (src/wasm/workload.ts) reads them when it loads the module
// and refuses a module whose values differ from the ones it writes with.
export const LAYOUT_DESCRIPTOR_BYTES: u32 = <u32>DESCRIPTOR_BYTES;
export const LAYOUT_D_RNG: u32 = <u32>D_RNG;
export const LAYOUT_D_KIND: u32 = <u32>D_KIND;
export const LAYOUT_D_FLAGS: u32 = <u32>D_FLAGS;
export const LAYOUT_D_LAST_PAGE: u32 = <u32>D_LAST_PAGE;
export const LAYOUT_D_HOT_BASE: u32 = <u32>D_HOT_BASE;
export const LAYOUT_D_HOT_PAGES: u32 = <u32>D_HOT_PAGES;
export const LAYOUT_D_PAGE_SHIFT: u32 = <u32>D_PAGE_SHIFT;
export const LAYOUT_D_HOT_THRESHOLD: u32 = <u32>D_HOT_THRESHOLD;
export const LAYOUT_D_CURSOR: u32 = <u32>D_CURSOR;
export const LAYOUT_D_STRIDE: u32 = <u32>D_STRIDE;
export const LAYOUT_D_SCATTER: u32 = <u32>D_SCATTER;
export const LAYOUT_D_ZIPF_S: u32 = <u32>D_ZIPF_S;
export const LAYOUT_D_ZIPF_X1: u32 = <u32>D_ZIPF_X1;
export const LAYOUT_D_ZIPF_N: u32 = <u32>D_ZIPF_N;
export const LAYOUT_D_ZIPF_SDIV: u32 = <u32>D_ZIPF_SDIV;
export const LAYOUT_D_WRITES: u32 = <u32>D_WRITES;
export const LAYOUT_KIND_UNIFORM: u32 = KIND_UNIFORM;
export const LAYOUT_KIND_HOT_SET: u32 = KIND_HOT_SET;
export const LAYOUT_KIND_SEQUENTIAL: u32 = KIND_SEQUENTIAL;
export const LAYOUT_KIND_ZIPF: u32 = KIND_ZIPF;
export const LAYOUT_FLAG_CONTENT: u32 = FLAG_CONTENT;
export const LAYOUT_FLAG_RING: u32 = FLAG_RING;
