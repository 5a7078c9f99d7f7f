import { Region, type RegionDescriptor } from "../memory/region.js";
import type { MultifdAccepted, MultifdKernel } from "../wasm/multifd.js";
import { type EncodeCounts, emptyEncodeCounts, takeEncodeStats } from "../wasm/page.js";
import {
  acceptPacket,
  type ChannelEnd,
  finishPacket,
  placePages,
  receiverRegions,
} from "./multifd-channel.js";
import type { ChannelResult, StreamReceiveTask } from "./task-types.js";

/**
 * Packets in one batch (32 of 512 KiB: 16 MiB of pages). Large enough that
 * handing a batch to the destination's thread (a pool task) costs little
 * per page, small enough that the pages the sender just hashed are still in
 * the last-level cache when the receiver copies them, and that the two
 * threads end a wave within one batch of each other.
 */
export const STREAM_BATCH_PACKETS = 32;

/**
 * The sender's buffers for one batch: the packets' headers (one stride of
 * `multifdHeaderBytes(alloc)` each) and their lists of pages sent (one stride
 * of `8 alloc` each: normal pages, then zero pages at `4 alloc`). Two slots
 * alternate, so the sender fills one while the receiver reads the other.
 *
 *   headers: | packet 0 header | packet 1 header | ... | packet 31 header |
 *   sent:    | packet 0 normal..., zero... | packet 1 ... | ...           |
 */
export interface StreamSlot {
  readonly headers: Region;
  readonly sent: Region;
  /** In the destination's memory: the page numbers the receiver accepted, `4 alloc` bytes per packet. */
  readonly accepted: Region;
}

/** Bytes the regions of a {@link StreamSlot} need for packets of `alloc` pages. */
export function streamSlotBytes(
  alloc: number,
  headerStride: number,
): { readonly headers: number; readonly sent: number; readonly accepted: number } {
  return {
    headers: STREAM_BATCH_PACKETS * headerStride,
    sent: STREAM_BATCH_PACKETS * alloc * 8,
    accepted: STREAM_BATCH_PACKETS * alloc * 4,
  };
}

/** Packet `j` of a slot's region of `stride`-byte entries, as a region of its own. */
function entry(region: RegionDescriptor, j: number, stride: number): Region {
  const offset = new Region(region).check(j * stride, stride, `packet ${j} of the batch`);
  return new Region({ name: `${region.name}[${j}]`, offset, byteLength: stride });
}

/** What the sender of one stream needs: its kernel, regions, and the two ways a batch is received. */
export interface StreamSender {
  readonly source: { readonly memory: WebAssembly.Memory; readonly kernel: MultifdKernel };
  /**
   * The destination's end on this thread, which receives the batches that
   * find the destination's thread busy, and its own regions there (a header
   * buffer and scratch apart from the other thread's).
   */
  readonly local: {
    readonly end: ChannelEnd;
    readonly destination: StreamReceiveTask["destination"];
  };
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

/** How the batches of one {@link sendStream} were received: on the destination's thread, or on this one. */
export interface StreamSplit {
  remote: number;
  local: number;
}

/**
 * One stream with its two ends on two threads, as the two hosts of a
 * migration are: this thread sends a batch of packets (sorts zero pages
 * out, hashes each page, writes QEMU's multifd headers) into one slot and
 * hands it to the destination's thread, which receives it whole (checks
 * every header, then places the pages RAM to RAM and hashes them there)
 * while this thread sends the next. A batch sent while the destination's
 * thread is still busy is received here instead, at once, so neither thread
 * waits for the other inside a wave: the sender's share of the receiving is
 * whatever keeps both busy (its own hashing is a third of a page's work,
 * the receiver's copy and hash two thirds), and each batch is received
 * whole on one core, its pages copied and hashed there back to back.
 * Returns what the channel result of a single thread would.
 *
 * @throws MultifdPacketError if the receiver refuses a header (no page of that batch is written); a sender's error is thrown after the receiver in flight has finished.
 */
export async function sendStream(
  s: StreamSender,
  listStart: number,
  count: number,
  packetNum: number,
  split: StreamSplit = { remote: 0, local: 0 },
): Promise<ChannelResult> {
  const counts: EncodeCounts = emptyEncodeCounts();
  let consumed = 0;
  let packets = 0;
  let slot = 0;
  let inFlight: Promise<undefined> | undefined;
  let busy = false;
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
      const task: StreamReceiveTask = {
        type: "migration.stream-receive",
        ram: s.ram.toDescriptor(),
        pageShift: s.pageShift,
        packetPages: s.alloc,
        headerStride: s.headerStride,
        headers: buffers.headers.toDescriptor(),
        sent: buffers.sent.toDescriptor(),
        accepted: buffers.accepted.toDescriptor(),
        packets: batch,
        destination: s.destination,
      };
      // Let the destination's reply in (a message), so `busy` is current.
      if (busy) await new Promise<void>((resolve) => setImmediate(resolve));
      if (busy) {
        // The destination's thread still works on the other slot: receive
        // this batch here, and fill this slot again next.
        receiveBatch(s.source.memory, s.local.end, { ...task, destination: s.local.destination });
        split.local++;
        continue;
      }
      // Idle: its last batch is done (an error of it is thrown here).
      await inFlight;
      busy = true;
      inFlight = s.receive(task).finally(() => {
        busy = false;
      });
      // Keep an early failure from going unhandled while the sender works on.
      inFlight.catch(() => undefined);
      split.remote++;
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
 * The receiver's side of a batch, on whichever thread receives it: every
 * header checked first (no page of the batch moves before all passed), then
 * per packet its normal pages placed RAM to RAM and the packet finished (zero
 * pages made zero, every page hashed as it landed).
 *
 * @throws MultifdPacketError if a header is refused (no page of the batch is written).
 */
export function receiveBatch(
  source: WebAssembly.Memory,
  destination: ChannelEnd,
  task: StreamReceiveTask,
): undefined {
  const far = receiverRegions(task.destination);
  const sourceRam = new Region(task.ram).bytes(source);
  const sentStride = task.packetPages * 8;
  const packets: { accepted: MultifdAccepted; place: Region; from: Uint32Array }[] = [];
  task.packets.forEach((p, j) => {
    if (p.headerBytes > task.headerStride || p.normal > task.packetPages) {
      throw new RangeError(
        `stream packet ${p.packetNum}: ${p.headerBytes} header bytes and ${p.normal} pages do not fit a packet of ${task.packetPages}`,
      );
    }
    const header = entry(task.headers, j, task.headerStride);
    const sent = entry(task.sent, j, sentStride);
    const place = entry(task.accepted, j, task.packetPages * 4);
    const from = new Uint32Array(source.buffer, sent.offset, p.normal);
    const wire = {
      header: header.bytes(source).subarray(0, p.headerBytes),
      from,
      normal: p.normal,
      zero: p.zero,
      packetNum: p.packetNum,
    };
    packets.push({
      accepted: acceptPacket(destination, far, place, wire, task.pageShift, task.packetPages),
      place,
      from,
    });
  });
  for (const p of packets) {
    placePages(destination, far, sourceRam, p.from, p.accepted, task.pageShift);
    finishPacket(destination, far, p.place, p.accepted, task.pageShift);
  }
  return undefined;
}
