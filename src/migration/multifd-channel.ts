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

/**
 * Pages the receiver places between its hashes: 16 of 4 KiB are 64 KiB, so
 * the receiver hashes each chunk it just copied while it is still in the
 * core's L1/L2, instead of reading a whole 512 KiB packet back.
 */
export const LINK_CHUNK_PAGES = 16;

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
 * (from the source's RAM, as QEMU's iovecs), a chunk at a time, and with
 * `hash` the receiver hashes each chunk as soon as it landed.
 */
export function placePages(
  destination: ChannelEnd,
  far: ReceiverRegions,
  place: Region,
  sourceRam: Uint8Array,
  from: Uint32Array,
  accepted: MultifdAccepted,
  pageShift: number,
  hash: boolean,
): void {
  const destinationRam = far.ram.bytes(destination.memory);
  for (let i = 0; i < accepted.normal; i += LINK_CHUNK_PAGES) {
    const n = Math.min(LINK_CHUNK_PAGES, accepted.normal - i);
    linkPages(
      sourceRam,
      from.subarray(i, i + n),
      destinationRam,
      accepted.pages.subarray(i, i + n),
      n,
      2 ** pageShift,
    );
    if (hash) destination.kernel.hashListed(far.ram, pageShift, place, i, n, far.hashes);
  }
}

/**
 * The receiver's end of an accepted packet whose normal pages are in place:
 * the zero pages made zero, and every page hashed (`hashNormal`: the normal
 * pages too, when they were placed without their hash).
 */
export function finishPacket(
  destination: ChannelEnd,
  far: ReceiverRegions,
  place: Region,
  accepted: MultifdAccepted,
  pageShift: number,
  hashNormal: boolean,
): void {
  if (hashNormal) {
    destination.kernel.hashListed(far.ram, pageShift, place, 0, accepted.normal, far.hashes);
  }
  destination.kernel.finish(accepted, place, far.ram, pageShift);
  destination.kernel.hashListed(
    far.ram,
    pageShift,
    place,
    accepted.normal,
    accepted.zero,
    far.hashes,
  );
}

/**
 * The receiver's side of one packet: {@link acceptPacket}, then
 * {@link placePages} hashing each chunk as it lands, then
 * {@link finishPacket}.
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
  placePages(destination, far, far.place, sourceRam, wire.from, accepted, pageShift, true);
  finishPacket(destination, far, far.place, accepted, pageShift, false);
}

/**
 * Runs both ends of one multifd channel for a slice of a round's page list:
 * per packet, the sender writes the header (hashing each page it sends and
 * sorting out the zero pages in the same pass), then {@link receivePacket}.
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
  while (consumed < task.count) {
    const packetNum = task.packetNum + packets;
    const out = source.kernel.send({
      ram,
      pageShift: task.pageShift,
      list,
      listStart: task.listStart + consumed,
      count: task.count - consumed,
      alloc: task.packetPages,
      packet,
      sent,
      zeroPages: task.zeroPages,
      stats,
      ...(hashes ? { hashes } : {}),
      packetNum,
    });
    if (out.consumed === 0) break;
    consumed += out.consumed;
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
  }
  takeEncodeStats(source.memory, stats, counts);
  return { consumed, counts, packets };
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
