import { Region, type RegionDescriptor } from "../memory/region.js";
import type { MultifdAccepted, MultifdKernel } from "../wasm/multifd.js";
import { type EncodeCounts, emptyEncodeCounts, takeEncodeStats } from "../wasm/page.js";
import {
  acceptPacket,
  type ChannelEnd,
  finishPacket,
  linkPages,
  placePages,
  receiverRegions,
} from "./multifd-channel.js";
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
  /** In the destination's memory: the page numbers the receiver accepted, `4 alloc` bytes per packet. */
  readonly accepted: Region;
  /** In the source's memory: the slot's hand-over word ({@link Handover}). */
  readonly handover: Region;
}

/**
 * The hand-over word of a slot (an Int32 in the source's memory). The
 * receiver checks every header of the batch and says so (CHECKED); the
 * sender then copies the first {@link SENDER_COPY_SHARE} of the batch's
 * pages into the places the receiver accepted and says so (COPIED) while the
 * receiver copies the rest; the receiver hashes the sender's share after
 * COPIED. FAILED: the receiver refused a header (the sender copies
 * nothing); ABORTED: the sender failed before COPIED.
 */
export const Handover = {
  idle: 0,
  checked: 1,
  copied: 2,
  failed: -1,
  aborted: -2,
} as const;

/**
 * The share of a batch's packets whose pages the sender's thread copies:
 * on one thread the sender's part (zero pages, hash, header) was about a
 * third of a stream's work and the receiver's (check, copy, hash) two
 * thirds, so the sender takes half the copy and the two threads get about
 * the same.
 */
export const SENDER_COPY_SHARE = 0.5;

/** How long the receiver waits for the sender's copy before it gives up (a sender that died). */
const HANDOVER_TIMEOUT_MS = 60_000;

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

/** What the sender of one stream needs: its kernel, regions, and the hand-over to the receiver. */
export interface StreamSender {
  readonly source: { readonly memory: WebAssembly.Memory; readonly kernel: MultifdKernel };
  /** The destination's memory: the sender's share of the copy writes there. */
  readonly destinationMemory: WebAssembly.Memory;
  readonly destinationRam: Region;
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
      // before the next batch is handed over.
      await inFlight;
      const handover = new Int32Array(s.source.memory.buffer, buffers.handover.offset, 1);
      Atomics.store(handover, 0, Handover.idle);
      const senderPackets = Math.floor(batch.length * SENDER_COPY_SHARE);
      inFlight = s.receive({
        type: "migration.stream-receive",
        ram: s.ram.toDescriptor(),
        pageShift: s.pageShift,
        packetPages: s.alloc,
        headerStride: s.headerStride,
        headers: buffers.headers.toDescriptor(),
        sent: buffers.sent.toDescriptor(),
        accepted: buffers.accepted.toDescriptor(),
        handover: buffers.handover.toDescriptor(),
        senderPackets,
        packets: batch,
        destination: s.destination,
      });
      // Keep an early failure from going unhandled while the sender works on.
      inFlight.catch(() => undefined);
      const wait = Atomics.waitAsync(handover, 0, Handover.idle);
      if (wait.async) await wait.value;
      if (Atomics.load(handover, 0) !== Handover.checked) {
        await inFlight;
        throw new Error("stream receiver stopped before checking its batch");
      }
      let copied: number = Handover.aborted;
      try {
        copySenderShare(s, buffers, batch, senderPackets);
        copied = Handover.copied;
      } finally {
        Atomics.store(handover, 0, copied);
        Atomics.notify(handover, 0);
      }
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
 * The sender's share of a batch's copy: the normal pages of its first
 * `count` packets from the source's RAM to the places the receiver accepted
 * (read from the destination's memory, where the receiver wrote them).
 */
function copySenderShare(
  s: StreamSender,
  buffers: StreamSlot,
  batch: readonly StreamReceiveTask["packets"][number][],
  count: number,
): void {
  const sourceRam = s.ram.bytes(s.source.memory);
  const destinationRam = s.destinationRam.bytes(s.destinationMemory);
  const pageBytes = 2 ** s.pageShift;
  for (let j = 0; j < count; j++) {
    const p = batch[j];
    if (!p) break;
    const from = entry(buffers.sent, j, s.alloc * 8);
    const to = entry(buffers.accepted, j, s.alloc * 4);
    linkPages(
      sourceRam,
      new Uint32Array(s.source.memory.buffer, from.offset, p.normal),
      destinationRam,
      new Uint32Array(s.destinationMemory.buffer, to.offset, p.normal),
      p.normal,
      pageBytes,
    );
  }
}

/**
 * The receiver's side of a batch, on the destination's thread: every header
 * checked first (no page of the batch moves before), then the hand-over: the
 * sender copies its share of the pages while this thread copies the rest,
 * hashing each chunk as it lands; then the sender's share hashed, the zero
 * pages made zero and hashed.
 *
 * @throws MultifdPacketError if a header is refused (the hand-over says FAILED, no page moves).
 */
export function receiveBatch(
  source: WebAssembly.Memory,
  destination: ChannelEnd,
  task: StreamReceiveTask,
): undefined {
  const far = receiverRegions(task.destination);
  const sourceRam = new Region(task.ram).bytes(source);
  const handover = new Int32Array(
    source.buffer,
    new Region(task.handover).check(0, 4, "stream hand-over word"),
    1,
  );
  const sentStride = task.packetPages * 8;
  const packets: { accepted: MultifdAccepted; place: Region; from: Uint32Array }[] = [];
  try {
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
  } catch (error) {
    Atomics.store(handover, 0, Handover.failed);
    Atomics.notify(handover, 0);
    throw error;
  }
  Atomics.store(handover, 0, Handover.checked);
  Atomics.notify(handover, 0);
  const share = Math.min(task.senderPackets, packets.length);
  for (const p of packets.slice(share)) {
    placePages(destination, far, p.place, sourceRam, p.from, p.accepted, task.pageShift, true);
  }
  if (Atomics.wait(handover, 0, Handover.checked, HANDOVER_TIMEOUT_MS) === "timed-out") {
    throw new Error(
      `stream receiver: the sender did not copy its share of packets ${task.packets[0]?.packetNum} on within ${HANDOVER_TIMEOUT_MS} ms`,
    );
  }
  if (Atomics.load(handover, 0) !== Handover.copied) {
    throw new Error("stream receiver: the sender stopped before copying its share of the batch");
  }
  packets.forEach((p, j) => {
    finishPacket(destination, far, p.place, p.accepted, task.pageShift, j < share);
  });
  return undefined;
}
