import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/page.ts. */
export interface PageExports {
  isZero(ptr: number, len: number): number;
  hash64(ptr: number, len: number, out: number): void;
  hash3(ptr: number, len: number, out: number): void;
  hashPages(ram: number, pageShift: number, first: number, count: number, out: number): void;
  xbzrleEncode(prev: number, next: number, len: number, dst: number, cap: number): number;
  xbzrleDecode(src: number, slen: number, dst: number, dlen: number): number;
  encodePages(
    ram: number,
    pageShift: number,
    list: number,
    count: number,
    out: number,
    cap: number,
    options: number,
    tags: number,
    data: number,
    slots: number,
    scratch: number,
    stats: number,
    pages: number,
    hashes: number,
  ): number;
  decodePages(
    src: number,
    length: number,
    ram: number,
    pageShift: number,
    pages: number,
    errorAt: number,
    hashes: number,
    hashOn: number,
  ): number;
  seedPages(
    ram: number,
    pageShift: number,
    first: number,
    count: number,
    seed: number,
    zeroThreshold: number,
  ): void;
}

/** Page stream record flags (QEMU's RAM_SAVE_FLAG_*), drawn in assembly/page.ts. */
export const RecordFlag = { zero: 0x02, page: 0x08, xbzrle: 0x40 } as const;
/** Bytes of a record header (be64 address | flag). */
export const RECORD_HEADER_BYTES = 8;
/** A ZERO record: header and one fill byte (QEMU sends zero pages so). */
export const ZERO_RECORD_BYTES = 9;
/** Header, encoding flag and be16 length in front of XBZRLE bytes. */
export const XBZRLE_RECORD_OVERHEAD = 11;

/** Byte offsets of the encoder's u32 statistics (layout in assembly/page.ts). */
export const EncodeStat = {
  bytes: 0,
  normal: 4,
  zero: 8,
  xbzrlePages: 16,
  xbzrleBytes: 20,
  cacheMiss: 24,
  overflow: 28,
  unchanged: 32,
  badPage: 36,
} as const;
/** Bytes of an encoder statistics block. */
export const ENCODE_STATS_BYTES = 40;
/** Option bits of {@link PageKernel.encodePages} (assembly/page.ts). */
export const EncodeOption = { zeroPages: 1, xbzrle: 2, hash: 4 } as const;

/** The layouts assembly/page.ts exports (as LAYOUT_ globals), checked at load. */
const PAGE_LAYOUT = {
  FLAG_ZERO: RecordFlag.zero,
  FLAG_PAGE: RecordFlag.page,
  FLAG_XBZRLE: RecordFlag.xbzrle,
  HEADER_BYTES: RECORD_HEADER_BYTES,
  ZERO_RECORD_BYTES,
  XBZRLE_OVERHEAD: XBZRLE_RECORD_OVERHEAD,
  S_BYTES: EncodeStat.bytes,
  S_NORMAL: EncodeStat.normal,
  S_ZERO: EncodeStat.zero,
  S_XBZRLE_PAGES: EncodeStat.xbzrlePages,
  S_XBZRLE_BYTES: EncodeStat.xbzrleBytes,
  S_CACHE_MISS: EncodeStat.cacheMiss,
  S_OVERFLOW: EncodeStat.overflow,
  S_UNCHANGED: EncodeStat.unchanged,
  S_BAD_PAGE: EncodeStat.badPage,
  OPT_ZERO: EncodeOption.zeroPages,
  OPT_XBZRLE: EncodeOption.xbzrle,
  OPT_HASH: EncodeOption.hash,
};

/** Bytes of the scratch a {@link PageKernel} needs: a hash and an error offset. */
export const PAGE_SCRATCH_BYTES = 64;

/** Encoder statistics of one or more {@link PageKernel.encodePages} calls. */
export interface EncodeCounts {
  bytes: number;
  normal: number;
  zero: number;
  xbzrlePages: number;
  xbzrleBytes: number;
  cacheMiss: number;
  overflow: number;
  unchanged: number;
}

/** All-zero encoder counts. */
export function emptyEncodeCounts(): EncodeCounts {
  return {
    bytes: 0,
    normal: 0,
    zero: 0,
    xbzrlePages: 0,
    xbzrleBytes: 0,
    cacheMiss: 0,
    overflow: 0,
    unchanged: 0,
  };
}

/** Reads and zeroes an encoder statistics block, adding it into `into`. */
export function takeEncodeStats(
  memory: WebAssembly.Memory,
  stats: Region,
  into: EncodeCounts,
): EncodeCounts {
  const words = new Uint32Array(memory.buffer, stats.check(0, ENCODE_STATS_BYTES), 10);
  into.bytes += words[EncodeStat.bytes / 4] ?? 0;
  into.normal += words[EncodeStat.normal / 4] ?? 0;
  into.zero += words[EncodeStat.zero / 4] ?? 0;
  into.xbzrlePages += words[EncodeStat.xbzrlePages / 4] ?? 0;
  into.xbzrleBytes += words[EncodeStat.xbzrleBytes / 4] ?? 0;
  into.cacheMiss += words[EncodeStat.cacheMiss / 4] ?? 0;
  into.overflow += words[EncodeStat.overflow / 4] ?? 0;
  into.unchanged += words[EncodeStat.unchanged / 4] ?? 0;
  words.fill(0);
  return into;
}
/** The XBZRLE page cache: tags and page data, `slots` a power of two. */
export interface XbzrleCacheRegions {
  readonly tags: Region;
  readonly data: Region;
  readonly slots: number;
}

/** What {@link PageKernel.encodePages} works on. */
export interface EncodeJob {
  /** Guest RAM and its page size. */
  readonly ram: Region;
  readonly pageShift: number;
  /** u32 page numbers to send, and how many of them from `listStart` (an index). */
  readonly list: Region;
  readonly listStart: number;
  readonly count: number;
  /** The packet buffer; records are written from its start. */
  readonly out: Region;
  /** Send zero pages as ZERO records. */
  readonly zeroPages: boolean;
  /** XBZRLE with this cache and a page-sized scratch region. */
  readonly xbzrle?: { readonly cache: XbzrleCacheRegions; readonly scratch: Region };
  /** A statistics block of {@link ENCODE_STATS_BYTES}; the call adds to it. */
  readonly stats: Region;
  /**
   * A page hash table (u64 per guest page, by page number): the XXH3-64 of
   * every page consumed is written to its slot, taken in the same step.
   */
  readonly hashes?: Region;
}

/** A page stream the destination refused, with the offset of the bad record. */
export class PageStreamError extends Error {
  override name = "PageStreamError";
  constructor(
    readonly code: number,
    readonly offset: number,
  ) {
    super(
      `page stream record at byte ${offset}: ${
        code === -1
          ? "truncated"
          : code === -2
            ? "unknown record flag"
            : code === -3
              ? "page address outside guest memory"
              : "malformed XBZRLE encoding"
      }`,
    );
  }
}

/**
 * Typed, bounds-checked calls into the page kernels. Every region offset and
 * length is checked before wasm runs: a kernel never touches memory outside
 * the regions it was handed (the decoder also checks every record's page
 * against the destination RAM it writes).
 */
export class PageKernel {
  private view: DataView;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: PageExports,
    private readonly scratch: Region,
  ) {
    checkKernelLayout("page", k, PAGE_LAYOUT);
    if (scratch.byteLength < PAGE_SCRATCH_BYTES) {
      throw new RegionBoundsError(scratch.name, "scratch", `needs ${PAGE_SCRATCH_BYTES} bytes`);
    }
    this.view = new DataView(memory.buffer);
  }

  /** Instantiates the kernel on a shared memory, with a scratch region of {@link PAGE_SCRATCH_BYTES}. */
  static on(memory: WebAssembly.Memory, scratch: Region): PageKernel {
    return new PageKernel(
      memory,
      instantiateKernel<PageExports>(compileKernel("page"), memory),
      scratch,
    );
  }

  private dv(): DataView {
    // The buffer is replaced whenever the memory grows.
    if (this.view.buffer !== this.memory.buffer) {
      this.view = new DataView(this.memory.buffer);
    }
    return this.view;
  }

  /** Whether `length` bytes of `region` from `start` are all zero. */
  isZero(region: Region, start: number, length: number): boolean {
    return this.k.isZero(region.check(start, length, "zero check"), length) === 1;
  }

  /** XXH64 (seed 0) of `length` bytes of `region` from `start`. */
  hash64(region: Region, start: number, length: number): bigint {
    this.k.hash64(region.check(start, length, "hash"), length, this.scratch.offset);
    return this.dv().getBigUint64(this.scratch.offset, true);
  }

  /**
   * XXH3-64 (seed 0) of `length` bytes of `region` from `start`: the page
   * hash; `length` must be over 240 bytes (guest pages are).
   */
  hash3(region: Region, start: number, length: number): bigint {
    if (length <= 240) {
      throw new RangeError(`the page hash takes over 240 bytes, not ${length}`);
    }
    this.k.hash3(region.check(start, length, "hash"), length, this.scratch.offset);
    return this.dv().getBigUint64(this.scratch.offset, true);
  }

  /** XXH3-64 of pages [first, first + count) of `ram` into `out` (u64 each, from its start). */
  hashPages(ram: Region, pageShift: number, first: number, count: number, out: Region): void {
    if (count === 0) return;
    const pageBytes = 2 ** pageShift;
    ram.check(first * pageBytes, count * pageBytes, `pages ${first}..${first + count - 1}`);
    out.check(0, count * 8, "page hashes");
    this.k.hashPages(ram.offset, pageShift, first, count, out.offset);
  }

  /** The first `count` u64 hashes of a table that {@link hashPages} wrote. */
  hashTable(table: Region, count: number): BigUint64Array {
    return new BigUint64Array(this.memory.buffer, table.check(0, count * 8, "page hashes"), count);
  }

  /**
   * XBZRLE-encodes `length` bytes (`next` against `prev`) into `dst` (at most
   * `cap` bytes). Returns the encoded length, 0 if unchanged, -1 on overflow.
   */
  xbzrleEncode(
    prev: Region,
    prevStart: number,
    next: Region,
    nextStart: number,
    length: number,
    dst: Region,
    dstStart: number,
    cap: number,
  ): number {
    return this.k.xbzrleEncode(
      prev.check(prevStart, length, "xbzrle previous"),
      next.check(nextStart, length, "xbzrle next"),
      length,
      dst.check(dstStart, cap, "xbzrle output"),
      cap,
    );
  }

  /** Applies an XBZRLE encoding to a `dlen`-byte page. Returns bytes covered or -1. */
  xbzrleDecode(
    src: Region,
    srcStart: number,
    slen: number,
    dst: Region,
    dstStart: number,
    dlen: number,
  ): number {
    return this.k.xbzrleDecode(
      src.check(srcStart, slen, "xbzrle input"),
      slen,
      dst.check(dstStart, dlen, "xbzrle page"),
      dlen,
    );
  }

  /** Encodes pages into a packet (see {@link EncodeJob}). Returns pages consumed. */
  encodePages(job: EncodeJob): number {
    if (job.count === 0) return 0;
    const pageBytes = 2 ** job.pageShift;
    const pages = Math.floor(job.ram.byteLength / pageBytes);
    const listAt = job.list.check(job.listStart * 4, job.count * 4, "page list");
    job.stats.check(0, ENCODE_STATS_BYTES, "encoder statistics");
    let tags = 0;
    let data = 0;
    let slots = 0;
    let scratch = 0;
    if (job.xbzrle) {
      const cache = job.xbzrle.cache;
      slots = cache.slots;
      if (slots < 1 || (slots & (slots - 1)) !== 0) {
        throw new RangeError(`XBZRLE cache slots must be a power of two, not ${slots}`);
      }
      tags = cache.tags.check(0, slots * 4, "xbzrle cache tags");
      data = cache.data.check(0, slots * pageBytes, "xbzrle cache data");
      scratch = job.xbzrle.scratch.check(0, pageBytes, "xbzrle scratch");
    }
    const hashes = job.hashes ? job.hashes.check(0, pages * 8, "page hashes") : 0;
    const consumed =
      this.k.encodePages(
        job.ram.offset,
        job.pageShift,
        listAt,
        job.count,
        job.out.offset,
        job.out.byteLength,
        (job.zeroPages ? EncodeOption.zeroPages : 0) |
          (job.xbzrle ? EncodeOption.xbzrle : 0) |
          (job.hashes ? EncodeOption.hash : 0),
        tags,
        data,
        slots,
        scratch,
        job.stats.offset,
        pages,
        hashes,
      ) >>> 0;
    // The kernel checks every page number against the RAM before reading it.
    const words = new Uint32Array(this.memory.buffer, job.stats.offset, ENCODE_STATS_BYTES / 4);
    const bad = words[EncodeStat.badPage / 4] ?? 0;
    if (bad !== 0) {
      words[EncodeStat.badPage / 4] = 0;
      const page = new Uint32Array(this.memory.buffer, listAt, job.count)[bad - 1];
      throw new RegionBoundsError(job.ram.name, `page ${page}`, `is past ${pages} pages`);
    }
    return consumed;
  }

  /** Reads and zeroes an encoder statistics block, adding it into `into`. */
  takeEncodeStats(stats: Region, into: EncodeCounts): EncodeCounts {
    return takeEncodeStats(this.memory, stats, into);
  }

  /**
   * Decodes `length` bytes of page stream in `src` into `ram` (pages of
   * `2^pageShift` bytes). Returns pages written. With `hashes` (u64 per page
   * of `ram`, by page number) each page written is read back from `ram` and
   * its XXH3-64 goes to its slot.
   *
   * @throws PageStreamError for a record it refuses (nothing past it is written).
   */
  decodePages(
    src: Region,
    length: number,
    ram: Region,
    pageShift: number,
    hashes?: Region,
  ): number {
    if (length === 0) return 0;
    const at = src.check(0, length, "page stream");
    const pages = Math.floor(ram.byteLength / 2 ** pageShift);
    const table = hashes ? hashes.check(0, pages * 8, "page hashes") : 0;
    const result = this.k.decodePages(
      at,
      length,
      ram.offset,
      pageShift,
      pages,
      this.scratch.offset,
      table,
      hashes ? 1 : 0,
    );
    if (result < 0)
      throw new PageStreamError(result, this.dv().getUint32(this.scratch.offset, true));
    return result;
  }

  /**
   * Fills pages [first, first + count) of `ram` with seeded content; about
   * `zeroFraction` of them stay all zero.
   */
  seedPages(
    ram: Region,
    pageShift: number,
    first: number,
    count: number,
    seed: number,
    zeroFraction: number,
  ): void {
    if (count === 0) return;
    const pageBytes = 2 ** pageShift;
    ram.check(first * pageBytes, count * pageBytes, "seeded pages");
    if (!(zeroFraction >= 0 && zeroFraction <= 1)) {
      throw new RangeError(`zero fraction must be within [0, 1], not ${zeroFraction}`);
    }
    const threshold = Math.min(2 ** 32 - 1, Math.round(zeroFraction * 2 ** 32));
    this.k.seedPages(ram.offset, pageShift, first, count, seed >>> 0, threshold);
  }
}
