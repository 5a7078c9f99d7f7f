// XXH64 with seed 0, after the reference (Yann Collet, xxhash.h): four
// 64-bit lanes over 32-byte stripes, then 8-, 4- and 1-byte tails and the
// avalanche. A library, not a kernel module (scripts/build-wasm.mjs builds
// only top-level files): the page and stream modules both compile it in.

@inline const P1: u64 = 11400714785074694791;
@inline const P2: u64 = 14029467366897019727;
@inline const P3: u64 = 1609587929392839161;
@inline const P4: u64 = 9650029242287828579;
@inline const P5: u64 = 2870177450012600261;

@inline
function lane(acc: u64, input: u64): u64 {
  return rotl<u64>(acc + input * P2, 31) * P1;
}

@inline
function mergeLane(acc: u64, value: u64): u64 {
  return (acc ^ lane(0, value)) * P1 + P4;
}

/** XXH64 (seed 0) of `length` bytes at `ptr`. */
export function xxh64At(ptr: usize, length: usize): u64 {
  const end = ptr + length;
  let p = ptr;
  let h: u64;
  if (length >= 32) {
    let v1: u64 = P1 + P2;
    let v2: u64 = P2;
    let v3: u64 = 0;
    let v4: u64 = 0 - P1;
    const limit = end - 32;
    while (p <= limit) {
      v1 = lane(v1, load<u64>(p));
      v2 = lane(v2, load<u64>(p, 8));
      v3 = lane(v3, load<u64>(p, 16));
      v4 = lane(v4, load<u64>(p, 24));
      p += 32;
    }
    h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
    h = mergeLane(h, v1);
    h = mergeLane(h, v2);
    h = mergeLane(h, v3);
    h = mergeLane(h, v4);
  } else {
    h = P5;
  }
  h += <u64>length;
  while (p + 8 <= end) {
    h ^= lane(0, load<u64>(p));
    h = rotl<u64>(h, 27) * P1 + P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= <u64>load<u32>(p) * P1;
    h = rotl<u64>(h, 23) * P2 + P3;
    p += 4;
  }
  while (p < end) {
    h ^= <u64>load<u8>(p) * P5;
    h = rotl<u64>(h, 11) * P1;
    p++;
  }
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}
