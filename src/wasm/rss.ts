import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

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

/** Longest hash input: IPv6 source and destination (32) and two ports (4). */
export const MAX_HASH_INPUT = 36;
/** Bytes of a key's byte tables: MAX_HASH_INPUT positions of 256 u32 (drawn in assembly/rss.ts). */
export const TOEPLITZ_TABLE_BYTES = MAX_HASH_INPUT * 256 * 4;
/** Longest RSS key the tables are built from (Microsoft's is 40 bytes). */
export const MAX_RSS_KEY = 40;

function checkLength(length: number): void {
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_HASH_INPUT) {
    throw new RangeError(`an RSS hash input is at most ${MAX_HASH_INPUT} bytes, not ${length}`);
  }
}

/**
 * Typed, bounds-checked calls into the Toeplitz hash kernel (RSS). The
 * tables live in a region of {@link TOEPLITZ_TABLE_BYTES} the caller owns;
 * every input, output and table is checked against its region before wasm runs.
 */
export class RssKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: RssExports,
  ) {
    checkKernelLayout("rss", k, { MAX_INPUT: MAX_HASH_INPUT, TABLE_BYTES: TOEPLITZ_TABLE_BYTES });
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): RssKernel {
    return new RssKernel(memory, instantiateKernel<RssExports>(compileKernel("rss"), memory));
  }

  private tableAt(table: Region): number {
    return table.check(0, TOEPLITZ_TABLE_BYTES, "Toeplitz tables");
  }

  /** Builds the byte tables of the key of `length` bytes at `start` in `key`. */
  buildTable(key: Region, start: number, length: number, table: Region): void {
    if (!Number.isSafeInteger(length) || length < 4 || length > MAX_RSS_KEY) {
      throw new RangeError(`an RSS key is 4 to ${MAX_RSS_KEY} bytes, not ${length}`);
    }
    this.k.buildTable(key.check(start, length, "RSS key"), length, this.tableAt(table));
  }

  /** Hashes the input of `length` bytes at `start` in `input`. */
  hash(table: Region, input: Region, start: number, length: number): number {
    checkLength(length);
    return this.k.hash(this.tableAt(table), input.check(start, length, "hash input"), length) >>> 0;
  }

  /**
   * Hashes `count` inputs of `length` bytes, `stride` apart from `start` in
   * `inputs`, writing u32 hashes to `out` at `outStart`; returns their XOR.
   */
  hashBatch(
    table: Region,
    inputs: Region,
    start: number,
    stride: number,
    length: number,
    count: number,
    out: Region,
    outStart: number,
  ): number {
    checkLength(length);
    if (!Number.isSafeInteger(stride) || stride < length || stride >= 2 ** 32) {
      throw new RangeError(`bad batch: input of ${length} bytes every ${stride} bytes`);
    }
    if (!Number.isSafeInteger(count) || count < 0 || count >= 2 ** 32) {
      throw new RegionBoundsError(inputs.name, "hash inputs", `has a bad count ${count}`);
    }
    const span = count === 0 ? 0 : (count - 1) * stride + length;
    return (
      this.k.hashBatch(
        this.tableAt(table),
        inputs.check(start, span, "hash inputs"),
        stride,
        length,
        count,
        out.check(outStart, count * 4, "hash outputs"),
      ) >>> 0
    );
  }
}
