/**
 * The plain TypeScript oracle for the bandwidth-bound kernels
 * (assembly/bandwidth.ts): the read sweep's fold, one byte at a time.
 * Property tests hold the kernel equal to it.
 */

/**
 * The fold the read sweep returns for `bytes`: every whole 64-byte step
 * contributes its little-endian 64-bit words, the bytes after the last
 * step each contribute as a low byte, all ORed together, and the 64-bit OR
 * is folded to 32 bits by XOR of its halves.
 */
export function readSweepOracle(bytes: Uint8Array): number {
  let all = 0n;
  const whole = bytes.length - (bytes.length % 64);
  for (let at = 0; at < whole; at += 8) {
    let word = 0n;
    for (let b = 7; b >= 0; b--) word = (word << 8n) | BigInt(bytes[at + b] ?? 0);
    all |= word;
  }
  for (let at = whole; at < bytes.length; at++) all |= BigInt(bytes[at] ?? 0);
  return Number((all ^ (all >> 32n)) & 0xffffffffn);
}
