import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/bandwidth.ts. */
export interface BandwidthExports {
  readSweep(ptr: number, length: number): number;
  copyBytes(dst: number, src: number, length: number): void;
  fillBytes(dst: number, value: number, length: number): void;
}

/** Memory-bandwidth bounds for benchmarks: read every byte once, copy, fill. */
export class BandwidthKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: BandwidthExports,
  ) {}

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): BandwidthKernel {
    return new BandwidthKernel(
      memory,
      instantiateKernel<BandwidthExports>(compileKernel("bandwidth"), memory),
    );
  }

  /** Reads `length` bytes of `region` from `start` once; returns a fold of them. */
  read(region: Region, start = 0, length = region.byteLength - start): number {
    return this.k.readSweep(region.check(start, length, "read sweep"), length) >>> 0;
  }

  /** Copies `length` bytes between regions. */
  copy(dst: Region, dstStart: number, src: Region, srcStart: number, length: number): void {
    this.k.copyBytes(
      dst.check(dstStart, length, "copy target"),
      src.check(srcStart, length, "copy source"),
      length,
    );
  }

  /** Fills `length` bytes of a region with a byte value. */
  fill(region: Region, value: number, start = 0, length = region.byteLength - start): void {
    this.k.fillBytes(region.check(start, length, "fill"), value & 0xff, length);
  }
}
