import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { MULTIFD_SCRATCH_BYTES, multifdHeaderBytes } from "../wasm/multifd.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../wasm/page.js";

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
  /** XXH3-64 of each page as the decoder last wrote it (u64 per page, by page number). */
  readonly hashes: Region;
  /**
   * Per multifd channel, for its receive thread (a pool worker): where a
   * packet header lands, the page numbers it accepted, and its scratch.
   */
  readonly channels: readonly {
    readonly receive: Region;
    readonly place: Region;
    readonly scratch: Region;
  }[];

  constructor(
    readonly guestBytes: number,
    readonly pageShift: number,
    packetBytes: number,
    deviceStateBytes: number,
    channels = 0,
    channelPacketPages = 128,
  ) {
    this.layout = new MemoryLayout();
    this.kernel = PageKernel.on(
      this.layout.memory,
      this.layout.allocate("destination-page-scratch", PAGE_SCRATCH_BYTES),
    );
    this.ram = this.layout.allocate("destination-ram", guestBytes, 4096);
    this.receive = this.layout.allocate("destination-receive", packetBytes, 4096);
    this.hashes = this.layout.allocate("destination-page-hashes", this.pages * 8, 8);
    this.channels = Array.from({ length: channels }, (_, c) => ({
      receive: this.layout.allocate(
        `destination-multifd-${c}-header`,
        multifdHeaderBytes(channelPacketPages),
        4096,
      ),
      place: this.layout.allocate(`destination-multifd-${c}-pages`, channelPacketPages * 4, 8),
      scratch: this.layout.allocate(`destination-multifd-${c}-scratch`, MULTIFD_SCRATCH_BYTES, 8),
    }));
    this.deviceState =
      deviceStateBytes > 0
        ? this.layout.allocate("destination-device-state", deviceStateBytes)
        : undefined;
  }

  /** Guest pages. */
  get pages(): number {
    return this.guestBytes / 2 ** this.pageShift;
  }

  /**
   * Receives one packet of the page stream (the in-process link copies it
   * from the source's memory into the receive buffer) and decodes it into RAM,
   * each page written read back into its slot of {@link hashes}.
   * Returns pages written.
   */
  receivePacket(packet: Uint8Array): number {
    this.receive.bytes(this.layout.memory).set(packet);
    return this.kernel.decodePages(
      this.receive,
      packet.length,
      this.ram,
      this.pageShift,
      this.hashes,
    );
  }

  /**
   * Marks every slot of {@link hashes} as not yet written: all ones, where
   * the source's table starts all zeros, so a page the decoder never wrote
   * cannot compare equal.
   */
  clearHashes(): void {
    this.hashes.bytes(this.layout.memory).fill(0xff);
  }

  /** The hashes the decoder recorded, one u64 per page. */
  recordedHashes(): BigUint64Array {
    return this.kernel.hashTable(this.hashes, this.pages);
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

  /** XXH3-64 of every destination page, read afresh, into {@link hashes}. */
  hashAll(): BigUint64Array {
    this.kernel.hashPages(this.ram, this.pageShift, 0, this.pages, this.hashes);
    return this.kernel.hashTable(this.hashes, this.pages);
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

/**
 * Compares two page hash tables. Returns null when equal, else the first
 * page that differs.
 */
export function firstMismatch(
  source: BigUint64Array,
  destination: BigUint64Array,
): PageMismatch | null {
  const a = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
  const b = Buffer.from(destination.buffer, destination.byteOffset, destination.byteLength);
  if (a.equals(b)) return null;
  for (let page = 0; page < source.length; page++) {
    if (source[page] !== destination[page]) {
      return {
        page,
        sourceHash: source[page] ?? 0n,
        destinationHash: destination[page] ?? 0n,
      };
    }
  }
  return null;
}
