/**
 * The plain TypeScript oracle for the RSS Toeplitz hash: the bit loop of
 * Microsoft's RSS specification ("RSS Hashing Functions"). For every input bit
 * from the left, if it is 1, XOR the leftmost 32 bits of the key into the
 * result, then shift the key left by one.
 */
export function toeplitzOracle(key: Uint8Array, input: Uint8Array): number {
  let result = 0;
  // The leftmost 32 bits of the (shifted) key, and the index of the next key
  // bit to shift in.
  let window =
    (((key[0] ?? 0) << 24) | ((key[1] ?? 0) << 16) | ((key[2] ?? 0) << 8) | (key[3] ?? 0)) >>> 0;
  let next = 32;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      if ((byte >>> bit) & 1) result = (result ^ window) >>> 0;
      const keyBit = ((key[next >>> 3] ?? 0) >>> (7 - (next & 7))) & 1;
      window = ((window << 1) | keyBit) >>> 0;
      next++;
    }
  }
  return result >>> 0;
}
