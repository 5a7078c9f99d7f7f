import { Region, type RegionDescriptor } from "../memory/region.js";
import type { MultifdAccepted, MultifdKernel } from "../wasm/multifd.js";
import { type EncodeCounts, emptyEncodeCounts, takeEncodeStats } from "../wasm/page.js";
import type { ChannelResult, ChannelTask } from "./task-types.js";

/** One end of a channel: the memory it lives in and its multifd kernels there. */
export interface ChannelEnd {
  readonly memory: WebAssembly.Memory;
  readonly kernel: MultifdKernel;
}

/**
 * Copies the normal pages of a packet from the source's RAM (page numbers
 * `from`, as the sender listed them) to their places in the destination's
 * RAM (page numbers `to`, as the receiver accepted them): the link, which
 * moves page bytes straight from RAM to RAM as QEMU's multifd does with its
 * iovecs. Runs of consecutive pages on both sides go as one copy.
 */
export function linkPages(
  source: Uint8Array,
  from: Uint32Array,
  destination: Uint8Array,
  to: Uint32Array,
  count: number,
  pageBytes: number,
): void {
  // A list shorter than the count would read page numbers that are not
  // there; refuse rather than copy some other page.
  if (from.length < count || to.length < count) {
    throw new RangeError(
      `link: ${count} pages to move, but ${from.length} sent and ${to.length} accepted`,
    );
  }
  let i = 0;
  while (i < count) {
    const first = from[i] ?? 0;
    const place = to[i] ?? 0;
    let run = 1;
    while (i + run < count && from[i + run] === first + run && to[i + run] === place + run) run++;
    destination.set(
      source.subarray(first * pageBytes, (first + run) * pageBytes),
      place * pageBytes,
    );
    i += run;
  }
}

/** The destination's side of a channel, as regions of its memory. */
export interface ReceiverRegions {
  /** Where a header lands. */
  readonly receive: Region;
  /** The page numbers the receiver accepted (u32, one packet's worth). */
  readonly place: Region;
  readonly ram: Region;
  readonly hashes: Region;
}

/** One packet as it left the sender: its header and the sender's list of normal pages, in the source's memory. */
export interface PacketOnWire {
  readonly header: Uint8Array;
  /** Page numbers of the normal pages, in the order the header lists them. */
  readonly from: Uint32Array;
  readonly normal: number;
  readonly zero: number;
  readonly packetNum: number;
}

/**
 * The receiver's check of one packet: the header crosses the link into
 * `far.receive` and is checked before any page moves, the accepted page
 * numbers written to `place` (normal, then zero pages).
 *
 * @throws MultifdPacketError if the receiver refuses the header.
 */
export function acceptPacket(
  destination: ChannelEnd,
  far: ReceiverRegions,
  place: Region,
  wire: PacketOnWire,
  pageShift: number,
  alloc: number,
): MultifdAccepted {
  far.receive.bytes(destination.memory).set(wire.header);
  const accepted = destination.kernel.check(
    far.receive,
    wire.header.length,
    far.ram,
    pageShift,
    alloc,
    place,
  );
  // The receiver read the counts from the header it was handed; a header
  // changed on the way must not place pages the sender did not send.
  if (accepted.normal !== wire.normal || accepted.zero !== wire.zero) {
    throw new Error(
      `multifd packet ${wire.packetNum}: received ${accepted.normal} normal and ${accepted.zero} zero pages, sent ${wire.normal} and ${wire.zero}`,
    );
  }
  return accepted;
}

/**
 * The link moves the normal pages of an accepted packet into their places
 * (from the source's RAM, as QEMU's iovecs; runs of consecutive pages as one
 * copy), in one pass over the packet.
 */
export function placePages(
  destination: ChannelEnd,
  far: ReceiverRegions,
  sourceRam: Uint8Array,
  from: Uint32Array,
  accepted: MultifdAccepted,
  pageShift: number,
): void {
  linkPages(
    sourceRam,
    from,
    far.ram.bytes(destination.memory),
    accepted.pages,
    accepted.normal,
    2 ** pageShift,
  );
}

/**
 * The receiver's end of an accepted packet whose normal pages are in place,
 * in one kernel call: the zero pages made zero, and every page of the
 * packet hashed as it now is in the destination's RAM. The packet's pages
 * (512 KiB) were just written, so the hash finds them in the core's L2/L3;
 * the hash is bound by its arithmetic rather than by memory, so hashing per
 * smaller chunk (a call each) gained nothing (docs/migration.md, "Where the
 * time goes").
 */
export function finishPacket(
  destination: ChannelEnd,
  far: ReceiverRegions,
  place: Region,
  accepted: MultifdAccepted,
  pageShift: number,
): void {
  destination.kernel.finish(accepted, place, far.ram, pageShift, far.hashes);
}

/**
 * The receiver's side of one packet: {@link acceptPacket}, then
 * {@link placePages}, then {@link finishPacket} (zero pages, every page hashed).
 *
 * @throws MultifdPacketError if the receiver refuses the header (no page of the packet is written).
 */
export function receivePacket(
  destination: ChannelEnd,
  far: ReceiverRegions,
  sourceRam: Uint8Array,
  wire: PacketOnWire,
  pageShift: number,
  alloc: number,
): void {
  const accepted = acceptPacket(destination, far, far.place, wire, pageShift, alloc);
  placePages(destination, far, sourceRam, wire.from, accepted, pageShift);
  finishPacket(destination, far, far.place, accepted, pageShift);
}

/**
 * Runs both ends of one multifd channel for a slice of a round's page list:
 * per packet, the sender writes the header (hashing each page it sends and
 * sorting out the zero pages in the same pass), then {@link receivePacket}.
 * With the task's queue, the channel takes the slice's packets one at a
 * time from the queue it shares with the other channels, until none is left.
 *
 * @throws MultifdPacketError if the receiver refuses a header (no page of that packet is written).
 */
export function runChannel(
  source: ChannelEnd,
  destination: ChannelEnd,
  task: ChannelTask,
): ChannelResult {
  const ram = new Region(task.ram);
  const list = new Region(task.list);
  const packet = new Region(task.packet);
  const sent = new Region(task.sent);
  const stats = new Region(task.stats);
  const hashes = task.hashes ? new Region(task.hashes) : undefined;
  const far = receiverRegions(task.destination);
  const sourceRam = ram.bytes(source.memory);
  const counts: EncodeCounts = emptyEncodeCounts();
  let consumed = 0;
  let packets = 0;
  /** Sends and receives one packet of at most `count` pages from slice offset `at`; returns the pages it took. */
  const sendPacket = (at: number, count: number, packetNum: number): number => {
    const out = source.kernel.send({
      ram,
      pageShift: task.pageShift,
      list,
      listStart: task.listStart + at,
      count,
      alloc: task.packetPages,
      packet,
      sent,
      zeroPages: task.zeroPages,
      stats,
      ...(hashes ? { hashes } : {}),
      packetNum,
    });
    if (out.consumed === 0) return 0;
    packets++;
    receivePacket(
      destination,
      far,
      sourceRam,
      {
        header: packet.bytes(source.memory).subarray(0, out.headerBytes),
        from: new Uint32Array(source.memory.buffer, sent.offset, out.normal),
        normal: out.normal,
        zero: out.zero,
        packetNum,
      },
      task.pageShift,
      task.packetPages,
    );
    return out.consumed;
  };
  if (task.queue) {
    const next = packetQueue(source.memory, new Region(task.queue));
    for (;;) {
      const i = Atomics.add(next, 0, 1);
      const at = i * task.packetPages;
      if (at >= task.count) break;
      const count = Math.min(task.packetPages, task.count - at);
      const took = sendPacket(at, count, task.packetNum + i);
      // A packet holds packetPages pages, zero pages too: a packet that took
      // fewer would leave pages of the wave that no channel sends.
      if (took !== count) {
        throw new Error(`multifd packet ${task.packetNum + i} took ${took} of its ${count} pages`);
      }
      consumed += took;
    }
  } else {
    while (consumed < task.count) {
      const took = sendPacket(consumed, task.count - consumed, task.packetNum + packets);
      if (took === 0) break;
      consumed += took;
    }
  }
  takeEncodeStats(source.memory, stats, counts);
  return { consumed, counts, packets };
}

/** Bytes of a wave's packet queue: one Int32, the next packet's index (8 to keep what follows aligned). */
export const PACKET_QUEUE_BYTES = 8;

/**
 * The packet queue's cursor over `region` of `memory` (shared by the pool's
 * workers), for `Atomics`.
 *
 * @throws RangeError if the region is too small or not 4-byte aligned.
 */
export function packetQueue(memory: WebAssembly.Memory, region: Region): Int32Array {
  if (region.byteLength < 4 || region.offset % 4 !== 0) {
    throw new RangeError(
      `multifd packet queue '${region.name}' at ${region.offset} (${region.byteLength} bytes): needs 4 bytes, 4-byte aligned`,
    );
  }
  return new Int32Array(memory.buffer, region.offset, 1);
}

/** The receiver's regions from a task's descriptors. */
export function receiverRegions(far: {
  readonly receive: RegionDescriptor;
  readonly place: RegionDescriptor;
  readonly ram: RegionDescriptor;
  readonly hashes: RegionDescriptor;
}): ReceiverRegions {
  return {
    receive: new Region(far.receive),
    place: new Region(far.place),
    ram: new Region(far.ram),
    hashes: new Region(far.hashes),
  };
}
