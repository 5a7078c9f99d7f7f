import { existsSync } from "node:fs";
import { basename, dirname, isAbsolute, relative, resolve } from "node:path";
import type { Region } from "../memory/region.js";
import { type BlockFile, FdFile } from "./block-file.js";
import { DirectFile } from "./direct-file.js";
import { checkRequest, type DiskImage, type MapExtent } from "./disk-image.js";
import { DiskRequestError, ParentChainError, VhdFormatError } from "./errors.js";
import {
  BAT_UNALLOCATED,
  bitmapBytes,
  CREATOR,
  DEFAULT_BLOCK_BYTES,
  decodeFooter,
  decodeHeader,
  encodeFooter,
  encodeHeader,
  FOOTER_BYTES,
  formatUuid,
  HEADER_BYTES,
  LOCATOR_COUNT,
  MAX_BLOCK_BYTES,
  MAX_DISK_BYTES,
  MAX_LOCATOR_BYTES,
  MIN_BLOCK_BYTES,
  type ParentLocator,
  PlatformCode,
  SECTOR,
  type VhdFooter,
  type VhdHeader,
  type VhdType,
  vhdTimestamp,
} from "./format.js";
import { chsGeometry } from "./geometry.js";
import { defaultKernels, type StorageKernels } from "./kernels.js";

/** Bytes of sector bitmaps an open image caches (direct-mapped on the block number). */
const BITMAP_CACHE_BYTES = 1024 * 1024;
/** Most entries a BAT may have (a 256 MiB table), whatever the header says. */
const MAX_BAT_ENTRIES = 1 << 26;
/** Deepest differencing chain followed before it is called a loop. */
const MAX_CHAIN_DEPTH = 32;
/**
 * Bytes a block allocation extends the file by past the new block's end: a
 * hole that later allocations fill without an ftruncate each.
 */
const EXTEND_AHEAD = 64 * 1024 * 1024;
/**
 * Where a block's data starts in the file is a multiple of this (the page
 * size): a 4 KiB guest read is then one page of the page cache, not two, and
 * direct I/O needs no bounce. The specification asks only for sectors.
 */
const DATA_ALIGN = 4096;

/**
 * Where a block allocated at or after `at` starts: at `at` itself, or a few
 * sectors on, so that its data (after its bitmap) is page-aligned. Blocks
 * smaller than a page cannot all be aligned, and are not padded.
 */
export function blockStart(at: number, bitmapBytes: number, blockBytes: number): number {
  if (blockBytes % DATA_ALIGN !== 0) return at;
  return roundUp(at + bitmapBytes, DATA_ALIGN) - bitmapBytes;
}

/** Where a differencing disk's parent is looked for, and how it is opened. */
export interface ParentSource {
  /**
   * Opens the first candidate path that exists, or returns undefined.
   * `mtimeMs` is the parent file's modification time (the VHD specification's
   * "Parent Time Stamp" records it).
   */
  open(
    candidates: readonly string[],
  ): { file: BlockFile; path: string; mtimeMs: number } | undefined;
}

/** Parents found on the file system, opened read-only. */
export const fileParents: ParentSource = {
  open(candidates) {
    for (const path of candidates) {
      let file: FdFile;
      try {
        file = new FdFile(path, "r");
      } catch {
        continue;
      }
      return { file, path: resolve(path), mtimeMs: file.mtimeMs() };
    }
    return undefined;
  },
};

/** Parents found on the file system, opened read-only for direct I/O (O_DIRECT). */
export const directParents: ParentSource = {
  open(candidates) {
    for (const path of candidates) {
      if (!existsSync(path)) continue;
      // A file system that refuses O_DIRECT is said so, not taken for a missing parent.
      const file = DirectFile.open(path, "r");
      return { file, path: resolve(path), mtimeMs: file.mtimeMs() };
    }
    return undefined;
  },
};

/** Where a dynamic disk's blocks may lie: what {@link blockProblems} checks. */
export interface BlockLayout {
  readonly bat: Uint32Array;
  /** Blocks the disk's size needs. */
  readonly blocks: number;
  readonly tableOffset: number;
  /** Bytes of a block with its bitmap. */
  readonly span: number;
  /** Where data must end (the footer's offset). */
  readonly dataEnd: number;
  /** Metadata no block may overlap: [start, end, what]. */
  readonly spans: readonly (readonly [number, number, string])[];
}

/**
 * Every BAT entry that points past the data, into metadata, onto another
 * block, or allocates a block the disk does not have, each an error naming
 * the entry and its offset.
 */
export function blockProblems(layout: BlockLayout): VhdFormatError[] {
  const { bat, blocks, tableOffset, span, dataEnd, spans } = layout;
  const problems: VhdFormatError[] = [];
  const allocated: number[] = [];
  for (let i = 0; i < bat.length; i++) {
    const e = bat[i] ?? BAT_UNALLOCATED;
    if (e === BAT_UNALLOCATED) continue;
    const start = e * SECTOR;
    const at = tableOffset + i * 4;
    if (i >= blocks) {
      problems.push(
        new VhdFormatError(
          `BAT entry ${i}`,
          at,
          `allocates a block past the disk's ${blocks} blocks`,
        ),
      );
      continue;
    }
    if (start + span > dataEnd) {
      problems.push(
        new VhdFormatError(
          `BAT entry ${i}`,
          at,
          `block at ${start} of ${span} bytes passes the end of the data (${dataEnd})`,
        ),
      );
      continue;
    }
    const hit = spans.find(([s, end]) => start < end && start + span > s);
    if (hit) {
      problems.push(
        new VhdFormatError(
          `BAT entry ${i}`,
          at,
          `block at ${start} overlaps the ${hit[2]} at [${hit[0]}, ${hit[1]})`,
        ),
      );
      continue;
    }
    allocated.push(i);
  }
  allocated.sort((a, b) => (bat[a] ?? 0) - (bat[b] ?? 0));
  for (let k = 1; k < allocated.length; k++) {
    const a = allocated[k - 1] ?? 0;
    const b = allocated[k] ?? 0;
    if ((bat[b] ?? 0) * SECTOR < (bat[a] ?? 0) * SECTOR + span) {
      problems.push(
        new VhdFormatError(
          `BAT entry ${b}`,
          tableOffset + b * 4,
          `block at ${(bat[b] ?? 0) * SECTOR} overlaps the block of BAT entry ${a}`,
        ),
      );
    }
  }
  return problems;
}

/** Options for opening a VHD. */
export interface VhdOpenOptions {
  readonly kernels?: StorageKernels;
  /** Open for writing (the parents of a differencing disk are always read-only). */
  readonly writable?: boolean;
  /** Where parents are found (default: the file system). */
  readonly parents?: ParentSource;
  /**
   * fdatasync between the steps of a block allocation (data and bitmap, BAT
   * entry, footer), so that their order holds across a power loss too, not
   * only across a crash of the process.
   */
  readonly ordered?: boolean;
  /** Paths already open further down the chain (loop detection). */
  readonly chain?: readonly string[];
}

/** Options for creating a VHD. */
export interface VhdCreateOptions {
  readonly type: VhdType;
  /** Virtual size in bytes (a differencing disk takes its parent's). */
  readonly size?: number;
  /** Block size of dynamic and differencing disks (default 2 MiB). */
  readonly blockSize?: number;
  /** The parent of a differencing disk, and its path (for the locators). */
  readonly parent?: { readonly image: VhdImage; readonly path: string; readonly mtimeMs: number };
  /** The child's own path, for the relative locator. */
  readonly path?: string;
  readonly kernels?: StorageKernels;
  /** Creation time in ms (default now). */
  readonly now?: number;
  /** Unique id (default random). */
  readonly uniqueId?: Uint8Array;
  /** Where the new child's parent is found when it is opened (default: the file system). */
  readonly parents?: ParentSource;
}

function uuidBytes(): Uint8Array {
  // The global Web Crypto object, which Node loads on first use: importing
  // node:crypto here would load its modules (about 12 ms measured on a
  // shared machine) in every process that opens a disk, for ids that only
  // new disks need.
  return Uint8Array.from(Buffer.from(globalThis.crypto.randomUUID().replaceAll("-", ""), "hex"));
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** Windows path text for a locator, UTF-16 little-endian as Windows writes it. */
function locatorBytes(path: string): Uint8Array {
  return new Uint8Array(Buffer.from(path.replaceAll("/", "\\"), "utf16le"));
}

/**
 * An open VHD: fixed, dynamic or differencing (Microsoft, Virtual Hard Disk
 * Image Format Specification 1.0, 2006). Reads and writes are synchronous
 * and sector-aligned. A differencing disk holds its whole parent chain open.
 */
export class VhdImage implements DiskImage {
  readonly format = "vpc" as const;
  readonly size: number;
  /** The header of a dynamic or differencing disk. */
  readonly header: VhdHeader | undefined;
  /** Where the header lies (dynamic and differencing). */
  readonly headerOffset: number;
  /** The parent of a differencing disk. */
  readonly parent: VhdImage | undefined;
  /** The parent's path as it was found. */
  readonly parentPath: string | undefined;
  /** Problems found on open that did not stop it (e.g. a footer read from its copy). */
  readonly notes: string[] = [];

  private footerValue: VhdFooter;
  private readonly bat: Uint32Array;
  private readonly bmBytes: number;
  private readonly blockSize: number;
  private nextFree: number;
  /** 1 where a block's bitmap is known to hold every sector: its reads and writes skip the bitmap. */
  private readonly full: Uint8Array;
  /** Blocks were allocated since the footer was last written at the end. */
  private footerPending = false;
  /** The file's length as this image last set it (allocations extend it ahead of need). */
  private extendedTo: number;
  private cache: Region | undefined;
  /** See {@link scratchBytes}. */
  private scratch: Region | undefined;
  /** See {@link constantBytes}. */
  private constants: Region | undefined;
  private cacheTags: Int32Array = new Int32Array(0);
  private closed = false;

  private constructor(
    readonly file: BlockFile,
    private readonly kernels: StorageKernels,
    private readonly writable: boolean,
    private readonly ordered: boolean,
    parts: {
      footer: VhdFooter;
      header?: VhdHeader;
      headerOffset: number;
      bat: Uint32Array;
      nextFree: number;
      parent?: VhdImage;
      parentPath?: string;
    },
  ) {
    this.footerValue = parts.footer;
    this.size = parts.footer.currentSize;
    this.header = parts.header;
    this.headerOffset = parts.headerOffset;
    this.bat = parts.bat;
    this.blockSize = parts.header?.blockSize ?? 0;
    this.bmBytes = parts.header ? bitmapBytes(parts.header.blockSize) : 0;
    this.nextFree = parts.nextFree;
    this.extendedTo = file.size();
    this.full = new Uint8Array(parts.bat.length);
    this.parent = parts.parent;
    this.parentPath = parts.parentPath;
  }

  /** The footer in force. */
  get footer(): VhdFooter {
    return this.footerValue;
  }

  /** The disk type. */
  get type(): VhdType {
    return this.footerValue.diskType;
  }

  /** Block size (0 for a fixed disk). */
  get blockBytes(): number {
    return this.blockSize;
  }

  /** Bytes of each block's sector bitmap. */
  get bitmapBytes(): number {
    return this.bmBytes;
  }

  /** BAT entries (sector numbers of blocks, {@link BAT_UNALLOCATED} for none). */
  get blockTable(): Readonly<Uint32Array> {
    return this.bat;
  }

  /** Where the next block would be placed (and where the footer is). */
  get endOfData(): number {
    return this.nextFree;
  }

  /**
   * Opens a VHD and, for a differencing disk, its parents.
   *
   * @throws VhdFormatError naming the field and offset of the first problem.
   * @throws ParentChainError when a parent is missing, differs, or loops.
   */
  static open(file: BlockFile, options: VhdOpenOptions = {}): VhdImage {
    const kernels = options.kernels ?? defaultKernels();
    const fileSize = file.size();
    if (fileSize < FOOTER_BYTES) {
      throw new VhdFormatError(
        "footer",
        0,
        `the file has ${fileSize} bytes, a VHD has at least ${FOOTER_BYTES}`,
      );
    }
    const readAt = (at: number, n: number, what: string): Uint8Array => {
      const bytes = new Uint8Array(n);
      if (at + n > fileSize || file.read(bytes, at) < n) {
        throw new VhdFormatError(
          what,
          at,
          `${n} bytes there pass the end of the file (${fileSize} bytes)`,
        );
      }
      return bytes;
    };
    // The footer at the end is the one in force; the copy at offset 0 of a
    // dynamic disk stands in for it when the end was being rewritten (the
    // specification keeps the copy "for redundancy").
    const endAt = fileSize - FOOTER_BYTES;
    let footer: VhdFooter;
    let footerAtEnd = true;
    const notes: string[] = [];
    try {
      footer = decodeFooter(readAt(endAt, FOOTER_BYTES, "footer"), endAt, kernels.checksum);
    } catch (endError) {
      let copy: VhdFooter;
      try {
        copy = decodeFooter(readAt(0, FOOTER_BYTES, "footer copy"), 0, kernels.checksum);
      } catch {
        throw endError;
      }
      if (copy.diskType === "fixed") throw endError;
      footer = copy;
      footerAtEnd = false;
      notes.push(
        `no valid footer at the end (${(endError as Error).message}); using the copy at offset 0`,
      );
    }
    if (footer.diskType === "fixed") {
      if (endAt < footer.currentSize) {
        throw new VhdFormatError(
          "footer current size",
          endAt + 48,
          `is ${footer.currentSize} but the file holds only ${endAt} bytes of data`,
        );
      }
      const image = new VhdImage(file, kernels, options.writable ?? false, false, {
        footer,
        headerOffset: -1,
        bat: new Uint32Array(0),
        nextFree: endAt,
      });
      image.notes.push(...notes);
      return image;
    }
    const headerOffset = footer.dataOffset;
    if (headerOffset + HEADER_BYTES > fileSize) {
      throw new VhdFormatError(
        "footer data offset",
        (footerAtEnd ? endAt : 0) + 16,
        `${headerOffset} leaves no room for the 1024-byte header`,
      );
    }
    const header = decodeHeader(
      readAt(headerOffset, HEADER_BYTES, "dynamic header"),
      headerOffset,
      kernels.checksum,
    );
    const blocks = Math.ceil(footer.currentSize / header.blockSize);
    const entriesAt = headerOffset + 28;
    if (header.maxTableEntries < blocks) {
      throw new VhdFormatError(
        "dynamic header max table entries",
        entriesAt,
        `is ${header.maxTableEntries}, the disk has ${blocks} blocks`,
      );
    }
    if (header.maxTableEntries > MAX_BAT_ENTRIES) {
      throw new VhdFormatError(
        "dynamic header max table entries",
        entriesAt,
        `is ${header.maxTableEntries}, more than ${MAX_BAT_ENTRIES}`,
      );
    }
    const batBytes = header.maxTableEntries * 4;
    const tableAt = headerOffset + 16;
    if (header.tableOffset % SECTOR !== 0 || header.tableOffset + batBytes > fileSize) {
      throw new VhdFormatError(
        "dynamic header table offset",
        tableAt,
        `BAT at ${header.tableOffset} of ${batBytes} bytes is unaligned or passes the end of the file`,
      );
    }
    const batRaw = readAt(header.tableOffset, batBytes, "BAT");
    const batView = new DataView(batRaw.buffer);
    const bat = new Uint32Array(header.maxTableEntries);
    for (let i = 0; i < bat.length; i++) bat[i] = batView.getUint32(i * 4);
    // Metadata spans, which no block may overlap.
    const spans: (readonly [number, number, string])[] = [
      [0, FOOTER_BYTES, "footer copy"],
      [headerOffset, headerOffset + HEADER_BYTES, "dynamic header"],
      [header.tableOffset, header.tableOffset + roundUp(batBytes, SECTOR), "BAT"],
    ];
    let metaEnd = 0;
    const locatorPaths: { code: number; path: string }[] = [];
    if (footer.diskType === "differencing") {
      header.locators.forEach((l, i) => {
        if (l.platformCode === 0) return;
        const at = headerOffset + 576 + i * 24;
        if (l.dataLength > MAX_LOCATOR_BYTES || l.dataOffset + l.dataLength > fileSize) {
          throw new VhdFormatError(
            `parent locator ${i}`,
            at,
            `data of ${l.dataLength} bytes at ${l.dataOffset} passes the end of the file or ${MAX_LOCATOR_BYTES} bytes`,
          );
        }
        // The data space is in sectors by the specification; Windows writes bytes.
        const space =
          l.dataSpace * SECTOR >= l.dataLength && l.dataSpace < SECTOR
            ? l.dataSpace * SECTOR
            : l.dataSpace;
        spans.push([
          l.dataOffset,
          l.dataOffset + Math.max(space, l.dataLength),
          `parent locator ${i} data`,
        ]);
        if (l.platformCode === PlatformCode.W2ku || l.platformCode === PlatformCode.W2ru) {
          const text = Buffer.from(readAt(l.dataOffset, l.dataLength, `parent locator ${i} data`))
            .toString("utf16le")
            .replace(/\0+$/, "");
          locatorPaths.push({ code: l.platformCode, path: text });
        }
      });
    }
    for (const [, end] of spans) metaEnd = Math.max(metaEnd, end);
    const dataEnd = footerAtEnd ? endAt : fileSize;
    const layout = {
      bat,
      blocks,
      tableOffset: header.tableOffset,
      span: bitmapBytes(header.blockSize) + header.blockSize,
      dataEnd,
      spans,
    };
    const problems = blockProblems(layout);
    if (problems[0]) throw problems[0];
    let blockEnd = roundUp(metaEnd, SECTOR);
    for (const e of bat)
      if (e !== BAT_UNALLOCATED) blockEnd = Math.max(blockEnd, e * SECTOR + layout.span);
    let parent: VhdImage | undefined;
    let parentPath: string | undefined;
    if (footer.diskType === "differencing") {
      const chain = options.chain ?? [];
      const here = file.name;
      if (chain.length >= MAX_CHAIN_DEPTH) {
        throw new ParentChainError(
          `${here}: differencing chain deeper than ${MAX_CHAIN_DEPTH} images`,
        );
      }
      const dir = dirname(here);
      const candidates: string[] = [];
      for (const l of [...locatorPaths].sort(
        (a, b) => (a.code === PlatformCode.W2ru ? -1 : 0) - (b.code === PlatformCode.W2ru ? -1 : 0),
      )) {
        const p = l.path.replaceAll("\\", "/");
        if (l.code === PlatformCode.W2ru) candidates.push(resolve(dir, p));
        else if (isAbsolute(p)) candidates.push(p);
      }
      if (header.parentName)
        candidates.push(resolve(dir, basename(header.parentName.replaceAll("\\", "/"))));
      const unique = [...new Set(candidates)];
      const looped = unique.find((c) => c === resolve(here) || chain.includes(c));
      if (looped !== undefined) {
        throw new ParentChainError(`${here}: the parent chain loops back to ${looped}`);
      }
      const found = (options.parents ?? fileParents).open(unique);
      if (!found) {
        throw new ParentChainError(
          `${here}: parent "${header.parentName}" not found (looked at ${unique.join(", ") || "no path: no locator and no name"})`,
        );
      }
      try {
        parent = VhdImage.open(found.file, {
          kernels,
          writable: false,
          ...(options.parents ? { parents: options.parents } : {}),
          chain: [...chain, resolve(here)],
        });
      } catch (error) {
        found.file.close();
        throw error;
      }
      parentPath = found.path;
      if (!sameId(parent.footer.uniqueId, header.parentUniqueId)) {
        parent.close();
        throw new ParentChainError(
          `${here}: parent ${found.path} has id ${formatUuid(parent.footer.uniqueId)}, the child expects ${formatUuid(header.parentUniqueId)}`,
        );
      }
      if (parent.size !== footer.currentSize) {
        parent.close();
        throw new ParentChainError(
          `${here}: parent ${found.path} is ${parent.size} bytes, the child ${footer.currentSize}`,
        );
      }
      const stamp = vhdTimestamp(found.mtimeMs);
      if (stamp !== header.parentTimestamp) {
        parent.close();
        throw new ParentChainError(
          `${here}: parent ${found.path} was modified (time stamp ${stamp}) after the child was made (it records ${header.parentTimestamp})`,
        );
      }
    }
    const image = new VhdImage(file, kernels, options.writable ?? false, options.ordered ?? false, {
      footer,
      header,
      headerOffset,
      bat,
      nextFree: footerAtEnd ? Math.max(endAt, blockEnd) : blockEnd,
      ...(parent ? { parent } : {}),
      ...(parentPath ? { parentPath } : {}),
    });
    image.notes.push(...notes);
    // Padding that aligns the first block's data (as hvlab lays it out) is not waste.
    if (
      footerAtEnd &&
      endAt > blockStart(blockEnd, layout.span - header.blockSize, header.blockSize)
    ) {
      image.notes.push(
        `${endAt - blockEnd} bytes between the last block and the footer are unused`,
      );
    }
    // A writable image whose footer is not at its end is repaired now: the
    // footer goes after the last block the BAT references, and bytes of a
    // block whose BAT entry was never written are cut off.
    if (image.writable && !footerAtEnd) image.moveFooter(blockEnd);
    return image;
  }

  /**
   * Creates a VHD in an empty file.
   *
   * @throws RangeError for a size or block size the specification does not allow.
   */
  static create(file: BlockFile, options: VhdCreateOptions): VhdImage {
    const kernels = options.kernels ?? defaultKernels();
    const parent = options.parent?.image;
    const size = parent ? parent.size : (options.size ?? 0);
    if (!Number.isSafeInteger(size) || size <= 0 || size % SECTOR !== 0 || size > MAX_DISK_BYTES) {
      throw new RangeError(
        `disk size must be a positive multiple of 512 up to 2040 GiB, not ${size}`,
      );
    }
    if (options.type === "differencing" && !parent)
      throw new RangeError("a differencing disk needs a parent");
    if (options.type !== "differencing" && parent)
      throw new RangeError(`a ${options.type} disk has no parent`);
    const blockSize = options.blockSize ?? (parent?.blockBytes || DEFAULT_BLOCK_BYTES);
    if (
      blockSize < MIN_BLOCK_BYTES ||
      blockSize > MAX_BLOCK_BYTES ||
      (blockSize & (blockSize - 1)) !== 0
    ) {
      throw new RangeError(
        `block size must be a power of two from ${MIN_BLOCK_BYTES} to ${MAX_BLOCK_BYTES}, not ${blockSize}`,
      );
    }
    const now = options.now ?? Date.now();
    const dynamic = options.type !== "fixed";
    const footer: Omit<VhdFooter, "checksum"> = {
      features: 2,
      version: 0x00010000,
      dataOffset: dynamic ? FOOTER_BYTES : -1,
      timestamp: vhdTimestamp(now),
      creatorApp: CREATOR.app,
      creatorVersion: CREATOR.version,
      creatorOs: CREATOR.os,
      originalSize: size,
      currentSize: size,
      geometry: chsGeometry(size / SECTOR),
      diskType: options.type,
      uniqueId: options.uniqueId ?? uuidBytes(),
      savedState: 0,
    };
    const footerBytes = encodeFooter(footer, kernels.checksum);
    file.truncate(0);
    if (!dynamic) {
      file.truncate(size);
      file.write(footerBytes, size);
      return VhdImage.open(file, { kernels, writable: true });
    }
    const entries = Math.ceil(size / blockSize);
    const tableOffset = FOOTER_BYTES + HEADER_BYTES;
    let next = tableOffset + roundUp(entries * 4, SECTOR);
    const locators: ParentLocator[] = [];
    const locatorData: [number, Uint8Array][] = [];
    if (options.parent) {
      const childDir = dirname(resolve(options.path ?? file.name));
      const absolute = resolve(options.parent.path);
      let rel = relative(childDir, absolute);
      if (!rel.startsWith(".")) rel = `./${rel}`;
      for (const [code, path] of [
        [PlatformCode.W2ru, rel],
        [PlatformCode.W2ku, absolute],
      ] as const) {
        const data = locatorBytes(path);
        const space = roundUp(Math.max(data.length, 1), SECTOR);
        locators.push({
          platformCode: code,
          dataSpace: space / SECTOR,
          dataLength: data.length,
          dataOffset: next,
        });
        locatorData.push([next, data]);
        next += space;
      }
    }
    while (locators.length < LOCATOR_COUNT)
      locators.push({ platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 });
    const header = encodeHeader(
      {
        tableOffset,
        version: 0x00010000,
        maxTableEntries: entries,
        blockSize,
        parentUniqueId: parent ? parent.footer.uniqueId : new Uint8Array(16),
        parentTimestamp: options.parent ? vhdTimestamp(options.parent.mtimeMs) : 0,
        parentName: options.parent ? basename(options.parent.path) : "",
        locators,
      },
      kernels.checksum,
    );
    file.write(footerBytes, 0);
    file.write(header, FOOTER_BYTES);
    file.write(new Uint8Array(roundUp(entries * 4, SECTOR)).fill(0xff), tableOffset);
    for (const [at, data] of locatorData) file.write(data, at);
    next = blockStart(next, bitmapBytes(blockSize), blockSize);
    file.truncate(next);
    file.write(footerBytes, next);
    // No fdatasync here: like every write, a new image is durable once flushed.
    // The caller's parent image stays theirs: the new child opens its own chain.
    return VhdImage.open(file, {
      kernels,
      writable: true,
      ...(options.parents ? { parents: options.parents } : {}),
    });
  }

  private live(): void {
    if (this.closed) throw new DiskRequestError(`${this.file.name} is closed`);
  }

  /** Reads `into.length` bytes at guest offset `offset`. */
  read(offset: number, into: Uint8Array): void {
    this.live();
    checkRequest(this.file.name, this.size, offset, into.length);
    if (this.type === "fixed") {
      this.readExact(into, offset, -1);
      return;
    }
    const first = Math.floor(offset / this.blockSize);
    const at = offset - first * this.blockSize;
    // The common case, one block that holds every sector: one read, no bitmap.
    if (at + into.length <= this.blockSize && this.full[first] === 1) {
      this.readExact(into, (this.bat[first] ?? 0) * SECTOR + this.bmBytes + at, first);
      return;
    }
    let done = 0;
    while (done < into.length) {
      const pos = offset + done;
      const block = Math.floor(pos / this.blockSize);
      const inBlock = pos - block * this.blockSize;
      const n = Math.min(this.blockSize - inBlock, into.length - done);
      this.readInBlock(block, inBlock, into.subarray(done, done + n));
      done += n;
    }
  }

  /**
   * {@link read}, with one request off this thread when `into` lies in one
   * run of this file: a fixed disk, or one block that holds every sector
   * asked for (its bitmap read first, once). Anything else (a parent's
   * sectors, a partial bitmap) is read here, as {@link read} reads it.
   */
  async readAsync(offset: number, into: Uint8Array): Promise<void> {
    this.live();
    checkRequest(this.file.name, this.size, offset, into.length);
    if (this.type === "fixed") {
      await this.readExactAsync(into, offset, -1);
      return;
    }
    const block = Math.floor(offset / this.blockSize);
    const inBlock = offset - block * this.blockSize;
    const entry = this.bat[block] ?? BAT_UNALLOCATED;
    if (inBlock + into.length <= this.blockSize && entry !== BAT_UNALLOCATED) {
      if (this.full[block] !== 1) this.bitmapOf(block);
      if (this.full[block] === 1) {
        await this.readExactAsync(into, entry * SECTOR + this.bmBytes + inBlock, block);
        return;
      }
    }
    this.read(offset, into);
  }

  private async readExactAsync(into: Uint8Array, at: number, block: number): Promise<void> {
    if ((await this.file.readAsync(into, at)) < into.length) {
      throw new VhdFormatError(
        block < 0 ? "data" : `block ${block}`,
        at,
        `${into.length} bytes there pass the end of ${this.file.name}`,
      );
    }
  }

  /** Reads all of `into` at `at`; `block` names what is read (-1: the data of a fixed disk). */
  private readExact(into: Uint8Array, at: number, block: number, what = "block"): void {
    if (this.file.read(into, at) < into.length) {
      throw new VhdFormatError(
        block < 0 ? "data" : `${what} ${block}`,
        at,
        `${into.length} bytes there pass the end of ${this.file.name}`,
      );
    }
  }

  private fromBelow(pos: number, into: Uint8Array): void {
    if (this.parent) this.parent.read(pos, into);
    else into.fill(0);
  }

  private readInBlock(block: number, inBlock: number, into: Uint8Array): void {
    const pos = block * this.blockSize + inBlock;
    const entry = this.bat[block] ?? BAT_UNALLOCATED;
    if (entry === BAT_UNALLOCATED) {
      this.fromBelow(pos, into);
      return;
    }
    const data = entry * SECTOR + this.bmBytes;
    if (this.full[block] === 1) {
      this.readExact(into, data + inBlock, block);
      return;
    }
    const bm = this.bitmapOf(block);
    const first = inBlock / SECTOR;
    const sectors = into.length / SECTOR;
    const k = this.kernels.kernel;
    // The common case: every sector asked for is in this block.
    if (k.bitmapCount(bm.region, bm.at, first, sectors) === sectors) {
      this.readExact(into, data + inBlock, block);
      return;
    }
    let s = first;
    const end = first + sectors;
    while (s < end) {
      const present = k.bitmapCount(bm.region, bm.at, s, 1) === 1;
      const runEnd = k.bitmapScan(bm.region, bm.at, s, end, present ? 0 : 1);
      const part = into.subarray((s - first) * SECTOR, (runEnd - first) * SECTOR);
      if (present) this.readExact(part, data + s * SECTOR, block);
      else this.fromBelow(block * this.blockSize + s * SECTOR, part);
      s = runEnd;
    }
  }

  /** The cached sector bitmap of an allocated block, read on first use. */
  private bitmapOf(block: number): { region: Region; at: number } {
    const cache = this.ensureCache();
    const slot = block % this.cacheTags.length;
    const at = slot * this.bmBytes;
    if (this.cacheTags[slot] !== block) {
      const view = cache.bytes(this.kernels.memory).subarray(at, at + this.bmBytes);
      this.readExact(view, (this.bat[block] ?? 0) * SECTOR, block, "sector bitmap of block");
      this.cacheTags[slot] = block;
      this.noteIfFull(block, cache, at);
    }
    return { region: cache, at };
  }

  /** Marks a block whose bitmap holds every sector, so that later I/O skips the bitmap. */
  private noteIfFull(block: number, region: Region, at: number): void {
    const sectors = this.blockSize / SECTOR;
    if (this.kernels.kernel.bitmapCount(region, at, 0, sectors) === sectors) this.full[block] = 1;
  }

  private ensureCache(): Region {
    if (!this.cache) {
      // No more slots than the disk has blocks: a small disk borrows a small cache.
      const blocks = Math.ceil(this.size / this.blockSize);
      const slots = Math.max(1, Math.min(blocks, Math.floor(BITMAP_CACHE_BYTES / this.bmBytes)));
      this.cache = this.kernels.borrow(slots * this.bmBytes);
      this.cacheTags = new Int32Array(slots).fill(-1);
    }
    return this.cache;
  }

  /** Writes `from` at guest offset `offset`, allocating blocks as needed. */
  write(offset: number, from: Uint8Array): void {
    this.live();
    if (!this.writable) throw new DiskRequestError(`${this.file.name} is open read-only`);
    checkRequest(this.file.name, this.size, offset, from.length);
    if (this.type === "fixed") {
      this.file.write(from, offset);
      return;
    }
    let done = 0;
    while (done < from.length) {
      const pos = offset + done;
      const block = Math.floor(pos / this.blockSize);
      const inBlock = pos - block * this.blockSize;
      const n = Math.min(this.blockSize - inBlock, from.length - done);
      this.writeInBlock(block, inBlock, from.subarray(done, done + n));
      done += n;
    }
  }

  /**
   * {@link write}, with the data off this thread where it lands in one run
   * of the file: a fixed disk, a block that holds every sector already, or
   * a whole new block of a dynamic disk (see {@link allocateAsync}). Other
   * writes (a differencing disk's, part of a new block, an image opened
   * `ordered`) are written here, as {@link write} writes them.
   */
  async writeAsync(offset: number, from: Uint8Array): Promise<void> {
    this.live();
    if (!this.writable) throw new DiskRequestError(`${this.file.name} is open read-only`);
    checkRequest(this.file.name, this.size, offset, from.length);
    if (this.type === "fixed") {
      await this.file.writevAsync([from], offset);
      return;
    }
    const block = Math.floor(offset / this.blockSize);
    const inBlock = offset - block * this.blockSize;
    const pending = this.allocating.get(block);
    if (pending) {
      // The block is being allocated: this write lands in it once it is.
      await pending.catch(() => {});
      return this.writeAsync(offset, from);
    }
    const entry = this.bat[block] ?? BAT_UNALLOCATED;
    if (entry !== BAT_UNALLOCATED && this.full[block] === 1) {
      if (inBlock + from.length <= this.blockSize) {
        await this.file.writevAsync([from], entry * SECTOR + this.bmBytes + inBlock);
        return;
      }
    } else if (
      entry === BAT_UNALLOCATED &&
      inBlock === 0 &&
      from.length === this.blockSize &&
      this.type === "dynamic" &&
      !this.ordered
    ) {
      const allocation = this.allocateAsync(block, from);
      this.allocating.set(block, allocation);
      try {
        await allocation;
      } finally {
        this.allocating.delete(block);
      }
      return;
    }
    this.write(offset, from);
  }

  /** Blocks whose {@link allocateAsync} has not settled. */
  private readonly allocating = new Map<number, Promise<void>>();

  /**
   * Allocates a whole new block of a dynamic disk with its data written off
   * this thread, in the order of {@link allocate}: the block's place is taken
   * at once (so the next allocation, issued before this one settles, lands
   * after it), then its bitmap and data are written in one gathered write,
   * and only once that is done its BAT entry; the footer is left pending.
   * Allocations in flight together write their data in any order and each
   * its BAT entry after its own data: a crash leaves every BAT entry on
   * written data, and at worst a block's space with no entry (never read).
   */
  private async allocateAsync(block: number, from: Uint8Array): Promise<void> {
    const start = blockStart(this.nextFree, this.bmBytes, this.blockSize);
    const padAt = this.footerPending ? start : this.nextFree;
    const end = start + this.bmBytes + this.blockSize;
    if (end / SECTOR > 0xffffffff)
      throw new DiskRequestError(`${this.file.name}: the file would pass 2 TiB of sectors`);
    this.nextFree = end;
    this.footerPending = true;
    // The write itself extends the file to the block's end.
    this.extendedTo = Math.max(this.extendedTo, end);
    const { zeros, ones } = this.constantBytes();
    // Every sector of a new dynamic block is present (see allocate).
    const head = padAt < start ? [zeros.subarray(0, start - padAt), ones] : [ones];
    await this.file.writevAsync([...head, from], padAt);
    this.bat[block] = start / SECTOR;
    this.writeBatEntry(block);
    this.full[block] = 1;
  }

  /**
   * A page of zeros and a sector bitmap of ones, in the shared memory and
   * never written after: the parts of new blocks whose writes are in flight
   * (unlike {@link scratchBytes}, which the next metadata write reuses).
   */
  private constantBytes(): { zeros: Uint8Array; ones: Uint8Array } {
    if (!this.constants) {
      this.constants = this.kernels.borrow(DATA_ALIGN + this.bmBytes);
      const bytes = this.constants.bytes(this.kernels.memory);
      bytes.subarray(0, DATA_ALIGN).fill(0);
      bytes.subarray(DATA_ALIGN, DATA_ALIGN + this.bmBytes).fill(0xff);
    }
    const bytes = this.constants.bytes(this.kernels.memory);
    return {
      zeros: bytes.subarray(0, DATA_ALIGN),
      ones: bytes.subarray(DATA_ALIGN, DATA_ALIGN + this.bmBytes),
    };
  }

  private writeInBlock(block: number, inBlock: number, from: Uint8Array): void {
    const first = inBlock / SECTOR;
    const sectors = from.length / SECTOR;
    const entry = this.bat[block] ?? BAT_UNALLOCATED;
    if (entry === BAT_UNALLOCATED) {
      if (this.allocating.has(block)) {
        throw new DiskRequestError(
          `${this.file.name}: block ${block} is being allocated by a write in flight; wait for it`,
        );
      }
      this.allocate(block, inBlock, from);
      return;
    }
    const start = entry * SECTOR;
    this.file.write(from, start + this.bmBytes + inBlock);
    if (this.full[block] === 1) return;
    // The bitmap says "present" only once the data is there.
    const bm = this.bitmapOf(block);
    if (this.kernels.kernel.bitmapSet(bm.region, bm.at, first, sectors) > 0) {
      this.file.write(
        bm.region.bytes(this.kernels.memory).subarray(bm.at, bm.at + this.bmBytes),
        start,
      );
      this.noteIfFull(block, bm.region, bm.at);
    }
  }

  /**
   * Allocates a block at the end of the data, in the order that survives a
   * crash at any point (drawn in docs/storage.md):
   *
   *   1. the block's bitmap and data, in one gathered write over the old
   *      footer, the file extended to the block's end;
   *   2. its BAT entry;
   *   3. the footer, after the last block: deferred to the next flush or
   *      close, so that a run of allocations writes it once.
   *
   * Before 3 the file has no footer at its end and the copy at offset 0
   * stands in, as the specification keeps it for (the next writable open
   * writes the footer after the last referenced block and cuts off a block
   * whose BAT entry was never written). QEMU's block/vpc.c alloc_block writes
   * the same three things, the footer before the BAT entry and every time.
   */
  private allocate(block: number, inBlock: number, from: Uint8Array): void {
    const start = blockStart(this.nextFree, this.bmBytes, this.blockSize);
    // The padding that aligns the block's data is past the end of the file, a
    // hole that reads as zeros, unless a footer was written at the end since
    // the last allocation: that one is zeroed, so that it cannot pass for one.
    const padAt = this.footerPending ? start : this.nextFree;
    const end = start + this.bmBytes + this.blockSize;
    if (end / SECTOR > 0xffffffff)
      throw new DiskRequestError(`${this.file.name}: the file would pass 2 TiB of sectors`);
    const slot = this.bitmapSlotFor(block);
    const bitmap = slot.region.bytes(this.kernels.memory).subarray(slot.at, slot.at + this.bmBytes);
    bitmap.fill(0);
    // A dynamic disk's unwritten sectors are zeros, which the zero-filled block
    // already holds, so all its sectors are present (as QEMU and Windows
    // write them); a differencing disk marks only what it holds.
    if (this.type === "dynamic") bitmap.fill(0xff);
    else
      this.kernels.kernel.bitmapSet(slot.region, slot.at, inBlock / SECTOR, from.length / SECTOR);
    // The bytes past the old footer are past the end of the file: zeros until written.
    const head = padAt < start ? [this.scratchBytes(start - padAt).fill(0), bitmap] : [bitmap];
    if (inBlock === 0) this.file.writev([...head, from], padAt);
    else {
      this.file.writev(head, padAt);
      this.file.write(from, start + this.bmBytes + inBlock);
    }
    const written = start + this.bmBytes + inBlock + from.length;
    if (end > Math.max(this.extendedTo, written)) {
      // Extended ahead, so that the next allocations skip the ftruncate; the
      // hole past the last block is cut off with the footer's next write.
      this.extendedTo = end + Math.max(EXTEND_AHEAD, end - start);
      this.file.truncate(this.extendedTo);
    } else this.extendedTo = Math.max(this.extendedTo, written);
    if (this.ordered) this.file.sync();
    this.bat[block] = start / SECTOR;
    this.writeBatEntry(block);
    this.noteIfFull(block, slot.region, slot.at);
    if (this.ordered) this.file.sync();
    this.nextFree = end;
    this.footerPending = true;
  }

  /**
   * Writes BAT entry `block`: the whole 512-byte sector of the BAT that holds
   * it, from the table in memory (one aligned write, which direct I/O takes
   * without reading the sector first), or the entry alone in a last sector
   * the table only partly fills (the rest is not the table's to write).
   */
  private writeBatEntry(block: number): void {
    const tableOffset = this.header?.tableOffset ?? 0;
    const perSector = SECTOR / 4;
    const first = block - (block % perSector);
    const count = first + perSector <= this.bat.length ? perSector : 1;
    const from = count === 1 ? block : first;
    const bytes = this.scratchBytes(count * 4);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
    for (let i = 0; i < count; i++) view.setUint32(i * 4, this.bat[from + i] ?? BAT_UNALLOCATED);
    this.file.write(bytes, tableOffset + from * 4);
  }

  /**
   * `n` bytes (at most a page) of a page-aligned region of the shared
   * memory, where metadata is laid out before it is written: direct I/O
   * takes it without a bounce.
   */
  private scratchBytes(n: number): Uint8Array {
    this.scratch ??= this.kernels.borrow(DATA_ALIGN);
    return this.scratch.bytes(this.kernels.memory).subarray(0, n);
  }

  private bitmapSlotFor(block: number): { region: Region; at: number } {
    this.ensureCache();
    const slot = block % this.cacheTags.length;
    this.cacheTags[slot] = block;
    return { region: this.ensureCache(), at: slot * this.bmBytes };
  }

  /** Writes the footer at `at` and cuts the file after it. */
  private moveFooter(at: number): void {
    const bytes = this.scratchBytes(FOOTER_BYTES);
    bytes.set(encodeFooter(this.footerValue, this.kernels.checksum));
    this.file.write(bytes, at);
    this.file.truncate(at + FOOTER_BYTES);
    this.extendedTo = at + FOOTER_BYTES;
    this.nextFree = at;
  }

  /** True when the block holding guest offset `pos` is allocated in this image. */
  isAllocated(block: number): boolean {
    return (this.bat[block] ?? BAT_UNALLOCATED) !== BAT_UNALLOCATED;
  }

  /** Counts the sectors of block `block` this image holds (0 when unallocated). */
  sectorsPresent(block: number): number {
    if (!this.isAllocated(block)) return 0;
    const bm = this.bitmapOf(block);
    return this.kernels.kernel.bitmapCount(bm.region, bm.at, 0, this.blockSize / SECTOR);
  }

  /**
   * The disk's extents. A dynamic disk reports whole blocks (as QEMU's
   * vpc_co_block_status does, from the BAT alone); a differencing disk
   * reports runs of its sector bitmaps, and the parent's extents below.
   */
  map(): MapExtent[] {
    this.live();
    const out: MapExtent[] = [];
    const push = (e: MapExtent) => {
      const last = out[out.length - 1];
      if (
        last &&
        last.depth === e.depth &&
        last.data === e.data &&
        last.zero === e.zero &&
        last.start + last.length === e.start &&
        (last.offset === undefined
          ? e.offset === undefined
          : e.offset === last.offset + last.length)
      ) {
        out[out.length - 1] = { ...last, length: last.length + e.length };
      } else out.push(e);
    };
    if (this.type === "fixed") {
      push({ start: 0, length: this.size, depth: 0, data: true, zero: false, offset: 0 });
      return out;
    }
    const below = this.parent?.map() ?? [];
    const fromBelow = (start: number, length: number) => {
      if (!this.parent) {
        push({ start, length, depth: 0, data: false, zero: true });
        return;
      }
      for (const e of below) {
        const s = Math.max(start, e.start);
        const t = Math.min(start + length, e.start + e.length);
        if (s >= t) continue;
        push({
          start: s,
          length: t - s,
          depth: e.depth + 1,
          data: e.data,
          zero: e.zero,
          ...(e.offset !== undefined ? { offset: e.offset + (s - e.start) } : {}),
        });
      }
    };
    const blocks = Math.ceil(this.size / this.blockSize);
    const k = this.kernels.kernel;
    for (let b = 0; b < blocks; b++) {
      const start = b * this.blockSize;
      const length = Math.min(this.blockSize, this.size - start);
      const entry = this.bat[b] ?? BAT_UNALLOCATED;
      if (entry === BAT_UNALLOCATED) {
        fromBelow(start, length);
        continue;
      }
      const data = entry * SECTOR + this.bmBytes;
      if (this.type === "dynamic") {
        push({ start, length, depth: 0, data: true, zero: false, offset: data });
        continue;
      }
      const bm = this.bitmapOf(b);
      const end = length / SECTOR;
      let s = 0;
      while (s < end) {
        const present = k.bitmapCount(bm.region, bm.at, s, 1) === 1;
        const runEnd = k.bitmapScan(bm.region, bm.at, s, end, present ? 0 : 1);
        if (present) {
          push({
            start: start + s * SECTOR,
            length: (runEnd - s) * SECTOR,
            depth: 0,
            data: true,
            zero: false,
            offset: data + s * SECTOR,
          });
        } else fromBelow(start + s * SECTOR, (runEnd - s) * SECTOR);
        s = runEnd;
      }
    }
    return out;
  }

  /** Writes the footer after the last block, if allocations moved the end since it was written. */
  private settleFooter(): void {
    if (!this.footerPending) return;
    this.moveFooter(this.nextFree);
    this.footerPending = false;
  }

  /** Writes the footer where allocations left it pending, then fdatasyncs. */
  flush(): void {
    this.live();
    if (!this.writable) return;
    this.settleFooter();
    this.file.sync();
  }

  /** Closes the image and its parents. */
  close(): void {
    if (this.closed) return;
    // A footer still pending goes to the end first; a close does not fdatasync
    // (a crash of the process still finds it, a power loss may take it, as
    // any write not flushed).
    if (this.writable) this.settleFooter();
    this.closed = true;
    if (this.cache) this.kernels.release(this.cache);
    if (this.scratch) this.kernels.release(this.scratch);
    if (this.constants) this.kernels.release(this.constants);
    this.parent?.close();
    this.file.close();
  }
}
