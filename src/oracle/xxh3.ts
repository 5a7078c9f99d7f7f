/**
 * The plain TypeScript oracle for the XXH3-64 page hash (assembly/lib/xxh3.ts):
 * the xxHash specification's long-input path (more than 240 bytes, seed 0,
 * default secret), one 64-bit lane at a time with BigInt arithmetic.
 */

const MASK64 = (1n << 64n) - 1n;
const MASK32 = (1n << 32n) - 1n;
const PRIME32_1 = 0x9e3779b1n;
const PRIME32_2 = 0x85ebca77n;
const PRIME32_3 = 0xc2b2ae3dn;
const PRIME64_1 = 0x9e3779b185ebca87n;
const PRIME64_2 = 0xc2b2ae3d27d4eb4fn;
const PRIME64_3 = 0x165667b19e3779f9n;
const PRIME64_4 = 0x85ebca77c2b2ae63n;
const PRIME64_5 = 0x27d4eb2f165667c5n;
const PRIME_MX1 = 0x165667919e3779f9n;

/** The specification's default secret (kSecret), 192 bytes. */
export const XXH3_SECRET = Uint8Array.from([
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

const STRIPE = 64;
const STRIPES_PER_BLOCK = (XXH3_SECRET.length - STRIPE) / 8;
const BLOCK = STRIPE * STRIPES_PER_BLOCK;

/** Shortest input the long-input path takes. */
export const XXH3_LONG_MIN = 241;

function read64(bytes: Uint8Array, at: number): bigint {
  let value = 0n;
  for (let i = 7; i >= 0; i--) value = (value << 8n) | BigInt(bytes[at + i] ?? 0);
  return value;
}

function accumulateStripe(acc: bigint[], input: Uint8Array, at: number, secretAt: number): void {
  for (let i = 0; i < 8; i++) {
    const data = read64(input, at + 8 * i);
    const key = data ^ read64(XXH3_SECRET, secretAt + 8 * i);
    acc[i ^ 1] = ((acc[i ^ 1] ?? 0n) + data) & MASK64;
    acc[i] = ((acc[i] ?? 0n) + (key & MASK32) * (key >> 32n)) & MASK64;
  }
}

function scramble(acc: bigint[]): void {
  const secretAt = XXH3_SECRET.length - STRIPE;
  for (let i = 0; i < 8; i++) {
    let a = acc[i] ?? 0n;
    a ^= a >> 47n;
    a ^= read64(XXH3_SECRET, secretAt + 8 * i);
    acc[i] = (a * PRIME32_1) & MASK64;
  }
}

function mul128Fold64(a: bigint, b: bigint): bigint {
  const product = a * b;
  return (product & MASK64) ^ (product >> 64n);
}

/**
 * XXH3-64 (seed 0, default secret) of `bytes`, which must be longer than
 * 240 bytes (the long-input path; guest pages always are).
 */
export function xxh3Long(bytes: Uint8Array): bigint {
  const n = bytes.length;
  if (n < XXH3_LONG_MIN) throw new RangeError(`XXH3 long input needs over 240 bytes, not ${n}`);
  const acc = [
    PRIME32_3,
    PRIME64_1,
    PRIME64_2,
    PRIME64_3,
    PRIME64_4,
    PRIME32_2,
    PRIME64_5,
    PRIME32_1,
  ];
  const blocks = Math.floor((n - 1) / BLOCK);
  for (let b = 0; b < blocks; b++) {
    for (let s = 0; s < STRIPES_PER_BLOCK; s++) {
      accumulateStripe(acc, bytes, b * BLOCK + s * STRIPE, s * 8);
    }
    scramble(acc);
  }
  const stripes = Math.floor((n - 1 - blocks * BLOCK) / STRIPE);
  for (let s = 0; s < stripes; s++)
    accumulateStripe(acc, bytes, blocks * BLOCK + s * STRIPE, s * 8);
  accumulateStripe(acc, bytes, n - STRIPE, XXH3_SECRET.length - STRIPE - 7);
  let h = (BigInt(n) * PRIME64_1) & MASK64;
  for (let i = 0; i < 4; i++) {
    const lo = (acc[2 * i] ?? 0n) ^ read64(XXH3_SECRET, 11 + 16 * i);
    const hi = (acc[2 * i + 1] ?? 0n) ^ read64(XXH3_SECRET, 11 + 16 * i + 8);
    h = (h + mul128Fold64(lo, hi)) & MASK64;
  }
  h ^= h >> 37n;
  h = (h * PRIME_MX1) & MASK64;
  h ^= h >> 32n;
  return h;
}
