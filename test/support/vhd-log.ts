/*
 * A VHD's file as the VHD I/O tests see it: a sparse in-memory file that
 * logs every call, the layout of the small dynamic disks they make (blocks
 * of 16 sectors, their data on a page boundary), and the data they write.
 */
import { SynchronousFile } from "../../src/storage/block-file.js";
import { FOOTER_BYTES, HEADER_BYTES } from "../../src/storage/format.js";

export const SECTOR = 512;
/** 16 sectors: two bitmap bytes per block. */
export const BLOCK = 8192;
/** The bitmap of 16 sectors, padded to a sector. */
export const BITMAP = 512;
export const TABLE = FOOTER_BYTES + HEADER_BYTES;
export const PAGE = 4096;

/** Where a block allocated at `at` starts: its data (after the bitmap) on a page boundary. */
export const placed = (at: number) => Math.ceil((at + BITMAP) / PAGE) * PAGE - BITMAP;
/** A dynamic disk of a 4-entry BAT (one sector) has its first block here. */
export const FIRST = placed(TABLE + SECTOR);

/** A file call as logged. */
export type Op = "read" | "write" | "writev" | "readAsync" | "writevAsync" | "truncate" | "sync";

/** A sparse in-memory file that logs every call's kind, offset and length. */
export class LogFile extends SynchronousFile {
  log: [Op, number, number][] = [];
  private readonly pages = new Map<number, Uint8Array>();
  private length = 0;

  constructor(readonly name: string) {
    super();
  }

  static of(name: string, bytes: Uint8Array): LogFile {
    const file = new LogFile(name);
    file.put(bytes, 0);
    return file;
  }

  /** The `n` bytes at `at`. */
  bytes(at: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    this.get(out, at);
    return out;
  }

  all(): Uint8Array {
    return this.bytes(0, this.length);
  }

  size(): number {
    return this.length;
  }

  private get(into: Uint8Array, position: number): number {
    const n = Math.max(0, Math.min(into.length, this.length - position));
    for (let i = 0; i < n; ) {
      const at = position + i;
      const page = Math.floor(at / PAGE);
      const off = at - page * PAGE;
      const k = Math.min(PAGE - off, n - i);
      const p = this.pages.get(page);
      if (p) into.set(p.subarray(off, off + k), i);
      else into.fill(0, i, i + k);
      i += k;
    }
    return n;
  }

  private put(from: Uint8Array, position: number): void {
    for (let i = 0; i < from.length; ) {
      const at = position + i;
      const page = Math.floor(at / PAGE);
      const off = at - page * PAGE;
      const k = Math.min(PAGE - off, from.length - i);
      let p = this.pages.get(page);
      if (!p) {
        p = new Uint8Array(PAGE);
        this.pages.set(page, p);
      }
      p.set(from.subarray(i, i + k), off);
      i += k;
    }
    this.length = Math.max(this.length, position + from.length);
  }

  read(into: Uint8Array, position: number): number {
    this.log.push(["read", position, into.length]);
    return this.get(into, position);
  }

  write(from: Uint8Array, position: number): void {
    this.log.push(["write", position, from.length]);
    this.put(from, position);
  }

  private putAll(parts: readonly Uint8Array[], position: number): number {
    let at = position;
    for (const part of parts) {
      this.put(part, at);
      at += part.length;
    }
    return at - position;
  }

  override writev(parts: readonly Uint8Array[], position: number): void {
    this.log.push(["writev", position, this.putAll(parts, position)]);
  }

  override async readAsync(into: Uint8Array, position: number): Promise<number> {
    this.log.push(["readAsync", position, into.length]);
    return this.get(into, position);
  }

  override async writevAsync(parts: readonly Uint8Array[], position: number): Promise<void> {
    this.log.push(["writevAsync", position, this.putAll(parts, position)]);
  }

  truncate(length: number): void {
    this.log.push(["truncate", length, 0]);
    for (const [page, p] of this.pages) {
      const s = page * PAGE;
      if (s >= length) this.pages.delete(page);
      else if (s + PAGE > length) p.fill(0, length - s);
    }
    this.length = length;
  }

  sync(): void {
    this.log.push(["sync", 0, 0]);
  }

  close(): void {}
}

/** `n` bytes that differ from sector to sector and from seed to seed. */
export function pattern(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => ((i >> 9) * 37 + i * 11 + seed * 101 + 1) & 0xff || 0x5a);
}
