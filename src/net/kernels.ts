import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "../wasm/loader.js";

/** The raw exports of assembly/checksum.ts (u32 values passed as i32). */
export interface ChecksumExports {
  onesSum(ptr: number, length: number, seed: number): number;
  copyAndSum(dst: number, src: number, length: number, seed: number): number;
  naiveSum(ptr: number, length: number, seed: number): number;
  fillIpv4HeaderChecksum(ptr: number, headerBytes: number): number;
  incrementalUpdate(checksum: number, m: number, m2: number): number;
}

/** The raw exports of assembly/segment.ts. */
export interface SegmentExports {
  segment(
    hdr: number,
    hdrLength: number,
    l3: number,
    l4: number,
    flags: number,
    payload: number,
    payloadLength: number,
    mss: number,
    out: number,
    table: number,
  ): number;
  checkFrame(
    frame: number,
    l3: number,
    l4: number,
    end: number,
    dst: number,
    flags: number,
  ): number;
}

/** The raw exports of assembly/rss.ts. */
export interface RssExports {
  buildTable(key: number, keyLength: number, table: number): void;
  hash(table: number, input: number, length: number): number;
  hashBatch(
    table: number,
    inputs: number,
    stride: number,
    length: number,
    count: number,
    out: number,
  ): number;
}

/**
 * Typed, bounds-checked calls into the checksum kernels (RFC 1071 / 1624).
 * Every offset and length is checked against its region before wasm runs.
 */
export class ChecksumKernel {
  constructor(readonly k: ChecksumExports) {}

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): ChecksumKernel {
    return new ChecksumKernel(
      instantiateKernel<ChecksumExports>(compileKernel("checksum"), memory),
    );
  }

  /** RFC 1071 partial sum (network order, not complemented) of a byte range, plus `seed`. */
  sum(region: Region, start: number, length: number, seed = 0): number {
    return this.k.onesSum(region.check(start, length, "checksum"), length, seed & 0xffff) >>> 0;
  }

  /** The Internet checksum (complement of the partial sum) of a byte range. */
  checksum(region: Region, start: number, length: number): number {
    return ~this.sum(region, start, length) & 0xffff;
  }

  /** The naive 16-bit loop: same result as {@link sum}, for benchmarks. */
  naive(region: Region, start: number, length: number, seed = 0): number {
    return this.k.naiveSum(region.check(start, length, "checksum"), length, seed & 0xffff) >>> 0;
  }

  /** Copies a byte range between regions while summing it; returns the partial sum plus `seed`. */
  copyAndSum(
    dst: Region,
    dstStart: number,
    src: Region,
    srcStart: number,
    length: number,
    seed = 0,
  ): number {
    const to = dst.check(dstStart, length, "copy target");
    const from = src.check(srcStart, length, "copy source");
    if (to < from + length && from < to + length) {
      throw new RangeError("copyAndSum: source and target overlap");
    }
    return this.k.copyAndSum(to, from, length, seed & 0xffff) >>> 0;
  }

  /** RFC 1624 incremental update of a checksum for a 16-bit field changed from m to m2. */
  incremental(checksum: number, m: number, m2: number): number {
    return this.k.incrementalUpdate(checksum & 0xffff, m & 0xffff, m2 & 0xffff) >>> 0;
  }
}
