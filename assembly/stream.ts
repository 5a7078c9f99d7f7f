// Migration stream kernels: XXH64 over bytes and over guest pages, and the
// page gather/scatter that moves pages between guest RAM and a frame.
//
// XXH64 follows the reference (Yann Collet, xxhash.h, XXH64 with seed 0):
// four 64-bit lanes over 32-byte stripes, then 8-, 4- and 1-byte tails and
// the avalanche. Results are written little-endian to an output address
// because u64 results would cross into JavaScript as BigInt.
//
// A frame's page list, as gatherPages/scatterPages read it:
//
//   list (u32 each)            pages (pageBytes each, in list order)
//   +-------+-------+-----+    +-----------+-----------+-----+
//   | p0    | p1    | ... |    | page p0   | page p1   | ... |
//   +-------+-------+-----+    +-----------+-----------+-----+
//
// Page numbers are trusted here: the TypeScript wrapper checks every one
// against the guest before a kernel runs.

import { xxh64At } from "./lib/xxh64";

/** Writes XXH64 (seed 0) of `length` bytes at `ptr` to `out` (u64, little-endian). */
export function xxh64(ptr: usize, length: u32, out: usize): void {
  store<u64>(out, xxh64At(ptr, <usize>length));
}

/**
 * Writes XXH64 of each of `count` consecutive pages from page `first` of the
 * RAM at `ram` to `out` (one u64 per page).
 */
export function hashPages(ram: usize, pageShift: u32, first: u32, count: u32, out: usize): void {
  const pageBytes = <usize>1 << <usize>pageShift;
  let at = ram + ((<usize>first) << <usize>pageShift);
  for (let i: u32 = 0; i < count; i++) {
    store<u64>(out + ((<usize>i) << 3), xxh64At(at, pageBytes));
    at += pageBytes;
  }
}

/** Copies the `count` pages named in `list` from the RAM at `ram` to `dst`, back to back. */
export function gatherPages(ram: usize, pageShift: u32, list: usize, count: u32, dst: usize): void {
  const pageBytes = <usize>1 << <usize>pageShift;
  let to = dst;
  for (let i: u32 = 0; i < count; i++) {
    const page = <usize>load<u32>(list + ((<usize>i) << 2));
    memory.copy(to, ram + (page << <usize>pageShift), pageBytes);
    to += pageBytes;
  }
}

/** Copies `count` back-to-back pages at `src` into the RAM at `ram`, each where `list` says. */
export function scatterPages(src: usize, list: usize, count: u32, ram: usize, pageShift: u32): void {
  const pageBytes = <usize>1 << <usize>pageShift;
  let from = src;
  for (let i: u32 = 0; i < count; i++) {
    const page = <usize>load<u32>(list + ((<usize>i) << 2));
    memory.copy(ram + (page << <usize>pageShift), from, pageBytes);
    from += pageBytes;
  }
}
