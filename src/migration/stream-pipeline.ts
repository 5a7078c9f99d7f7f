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
import { STREAM_SLOTS, StreamQueue, StreamState } from "./stream-queue.js";
import type { ChannelResult, StreamReceiveTask } from "./task-types.js";

/**
 * Packets in one batch (16 of 512 KiB: 8 MiB of pages). Large enough that
 * claiming a batch costs little per page, small enough that the pages the
 * sender just hashed are still in the last-level cache when a receiver
 * copies them, and that the two threads end a wave within one batch of each
 * other.
 */
export const STREAM_BATCH_PACKETS = 16;

/** Bytes of one packet's entry in a slot's `wire`: header bytes, normal pages, zero pages, packet number (u32 each). */
const WIRE_ENTRY_BYTES = 16;

/**
 * The sender's buffers for one batch: the packets' headers (one stride of
 * `multifdHeaderBytes(alloc)` each), their lists of pages sent (one stride
 * of `8 alloc` each: normal pages, then zero pages at `4 alloc`), and what
 * the link says of each packet (`wire`). {@link STREAM_SLOTS} slots make a
 * ring: the sender fills one while receivers read the others.
 *
 *   headers: | packet 0 header | packet 1 header | ... | packet 31 header |
 *   sent:    | packet 0 normal..., zero... | packet 1 ... | ...           |
 *   wire:    | packet 0: header bytes, normal, zero, number | packet 1 ... |
 */
export interface StreamSlot {
  readonly headers: Region;
  readonly sent: Region;
  readonly wire: Region;
  /** In the destination's memory: the page numbers the receiver accepted, `4 alloc` bytes per packet. */
  readonly accepted: Region;
}

/** Bytes the regions of a {@link StreamSlot} need for packets of `alloc` pages. */
export function streamSlotBytes(
  alloc: number,
  headerStride: number,
): {
  readonly headers: number;
  readonly sent: number;
  readonly wire: number;
  readonly accepted: number;
} {
  return {
    headers: STREAM_BATCH_PACKETS * headerStride,
    sent: STREAM_BATCH_PACKETS * alloc * 8,
    wire: STREAM_BATCH_PACKETS * WIRE_ENTRY_BYTES,
    accepted: STREAM_BATCH_PACKETS * alloc * 4,
  };
}

/** Packet `j` of a slot's region of `stride`-byte entries, as a region of its own. */
function entry(region: RegionDescriptor, j: number, stride: number): Region {
  const offset = new Region(region).check(j * stride, stride, `packet ${j} of the batch`);
  return new Region({ name: `${region.name}[${j}]`, offset, byteLength: stride });
}

/** What the sender of one stream needs: its kernel, regions, its queue, and the destination's thread. */
export interface StreamSender {
  readonly source: { readonly memory: WebAssembly.Memory; readonly kernel: MultifdKernel };
  /**
   * The destination's end on this thread, which receives the batches the
   * sender takes itself, and its own regions there (a header buffer and
   * scratch apart from the other thread's).
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
  readonly slots: readonly StreamSlot[];
  /** The batches' queue ({@link StreamQueue}), in the source's memory. */
  readonly queue: Region;
  readonly stats: Region;
  readonly hashes: Region;
  readonly zeroPages: boolean;
  /** Starts the destination's thread on the wave ({@link serveStream} there); resolves to the batches it received. */
  readonly receive: (task: StreamReceiveTask) => Promise<number>;
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
 * migration are: this thread sends batches of packets (sorts zero pages
 * out, hashes each page, writes QEMU's multifd headers) into a ring of
 * slots, and the destination's thread receives them in order, each whole
 * (checks every header, then places the pages RAM to RAM and hashes them
 * there). The sender's own work is about a third of a page's and the
 * receiver's two thirds, so the sender has time to spare: when it finds the
 * ring full it receives the oldest waiting batch itself, which frees a slot
 * and still leaves the destination's thread batches to go on with, and at
 * the wave's end both take what is left. So the destination's thread never
 * idles inside a wave, and the sender waits only when every batch in the
 * ring but the one it must reuse is received and that one is still in the
 * destination thread's hands. On two free cores the sender receives about
 * a quarter of the batches. Returns what the channel result of a single
 * thread would.
 *
 * @throws MultifdPacketError if a receiver refuses a header (no page of that batch is written); the destination's thread has stopped when it is thrown.
 */
export async function sendStream(
  s: StreamSender,
  listStart: number,
  count: number,
  packetNum: number,
  split: StreamSplit = { remote: 0, local: 0 },
): Promise<ChannelResult> {
  const counts: EncodeCounts = emptyEncodeCounts();
  const queue = new StreamQueue(s.source.memory, s.queue);
  queue.reset();
  const task: StreamReceiveTask = {
    type: "migration.stream-receive",
    ram: s.ram.toDescriptor(),
    pageShift: s.pageShift,
    packetPages: s.alloc,
    headerStride: s.headerStride,
    slots: s.slots.map((slot) => ({
      headers: slot.headers.toDescriptor(),
      sent: slot.sent.toDescriptor(),
      wire: slot.wire.toDescriptor(),
      accepted: slot.accepted.toDescriptor(),
    })),
    queue: s.queue.toDescriptor(),
    destination: s.destination,
  };
  const here = { ...task, destination: s.local.destination };
  const receiveHere = (batch: number): void => {
    try {
      receiveBatch(s.source.memory, s.local.end, here, batch % STREAM_SLOTS, queue);
    } catch (error) {
      queue.end(StreamState.failed);
      throw error;
    }
    queue.finish(batch, false);
    split.local++;
  };
  let consumed = 0;
  let packets = 0;
  let batch = 0;
  let remote: Promise<number> | undefined;
  try {
    while (consumed < count && queue.state() !== StreamState.failed) {
      // Batch `batch` reuses its slot once the batch before it there is received.
      while (!queue.slotFree(batch) && queue.state() !== StreamState.failed) {
        const seen = queue.seen();
        const waiting = queue.claim();
        if (waiting >= 0) receiveHere(waiting);
        else if (!queue.slotFree(batch)) await queue.waitAsync(seen, 1000);
      }
      if (queue.state() === StreamState.failed) break;
      const slot = s.slots[batch % STREAM_SLOTS];
      if (!slot) throw new Error(`stream: ${s.slots.length} slots, ${STREAM_SLOTS} needed`);
      const wire = new Uint32Array(
        s.source.memory.buffer,
        slot.wire.offset,
        STREAM_BATCH_PACKETS * 4,
      );
      let n = 0;
      for (; n < STREAM_BATCH_PACKETS && consumed < count; n++) {
        const out = s.source.kernel.send({
          ram: s.ram,
          pageShift: s.pageShift,
          list: s.list,
          listStart: listStart + consumed,
          count: count - consumed,
          alloc: s.alloc,
          packet: entry(slot.headers, n, s.headerStride),
          sent: entry(slot.sent, n, s.alloc * 8),
          zeroPages: s.zeroPages,
          stats: s.stats,
          hashes: s.hashes,
          packetNum: packetNum + packets,
        });
        if (out.consumed === 0) break;
        consumed += out.consumed;
        wire.set([out.headerBytes, out.normal, out.zero, packetNum + packets], n * 4);
        packets++;
      }
      if (n === 0) break;
      queue.write(n);
      batch++;
      if (!remote) {
        remote = s.receive(task);
        // Keep an early failure from going unhandled while the sender works on.
        remote.catch(() => undefined);
      }
    }
    queue.end(StreamState.sent);
    // The wave's tail: whichever thread is free takes the next batch.
    while (queue.state() !== StreamState.failed) {
      const waiting = queue.claim();
      if (waiting < 0) break;
      receiveHere(waiting);
    }
  } catch (error) {
    queue.end(StreamState.failed);
    await remote?.catch(() => undefined);
    throw error;
  }
  // The destination thread's error, if it failed, is thrown here.
  split.remote += (await remote) ?? 0;
  takeEncodeStats(s.source.memory, s.stats, counts);
  return { consumed, counts, packets };
}

/**
 * Waits on a stream's queue until something changed since `seen`: the
 * destination's thread blocks (it has nothing else to do), a thread with an
 * event loop waits without blocking.
 */
export type StreamWait = (queue: StreamQueue, seen: number) => void | Promise<void>;

/** The destination thread's wait: blocks, a second at a time. */
export const blockingWait: StreamWait = (queue, seen) => queue.waitBlocking(seen, 1000);

/**
 * The destination's thread for one wave of a stream: claims batches in
 * order and receives each whole, until the sender has written the wave and
 * none is left, or a thread failed. Returns the batches it received.
 *
 * @throws MultifdPacketError if a header is refused (no page of that batch is written); the queue is marked failed first, so the sender stops.
 */
export async function serveStream(
  source: WebAssembly.Memory,
  destination: ChannelEnd,
  task: StreamReceiveTask,
  wait: StreamWait = blockingWait,
): Promise<number> {
  const queue = new StreamQueue(source, new Region(task.queue));
  let received = 0;
  for (;;) {
    const seen = queue.seen();
    const batch = queue.claim();
    if (batch >= 0) {
      try {
        receiveBatch(source, destination, task, batch % STREAM_SLOTS, queue);
      } catch (error) {
        queue.end(StreamState.failed);
        throw error;
      }
      queue.finish(batch, true);
      received++;
      continue;
    }
    if (queue.state() !== StreamState.sending) return received;
    const waited = wait(queue, seen);
    if (waited) await waited;
  }
}

/**
 * The receiver's side of the batch in `slot`, on whichever thread claimed
 * it: every header checked first (no page of the batch moves before all
 * passed), then per packet its normal pages placed RAM to RAM and the packet
 * finished (zero pages made zero, every page hashed as it landed).
 *
 * @throws MultifdPacketError if a header is refused (no page of the batch is written).
 */
export function receiveBatch(
  source: WebAssembly.Memory,
  destination: ChannelEnd,
  task: StreamReceiveTask,
  slot: number,
  queue: StreamQueue,
): undefined {
  const regions = task.slots[slot];
  if (!regions) throw new RangeError(`stream slot ${slot} of ${task.slots.length}`);
  const far = receiverRegions(task.destination);
  const sourceRam = new Region(task.ram).bytes(source);
  const sentStride = task.packetPages * 8;
  const count = queue.packets(slot);
  if (count < 1 || count > STREAM_BATCH_PACKETS) {
    throw new RangeError(`stream slot ${slot}: ${count} packets, not 1 to ${STREAM_BATCH_PACKETS}`);
  }
  const wire = new Uint32Array(source.buffer, new Region(regions.wire).offset, count * 4);
  const packets: { accepted: MultifdAccepted; place: Region; from: Uint32Array }[] = [];
  for (let j = 0; j < count; j++) {
    const headerBytes = wire[j * 4] ?? 0;
    const normal = wire[j * 4 + 1] ?? 0;
    const zero = wire[j * 4 + 2] ?? 0;
    const packetNum = wire[j * 4 + 3] ?? 0;
    if (headerBytes > task.headerStride || normal > task.packetPages) {
      throw new RangeError(
        `stream packet ${packetNum}: ${headerBytes} header bytes and ${normal} pages do not fit a packet of ${task.packetPages}`,
      );
    }
    const header = entry(regions.headers, j, task.headerStride);
    const sent = entry(regions.sent, j, sentStride);
    const place = entry(regions.accepted, j, task.packetPages * 4);
    const from = new Uint32Array(source.buffer, sent.offset, normal);
    const onWire = {
      header: header.bytes(source).subarray(0, headerBytes),
      from,
      normal,
      zero,
      packetNum,
    };
    packets.push({
      accepted: acceptPacket(destination, far, place, onWire, task.pageShift, task.packetPages),
      place,
      from,
    });
  }
  for (const p of packets) {
    placePages(destination, far, sourceRam, p.from, p.accepted, task.pageShift);
    finishPacket(destination, far, p.place, p.accepted, task.pageShift);
  }
  return undefined;
}
