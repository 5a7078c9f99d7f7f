import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/checksum.ts (u32 values passed as i32). */
export interface ChecksumExports {
  onesSum(ptr: number, length: number, seed: number): number;
  copyAndSum(dst: number, src: number, length: number, seed: number): number;
  naiveSum(ptr: number, length: number, seed: number): number;
  fillIpv4HeaderChecksum(ptr: number, headerBytes: number): number;
  incrementalUpdate(checksum: number, m: number, m2: number): number;
}

/**
 * Typed, bounds-checked calls into the checksum kernels (RFC 1071 / 1624).
 * Every offset and length is checked against its region before wasm runs.
 */
export class ChecksumKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: ChecksumExports,
  ) {}

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): ChecksumKernel {
    return new ChecksumKernel(
      memory,
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

  /**
   * Writes the header checksum of the IPv4 header of `headerBytes` (20 to
   * 60, a multiple of 4: RFC 791 section 3.1) at `start`; returns it.
   */
  fillIpv4Header(region: Region, start: number, headerBytes: number): number {
    if (!Number.isInteger(headerBytes) || headerBytes < 20 || headerBytes > 60 || headerBytes % 4) {
      throw new RangeError(`an IPv4 header is 20 to 60 bytes in 4s, not ${headerBytes}`);
    }
    return (
      this.k.fillIpv4HeaderChecksum(
        region.check(start, headerBytes, "IPv4 header"),
        headerBytes,
      ) >>> 0
    );
  }

  /** RFC 1624 incremental update of a checksum for a 16-bit field changed from m to m2. */
  incremental(checksum: number, m: number, m2: number): number {
    return this.k.incrementalUpdate(checksum & 0xffff, m & 0xffff, m2 & 0xffff) >>> 0;
  }
}
