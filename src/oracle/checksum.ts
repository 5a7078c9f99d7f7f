/**
 * The plain TypeScript oracle for the checksum kernels (RFC 1071, RFC 1624):
 * one byte at a time, big-endian words, end-around carry after every add.
 * Property tests hold assembly/checksum.ts equal to it; benchmarks run it as
 * the baseline.
 */

/** Adds two 16-bit one's-complement values with end-around carry. */
export function onesAdd(a: number, b: number): number {
  const s = (a & 0xffff) + (b & 0xffff);
  return (s & 0xffff) + (s >>> 16);
}

/**
 * RFC 1071 partial sum of `length` bytes of `bytes` from `start`, added to
 * `seed`: the 16-bit one's-complement sum in network order, not complemented.
 */
export function onesSumOracle(
  bytes: Uint8Array,
  start = 0,
  length = bytes.length - start,
  seed = 0,
): number {
  let sum = seed & 0xffff;
  const end = start + length;
  let at = start;
  for (; at + 1 < end; at += 2) {
    sum = onesAdd(sum, ((bytes[at] ?? 0) << 8) | (bytes[at + 1] ?? 0));
  }
  if (at < end) sum = onesAdd(sum, (bytes[at] ?? 0) << 8);
  return sum;
}

/** The Internet checksum (the complement of the partial sum) of a byte range. */
export function internetChecksumOracle(
  bytes: Uint8Array,
  start = 0,
  length = bytes.length - start,
): number {
  return ~onesSumOracle(bytes, start, length) & 0xffff;
}

/**
 * RFC 1624 equation 3, HC' = ~(~HC + ~m + m'), as the oracle computes it: a
 * 16-bit field changed from `m` to `m2` in data whose checksum was `checksum`.
 * Erratum 4782: when the field did not change, neither does the checksum.
 */
export function incrementalUpdateOracle(checksum: number, m: number, m2: number): number {
  if ((m & 0xffff) === (m2 & 0xffff)) return checksum & 0xffff;
  return ~onesAdd(onesAdd(~checksum & 0xffff, ~m & 0xffff), m2 & 0xffff) & 0xffff;
}
