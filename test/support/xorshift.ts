/**
 * `n` bytes from xorshift32 (Marsaglia, "Xorshift RNGs", 2003: shifts 13,
 * 17, 5), the low byte of each state: deterministic, so a failure repeats,
 * and with no short period, so a byte misplaced by a whole block or a
 * mebibyte shows. A seed of 0, which xorshift never leaves, is taken as 1.
 */
export function xorshiftBytes(seed: number, n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
