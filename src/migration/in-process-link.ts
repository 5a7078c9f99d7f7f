import type { Guest } from "../guest/guest.js";
import type { MemoryLayout } from "../memory/layout.js";
import { Region } from "../memory/region.js";
import { KernelPool } from "../pool/pool.js";
import { MULTIFD_SCRATCH_BYTES, MultifdKernel, multifdHeaderBytes } from "../wasm/multifd.js";
import {
  ENCODE_STATS_BYTES,
  type EncodeCounts,
  PAGE_SCRATCH_BYTES,
  PageKernel,
  RECORD_HEADER_BYTES,
  ZERO_RECORD_BYTES,
} from "../wasm/page.js";
import { Destination, firstMismatch } from "./destination.js";
import { deviceState, seedGuestImage } from "./guest-image.js";
import { type ChannelEnd, PACKET_QUEUE_BYTES, packetQueue, runChannel } from "./multifd-channel.js";
import type { ResolvedMigrationOptions } from "./options.js";
import type { Pass } from "./precopy/types.js";
import { type StreamSlot, sendStream, streamSlotBytes } from "./stream-pipeline.js";
import { STREAM_QUEUE_BYTES, STREAM_SLOTS } from "./stream-queue.js";
import type { ChannelResult, ChannelTask } from "./task-types.js";
import type { VirtualRunState } from "./virtual-run-state.js";

/**
 * Guests from this many pages (256 MiB of 4 KiB pages) run one stream's
 * sender and receiver on two threads; below, both on this one.
 */
export const STREAM_THREADS_MIN_PAGES = 65_536;

/** Bytes between two headers in a batch: a full packet's header, kept 8-byte aligned. */
function headerStride(alloc: number): number {
  return Math.ceil(multifdHeaderBytes(alloc) / 8) * 8;
}

/** A multifd packet (QEMU: 512 KiB); also the single stream's packet. */
export const PACKET_BYTES = 512 * 1024;
/** Pages in a multifd packet (QEMU: 128 pages of 4 KiB, 512 KiB). */
export const MULTIFD_PACKET_PAGES = 128;
/**
 * Page numbers taken from the bitmap per batch (1 MiB of u32). A multifd
 * wave over an unthrottled link carries a whole batch, so the channels wait
 * on each other (and on waking the pool) a few times per GiB, not dozens.
 */
export const LIST_PAGES = 262_144;

/**
 * Puts `bytes` on the link's clock while the guest runs or not, never past
 * `untilMs`; returns the share of them that got out (1: all).
 */
export type LinkCharge = (bytes: number, running: boolean, untilMs: number) => Promise<number>;

/**
 * The in-process link of a content-mode migration: the destination host
 * (its own memory), and what moves pages to it: one stream (XBZRLE's
 * records through a packet buffer, or without XBZRLE a multifd channel run
 * on this thread, RAM to RAM) or multifd channels on the pool, each worker
 * running its channel's sender and receiver. Both sides hash every page as
 * it goes, and {@link InProcessLink.verify} compares them.
 */
export class InProcessLink {
  readonly destination: Destination;
  readonly kernel: PageKernel;
  readonly deviceBlob: Uint8Array;
  private readonly pageBytes: number;
  private readonly packet: Region;
  /** Per multifd channel: its header buffer and the list of the pages a packet carries. */
  private readonly channelPackets: { readonly header: Region; readonly sent: Region }[] = [];
  private readonly channelStats: Region[] = [];
  private readonly channelScratch: Region[] = [];
  /** The multifd channels' shared packet queue for a wave (multifd only). */
  private readonly packetQueue: Region | undefined;
  private readonly xbzrleCache:
    | { tags: Region; data: Region; slots: number; scratch: Region }
    | undefined;
  /** XXH3-64 of each source page as it was last encoded. */
  private readonly sourceHashes: Region;
  private verifyScratch: Region | undefined;
  private pool: KernelPool | undefined;
  /** One stream's ring of slots of packets in flight between its sender and receiver threads, and its queue. */
  private streamSlots: readonly StreamSlot[] | undefined;
  private streamQueue: Region | undefined;
  private streamSlotBytes: ReturnType<typeof streamSlotBytes> | undefined;
  /** One stream's receiver on this thread: its header buffer and scratch in the destination's memory. */
  private streamLocal: { readonly receive: Region; readonly scratch: Region } | undefined;
  private streamSource: ChannelEnd | undefined;
  private streamLocalEnd: ChannelEnd | undefined;
  /** One stream's channel ends on this thread, made on first use. */
  private inline: { source: ChannelEnd; destination: ChannelEnd } | undefined;

  constructor(
    private readonly o: ResolvedMigrationOptions,
    private readonly layout: MemoryLayout,
    private readonly guest: Guest,
    /** The round's page list (u32 page numbers, {@link LIST_PAGES} of them). */
    private readonly list: Region,
  ) {
    this.pageBytes = 2 ** o.pageShift;
    const pages = guest.pages;
    const packetBytes = Math.max(PACKET_BYTES, this.pageBytes + RECORD_HEADER_BYTES);
    this.kernel = PageKernel.on(
      layout.memory,
      layout.allocate("source-page-scratch", PAGE_SCRATCH_BYTES),
    );
    seedGuestImage(this.kernel, this.ram(), o.pageShift, pages, o.seed, o.zeroFraction);
    const channels = Math.max(1, o.multifdChannels);
    this.packet = layout.allocate("migration-packet", packetBytes, 4096);
    for (let c = 0; c < channels; c++) {
      this.channelStats.push(layout.allocate(`migration-stats-${c}`, ENCODE_STATS_BYTES));
      this.channelScratch.push(layout.allocate(`migration-scratch-${c}`, 64));
      const alloc = this.channelPacketPages();
      this.channelPackets.push({
        header: layout.allocate(`multifd-${c}-header`, multifdHeaderBytes(alloc), 4096),
        sent: layout.allocate(`multifd-${c}-pages`, alloc * 8, 8),
      });
    }
    if (o.multifdChannels > 0) {
      this.packetQueue = layout.allocate("multifd-packet-queue", PACKET_QUEUE_BYTES, 8);
    }
    if (o.multifdChannels === 0 && pages >= STREAM_THREADS_MIN_PAGES) {
      const alloc = this.channelPacketPages();
      const bytes = streamSlotBytes(alloc, headerStride(alloc));
      this.streamSlotBytes = bytes;
    }
    this.sourceHashes = layout.allocate("source-page-hashes", pages * 8, 8);
    if (o.xbzrle) {
      const slots = o.xbzrleCacheBytes / this.pageBytes;
      this.xbzrleCache = {
        slots,
        tags: layout.allocate("xbzrle-cache-tags", slots * 4),
        data: layout.allocate("xbzrle-cache-data", o.xbzrleCacheBytes, 4096),
        scratch: layout.allocate("xbzrle-scratch", this.pageBytes),
      };
    }
    this.destination = new Destination(
      o.guestBytes,
      o.pageShift,
      packetBytes,
      o.deviceStateBytes,
      // One stream runs channel 0's sender and receiver on this thread.
      channels,
      this.channelPacketPages(),
    );
    this.deviceBlob = deviceState(o.deviceStateBytes, o.seed);
    const slotBytes = this.streamSlotBytes;
    if (slotBytes) {
      const far = this.destination.layout;
      const slot = (k: number): StreamSlot => ({
        headers: layout.allocate(`stream-${k}-headers`, slotBytes.headers, 4096),
        sent: layout.allocate(`stream-${k}-pages`, slotBytes.sent, 8),
        wire: layout.allocate(`stream-${k}-wire`, slotBytes.wire, 8),
        accepted: far.allocate(`stream-${k}-accepted`, slotBytes.accepted, 8),
      });
      this.streamSlots = Array.from({ length: STREAM_SLOTS }, (_, k) => slot(k));
      this.streamQueue = layout.allocate("stream-queue", STREAM_QUEUE_BYTES, 8);
      // The receiver's end on this thread checks headers in a buffer of its
      // own: the destination's thread may be checking one at the same time.
      this.streamLocal = {
        receive: far.allocate(
          "stream-local-header",
          multifdHeaderBytes(this.channelPacketPages()),
          4096,
        ),
        scratch: far.allocate("stream-local-scratch", MULTIFD_SCRATCH_BYTES, 8),
      };
    }
  }

  /**
   * Readies a run: the XBZRLE cache empty, and the hash slots unequal on the
   * two sides (zeros here, ones there), so a page not encoded and decoded in
   * this run cannot pass by a stale slot.
   */
  startRun(): void {
    if (this.xbzrleCache) this.xbzrleCache.tags.bytes(this.layout.memory).fill(0);
    this.sourceHashes.bytes(this.layout.memory).fill(0);
    this.destination.clearHashes();
  }

  /** Closes the pool of multifd channels, if one was started. */
  async close(): Promise<void> {
    await this.pool?.close();
    this.pool = undefined;
  }

  private ram(): Region {
    const ram = this.guest.ram;
    if (!ram) throw new Error("content mode without guest RAM");
    return ram;
  }

  /**
   * Sends the page numbers now in the list (the first `count`), charging
   * the link's clock through `charge`; counts go into the run state `s`.
   */
  async sendListed(
    s: VirtualRunState,
    charge: LinkCharge,
    count: number,
    running: boolean,
    xbzrle: boolean,
    untilMs = Number.POSITIVE_INFINITY,
  ): Promise<Pass> {
    const kernel = this.kernel;
    const destination = this.destination;
    const stats = this.channelStats[0];
    const packet = this.packet;
    if (!stats) throw new Error("content mode not set up");
    const memory = this.layout.memory;
    const sent = { pages: 0, bytes: 0 };
    // Without XBZRLE (which multifd does not carry, as in QEMU) one stream
    // moves pages as a multifd channel does, RAM to RAM on this thread; the
    // record stream is XBZRLE's.
    if (this.o.multifdChannels > 0 || !xbzrle) {
      return this.sendMultifd(s, charge, count, running, untilMs);
    }
    let at = 0;
    while (at < count) {
      const before = { ...s.counts };
      const consumed = kernel.encodePages({
        ram: this.ram(),
        pageShift: this.o.pageShift,
        list: this.list,
        listStart: at,
        count: count - at,
        out: packet,
        zeroPages: this.o.zeroPages,
        ...(this.xbzrleCache
          ? { xbzrle: { cache: this.xbzrleCache, scratch: this.xbzrleCache.scratch } }
          : {}),
        stats,
        hashes: this.sourceHashes,
      });
      kernel.takeEncodeStats(stats, s.counts);
      at += consumed;
      const bytes = s.counts.bytes - before.bytes;
      const pages =
        s.counts.normal -
        before.normal +
        s.counts.zero -
        before.zero +
        s.counts.xbzrlePages -
        before.xbzrlePages;
      // The in-process link: the packet's bytes move into the destination's memory.
      destination.receivePacket(new Uint8Array(memory.buffer, packet.offset, bytes));
      const share = await charge(bytes, running, untilMs);
      sent.pages += Math.floor(pages * share);
      sent.bytes += Math.floor(bytes * share);
      if (share < 1) {
        // Cut at the deadline: only the share that got out counts as sent.
        const c = s.counts;
        for (const key of ["normal", "zero", "xbzrlePages", "bytes"] as const) {
          const delta = c[key] - before[key];
          c[key] -= delta - Math.floor(delta * share);
        }
        return { ...sent, cut: true };
      }
    }
    return { ...sent, cut: false };
  }

  /**
   * The pool that runs the multifd channels (and verification's hashing):
   * its workers hold the source's memory and, as a peer, the destination's.
   */
  private channelPool(): KernelPool {
    // One stream's receiver takes one worker, as one channel does.
    this.pool ??= new KernelPool(this.layout, {
      threads: Math.max(1, this.o.multifdChannels),
      domains: ["migration"],
      peers: { destination: this.destination.layout.memory },
    });
    return this.pool;
  }

  /**
   * multifd: the list is cut into waves, and each channel's pool worker
   * runs both ends of its channel (send, link, receive:
   * src/migration/multifd-channel.ts), as the source's send thread and the
   * destination's receive thread would, so the channels share no thread.
   * The channels take a wave's packets one at a time from a shared queue,
   * so a channel slowed down (its core busy with other work) sends fewer,
   * and at the wave's end none waits for another longer than one packet.
   * A wave moves at most one rate window of the link's bytes, so the
   * guest's writes (executed per window) interleave with the sends as
   * finely as with a single stream.
   */
  private async sendMultifd(
    s: VirtualRunState,
    charge: LinkCharge,
    count: number,
    running: boolean,
    untilMs: number,
  ): Promise<Pass> {
    const destination = this.destination;
    const multifd = this.o.multifdChannels > 0;
    const run = multifd
      ? (task: ChannelTask) => this.channelPool().run(task)
      : (this.twoThreadStream() ?? this.inlineChannel());
    const channels = Math.max(1, this.o.multifdChannels);
    const wavePages = this.groupPages() * channels;
    const packetPages = this.channelPacketPages();
    const queue = this.packetQueue;
    const sent = { pages: 0, bytes: 0 };
    for (let start = 0; start < count; ) {
      const packetNum = multifd ? s.multifdPackets : s.streamPackets;
      const wave = Math.min(count - start, wavePages);
      if (queue) Atomics.store(packetQueue(this.layout.memory, queue), 0, 0);
      const done = await Promise.all(
        Array.from({ length: channels }, (_, c) => {
          const packet = this.channelPackets[c];
          const stats = this.channelStats[c];
          const scratch = this.channelScratch[c];
          const far = destination.channels[c];
          if (!packet || !stats || !scratch || !far) throw new Error("multifd channel not set up");
          return run({
            type: "migration.channel",
            ram: this.ram().toDescriptor(),
            pageShift: this.o.pageShift,
            list: this.list.toDescriptor(),
            listStart: start,
            count: wave,
            packetPages,
            packetNum,
            ...(queue ? { queue: queue.toDescriptor() } : {}),
            packet: packet.header.toDescriptor(),
            sent: packet.sent.toDescriptor(),
            stats: stats.toDescriptor(),
            scratch: scratch.toDescriptor(),
            zeroPages: this.o.zeroPages,
            hashes: this.sourceHashes.toDescriptor(),
            destination: {
              memory: "destination",
              receive: far.receive.toDescriptor(),
              place: far.place.toDescriptor(),
              ram: destination.ram.toDescriptor(),
              hashes: destination.hashes.toDescriptor(),
              scratch: far.scratch.toDescriptor(),
            },
          });
        }),
      );
      start += wave;
      let consumed = 0;
      for (const result of done) consumed += result.consumed;
      if (consumed !== wave) {
        throw new Error(`multifd channels sent ${consumed} of the wave's ${wave} pages`);
      }
      const before = { ...s.counts };
      let bytes = 0;
      for (const result of done) {
        // One stream's wire is QEMU's RAM records (a page and its header, a
        // zero page in 9 bytes): the pages move RAM to RAM, the link carries
        // and is charged the bytes those records take.
        const counts = multifd
          ? result.counts
          : {
              ...result.counts,
              bytes:
                result.counts.normal * (this.pageBytes + RECORD_HEADER_BYTES) +
                result.counts.zero * ZERO_RECORD_BYTES,
            };
        for (const key of Object.keys(counts) as (keyof EncodeCounts)[]) {
          s.counts[key] += counts[key];
        }
        if (multifd) s.multifdPackets += result.packets;
        else s.streamPackets += result.packets;
        bytes += counts.bytes;
      }
      let pages = 0;
      for (const result of done) pages += result.counts.normal + result.counts.zero;
      const share = await charge(bytes, running, untilMs);
      sent.pages += Math.floor(pages * share);
      sent.bytes += Math.floor(bytes * share);
      if (multifd) s.multifdBytes += Math.floor(bytes * share);
      if (share < 1) {
        // Cut at the deadline: only the share that got out counts as sent.
        const c = s.counts;
        for (const key of ["normal", "zero", "bytes"] as const) {
          const delta = c[key] - before[key];
          c[key] -= delta - Math.floor(delta * share);
        }
        return { ...sent, cut: true };
      }
    }
    return { ...sent, cut: false };
  }

  /**
   * Channel 0 run on this thread, for one stream: the sender's and the
   * receiver's multifd kernels on the two memories, as a worker runs them.
   */
  private inlineChannel(): (task: ChannelTask) => Promise<ChannelResult> {
    const destination = this.destination;
    const scratch = this.channelScratch[0];
    const far = destination.channels[0];
    if (!scratch || !far) throw new Error("content mode not set up");
    this.inline ??= {
      source: { memory: this.layout.memory, kernel: MultifdKernel.on(this.layout.memory, scratch) },
      destination: {
        memory: destination.layout.memory,
        kernel: MultifdKernel.on(destination.layout.memory, far.scratch),
      },
    };
    const ends = this.inline;
    return async (task) => runChannel(ends.source, ends.destination, task);
  }

  /**
   * One stream on two threads (a guest of at least
   * {@link STREAM_THREADS_MIN_PAGES} pages): the sender here, the receiver on
   * a pool worker, a ring of batches between them (src/migration/stream-pipeline.ts).
   * Smaller guests keep both ends on this thread, not worth a worker's start.
   */
  private twoThreadStream(): ((task: ChannelTask) => Promise<ChannelResult>) | undefined {
    const slots = this.streamSlots;
    const queue = this.streamQueue;
    const scratch = this.channelScratch[0];
    const local = this.streamLocal;
    if (!slots || !queue || !scratch || !local) return undefined;
    const far = this.destination.layout.memory;
    this.streamSource ??= {
      memory: this.layout.memory,
      kernel: MultifdKernel.on(this.layout.memory, scratch),
    };
    this.streamLocalEnd ??= { memory: far, kernel: MultifdKernel.on(far, local.scratch) };
    const source = this.streamSource;
    const end = this.streamLocalEnd;
    return (task) =>
      sendStream(
        {
          source,
          local: {
            end,
            destination: {
              ...task.destination,
              receive: local.receive.toDescriptor(),
              scratch: local.scratch.toDescriptor(),
            },
          },
          ram: new Region(task.ram),
          pageShift: task.pageShift,
          list: new Region(task.list),
          alloc: task.packetPages,
          headerStride: headerStride(task.packetPages),
          slots,
          queue,
          stats: new Region(task.stats),
          hashes: this.sourceHashes,
          zeroPages: task.zeroPages,
          receive: (receive) => this.channelPool().run(receive),
          destination: task.destination,
        },
        task.listStart,
        task.count,
        task.packetNum,
      );
  }

  /** Pages in one multifd packet: QEMU's 128 of 4 KiB; larger pages as many as fit its 512 KiB, at least one. */
  private channelPacketPages(): number {
    return this.pageBytes <= 4096
      ? MULTIFD_PACKET_PAGES
      : Math.max(1, Math.floor(PACKET_BYTES / (this.pageBytes + RECORD_HEADER_BYTES)));
  }

  /**
   * Pages a channel sends per wave: whole packets, together at most one rate
   * window of the link's bytes (at least one packet a channel, at most one
   * list batch in all).
   */
  private groupPages(): number {
    const packet = this.channelPacketPages();
    const channels = Math.max(1, this.o.multifdChannels);
    const record = this.pageBytes + RECORD_HEADER_BYTES;
    const windowPages = Number.isFinite(this.o.maxBandwidth)
      ? Math.floor((this.o.maxBandwidth * this.o.windowMs) / 1000 / record)
      : LIST_PAGES;
    const perChannel = Math.min(windowPages, LIST_PAGES) / channels;
    return Math.max(1, Math.floor(perChannel / packet)) * packet;
  }

  /**
   * Every destination page against the source, by hash. Returns why not, or
   * null.
   *
   * Both sides recorded a hash per page in the run: the source's from its
   * bytes as encoded, the destination's from its bytes as the decoder wrote
   * them. When nothing else wrote either side since (the guest never ran
   * writes in this run; the destination was written only by the decoder and
   * not handed out before verification), those tables are the pages' hashes
   * now and are compared as they are. Otherwise, or when they differ, both
   * memories are hashed afresh and the fresh tables decide.
   */
  async verify(s: VirtualRunState): Promise<string | null> {
    const kernel = this.kernel;
    const destination = this.destination;
    const table = this.sourceHashes;
    const pages = this.guest.pages;
    if (this.o.beforeVerify) {
      s.destinationWritten = true;
      this.o.beforeVerify(destination.ram.bytes(destination.layout.memory));
    }
    if (!s.guestWrote && !s.destinationWritten) {
      const recorded = firstMismatch(kernel.hashTable(table, pages), destination.recordedHashes());
      if (recorded === null) return this.verifyDeviceState();
    }
    let source: BigUint64Array;
    let theirs: BigUint64Array;
    if (this.o.multifdChannels > 0 || this.streamSlots) {
      // With the pool at hand (multifd's, or one stream's receiver) both
      // sides hash at once: the source on a worker, the destination here. (Without it, a worker is not worth its
      // start-up, and on a busy machine two threads hashing lose to one.)
      const pool = this.channelPool();
      this.verifyScratch ??= this.layout.allocate("verify-scratch", 64);
      const job = pool.run({
        type: "migration.hash-pages",
        ram: this.ram().toDescriptor(),
        pageShift: this.o.pageShift,
        count: pages,
        out: table.toDescriptor(),
        scratch: this.verifyScratch.toDescriptor(),
      });
      theirs = destination.hashAll();
      await job;
      source = kernel.hashTable(table, pages);
    } else {
      kernel.hashPages(this.ram(), this.o.pageShift, 0, pages, table);
      source = kernel.hashTable(table, pages);
      theirs = destination.hashAll();
    }
    const mismatch = firstMismatch(source, theirs);
    if (mismatch) {
      return `verification failed: destination page ${mismatch.page} differs from the source (XXH3-64 ${mismatch.destinationHash.toString(16)} against ${mismatch.sourceHash.toString(16)})`;
    }
    return this.verifyDeviceState();
  }

  private verifyDeviceState(): string | null {
    if (!this.destination.deviceStateEquals(this.deviceBlob)) {
      return "verification failed: the destination's device state differs from the source's";
    }
    return null;
  }
}
