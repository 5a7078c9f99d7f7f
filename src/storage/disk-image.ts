import type { BlockFile } from "./block-file.js";
import { DiskRequestError } from "./errors.js";
import { SECTOR } from "./format.js";

/** One extent of a disk as `hvlab storage map` and `qemu-img map --output=json` report it. */
export interface MapExtent {
  /** Guest byte offset and length. */
  readonly start: number;
  readonly length: number;
  /** Which image of the chain holds it (0: the image itself, 1: its parent, ...). */
  readonly depth: number;
  /** Data is stored (false: reads as zeros without touching a data block). */
  readonly data: boolean;
  /** Reads as zeros. */
  readonly zero: boolean;
  /** Host byte offset of the data in its image's file, when stored. */
  readonly offset?: number;
}

/** A virtual disk: raw, or a VHD of any type. Offsets and lengths are in bytes, sector-aligned. */
export interface DiskImage {
  /** "raw" or "vpc" (QEMU's name for VHD). */
  readonly format: "raw" | "vpc";
  /** The file under it. */
  readonly file: BlockFile;
  /** Virtual size in bytes. */
  readonly size: number;
  /** Reads `into.length` bytes at `offset`. */
  read(offset: number, into: Uint8Array): void;
  /** Writes `from` at `offset`. */
  write(offset: number, from: Uint8Array): void;
  /**
   * {@link read}, with the file's I/O off this thread where the image can:
   * several may be in flight at once, on disjoint ranges.
   */
  readAsync(offset: number, into: Uint8Array): Promise<void>;
  /**
   * {@link write}, with the file's I/O off this thread where the image can.
   * Several may be in flight, on disjoint ranges; the image's own metadata
   * is written in its crash-safe order, each piece after the data it
   * describes. Settle every one before `flush` or `close`.
   */
  writeAsync(offset: number, from: Uint8Array): Promise<void>;
  /** The disk's extents, allocated or not, in order. */
  map(): MapExtent[];
  /** Makes every completed write durable. */
  flush(): void;
  close(): void;
}

/** Checks an I/O request: sector-aligned and inside the disk. */
export function checkRequest(name: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % SECTOR !== 0) {
    throw new DiskRequestError(`${name}: offset ${offset} is not a multiple of ${SECTOR}`);
  }
  if (length % SECTOR !== 0) {
    throw new DiskRequestError(`${name}: length ${length} is not a multiple of ${SECTOR}`);
  }
  if (offset + length > size) {
    throw new DiskRequestError(
      `${name}: [${offset}, ${offset + length}) is past the end of the disk (${size} bytes)`,
    );
  }
}

/** A raw disk: the file's bytes are the disk's bytes. */
export class RawImage implements DiskImage {
  readonly format = "raw" as const;
  readonly size: number;

  constructor(
    readonly file: BlockFile,
    private readonly writable = false,
  ) {
    // A raw file of a size not a multiple of 512 reads as zeros up to the next sector.
    this.size = Math.ceil(file.size() / SECTOR) * SECTOR;
  }

  read(offset: number, into: Uint8Array): void {
    checkRequest(this.file.name, this.size, offset, into.length);
    const n = this.file.read(into, offset);
    if (n < into.length) into.fill(0, n);
  }

  write(offset: number, from: Uint8Array): void {
    if (!this.writable) throw new DiskRequestError(`${this.file.name} is open read-only`);
    checkRequest(this.file.name, this.size, offset, from.length);
    this.file.write(from, offset);
  }

  async readAsync(offset: number, into: Uint8Array): Promise<void> {
    checkRequest(this.file.name, this.size, offset, into.length);
    const n = await this.file.readAsync(into, offset);
    if (n < into.length) into.fill(0, n);
  }

  async writeAsync(offset: number, from: Uint8Array): Promise<void> {
    if (!this.writable) throw new DiskRequestError(`${this.file.name} is open read-only`);
    checkRequest(this.file.name, this.size, offset, from.length);
    await this.file.writevAsync([from], offset);
  }

  map(): MapExtent[] {
    return this.size === 0
      ? []
      : [{ start: 0, length: this.size, depth: 0, data: true, zero: false, offset: 0 }];
  }

  flush(): void {
    this.file.sync();
  }

  close(): void {
    this.file.close();
  }
}
