import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { PageKernel } from "../wasm/page.js";

/** Pages hashed per kernel call during verification (128 KiB of hashes). */
const VERIFY_CHUNK_PAGES = 16_384;

/** The first page the destination holds differently from the source. */
export interface PageMismatch {
  readonly page: number;
  readonly sourceHash: bigint;
  readonly destinationHash: bigint;
}

/**
 * The destination host of a content-mode migration: its own shared memory
 * (source and destination of a 2 GiB guest do not fit one 4 GiB wasm32
 * memory), guest RAM that the page stream is decoded into, a receive
 * buffer, and the device state it was sent.
 */
export class Destination {
  readonly layout: MemoryLayout;
  readonly ram: Region;
  readonly receive: Region;
  readonly deviceState: Region | undefined;
  readonly kernel: PageKernel;
  private readonly hashes: Region;

  constructor(
    readonly guestBytes: number,
    readonly pageShift: number,
    packetBytes: number,
    deviceStateBytes: number,
  ) {
    this.layout = new MemoryLayout();
    this.kernel = PageKernel.on(this.layout, "destination-page-scratch");
    this.ram = this.layout.allocate("destination-ram", guestBytes, 4096);
    this.receive = this.layout.allocate("destination-receive", packetBytes, 4096);
    this.deviceState =
      deviceStateBytes > 0
        ? this.layout.allocate("destination-device-state", deviceStateBytes)
        : undefined;
    this.hashes = this.layout.allocate("destination-page-hashes", VERIFY_CHUNK_PAGES * 8);
  }

  /** Guest pages. */
  get pages(): number {
    return this.guestBytes / 2 ** this.pageShift;
  }

  /**
   * Receives one packet of the page stream (the in-process link copies it
   * from the source's memory into the receive buffer) and decodes it into RAM.
   * Returns pages written.
   */
  receivePacket(packet: Uint8Array): number {
    this.receive.bytes(this.layout.memory).set(packet);
    return this.kernel.decodePages(this.receive, packet.length, this.ram, this.pageShift);
  }

  /** Receives the device state blob. */
  receiveDeviceState(blob: Uint8Array): void {
    this.deviceState?.bytes(this.layout.memory).set(blob);
  }

  /** Writes a page straight into RAM (a post-copy guest write on the destination). */
  writePage(page: number, bytes: Uint8Array): void {
    const pageBytes = 2 ** this.pageShift;
    this.ram.bytes(this.layout.memory).set(bytes, page * pageBytes);
  }

  /**
   * Checks every page against the source by XXH64 hash, chunk by chunk.
   * Returns null when all pages are equal, else the first that differs.
   */
  verify(sourceRam: Region, sourceKernel: PageKernel, sourceHashes: Region): PageMismatch | null {
    const srcMemory = sourceHashes;
    for (let first = 0; first < this.pages; first += VERIFY_CHUNK_PAGES) {
      const count = Math.min(VERIFY_CHUNK_PAGES, this.pages - first);
      sourceKernel.hashPages(sourceRam, this.pageShift, first, count, srcMemory);
      this.kernel.hashPages(this.ram, this.pageShift, first, count, this.hashes);
      const theirs = sourceKernel.hashTable(srcMemory, count);
      const ours = this.kernel.hashTable(this.hashes, count);
      if (
        !Buffer.from(theirs.buffer, theirs.byteOffset, count * 8).equals(
          Buffer.from(ours.buffer, ours.byteOffset, count * 8),
        )
      ) {
        for (let i = 0; i < count; i++) {
          if (theirs[i] !== ours[i]) {
            return {
              page: first + i,
              sourceHash: theirs[i] ?? 0n,
              destinationHash: ours[i] ?? 0n,
            };
          }
        }
      }
    }
    return null;
  }

  /** Whether the destination's device state equals `blob`. */
  deviceStateEquals(blob: Uint8Array): boolean {
    if (!this.deviceState) return blob.length === 0;
    const ours = this.deviceState.bytes(this.layout.memory);
    return Buffer.from(ours.buffer, ours.byteOffset, ours.byteLength).equals(
      Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength),
    );
  }
}

/** Pages hashed per verification chunk: the size of a source hash table region. */
export const VERIFY_HASH_TABLE_BYTES = VERIFY_CHUNK_PAGES * 8;
