/**
 * The plain TypeScript oracle for the stream kernels: XXH64 (the page
 * oracle's, in BigInt arithmetic straight from xxhash.h) and page
 * gather/scatter one byte at a time. Property tests
 * hold assembly/stream.ts equal to it.
 */

/** XXH64 with seed 0 of `bytes`: the one oracle, shared with the page kernels'. */
export { xxh64 as xxh64Oracle } from "./page.js";

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
