import type { RegionDescriptor } from "../memory/region.js";
import type { EncodeCounts } from "../wasm/page.js";
import type { MigrationOptions } from "./options.js";
import type { MigrationSummary } from "./stats.js";

/**
 * A multifd channel, both ends, for a slice of a round's page list: the
 * sender's packets (QEMU's MultiFDPacket_t headers, the pages themselves
 * moved from RAM to RAM by the link) and the receiver's checks and placing,
 * as the source's send thread and the destination's receive thread would.
 * With a `queue`, the slice is a wave that every channel given the same
 * queue shares, packet by packet.
 */
export interface ChannelTask {
  readonly type: "migration.channel";
  readonly ram: RegionDescriptor;
  readonly pageShift: number;
  readonly list: RegionDescriptor;
  readonly listStart: number;
  readonly count: number;
  /** Pages per packet (QEMU's pages_alloc: 128 of 4 KiB). */
  readonly packetPages: number;
  /** The number of this slice's first packet (QEMU numbers packets across channels). */
  readonly packetNum: number;
  /**
   * The wave's packet queue: an Int32 in the source's memory, the index of
   * the next packet of the slice not yet taken. Channels given the same
   * queue take packets from it one at a time (packet i carries pages
   * [i packetPages, (i + 1) packetPages) of the slice and number
   * packetNum + i), as QEMU's multifd_send hands each packet to whichever
   * channel is free, so no channel idles while another has packets left.
   * Without it the channel sends the whole slice itself.
   */
  readonly queue?: RegionDescriptor;
  /** The sender's header buffer. */
  readonly packet: RegionDescriptor;
  /** The sender's list of the pages a packet carries (u32, 2 x packetPages). */
  readonly sent: RegionDescriptor;
  readonly stats: RegionDescriptor;
  readonly scratch: RegionDescriptor;
  readonly zeroPages: boolean;
  /** The source's page hash table: each page sent gets its XXH3-64. */
  readonly hashes?: RegionDescriptor;
  /** The destination's side, in the pool's peer memory named `memory`. */
  readonly destination: {
    readonly memory: string;
    /** Where a header lands. */
    readonly receive: RegionDescriptor;
    /** The page numbers the receiver accepted (u32, packetPages). */
    readonly place: RegionDescriptor;
    readonly ram: RegionDescriptor;
    readonly hashes: RegionDescriptor;
    readonly scratch: RegionDescriptor;
  };
}

/**
 * One stream's destination thread for a wave: it claims the batches the
 * sender writes into the ring of slots (src/migration/stream-queue.ts) and
 * receives each, pages read from the source's RAM, until the wave is sent
 * and none is left.
 */
export interface StreamReceiveTask {
  readonly type: "migration.stream-receive";
  /** The source's RAM, where the link reads the pages from. */
  readonly ram: RegionDescriptor;
  readonly pageShift: number;
  readonly packetPages: number;
  /** Bytes between two packets' headers in a slot's `headers`. */
  readonly headerStride: number;
  /** The ring of slots, in the source's memory except `accepted`. */
  readonly slots: readonly {
    readonly headers: RegionDescriptor;
    /** The sender's lists of pages sent, `8 packetPages` bytes per packet. */
    readonly sent: RegionDescriptor;
    /** Per packet: header bytes, normal pages, zero pages, packet number (u32 each). */
    readonly wire: RegionDescriptor;
    /** In the destination's memory: where the receiver writes each packet's accepted pages, `4 packetPages` bytes per packet. */
    readonly accepted: RegionDescriptor;
  }[];
  /** The batches' queue's control block, in the source's memory. */
  readonly queue: RegionDescriptor;
  readonly destination: ChannelTask["destination"];
}

/** Verification: XXH3-64 of pages [0, count) of guest RAM into a table. */
export interface HashPagesTask {
  readonly type: "migration.hash-pages";
  readonly ram: RegionDescriptor;
  readonly pageShift: number;
  readonly count: number;
  readonly out: RegionDescriptor;
  readonly scratch: RegionDescriptor;
}

/** What a channel moved: pages consumed from its slice (its packets' pages, with a queue), the packets' counts, and how many packets. */
export interface ChannelResult {
  readonly consumed: number;
  readonly counts: EncodeCounts;
  readonly packets: number;
}

/** One point of a sweep: a whole migration run on a worker, in its own memory; only its summary comes back. */
export interface SweepPointTask {
  readonly type: "migration.sweep-point";
  /** Options without callbacks (they cannot cross threads). */
  readonly options: Omit<MigrationOptions, "onRound" | "beforeVerify">;
}

declare module "../pool/registry.js" {
  /** The migration domain's task types: multifd channels, verification's hashing, sweep points. */
  interface TaskRegistry {
    "migration.channel": { task: ChannelTask; result: ChannelResult };
    "migration.stream-receive": { task: StreamReceiveTask; result: number };
    "migration.sweep-point": {
      task: SweepPointTask;
      result: { readonly summary: MigrationSummary };
    };
    "migration.hash-pages": { task: HashPagesTask; result: undefined };
  }
}
