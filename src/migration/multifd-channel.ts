import { Region } from "../memory/region.js";
import type { MultifdKernel } from "../wasm/multifd.js";
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
 * Runs both ends of one multifd channel for a slice of a round's page list:
 * per packet, the sender writes the header (hashing each page it sends), the
 * link moves the header into the destination's memory, the receiver checks
 * it, the link moves the normal pages into place, and the receiver zeroes the
 * zero pages and hashes every page it received.
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
  const far = task.destination;
  const receive = new Region(far.receive);
  const place = new Region(far.place);
  const farRam = new Region(far.ram);
  const farHashes = new Region(far.hashes);
  const pageBytes = 2 ** task.pageShift;
  const sourceRam = ram.bytes(source.memory);
  const destinationRam = farRam.bytes(destination.memory);
  const counts: EncodeCounts = emptyEncodeCounts();
  let consumed = 0;
  let packets = 0;
  while (consumed < task.count) {
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
      packetNum: task.packetNum + packets,
    });
    if (out.consumed === 0) break;
    consumed += out.consumed;
    packets++;
    // The header crosses the link first; the receiver checks it before any page moves.
    receive.bytes(destination.memory).set(packet.bytes(source.memory).subarray(0, out.headerBytes));
    const accepted = destination.kernel.check(
      receive,
      out.headerBytes,
      farRam,
      task.pageShift,
      task.packetPages,
      place,
    );
    // The receiver read the counts from the header it was handed; a header
    // changed on the way must not place pages the sender did not send.
    if (accepted.normal !== out.normal || accepted.zero !== out.zero) {
      throw new Error(
        `multifd packet ${task.packetNum + packets - 1}: received ${accepted.normal} normal and ${accepted.zero} zero pages, sent ${out.normal} and ${out.zero}`,
      );
    }
    const from = new Uint32Array(source.memory.buffer, sent.offset, out.normal);
    linkPages(sourceRam, from, destinationRam, accepted.pages, accepted.normal, pageBytes);
    destination.kernel.finish(accepted, place, farRam, task.pageShift, farHashes);
  }
  takeEncodeStats(source.memory, stats, counts);
  return { consumed, counts, packets };
}
