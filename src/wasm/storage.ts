import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/storage.ts. */
export interface StorageExports {
  bitmapSet(bm: number, first: number, count: number): number;
  bitmapCount(bm: number, first: number, count: number): number;
  bitmapScan(bm: number, first: number, limit: number, value: number): number;
  isZero(ptr: number, len: number): number;
  vhdChecksum(ptr: number, len: number, skipAt: number): number;
  patternFill(
    ptr: number,
    len: number,
    blockSize: number,
    diskOffset: bigint,
    gen: number,
    seed: bigint,
  ): void;
  patternVerify(
    ptr: number,
    len: number,
    blockSize: number,
    diskOffset: bigint,
    gens: number,
    firstBlock: number,
    seed: bigint,
  ): number;
}

/** Bytes of an I/O block's pattern header (layout drawn in assembly/storage.ts). */
export const PATTERN_HEADER_BYTES = 16;
/** The smallest I/O block the pattern is defined for: one sector. */
export const PATTERN_MIN_BLOCK = 512;
/** Largest sector number a bitmap call may reach (keeps sector numbers in u32). */
const MAX_SECTORS = 2 ** 32 - 1;

function wholeNumber(value: number, what: string, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} must be a whole number from 0 to ${max}, not ${value}`);
  }
}

/**
 * Typed, bounds-checked calls into the storage kernels. Every offset is
 * relative to the region it is checked against; nothing reaches wasm until
 * the whole span it touches is known to lie inside that region.
 */
export class StorageKernel {
  constructor(private readonly k: StorageExports) {}

  /** Instantiates the kernels on a shared memory. */
  static on(memory: WebAssembly.Memory): StorageKernel {
    return new StorageKernel(instantiateKernel<StorageExports>(compileKernel("storage"), memory));
  }

  private bitmap(region: Region, at: number, first: number, count: number): number {
    wholeNumber(first, "first sector", MAX_SECTORS);
    wholeNumber(count, "sector count", MAX_SECTORS - first);
    return region.check(
      at,
      Math.ceil((first + count) / 8),
      `sector bitmap for ${first + count} sectors`,
    );
  }

  /** Sets sectors [first, first + count); returns how many were clear before. */
  bitmapSet(region: Region, at: number, first: number, count: number): number {
    return this.k.bitmapSet(this.bitmap(region, at, first, count), first, count) >>> 0;
  }

  /** Counts the set sectors in [first, first + count). */
  bitmapCount(region: Region, at: number, first: number, count: number): number {
    return this.k.bitmapCount(this.bitmap(region, at, first, count), first, count) >>> 0;
  }

  /** The first sector in [first, limit) whose bit is `value`, or `limit`. */
  bitmapScan(region: Region, at: number, first: number, limit: number, value: 0 | 1): number {
    if (limit < first)
      throw new RangeError(`scan limit ${limit} is before its first sector ${first}`);
    const p = this.bitmap(region, at, first, limit - first);
    return this.k.bitmapScan(p, first, limit, value) >>> 0;
  }

  /** True when `len` bytes at `at` are all zero. */
  isZero(region: Region, at: number, len: number): boolean {
    return this.k.isZero(region.check(at, len, "zero test"), len) !== 0;
  }

  /**
   * The VHD checksum of `len` bytes at `at`, the checksum field at byte
   * `skipAt` of them counted as zero.
   */
  vhdChecksum(region: Region, at: number, len: number, skipAt: number): number {
    wholeNumber(skipAt, "checksum field offset", len - 4);
    return this.k.vhdChecksum(region.check(at, len, "checksummed structure"), len, skipAt) >>> 0;
  }

  private pattern(
    region: Region,
    at: number,
    len: number,
    blockSize: number,
    what: string,
  ): number {
    if (
      !Number.isSafeInteger(blockSize) ||
      blockSize < PATTERN_MIN_BLOCK ||
      blockSize % 512 !== 0
    ) {
      throw new RangeError(`I/O block size must be a multiple of 512 bytes, not ${blockSize}`);
    }
    if (!Number.isSafeInteger(len) || len % blockSize !== 0) {
      throw new RangeError(
        `${what} length ${len} is not a whole number of ${blockSize}-byte blocks`,
      );
    }
    return region.check(at, len, what);
  }

  /** Writes the pattern of generation `gen` for the blocks at disk offset `diskOffset`. */
  patternFill(
    region: Region,
    at: number,
    len: number,
    blockSize: number,
    diskOffset: number,
    gen: number,
    seed: bigint,
  ): void {
    const p = this.pattern(region, at, len, blockSize, "pattern fill");
    wholeNumber(diskOffset, "disk offset", Number.MAX_SAFE_INTEGER);
    wholeNumber(gen, "generation", 2 ** 32 - 1);
    this.k.patternFill(p, len, blockSize, BigInt(diskOffset), gen, BigInt.asUintN(64, seed));
  }

  /**
   * Checks blocks read from disk offset `diskOffset` against the generation
   * table (u32 per I/O block of the disk, at `gensAt` in `gens`). Returns the
   * index of the first bad block, or -1.
   */
  patternVerify(
    region: Region,
    at: number,
    len: number,
    blockSize: number,
    diskOffset: number,
    gens: Region,
    gensAt: number,
    seed: bigint,
  ): number {
    const p = this.pattern(region, at, len, blockSize, "pattern verify");
    wholeNumber(diskOffset, "disk offset", Number.MAX_SAFE_INTEGER);
    if (diskOffset % blockSize !== 0) {
      throw new RangeError(
        `disk offset ${diskOffset} is not a multiple of the ${blockSize}-byte block`,
      );
    }
    const firstBlock = diskOffset / blockSize;
    wholeNumber(firstBlock, "first block", MAX_SECTORS);
    const blocks = len / blockSize;
    const g = gens.check(gensAt, (firstBlock + blocks) * 4, "generation table");
    if (g % 4 !== 0) {
      throw new RegionBoundsError(gens.name, "generation table", `at ${g} is not 4-byte aligned`);
    }
    return this.k.patternVerify(
      p,
      len,
      blockSize,
      BigInt(diskOffset),
      g,
      firstBlock,
      BigInt.asUintN(64, seed),
    );
  }
}
