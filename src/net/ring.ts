import { RegionAllocationError } from "../memory/errors.js";
import type { MemoryLayout } from "../memory/layout.js";
import { Region, type RegionDescriptor } from "../memory/region.js";

/*
 * A VM's receive ring in the shared memory: fixed-size slots, written by the
 * processors that receive for the VM (several, with RSS: slots are claimed
 * with a compare-and-swap on head), read by the VM (tail).
 *
 *   0      4      8        12         16          20        24       28     64
 *   +------+------+--------+----------+-----------+---------+--------+------+
 *   | head | tail | slots  | slotBytes| delivered | ringFull| bytes  | (pad)|
 *   +------+------+--------+----------+-----------+---------+--------+------+
 *   slot i at 64 + i * slotBytes:
 *   +------------+-----------+-------------+------------------------------+
 *   | u32 length | u16 flags | u16 segments| frame bytes (length)         |
 *   +------------+-----------+-------------+------------------------------+
 *   flags: bit 0 checksums validated good, bit 1 coalesced (RSC)
 */

/** Bytes of a ring's header. */
export const RX_RING_HEADER = 64;
/** Bytes before a slot's frame. */
export const RX_SLOT_HEADER = 8;
/** Int32 indices of the header fields. */
export const RxRingField = {
  head: 0,
  tail: 1,
  slots: 2,
  slotBytes: 3,
  delivered: 4,
  ringFull: 5,
  bytes: 6,
} as const;
/** Slot flag: the frame's checksums were validated and are good. */
export const RX_CHECKSUM_GOOD = 1;
/** Slot flag: the frame is a coalesced super-frame. */
export const RX_COALESCED = 2;

/** What crosses threads to name a ring. */
export interface RxRingDescriptor {
  readonly region: RegionDescriptor;
  readonly slots: number;
  readonly slotBytes: number;
}

/**
 * Copies `length` bytes at address `source` of the shared memory to
 * `target` at `at` (a kernel: a JavaScript copy between shared views is
 * several times slower).
 */
export type SharedCopy = (target: Region, at: number, source: number, length: number) => void;

/** A frame the VM read from its ring. */
export interface RxSlot {
  readonly bytes: Uint8Array;
  readonly flags: number;
  readonly segments: number;
}

/** A VM's receive ring. */
export class ReceiveRing {
  private readonly header: Int32Array;
  /** Views over the ring's slots, made once: memory.buffer is costly to get per frame. */
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  /** Bytes of the shared memory when the ring was opened (views made then end there). */
  private readonly memoryBytes: number;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly region: Region,
    readonly slots: number,
    readonly slotBytes: number,
  ) {
    if (!Number.isSafeInteger(slots) || slots < 1 || slots > 1 << 20) {
      throw new RangeError(`a receive ring has 1 to 2^20 slots, not ${slots}`);
    }
    if (!Number.isSafeInteger(slotBytes) || slotBytes < 64 || slotBytes % 8 !== 0) {
      throw new RangeError(
        `receive ring slots are a multiple of 8 bytes, at least 64, not ${slotBytes}`,
      );
    }
    if (region.byteLength < ReceiveRing.bytesFor(slots, slotBytes)) {
      throw new RegionAllocationError(
        `region '${region.name}' is too small for ${slots} slots of ${slotBytes} bytes`,
      );
    }
    const buffer = memory.buffer;
    this.header = new Int32Array(buffer, region.offset, RX_RING_HEADER / 4);
    this.bytes = new Uint8Array(buffer, region.offset, region.byteLength);
    this.view = new DataView(buffer, region.offset, region.byteLength);
    this.memoryBytes = buffer.byteLength;
  }

  /** Bytes of a ring. */
  static bytesFor(slots: number, slotBytes: number): number {
    return RX_RING_HEADER + slots * slotBytes;
  }

  /** Lays out and initializes a ring. */
  static allocate(
    layout: MemoryLayout,
    name: string,
    slots: number,
    slotBytes: number,
  ): ReceiveRing {
    const region = layout.allocate(name, ReceiveRing.bytesFor(slots, slotBytes));
    const ring = new ReceiveRing(layout.memory, region, slots, slotBytes);
    ring.reset();
    return ring;
  }

  /** Opens a ring from a task message (on a worker). */
  static open(memory: WebAssembly.Memory, d: RxRingDescriptor): ReceiveRing {
    return new ReceiveRing(memory, new Region(d.region), d.slots, d.slotBytes);
  }

  /** The descriptor for task messages. */
  toDescriptor(): RxRingDescriptor {
    return { region: this.region.toDescriptor(), slots: this.slots, slotBytes: this.slotBytes };
  }

  /** Empties the ring and zeroes its counters. */
  reset(): void {
    this.header.fill(0);
    Atomics.store(this.header, RxRingField.slots, this.slots);
    Atomics.store(this.header, RxRingField.slotBytes, this.slotBytes);
  }

  /** Largest frame a slot holds. */
  get maxFrame(): number {
    return this.slotBytes - RX_SLOT_HEADER;
  }

  /** Counter values. */
  get counters(): { delivered: number; ringFull: number; bytes: number; pending: number } {
    const h = this.header;
    return {
      delivered: Atomics.load(h, RxRingField.delivered),
      ringFull: Atomics.load(h, RxRingField.ringFull),
      bytes: Atomics.load(h, RxRingField.bytes) >>> 0,
      pending: Atomics.load(h, RxRingField.head) - Atomics.load(h, RxRingField.tail),
    };
  }

  /**
   * Puts bytes at `at` in the ring: by the kernel when they are a view of
   * the shared memory (checked to lie inside it), else by a plain copy.
   */
  private put(bytes: Uint8Array, at: number, copy: SharedCopy | undefined): void {
    const n = bytes.length;
    if (copy && n >= 64 && bytes.byteOffset + n <= this.memoryBytes)
      copy(this.region, at, bytes.byteOffset, n);
    else this.bytes.set(bytes, at);
  }

  /**
   * Writes a frame (header bytes then payload pieces) into the next free
   * slot. Returns false, counting a ring-full drop, when no slot is free,
   * the frame does not fit a slot, or the pieces do not add up to `length`.
   * With `copy`, the header and pieces must be views of the ring's shared
   * memory (the receive buffer's frames), or, for the header only, private
   * bytes: a kernel moves what is shared.
   */
  write(
    header: Uint8Array,
    pieces: readonly Uint8Array[],
    length: number,
    flags: number,
    segments: number,
    copy?: SharedCopy,
  ): boolean {
    const h = this.header;
    let total = header.length;
    for (const piece of pieces) total += piece.length;
    // The slot holds `length` bytes: never copy past it, whatever the pieces
    // say; refused before a slot is claimed, so the VM never reads a slot
    // whose bytes were not written.
    if (length > this.maxFrame || total !== length) {
      Atomics.add(h, RxRingField.ringFull, 1);
      return false;
    }
    let slot: number;
    for (;;) {
      slot = Atomics.load(h, RxRingField.head);
      if (slot - Atomics.load(h, RxRingField.tail) >= this.slots) {
        Atomics.add(h, RxRingField.ringFull, 1);
        return false;
      }
      if (Atomics.compareExchange(h, RxRingField.head, slot, slot + 1) === slot) break;
    }
    const base = RX_RING_HEADER + (slot % this.slots) * this.slotBytes;
    this.view.setUint32(base, length, true);
    this.view.setUint16(base + 4, flags, true);
    this.view.setUint16(base + 6, Math.min(segments, 0xffff), true);
    let at = base + RX_SLOT_HEADER;
    // A coalesced frame's header is written afresh (private bytes); a frame
    // passed through is its own header, in the receive buffer.
    this.put(header, at, pieces.length === 0 ? copy : undefined);
    at += header.length;
    for (const piece of pieces) {
      this.put(piece, at, copy);
      at += piece.length;
    }
    Atomics.add(h, RxRingField.delivered, 1);
    Atomics.add(h, RxRingField.bytes, length);
    return true;
  }

  /** The VM's side: reads every pending slot (copies) and frees them. */
  drain(): RxSlot[] {
    const h = this.header;
    const out: RxSlot[] = [];
    const head = Atomics.load(h, RxRingField.head);
    let tail = Atomics.load(h, RxRingField.tail);
    for (; tail < head; tail++) {
      const base = this.region.offset + RX_RING_HEADER + (tail % this.slots) * this.slotBytes;
      const view = new DataView(this.memory.buffer, base, RX_SLOT_HEADER);
      const length = Math.min(view.getUint32(0, true), this.maxFrame);
      out.push({
        bytes: new Uint8Array(this.memory.buffer, base + RX_SLOT_HEADER, length).slice(),
        flags: view.getUint16(4, true),
        segments: view.getUint16(6, true),
      });
    }
    Atomics.store(h, RxRingField.tail, tail);
    return out;
  }

  /** The VM's side without reading: frees every pending slot. */
  discard(): void {
    Atomics.store(this.header, RxRingField.tail, Atomics.load(this.header, RxRingField.head));
  }
}
