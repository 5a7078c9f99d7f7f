import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { PagingError } from "./errors.js";

/** Host-physical address where guest-physical address 0 is backed (4 GiB: 1 GiB aligned, above 32 bits). */
export const HOST_BASE = 2 ** 32;
/** A table frame. */
export const FRAME_BYTES = 4096;

/*
 * The physical window: the host-physical frames that hold page tables, backed
 * by one region of the shared memory. Host tables (EPT and shadow tables) sit
 * just below HOST_BASE; the guest's page-table zone, guest-physical
 * [0, guestTableBytes), is backed at HOST_BASE (its host-physical address under
 * the linear host mapping hPA = HOST_BASE + gPA), so that a nested walk that
 * translates a guest table's gPA through EPT lands on the same bytes a native
 * walk reads.
 *
 *   hPA:   HOST_BASE - hostTableBytes     HOST_BASE        HOST_BASE + guestTableBytes
 *          +------------------------------+----------------------------+
 *          | host tables (EPT, shadow)    | guest page-table zone      |
 *          +------------------------------+----------------------------+
 *   arena: 0                              hostTableBytes
 */

/** Sizes of the two zones of a {@link PhysicalWindow}. */
export interface PhysicalWindowOptions {
  /** Bytes for EPT and shadow tables. */
  readonly hostTableBytes: number;
  /** Bytes of the guest's page-table zone (guest-physical [0, this)). */
  readonly guestTableBytes: number;
}

/** A bump allocator with a free list over frames [first, first + count). */
class FrameAllocator {
  private next: number;
  private readonly free: number[] = [];
  constructor(
    private readonly what: string,
    private readonly first: number,
    private readonly count: number,
  ) {
    this.next = first;
  }
  allocate(): number {
    const f = this.free.pop();
    if (f !== undefined) return f;
    if (this.next >= this.first + this.count) {
      throw new PagingError(
        `${this.what} is full (${this.count} frames of 4 KiB): give the run more table memory`,
      );
    }
    return this.next++;
  }
  release(frame: number): void {
    this.free.push(frame);
  }
  get used(): number {
    return this.next - this.first - this.free.length;
  }
}

/** The physical frames that hold page tables, and their bytes in the shared memory. */
export class PhysicalWindow {
  /** hPA of the window's first byte. */
  readonly base: number;
  readonly bytes: number;
  private readonly hostFrames: FrameAllocator;
  private readonly guestFrames: FrameAllocator;
  private cachedView?: DataView;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly arena: Region,
    readonly options: PhysicalWindowOptions,
  ) {
    const { hostTableBytes, guestTableBytes } = options;
    if (hostTableBytes % FRAME_BYTES || guestTableBytes % FRAME_BYTES) {
      throw new RangeError("table zones must be whole frames");
    }
    if (arena.byteLength < hostTableBytes + guestTableBytes) {
      throw new RangeError(`arena '${arena.name}' is smaller than its two zones`);
    }
    this.base = HOST_BASE - hostTableBytes;
    this.bytes = hostTableBytes + guestTableBytes;
    this.hostFrames = new FrameAllocator(
      "host table memory",
      this.base / FRAME_BYTES,
      hostTableBytes / FRAME_BYTES,
    );
    this.guestFrames = new FrameAllocator(
      "the guest's page-table zone",
      0,
      guestTableBytes / FRAME_BYTES,
    );
  }

  /** Lays out a window's arena in `layout`. */
  static allocate(
    layout: MemoryLayout,
    name: string,
    options: PhysicalWindowOptions,
  ): PhysicalWindow {
    const arena = layout.allocate(name, options.hostTableBytes + options.guestTableBytes, 4096);
    return new PhysicalWindow(layout.memory, arena, options);
  }

  private view(): DataView {
    if (!this.cachedView || this.cachedView.buffer !== this.memory.buffer) {
      this.cachedView = new DataView(this.memory.buffer, this.arena.offset, this.bytes);
    }
    return this.cachedView;
  }

  /** Arena offset of host-physical `hpa`. @throws PagingError outside the window. */
  offsetOf(hpa: number): number {
    const off = hpa - this.base;
    if (!Number.isSafeInteger(off) || off < 0 || off + 8 > this.bytes) {
      throw new PagingError(`host-physical 0x${hpa.toString(16)} holds no table bytes`);
    }
    return off;
  }

  /** Reads the 64-bit entry at host-physical `hpa`. */
  read(hpa: number): bigint {
    return this.view().getBigUint64(this.offsetOf(hpa), true);
  }

  /** Writes the 64-bit entry at host-physical `hpa`. */
  write(hpa: number, entry: bigint): void {
    this.view().setBigUint64(this.offsetOf(hpa), entry, true);
  }

  /** Whether `hpa` has bytes. */
  holds(hpa: number): boolean {
    const off = hpa - this.base;
    return off >= 0 && off + 8 <= this.bytes;
  }

  /** A zeroed host table frame; returns its hPA. */
  allocateHostTable(): number {
    const hpa = this.hostFrames.allocate() * FRAME_BYTES;
    this.zero(hpa);
    return hpa;
  }

  /** Returns a host table frame. */
  releaseHostTable(hpa: number): void {
    this.hostFrames.release(hpa / FRAME_BYTES);
  }

  /** A zeroed guest table frame; returns its guest-physical address. */
  allocateGuestTable(): number {
    const gpa = this.guestFrames.allocate() * FRAME_BYTES;
    this.zero(HOST_BASE + gpa);
    return gpa;
  }

  /** Returns a guest table frame. */
  releaseGuestTable(gpa: number): void {
    this.guestFrames.release(gpa / FRAME_BYTES);
  }

  /** Frames in use: host tables and guest tables. */
  get usage(): { hostTables: number; guestTables: number } {
    return { hostTables: this.hostFrames.used, guestTables: this.guestFrames.used };
  }

  private zero(hpa: number): void {
    const off = this.offsetOf(hpa);
    new Uint8Array(this.memory.buffer, this.arena.offset + off, FRAME_BYTES).fill(0);
  }
}
