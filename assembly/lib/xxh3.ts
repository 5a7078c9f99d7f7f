// XXH3-64 with seed 0 and the default secret, for inputs longer than 240
// bytes (guest pages: 4 KiB and up), after the xxHash specification (Yann
// Collet, doc/xxhash_spec.md, "XXH3 algorithm", long inputs). A library, not
// a kernel module: the page module compiles it in.
//
// Why XXH3 rather than XXH64 for pages: its inner loop is one 32x32->64
// multiply per 8 bytes, which WebAssembly SIMD does two lanes at a time,
// where XXH64 chains two dependent 64-bit multiplies per 8 bytes per lane.
//
// Long input, 8 accumulators of 64 bits, 64-byte stripes:
//
//   input:  | block 0 (16 stripes) | block 1 | ... | last partial block | ... last 64 bytes |
//   stripe s of a block uses secret[8 s .. 8 s + 64); after each whole block
//   the accumulators are scrambled with secret[128 .. 192); the last 64 bytes
//   of the input are one more stripe, with secret[121 .. 185).
//
//   per 8-byte lane i of a stripe:  key = data ^ secret
//                                   acc[i ^ 1] += data
//                                   acc[i]     += lo32(key) * hi32(key)

@inline const PRIME32_1: u64 = 0x9e3779b1;
@inline const PRIME32_2: u64 = 0x85ebca77;
@inline const PRIME32_3: u64 = 0xc2b2ae3d;
@inline const PRIME64_1: u64 = 0x9e3779b185ebca87;
@inline const PRIME64_2: u64 = 0xc2b2ae3d27d4eb4f;
@inline const PRIME64_3: u64 = 0x165667b19e3779f9;
@inline const PRIME64_4: u64 = 0x85ebca77c2b2ae63;
@inline const PRIME64_5: u64 = 0x27d4eb2f165667c5;
@inline const PRIME_MX1: u64 = 0x165667919e3779f9;

@inline const STRIPE: usize = 64;
@inline const SECRET_BYTES: usize = 192;
/** Stripes per block: (192 - 64) / 8. */
@inline const STRIPES_PER_BLOCK: usize = 16;
@inline const BLOCK: usize = STRIPE * STRIPES_PER_BLOCK;
@inline const SECRET_LASTACC_START: usize = 7;
@inline const SECRET_MERGEACCS_START: usize = 11;

/** Shortest input this long-input path takes (shorter ones use other paths in the specification). */
export const XXH3_LONG_MIN: usize = 241;

// The specification's default secret (kSecret), a constant of the algorithm.
const SECRET: usize = memory.data<u8>([
  0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
  0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
  0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
  0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
  0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
  0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
  0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
  0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
  0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
  0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
  0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
  0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
]);

@inline
function scrambleLane(acc: v128, secret: v128): v128 {
  const mixed = v128.xor(v128.xor(acc, i64x2.shr_u(acc, 47)), secret);
  return i64x2.mul(mixed, i64x2.splat(PRIME32_1));
}

/** The low and high halves of the 128-bit product a * b, XOR-ed. */
@inline
function mul128Fold64(a: u64, b: u64): u64 {
  const aLo = a & 0xffffffff;
  const aHi = a >> 32;
  const bLo = b & 0xffffffff;
  const bHi = b >> 32;
  const loLo = aLo * bLo;
  const hiLo = aHi * bLo;
  const loHi = aLo * bHi;
  const hiHi = aHi * bHi;
  const cross = (loLo >> 32) + (hiLo & 0xffffffff) + loHi;
  const upper = (hiLo >> 32) + (cross >> 32) + hiHi;
  const lower = (cross << 32) | (loLo & 0xffffffff);
  return lower ^ upper;
}

/**
 * XXH3-64 (seed 0, default secret) of `length` bytes at `ptr`; `length`
 * must be at least {@link XXH3_LONG_MIN} (callers check: guest pages are).
 */
export function xxh3LongAt(ptr: usize, length: usize): u64 {
  // Accumulator lanes 0-7 as four pairs, each pair held with its two lanes
  // swapped (s = [acc[2 j + 1], acc[2 j]]): the stripe adds each lane's data
  // to its neighbour (acc[i ^ 1] += data), so in swapped pairs the data adds
  // lane to lane as loaded, and the swap moves to the products, where the
  // shuffle that gathers the key halves makes it for free. Every other step
  // (the scramble, the merge) works lane by lane, so it takes the same
  // lanes swapped. Initialised as the specification says, swapped.
  let s0 = i64x2(<i64>PRIME64_1, <i64>PRIME32_3);
  let s1 = i64x2(<i64>PRIME64_3, <i64>PRIME64_2);
  let s2 = i64x2(<i64>PRIME32_2, <i64>PRIME64_4);
  let s3 = i64x2(<i64>PRIME32_1, <i64>PRIME64_5);
  // The scramble's secret, swapped to match; loaded once per call.
  const ks = SECRET + SECRET_BYTES - STRIPE;
  const x0 = i64x2.shuffle(v128.load(ks), v128.load(ks), 1, 0);
  const x1 = i64x2.shuffle(v128.load(ks, 16), v128.load(ks, 16), 1, 0);
  const x2 = i64x2.shuffle(v128.load(ks, 32), v128.load(ks, 32), 1, 0);
  const x3 = i64x2.shuffle(v128.load(ks, 48), v128.load(ks, 48), 1, 0);
  const blocks = (length - 1) / BLOCK;
  // The whole blocks, then the stripes of the last partial block, then (as
  // a block of one stripe) the last 64 bytes of the input with their own
  // secret offset.
  const tail = ((length - 1) - BLOCK * blocks) / STRIPE;
  let p = ptr;
  for (let b: usize = 0; b <= blocks + 1; b++) {
    let n = STRIPES_PER_BLOCK;
    let secret = SECRET;
    if (b == blocks) {
      n = tail;
    } else if (b > blocks) {
      n = 1;
      secret = SECRET + SECRET_BYTES - STRIPE - SECRET_LASTACC_START;
      p = ptr + length - STRIPE;
    }
    for (let i: usize = 0; i < n; i++) {
      // Per 64-bit lane: acc += swap(data) + lo32(key) * hi32(key), key =
      // data ^ secret; in swapped pairs: s += data + swap(products). Two
      // vectors at a time: one two-operand shuffle gathers the low halves
      // of four keys, each pair's two lanes in swapped order, one the high
      // halves, and extmul_low / extmul_high multiply them, so a vector
      // costs one shuffle for its products and none for its data (the
      // pairing of xxhash.h's XXH3_accumulate_512_sse2; the swap saved four
      // shuffles of the twelve a stripe took, measured 7 % faster).
      const k = secret + (i << 3);
      const d0 = v128.load(p);
      const d1 = v128.load(p, 16);
      const d2 = v128.load(p, 32);
      const d3 = v128.load(p, 48);
      const k0 = v128.xor(d0, v128.load(k));
      const k1 = v128.xor(d1, v128.load(k, 16));
      const k2 = v128.xor(d2, v128.load(k, 32));
      const k3 = v128.xor(d3, v128.load(k, 48));
      const lo01 = i32x4.shuffle(k0, k1, 2, 0, 6, 4);
      const hi01 = i32x4.shuffle(k0, k1, 3, 1, 7, 5);
      const lo23 = i32x4.shuffle(k2, k3, 2, 0, 6, 4);
      const hi23 = i32x4.shuffle(k2, k3, 3, 1, 7, 5);
      s0 = i64x2.add(s0, i64x2.add(i64x2.extmul_low_i32x4_u(lo01, hi01), d0));
      s1 = i64x2.add(s1, i64x2.add(i64x2.extmul_high_i32x4_u(lo01, hi01), d1));
      s2 = i64x2.add(s2, i64x2.add(i64x2.extmul_low_i32x4_u(lo23, hi23), d2));
      s3 = i64x2.add(s3, i64x2.add(i64x2.extmul_high_i32x4_u(lo23, hi23), d3));
      p += STRIPE;
    }
    if (b < blocks) {
      s0 = scrambleLane(s0, x0);
      s1 = scrambleLane(s1, x1);
      s2 = scrambleLane(s2, x2);
      s3 = scrambleLane(s3, x3);
    }
  }
  // Merge: four 128-bit products of accumulator pairs with the secret.
  const m = SECRET + SECRET_MERGEACCS_START;
  let h: u64 = <u64>length * PRIME64_1;
  h += mul128Fold64(
    <u64>i64x2.extract_lane(s0, 1) ^ load<u64>(m),
    <u64>i64x2.extract_lane(s0, 0) ^ load<u64>(m, 8),
  );
  h += mul128Fold64(
    <u64>i64x2.extract_lane(s1, 1) ^ load<u64>(m, 16),
    <u64>i64x2.extract_lane(s1, 0) ^ load<u64>(m, 24),
  );
  h += mul128Fold64(
    <u64>i64x2.extract_lane(s2, 1) ^ load<u64>(m, 32),
    <u64>i64x2.extract_lane(s2, 0) ^ load<u64>(m, 40),
  );
  h += mul128Fold64(
    <u64>i64x2.extract_lane(s3, 1) ^ load<u64>(m, 48),
    <u64>i64x2.extract_lane(s3, 0) ^ load<u64>(m, 56),
  );
  // Avalanche.
  h ^= h >> 37;
  h *= PRIME_MX1;
  h ^= h >> 32;
  return h;
}
