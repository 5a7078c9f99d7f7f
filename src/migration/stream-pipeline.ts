import { Region, type RegionDescriptor } from "../memory/region.js";
import type { MultifdKernel } from "../wasm/multifd.js";
import { type EncodeCounts, emptyEncodeCounts, takeEncodeStats } from "../wasm/page.js";
import { type ChannelEnd, receivePacket, receiverRegions } from "./multifd-channel.js";
import type { ChannelResult, StreamReceiveTask } from "./task-types.js";

/**
 * Packets in one hand-over from the sender to the receiver (64 of 512 KiB:
 * 32 MiB of pages). Large enough that the hand-over (a pool task) costs
 * little per page, small enough that the two threads overlap for all but
 * one batch of a round.
 */
export const STREAM_BATCH_PACKETS = 64;

/**
 * The sender's buffers for one batch: the packets' headers (one stride of
 * `multifdHeaderBytes(alloc)` each) and their lists of pages sent (one stride
 * of `8 alloc` each: normal pages, then zero pages at `4 alloc`). Two slots
 * alternate, so the sender fills one while the receiver reads the other.
 *
 *   headers: | packet 0 header | packet 1 header | ... | packet 63 header |
 *   sent:    | packet 0 normal..., zero... | packet 1 ... | ...           |
 */
export interface StreamSlot {
  readonly headers: Region;
  readonly sent: Region;
}

/** Bytes a {@link StreamSlot} needs for packets of `alloc` pages: headers, then lists. */
export function streamSlotBytes(
  alloc: number,
  headerStride: number,
): {
  headers: number;
  sent: number;
} {
  return { headers: STREAM_BATCH_PACKETS * headerStride, sent: STREAM_BATCH_PACKETS * alloc * 8 };
}

/** Packet `j` of a slot's region of `stride`-byte entries, as a region of its own. */
function entry(region: RegionDescriptor, j: number, stride: number): Region {
  const offset = new Region(region).check(j * stride, stride, `packet ${j} of the batch`);
  return new Region({ name: `${region.name}[${j}]`, offset, byteLength: stride });
}

/** What the sender of one stream needs: its kernel, regions, and the hand-over to the receiver. */
export interface StreamSender {
  readonly source: { readonly memory: WebAssembly.Memory; readonly kernel: MultifdKernel };
  readonly ram: Region;
  readonly pageShift: number;
  readonly list: Region;
  readonly alloc: number;
  readonly headerStride: number;
  readonly slots: readonly [StreamSlot, StreamSlot];
  readonly stats: Region;
  readonly hashes: Region;
  readonly zeroPages: boolean;
  /** Runs the receiver's side of a batch on the destination's thread. */
  readonly receive: (task: StreamReceiveTask) => Promise<undefined>;
  /** The rest of the receiver's task: the destination's regions. */
  readonly destination: StreamReceiveTask["destination"];
}

/**
 * One stream with its two ends on two threads, as the two hosts of a
 * migration are: this thread sends (sorts zero pages out, hashes each page,
 * writes QEMU's multifd headers) a batch of packets into one slot while the
 * destination's thread receives the batch before it from the other slot
 * (checks each header, places the pages RAM to RAM, hashes them there).
 * Returns what the channel result of a single thread would.
 *
 * @throws MultifdPacketError if the receiver refuses a header; a sender's error is thrown after the receiver in flight has finished.
 */
export async function sendStream(
  s: StreamSender,
  listStart: number,
  count: number,
  packetNum: number,
): Promise<ChannelResult> {
  const counts: EncodeCounts = emptyEncodeCounts();
  let consumed = 0;
  let packets = 0;
  let slot = 0;
  let inFlight: Promise<undefined> | undefined;
  try {
    while (consumed < count) {
      const buffers = s.slots[slot] ?? s.slots[0];
      const batch: StreamReceiveTask["packets"][number][] = [];
      for (let j = 0; j < STREAM_BATCH_PACKETS && consumed < count; j++) {
        const out = s.source.kernel.send({
          ram: s.ram,
          pageShift: s.pageShift,
          list: s.list,
          listStart: listStart + consumed,
          count: count - consumed,
          alloc: s.alloc,
          packet: entry(buffers.headers, j, s.headerStride),
          sent: entry(buffers.sent, j, s.alloc * 8),
          zeroPages: s.zeroPages,
          stats: s.stats,
          hashes: s.hashes,
          packetNum: packetNum + packets,
        });
        if (out.consumed === 0) break;
        consumed += out.consumed;
        batch.push({
          headerBytes: out.headerBytes,
          normal: out.normal,
          zero: out.zero,
          packetNum: packetNum + packets,
        });
        packets++;
      }
      if (batch.length === 0) break;
      // The slot the receiver still reads is the other one: wait for it
      // before the next batch is written there.
      await inFlight;
      inFlight = s.receive({
        type: "migration.stream-receive",
        ram: s.ram.toDescriptor(),
        pageShift: s.pageShift,
        packetPages: s.alloc,
        headerStride: s.headerStride,
        headers: buffers.headers.toDescriptor(),
        sent: buffers.sent.toDescriptor(),
        packets: batch,
        destination: s.destination,
      });
      // Keep an early failure from going unhandled while the sender works on.
      inFlight.catch(() => undefined);
      slot ^= 1;
    }
  } finally {
    await inFlight?.catch(() => undefined);
  }
  await inFlight;
  takeEncodeStats(s.source.memory, s.stats, counts);
  return { consumed, counts, packets };
}

/**
 * The receiver's side of a batch, on the destination's thread: each packet
 * in order through {@link receivePacket}, reading headers and page lists from
 * the sender's slot and the pages from the source's RAM (the link).
 */
export function receiveBatch(
  source: WebAssembly.Memory,
  destination: ChannelEnd,
  task: StreamReceiveTask,
): undefined {
  const far = receiverRegions(task.destination);
  const sourceRam = new Region(task.ram).bytes(source);
  const sentStride = task.packetPages * 8;
  task.packets.forEach((p, j) => {
    const header = entry(task.headers, j, task.headerStride);
    const sent = entry(task.sent, j, sentStride);
    if (p.headerBytes > task.headerStride || p.normal > task.packetPages) {
      throw new RangeError(
        `stream packet ${p.packetNum}: ${p.headerBytes} header bytes and ${p.normal} pages do not fit a packet of ${task.packetPages}`,
      );
    }
    receivePacket(
      destination,
      far,
      sourceRam,
      {
        header: header.bytes(source).subarray(0, p.headerBytes),
        from: new Uint32Array(source.buffer, sent.offset, p.normal),
        normal: p.normal,
        zero: p.zero,
        packetNum: p.packetNum,
      },
      task.pageShift,
      task.packetPages,
    );
  });
  return undefined;
}
