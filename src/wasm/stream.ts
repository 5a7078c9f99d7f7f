import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/stream.ts. Addresses and counts are u32 passed as i32. */
export interface StreamExports {
  xxh64(ptr: number, length: number, out: number): void;
  hashPages(ram: number, pageShift: number, first: number, count: number, out: number): void;
  gatherPages(ram: number, pageShift: number, list: number, count: number, dst: number): void;
  scatterPages(src: number, list: number, count: number, ram: number, pageShift: number): void;
}

/** Bytes of one XXH64 digest. */
export const DIGEST_BYTES = 8;

/** Where a guest's RAM lies and how big its pages are, for the page kernels. */
export interface PagedRam {
  readonly region: Region;
  /** log2 of the page size. */
  readonly pageShift: number;
}

/**
 * Typed, bounds-checked calls into the migration stream kernels. Every
 * offset, length and page number is checked against its region before wasm
 * runs, so a hostile frame can never make a kernel write outside its region.
 */
export class StreamKernel {
  private readonly scratch: Region | undefined;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: StreamExports,
    scratch?: Region,
  ) {
    this.scratch = scratch;
  }

  /**
   * Instantiates the kernel on a shared memory. `scratch` (at least 8 bytes)
   * receives single digests for {@link StreamKernel.hash}.
   */
  static on(memory: WebAssembly.Memory, scratch?: Region): StreamKernel {
    return new StreamKernel(
      memory,
      instantiateKernel<StreamExports>(compileKernel("stream"), memory),
      scratch,
    );
  }

  /** XXH64 (seed 0) of `length` bytes of `region` from `start`, as a BigInt. */
  hash(region: Region, start: number, length: number): bigint {
    if (!this.scratch) throw new RangeError("stream kernel: hash needs a scratch region");
    const out = this.scratch.check(0, DIGEST_BYTES, "digest");
    this.k.xxh64(region.check(start, length, "hashed bytes"), length, out);
    return new DataView(this.memory.buffer).getBigUint64(out, true);
  }

  /** Writes XXH64 of `length` bytes of `region` into `out` at `outStart` (8 bytes). */
  hashInto(region: Region, start: number, length: number, out: Region, outStart: number): void {
    this.k.xxh64(
      region.check(start, length, "hashed bytes"),
      length,
      out.check(outStart, DIGEST_BYTES, "digest"),
    );
  }

  /** Writes one XXH64 per page for `count` pages from `first` into `out` at `outStart`. */
  hashPages(ram: PagedRam, first: number, count: number, out: Region, outStart = 0): void {
    const pageBytes = 2 ** ram.pageShift;
    ram.region.check(first * pageBytes, count * pageBytes, `pages ${first} to ${first + count}`);
    this.k.hashPages(
      ram.region.offset,
      ram.pageShift,
      first,
      count,
      out.check(outStart, count * DIGEST_BYTES, "page digests"),
    );
  }

  /**
   * Copies the `count` pages listed (u32 each) in `list` at `listStart` from
   * `ram` into `dst` at `dstStart`, back to back.
   */
  gather(
    ram: PagedRam,
    list: Region,
    listStart: number,
    count: number,
    dst: Region,
    dstStart: number,
  ): void {
    const listAt = this.checkList(ram, list, listStart, count);
    const dstAt = dst.check(dstStart, count * 2 ** ram.pageShift, "gathered pages");
    this.k.gatherPages(ram.region.offset, ram.pageShift, listAt, count, dstAt);
  }

  /**
   * Copies `count` back-to-back pages from `src` at `srcStart` into `ram`,
   * each to the page its `list` entry names.
   */
  scatter(
    src: Region,
    srcStart: number,
    list: Region,
    listStart: number,
    count: number,
    ram: PagedRam,
  ): void {
    const listAt = this.checkList(ram, list, listStart, count);
    const srcAt = src.check(srcStart, count * 2 ** ram.pageShift, "pages to scatter");
    this.k.scatterPages(srcAt, listAt, count, ram.region.offset, ram.pageShift);
  }

  /** Checks a page list against the RAM's pages; returns its absolute address. */
  private checkList(ram: PagedRam, list: Region, listStart: number, count: number): number {
    const at = list.check(listStart, count * 4, "page list");
    const pages = Math.floor(ram.region.byteLength / 2 ** ram.pageShift);
    const view = new DataView(this.memory.buffer, at, count * 4);
    for (let i = 0; i < count; i++) {
      const page = view.getUint32(i * 4, true);
      if (page >= pages) {
        throw new RegionBoundsError(
          ram.region.name,
          `page ${page} (list entry ${i})`,
          `is not a page of this RAM (0 to ${pages - 1})`,
        );
      }
    }
    return at;
  }
}
