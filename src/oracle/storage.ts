import { GOLDEN, mix64 } from "../workload/splitmix.js";

/*
 * Plain TypeScript oracles for assembly/storage.ts: one bit, one byte, one
 * word at a time, BigInt where the kernel uses u64. Tests and benchmarks only.
 */

const MASK64 = (1n << 64n) - 1n;
const MAGIC = 0x6f697668_00000000n;

/** The sector's bit in a VHD sector bitmap (MSB first). */
export function bitOracle(bitmap: Uint8Array, sector: number): 0 | 1 {
  return (((bitmap[sector >> 3] ?? 0) >> (7 - (sector & 7))) & 1) as 0 | 1;
}

/** Sets [first, first + count); returns how many were clear. */
export function bitmapSetOracle(bitmap: Uint8Array, first: number, count: number): number {
  let newly = 0;
  for (let s = first; s < first + count; s++) {
    if (bitOracle(bitmap, s) === 0) newly++;
    bitmap[s >> 3] = (bitmap[s >> 3] ?? 0) | (0x80 >> (s & 7));
  }
  return newly;
}

/** Counts set sectors in [first, first + count). */
export function bitmapCountOracle(bitmap: Uint8Array, first: number, count: number): number {
  let n = 0;
  for (let s = first; s < first + count; s++) n += bitOracle(bitmap, s);
  return n;
}

/** First sector in [first, limit) whose bit is `value`, or `limit`. */
export function bitmapScanOracle(
  bitmap: Uint8Array,
  first: number,
  limit: number,
  value: 0 | 1,
): number {
  for (let s = first; s < limit; s++) if (bitOracle(bitmap, s) === value) return s;
  return limit;
}

/** True when every byte is zero. */
export function isZeroOracle(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** The VHD checksum: one's complement of the byte sum, the field at `skipAt` as zero. */
export function vhdChecksumOracle(bytes: Uint8Array, skipAt: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (i >= skipAt && i < skipAt + 4) continue;
    sum = (sum + (bytes[i] ?? 0)) >>> 0;
  }
  return ~sum >>> 0;
}

/** One I/O block of the workload pattern, as the kernel must write it. */
export function patternBlockOracle(
  blockSize: number,
  offset: number,
  gen: number,
  seed: bigint,
): Uint8Array {
  const block = new Uint8Array(blockSize);
  const view = new DataView(block.buffer);
  const off = BigInt(offset);
  const s = BigInt.asUintN(64, seed);
  view.setBigUint64(0, off, true);
  view.setUint32(8, gen, true);
  view.setUint32(12, Number(mix64(off ^ (BigInt(gen) << 32n) ^ s ^ MAGIC) & 0xffffffffn), true);
  const base = mix64(s ^ ((off * GOLDEN) & MASK64) ^ BigInt(gen));
  for (let i = 16, k = 0n; i < blockSize; i += 8, k++) {
    view.setBigUint64(i, (base + k * GOLDEN) & MASK64, true);
  }
  return block;
}

/** Index of the first block that is not what its generation says, or -1. */
export function patternVerifyOracle(
  bytes: Uint8Array,
  blockSize: number,
  diskOffset: number,
  gens: Uint32Array,
  seed: bigint,
): number {
  for (let i = 0; (i + 1) * blockSize <= bytes.length; i++) {
    const offset = diskOffset + i * blockSize;
    const gen = gens[offset / blockSize] ?? 0;
    const got = bytes.subarray(i * blockSize, (i + 1) * blockSize);
    const want =
      gen === 0 ? new Uint8Array(blockSize) : patternBlockOracle(blockSize, offset, gen, seed);
    for (let j = 0; j < blockSize; j++) if (got[j] !== want[j]) return i;
  }
  return -1;
}
