import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";
import { ENCODE_STATS_BYTES, EncodeStat } from "./page.js";

/** Raw exports of the multifd kernel module (assembly/multifd.ts). */
export interface MultifdExports {
  sendPacket(
    ram: number,
    pageShift: number,
    list: number,
    count: number,
    alloc: number,
    packet: number,
    cap: number,
    options: number,
    stats: number,
    pages: number,
    hashes: number,
    packetNum: number,
    sent: number,
  ): number;
  checkPacket(
    packet: number,
    length: number,
    pageShift: number,
    pages: number,
    alloc: number,
    place: number,
    errorAt: number,
  ): number;
  receiveFinish(
    place: number,
    normal: number,
    zero: number,
    ram: number,
    pageShift: number,
    hashes: number,
    hashOn: number,
  ): void;
  hashListed(
    ram: number,
    pageShift: number,
    pages: number,
    list: number,
    count: number,
    hashes: number,
  ): number;
}

/** Bytes of a multifd packet header before its offsets (QEMU's MultiFDPacket_t). */
export const MULTIFD_HEADER_BYTES = 320;
/** Byte offsets of the header's fields (big-endian), drawn in assembly/multifd.ts. */
export const MultifdField = {
  magic: 0,
  version: 4,
  flags: 8,
  pagesAlloc: 12,
  normalPages: 16,
  nextPacketSize: 20,
  packetNum: 24,
  zeroPages: 32,
  ramblock: 64,
  offsets: 320,
} as const;
/** QEMU's MULTIFD_MAGIC and MULTIFD_VERSION. */
export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
/** The RAM block name in every packet: hvlab's guest has one block, named as QEMU's PC RAM. */
export const MULTIFD_RAMBLOCK = "pc.ram";
/** Bytes of scratch a {@link MultifdKernel} needs (an error offset). */
export const MULTIFD_SCRATCH_BYTES = 8;

/** Header bytes of a packet listing `entries` pages. */
export function multifdHeaderBytes(entries: number): number {
  return MULTIFD_HEADER_BYTES + 8 * entries;
}

const ERRORS: Record<number, string> = {
  [-1]: "truncated header",
  [-2]: "bad magic",
  [-3]: "unsupported version",
  [-4]: "unsupported flags (compression)",
  [-5]: "more pages than allocated",
  [-6]: "next_packet_size is not the normal pages' bytes",
  [-7]: "unknown RAM block",
  [-8]: "page offset unaligned or outside guest memory",
};

/** A multifd packet header the receiver refused, with the offset of the bad field. */
export class MultifdPacketError extends Error {
  override name = "MultifdPacketError";
  constructor(
    readonly code: number,
    readonly offset: number,
  ) {
    super(`multifd packet: ${ERRORS[code] ?? `error ${code}`} (header byte ${offset})`);
  }
}

/** What {@link MultifdKernel.send} works on. */
export interface MultifdSendJob {
  readonly ram: Region;
  readonly pageShift: number;
  /** u32 page numbers, `count` of them from index `listStart`. */
  readonly list: Region;
  readonly listStart: number;
  readonly count: number;
  /** Pages a packet may carry (QEMU's pages_alloc: 128 of 4 KiB). */
  readonly alloc: number;
  /** Where the header goes. */
  readonly packet: Region;
  /** Where the page numbers sent go: normal pages, then at `4 alloc` zero pages. */
  readonly sent: Region;
  readonly zeroPages: boolean;
  /** Encoder statistics block (the page stream's layout); the call adds to it. */
  readonly stats: Region;
  /** The source's page hash table: every page sent gets its XXH3-64. */
  readonly hashes?: Region;
  readonly packetNum: number;
}

/** One packet sent: pages consumed from the list, and the header's counts. */
export interface MultifdSent {
  readonly consumed: number;
  readonly normal: number;
  readonly zero: number;
  /** Bytes of the header (320 + 8 per page listed). */
  readonly headerBytes: number;
}

/** What the receiver accepted: the page numbers (normal, then zero) in a view of its memory. */
export interface MultifdAccepted {
  readonly normal: number;
  readonly zero: number;
  readonly pages: Uint32Array;
}

/**
 * Typed, bounds-checked access to the multifd kernels: the sender's packet
 * header and the receiver's check of it, before any page is written.
 */
export class MultifdKernel {
  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: MultifdExports,
    private readonly scratch: Region,
  ) {
    scratch.check(0, MULTIFD_SCRATCH_BYTES, "multifd scratch");
  }

  /** Instantiates the module on a shared memory, with a scratch region of {@link MULTIFD_SCRATCH_BYTES}. */
  static on(memory: WebAssembly.Memory, scratch: Region): MultifdKernel {
    return new MultifdKernel(
      memory,
      instantiateKernel<MultifdExports>(compileKernel("multifd"), memory),
      scratch,
    );
  }

  /** Sends up to `alloc` pages of the list as one packet header. */
  send(job: MultifdSendJob): MultifdSent {
    const pageBytes = 2 ** job.pageShift;
    const pages = Math.floor(job.ram.byteLength / pageBytes);
    if (!Number.isSafeInteger(job.alloc) || job.alloc < 1 || job.alloc > 65_536) {
      throw new RangeError(`multifd pages per packet must be 1 to 65536, not ${job.alloc}`);
    }
    const count = Math.min(job.count, job.alloc);
    if (count <= 0) return { consumed: 0, normal: 0, zero: 0, headerBytes: 0 };
    const list = job.list.check(job.listStart * 4, count * 4, "page list");
    const cap = multifdHeaderBytes(job.alloc);
    const packet = job.packet.check(0, cap, "multifd packet");
    const sent = job.sent.check(0, job.alloc * 8, "pages sent");
    const stats = job.stats.check(0, ENCODE_STATS_BYTES, "encoder statistics");
    const hashes = job.hashes ? job.hashes.check(0, pages * 8, "page hashes") : 0;
    const words = new Uint32Array(this.memory.buffer, stats, ENCODE_STATS_BYTES / 4);
    const normalBefore = words[EncodeStat.normal / 4] ?? 0;
    const zeroBefore = words[EncodeStat.zero / 4] ?? 0;
    const consumed = this.k.sendPacket(
      job.ram.offset,
      job.pageShift,
      list,
      count,
      job.alloc,
      packet,
      cap,
      (job.zeroPages ? 1 : 0) | (job.hashes ? 4 : 0),
      stats,
      pages,
      hashes,
      job.packetNum,
      sent,
    );
    const after = new Uint32Array(this.memory.buffer, stats, ENCODE_STATS_BYTES / 4);
    // The kernel checks every page number against the RAM before reading it.
    const bad = after[EncodeStat.badPage / 4] ?? 0;
    if (bad !== 0) {
      after[EncodeStat.badPage / 4] = 0;
      const page = new Uint32Array(this.memory.buffer, list, count)[bad - 1];
      throw new RegionBoundsError(job.ram.name, `page ${page}`, `is past ${pages} pages`);
    }
    const normal = (after[EncodeStat.normal / 4] ?? 0) - normalBefore;
    const zero = (after[EncodeStat.zero / 4] ?? 0) - zeroBefore;
    return { consumed, normal, zero, headerBytes: multifdHeaderBytes(normal + zero) };
  }

  /**
   * Checks a received header of `length` bytes at the start of `packet`
   * against a destination RAM of `ram`'s pages, writing the accepted page
   * numbers to `place`.
   *
   * @throws MultifdPacketError for a header it refuses (nothing is written to RAM).
   */
  check(
    packet: Region,
    length: number,
    ram: Region,
    pageShift: number,
    alloc: number,
    place: Region,
  ): MultifdAccepted {
    const at = packet.check(0, length, "multifd packet");
    const pages = Math.floor(ram.byteLength / 2 ** pageShift);
    const placeAt = place.check(0, alloc * 4, "accepted pages");
    const result = this.k.checkPacket(
      at,
      length,
      pageShift,
      pages,
      alloc,
      placeAt,
      this.scratch.offset,
    );
    if (result < 0) {
      const offset = new DataView(this.memory.buffer).getUint32(this.scratch.offset, true);
      throw new MultifdPacketError(result, offset);
    }
    const view = new DataView(this.memory.buffer, at);
    const normal = view.getUint32(MultifdField.normalPages);
    const zero = view.getUint32(MultifdField.zeroPages);
    return { normal, zero, pages: new Uint32Array(this.memory.buffer, placeAt, normal + zero) };
  }

  /**
   * After the normal pages were written into place: zeroes the zero pages
   * and hashes every page of the packet into `hashes` (read back from RAM).
   * The page numbers are those {@link check} accepted, checked again here.
   */
  finish(
    accepted: MultifdAccepted,
    place: Region,
    ram: Region,
    pageShift: number,
    hashes?: Region,
  ): void {
    const pages = Math.floor(ram.byteLength / 2 ** pageShift);
    const entries = accepted.normal + accepted.zero;
    const at = place.check(0, entries * 4, "accepted pages");
    const numbers = new Uint32Array(this.memory.buffer, at, entries);
    for (const page of numbers) {
      if (page >= pages) throw new RangeError(`accepted page ${page} is past guest RAM`);
    }
    const table = hashes ? hashes.check(0, pages * 8, "page hashes") : 0;
    this.k.receiveFinish(
      at,
      accepted.normal,
      accepted.zero,
      ram.offset,
      pageShift,
      table,
      hashes ? 1 : 0,
    );
  }

  /**
   * XXH3-64 of the `count` pages whose numbers are in `list` from index
   * `listStart`, each into its slot of `hashes` (a table of one u64 per page
   * of `ram`). The link calls it on a few pages at a time around its copy of
   * them, so each page is hashed while it is in cache.
   *
   * @throws RegionBoundsError for a page number past `ram` (no page from it on is read).
   */
  hashListed(
    ram: Region,
    pageShift: number,
    list: Region,
    listStart: number,
    count: number,
    hashes: Region,
  ): void {
    if (!Number.isInteger(pageShift) || pageShift < 8 || pageShift > 30) {
      throw new RangeError(
        `page shift must be 8 to 30 (pages longer than XXH3's 240-byte short inputs), not ${pageShift}`,
      );
    }
    if (count === 0) return;
    const pages = Math.floor(ram.byteLength / 2 ** pageShift);
    const at = list.check(listStart * 4, count * 4, "page list");
    const table = hashes.check(0, pages * 8, "page hashes");
    const bad = this.k.hashListed(ram.offset, pageShift, pages, at, count, table);
    if (bad !== 0) {
      const page = new Uint32Array(this.memory.buffer, at, count)[bad - 1];
      throw new RegionBoundsError(ram.name, `page ${page}`, `is past ${pages} pages`);
    }
  }
}
