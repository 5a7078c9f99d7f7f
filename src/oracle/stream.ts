/**
 * The plain TypeScript oracle for the stream kernels: XXH64 in BigInt
 * arithmetic, one byte or word at a time, straight from the reference
 * (xxhash.h), and page gather/scatter one byte at a time. Property tests
 * hold assembly/stream.ts equal to it.
 */

const MASK = (1n << 64n) - 1n;
const P1 = 11400714785074694791n;
const P2 = 14029467366897019727n;
const P3 = 1609587929392839161n;
const P4 = 9650029242287828579n;
const P5 = 2870177450012600261n;

function rotl(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & MASK;
}

function lane(acc: bigint, input: bigint): bigint {
  return (rotl((acc + input * P2) & MASK, 31n) * P1) & MASK;
}

function mergeLane(acc: bigint, value: bigint): bigint {
  return (((acc ^ lane(0n, value)) * P1 + P4) & MASK) as bigint;
}

function u64At(bytes: Uint8Array, at: number): bigint {
  let value = 0n;
  for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] ?? 0);
  return value;
}

function u32At(bytes: Uint8Array, at: number): bigint {
  let value = 0n;
  for (let i = 3; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] ?? 0);
  return value;
}

/** XXH64 with seed 0 of `bytes`. */
export function xxh64Oracle(bytes: Uint8Array): bigint {
  const length = bytes.length;
  let p = 0;
  let h: bigint;
  if (length >= 32) {
    let v1 = (P1 + P2) & MASK;
    let v2 = P2;
    let v3 = 0n;
    let v4 = (0n - P1) & MASK;
    while (p + 32 <= length) {
      v1 = lane(v1, u64At(bytes, p));
      v2 = lane(v2, u64At(bytes, p + 8));
      v3 = lane(v3, u64At(bytes, p + 16));
      v4 = lane(v4, u64At(bytes, p + 24));
      p += 32;
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & MASK;
    h = mergeLane(h, v1);
    h = mergeLane(h, v2);
    h = mergeLane(h, v3);
    h = mergeLane(h, v4);
  } else {
    h = P5;
  }
  h = (h + BigInt(length)) & MASK;
  while (p + 8 <= length) {
    h ^= lane(0n, u64At(bytes, p));
    h = (rotl(h, 27n) * P1 + P4) & MASK;
    p += 8;
  }
  if (p + 4 <= length) {
    h ^= (u32At(bytes, p) * P1) & MASK;
    h = (rotl(h, 23n) * P2 + P3) & MASK;
    p += 4;
  }
  while (p < length) {
    h ^= (BigInt(bytes[p] ?? 0) * P5) & MASK;
    h = (rotl(h, 11n) * P1) & MASK;
    p++;
  }
  h ^= h >> 33n;
  h = (h * P2) & MASK;
  h ^= h >> 29n;
  h = (h * P3) & MASK;
  h ^= h >> 32n;
  return h;
}

/** Copies the listed pages of `ram` into one array, back to back, a byte at a time. */
export function gatherOracle(
  ram: Uint8Array,
  pageBytes: number,
  list: readonly number[],
): Uint8Array {
  const out = new Uint8Array(list.length * pageBytes);
  list.forEach((page, i) => {
    for (let b = 0; b < pageBytes; b++) out[i * pageBytes + b] = ram[page * pageBytes + b] ?? 0;
  });
  return out;
}

/** Writes back-to-back pages of `src` into `ram` where `list` says, a byte at a time. */
export function scatterOracle(
  src: Uint8Array,
  list: readonly number[],
  ram: Uint8Array,
  pageBytes: number,
): void {
  list.forEach((page, i) => {
    for (let b = 0; b < pageBytes; b++) ram[page * pageBytes + b] = src[i * pageBytes + b] ?? 0;
  });
}
