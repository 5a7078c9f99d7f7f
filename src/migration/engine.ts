import { Guest } from "../guest/guest.js";
import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { KernelPool } from "../pool/pool.js";
import { formatBytes } from "../util/units.js";
import { CURSOR_BYTES } from "../wasm/dirty.js";
import { multifdHeaderBytes } from "../wasm/multifd.js";
import {
  ENCODE_STATS_BYTES,
  type EncodeCounts,
  emptyEncodeCounts,
  PAGE_SCRATCH_BYTES,
  PageKernel,
  RECORD_HEADER_BYTES,
} from "../wasm/page.js";
import { AutoConverge } from "./auto-converge.js";
import { Destination, firstMismatch } from "./destination.js";
import {
  type MigrationOptions,
  type ResolvedMigrationOptions,
  resolveMigrationOptions,
} from "./options.js";
import { decide } from "./policy.js";
import type {
  MigrationPhase,
  MigrationResult,
  MigrationRound,
  MigrationStatus,
  MigrationSummary,
  RoundDecision,
  XbzrleCacheStats,
} from "./stats.js";

/** A multifd packet (QEMU: 512 KiB); also the single stream's packet. */
export const PACKET_BYTES = 512 * 1024;
/** Pages in a multifd packet (QEMU: 128 pages of 4 KiB, 512 KiB). */
export const MULTIFD_PACKET_PAGES = 128;
/**
 * Page numbers taken from the bitmap per batch (1 MiB of u32). A multifd
 * wave over an unthrottled link carries a whole batch, so the channels wait
 * on each other (and on waking the pool) a few times per GiB, not dozens.
 */
const LIST_PAGES = 262_144;
/** Rounds without a 5 % drop in pending bytes, with nothing left to throttle, before giving up. */
export const STALL_ROUNDS = 5;
/** A round must shrink pending bytes below this fraction of the last to count as progress. */
const STALL_FACTOR = 0.95;
/** QEMU's XBZRLE header in its byte counter: encoding flag and be16 length. */
const XBZRLE_COUNTED_OVERHEAD = 3;

/** What one send did on the link. */
interface Sent {
  pages: number;
  bytes: number;
}

/**
 * A virtual-time live migration: the source guest (its RAM, dirty bitmap and
 * vCPU workloads), the link, and in content mode a destination with its own
 * memory. Construct once (allocating and seeding the guest), then
 * {@link Migration.run}; each run migrates the guest as it is at that moment
 * (benchmarks run it again and again).
 */
export class Migration {
  private readonly o: ResolvedMigrationOptions;
  private readonly layout = new MemoryLayout();
  private readonly guest: Guest;
  private readonly pageBytes: number;
  private readonly snapshot: DirtyBitmap;
  private readonly cursor: Region;
  private readonly list: Region;
  private readonly kernel: PageKernel | undefined;
  private readonly destination: Destination | undefined;
  private readonly packets: Region[] = [];
  /** Per multifd channel: its header buffer and the list of the pages a packet carries. */
  private readonly channelPackets: { readonly header: Region; readonly sent: Region }[] = [];
  private readonly channelStats: Region[] = [];
  private readonly channelScratch: Region[] = [];
  private readonly stats: Region | undefined;
  private readonly xbzrleCache:
    | { tags: Region; data: Region; slots: number; scratch: Region }
    | undefined;
  private readonly deviceBlob: Uint8Array;
  private pool: KernelPool | undefined;

  // The clock and what happened on it.
  private clockMs = 0;
  private writesOwed = 0;
  private windowOwedMs = 0;
  private throttle: AutoConverge;
  private counts: EncodeCounts = emptyEncodeCounts();
  private transferred = 0;
  private pagesSentTotal = 0;
  private syncs = 0;
  private multifdPackets = 0;
  private rounds: MigrationRound[] = [];
  // The bandwidth window (QEMU re-estimates every 100 ms).
  private rateWindowMs = 0;
  private rateWindowBytes = 0;
  private lastWindowRate: number | null = null;
  private missingBitmap: DirtyBitmap | undefined;
  /** XXH3-64 of each source page as it was last encoded (content mode). */
  private sourceHashes: Region | undefined;
  private verifyScratch: Region | undefined;
  /** The guest wrote after the run began: the encode-time source hashes may be stale. */
  private guestWrote = false;
  /** Destination RAM was written other than by the decoder: its recorded hashes may be stale. */
  private destinationWritten = false;

  constructor(options: MigrationOptions) {
    this.o = resolveMigrationOptions(options);
    const o = this.o;
    this.pageBytes = 2 ** o.pageShift;
    this.throttle = new AutoConverge(o);
    this.guest = new Guest(this.layout, {
      bytes: o.guestBytes,
      pageShift: o.pageShift,
      content: o.content,
      vcpus: o.vcpus,
      workload: o.workload,
      seed: o.seed,
      name: "source",
    });
    const pages = this.guest.pages;
    this.snapshot = DirtyBitmap.allocate(this.layout, "migration-snapshot", pages, o.pageShift);
    this.cursor = this.layout.allocate("migration-cursor", CURSOR_BYTES);
    this.list = this.layout.allocate("migration-page-list", LIST_PAGES * 4);
    const packetBytes = Math.max(PACKET_BYTES, this.pageBytes + RECORD_HEADER_BYTES);
    this.deviceBlob = new Uint8Array(0);
    if (o.content) {
      const ram = this.ram();
      this.kernel = PageKernel.on(
        this.layout.memory,
        this.layout.allocate("source-page-scratch", PAGE_SCRATCH_BYTES),
      );
      // The guest's starting image: seeded data with a share of zero pages.
      for (let first = 0; first < pages; first += 65_536) {
        this.kernel.seedPages(
          ram,
          o.pageShift,
          first,
          Math.min(65_536, pages - first),
          o.seed,
          o.zeroFraction,
        );
      }
      const channels = Math.max(1, o.multifdChannels);
      this.packets.push(this.layout.allocate("migration-packet", packetBytes, 4096));
      for (let c = 0; c < channels; c++) {
        this.channelStats.push(this.layout.allocate(`migration-stats-${c}`, ENCODE_STATS_BYTES));
        this.channelScratch.push(this.layout.allocate(`migration-scratch-${c}`, 64));
        if (o.multifdChannels > 0) {
          const alloc = this.channelPacketPages();
          this.channelPackets.push({
            header: this.layout.allocate(`multifd-${c}-header`, multifdHeaderBytes(alloc), 4096),
            sent: this.layout.allocate(`multifd-${c}-pages`, alloc * 8, 8),
          });
        }
      }
      this.stats = this.channelStats[0];
      this.sourceHashes = this.layout.allocate("source-page-hashes", pages * 8, 8);
      if (o.xbzrle) {
        const slots = o.xbzrleCacheBytes / this.pageBytes;
        this.xbzrleCache = {
          slots,
          tags: this.layout.allocate("xbzrle-cache-tags", slots * 4),
          data: this.layout.allocate("xbzrle-cache-data", o.xbzrleCacheBytes, 4096),
          scratch: this.layout.allocate("xbzrle-scratch", this.pageBytes),
        };
      }
      this.destination = new Destination(
        o.guestBytes,
        o.pageShift,
        packetBytes,
        o.deviceStateBytes,
        o.multifdChannels,
        this.channelPacketPages(),
      );
      this.deviceBlob = deviceState(o.deviceStateBytes, o.seed);
    }
  }

  /** Source guest RAM (content mode), as bytes. */
  sourceRamBytes(): Uint8Array | undefined {
    return this.guest.ram?.bytes(this.layout.memory);
  }

  /** Destination guest RAM (content mode), as bytes. */
  destinationRamBytes(): Uint8Array | undefined {
    const d = this.destination;
    return d?.ram.bytes(d.layout.memory);
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

  /** Seconds to put `bytes` on the link. */
  private linkMs(bytes: number): number {
    return Number.isFinite(this.o.maxBandwidth) ? (bytes / this.o.maxBandwidth) * 1000 : 0;
  }

  /** The bandwidth the policy uses: the link's, or for an unthrottled link what was measured. */
  private bandwidthEstimate(roundBytes: number, roundMs: number): number {
    if (!Number.isFinite(this.o.maxBandwidth)) return Number.MAX_VALUE;
    // QEMU's: the rate of the last full 100 ms window; a round shorter than
    // a window is measured over the round. Latency stalls count in both.
    if (this.lastWindowRate !== null) return Math.min(this.o.maxBandwidth, this.lastWindowRate);
    return roundMs > 0
      ? Math.min(this.o.maxBandwidth, (roundBytes / roundMs) * 1000)
      : this.o.maxBandwidth;
  }

  /** Accounts link time and bytes into the bandwidth window; closes full windows. */
  private measure(ms: number, bytes: number): void {
    this.rateWindowMs += ms;
    this.rateWindowBytes += bytes;
    if (this.rateWindowMs >= this.o.windowMs) {
      this.lastWindowRate = (this.rateWindowBytes / this.rateWindowMs) * 1000;
      this.rateWindowMs = 0;
      this.rateWindowBytes = 0;
    }
  }

  /**
   * Moves the clock on by `ms`; the guest's vCPUs (throttled) owe writes for
   * that time, executed for real at each bandwidth window.
   */
  private async advance(ms: number, running = true, bytes = 0): Promise<void> {
    this.clockMs += ms;
    if (running) this.measure(ms, bytes);
    if (!running) return;
    this.writesOwed += (this.o.writesPerSecond * (1 - this.throttle.percentage / 100) * ms) / 1000;
    this.windowOwedMs += ms;
    if (this.windowOwedMs >= this.o.windowMs) await this.flushWrites();
  }

  /** Executes the writes owed so far. */
  private async flushWrites(): Promise<void> {
    this.windowOwedMs = 0;
    const n = Math.floor(this.writesOwed);
    if (n <= 0) return;
    this.writesOwed -= n;
    this.guestWrote = true;
    await this.guest.write(n);
  }

  /** Takes the guest's dirty bitmap into the snapshot (a sync). Returns pages. */
  private sync(): number {
    this.syncs++;
    // The virtual-time vCPUs write only inside flushWrites, which every sync
    // awaits first: no writer marks the bitmap meanwhile (vCPUs paused), so
    // it is moved with plain loads and stores, no locked exchange per word.
    return this.guest.dirty.harvestQuiet(this.guest.bitmap, this.snapshot);
  }

  /** Sends the page numbers now in the list (the first `count`), in content mode. */
  private async sendListed(count: number, running: boolean, xbzrle: boolean): Promise<Sent> {
    const kernel = this.kernel;
    const destination = this.destination;
    const stats = this.stats;
    const packet = this.packets[0];
    if (!kernel || !destination || !stats || !packet) throw new Error("content mode not set up");
    const memory = this.layout.memory;
    const sent: Sent = { pages: 0, bytes: 0 };
    if (this.o.multifdChannels > 0) return this.sendMultifd(count, running);
    let at = 0;
    while (at < count) {
      const before = { ...this.counts };
      const consumed = kernel.encodePages({
        ram: this.ram(),
        pageShift: this.o.pageShift,
        list: this.list,
        listStart: at,
        count: count - at,
        out: packet,
        zeroPages: this.o.zeroPages,
        ...(xbzrle && this.xbzrleCache
          ? {
              xbzrle: {
                cache: this.xbzrleCache,
                scratch: this.xbzrleCache.scratch,
              },
            }
          : {}),
        stats,
        ...(this.sourceHashes ? { hashes: this.sourceHashes } : {}),
      });
      kernel.takeEncodeStats(stats, this.counts);
      at += consumed;
      const bytes = this.counts.bytes - before.bytes;
      const pages =
        this.counts.normal -
        before.normal +
        this.counts.zero -
        before.zero +
        this.counts.xbzrlePages -
        before.xbzrlePages;
      // The in-process link: the packet's bytes move into the destination's memory.
      destination.receivePacket(new Uint8Array(memory.buffer, packet.offset, bytes));
      sent.pages += pages;
      sent.bytes += bytes;
      await this.advance(this.linkMs(bytes), running, bytes);
    }
    return sent;
  }

  /**
   * The pool that runs the multifd channels (and verification's hashing):
   * its workers hold the source's memory and, as a peer, the destination's.
   */
  private channelPool(): KernelPool {
    const destination = this.destination;
    this.pool ??= new KernelPool(this.layout, {
      threads: Math.max(1, this.o.multifdChannels),
      domains: ["migration"],
      ...(destination ? { peers: { destination: destination.layout.memory } } : {}),
    });
    return this.pool;
  }

  /**
   * multifd: the list is cut into one slice per channel per wave, and each
   * channel's pool worker runs both ends of its channel (send, link,
   * receive: src/migration/multifd-channel.ts), as the source's send thread
   * and the destination's receive thread would, so the channels share no
   * thread. A wave moves at most one rate
   * window of the link's bytes, so the guest's writes (executed per window)
   * interleave with the sends as finely as with a single stream.
   */
  private async sendMultifd(count: number, running: boolean): Promise<Sent> {
    const destination = this.destination;
    if (!destination) throw new Error("content mode not set up");
    const pool = this.channelPool();
    const channels = this.o.multifdChannels;
    const groupPages = this.groupPages();
    const sent: Sent = { pages: 0, bytes: 0 };
    for (let start = 0; start < count; ) {
      const slices: { start: number; count: number; c: number; packetNum: number }[] = [];
      let packetNum = this.multifdPackets;
      for (let c = 0; c < channels && start < count; c++) {
        const n = Math.min(groupPages, count - start);
        slices.push({ start, count: n, c, packetNum });
        packetNum += Math.ceil(n / this.channelPacketPages());
        start += n;
      }
      const done = await Promise.all(
        slices.map((slice) => {
          const packet = this.channelPackets[slice.c];
          const stats = this.channelStats[slice.c];
          const scratch = this.channelScratch[slice.c];
          const far = destination.channels[slice.c];
          if (!packet || !stats || !scratch || !far) throw new Error("multifd channel not set up");
          return pool
            .run({
              type: "migration.channel",
              ram: this.ram().toDescriptor(),
              pageShift: this.o.pageShift,
              list: this.list.toDescriptor(),
              listStart: slice.start,
              count: slice.count,
              packetPages: this.channelPacketPages(),
              packetNum: slice.packetNum,
              packet: packet.header.toDescriptor(),
              sent: packet.sent.toDescriptor(),
              stats: stats.toDescriptor(),
              scratch: scratch.toDescriptor(),
              zeroPages: this.o.zeroPages,
              ...(this.sourceHashes ? { hashes: this.sourceHashes.toDescriptor() } : {}),
              destination: {
                memory: "destination",
                receive: far.receive.toDescriptor(),
                place: far.place.toDescriptor(),
                ram: destination.ram.toDescriptor(),
                hashes: destination.hashes.toDescriptor(),
                scratch: far.scratch.toDescriptor(),
              },
            })
            .then((result) => ({ result, slice }));
        }),
      );
      let bytes = 0;
      for (const { result, slice } of done) {
        if (result.consumed !== slice.count) {
          throw new Error(
            `multifd channel ${slice.c} sent ${result.consumed} of ${slice.count} pages`,
          );
        }
        const counts = result.counts;
        for (const key of Object.keys(counts) as (keyof EncodeCounts)[]) {
          this.counts[key] += counts[key];
        }
        this.multifdPackets += result.packets;
        bytes += counts.bytes;
        sent.pages += counts.normal + counts.zero;
      }
      sent.bytes += bytes;
      await this.advance(this.linkMs(bytes), running, bytes);
    }
    return sent;
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
    const channels = this.o.multifdChannels;
    const record = this.pageBytes + RECORD_HEADER_BYTES;
    const windowPages = Number.isFinite(this.o.maxBandwidth)
      ? Math.floor((this.o.maxBandwidth * this.o.windowMs) / 1000 / record)
      : LIST_PAGES;
    const perChannel = Math.min(windowPages, LIST_PAGES) / channels;
    return Math.max(1, Math.floor(perChannel / packet)) * packet;
  }

  /**
   * Sends every page in the snapshot. Stops early (returning what was sent)
   * when the clock passes the timeout while the guest runs.
   */
  private async sendSnapshot(
    running: boolean,
    xbzrle: boolean,
  ): Promise<Sent & { timedOut: boolean }> {
    const sent: Sent = { pages: 0, bytes: 0 };
    const pageRecord = this.pageBytes + RECORD_HEADER_BYTES;
    if (!this.o.content) {
      // Metadata mode: every page goes whole; no bytes to look at.
      let left = this.guest.dirty.count(this.snapshot);
      const perWindow = Number.isFinite(this.o.maxBandwidth)
        ? Math.max(1, Math.floor((this.o.maxBandwidth * this.o.windowMs) / 1000 / pageRecord))
        : left;
      while (left > 0) {
        const pages = Math.min(left, perWindow);
        left -= pages;
        sent.pages += pages;
        sent.bytes += pages * pageRecord;
        this.counts.normal += pages;
        this.counts.bytes += pages * pageRecord;
        await this.advance(this.linkMs(pages * pageRecord), running, pages * pageRecord);
        if (running && this.clockMs > this.o.timeoutMs) return { ...sent, timedOut: true };
      }
      return { ...sent, timedOut: false };
    }
    this.guest.dirty.resetCursor(this.cursor);
    for (;;) {
      const n = this.guest.dirty.iterate(this.snapshot, this.cursor, this.list);
      if (n === 0) break;
      const part = await this.sendListed(n, running, xbzrle);
      sent.pages += part.pages;
      sent.bytes += part.bytes;
      if (running && this.clockMs > this.o.timeoutMs) return { ...sent, timedOut: true };
    }
    return { ...sent, timedOut: false };
  }

  private record(
    phase: MigrationPhase,
    start: number,
    sent: Sent,
    pagesDirtied: number,
    remainingPages: number,
    bandwidth: number,
    decision: RoundDecision,
    reason: string,
  ): MigrationRound {
    const duration = this.clockMs - start;
    const seconds = duration / 1000;
    const round: MigrationRound = {
      round: this.rounds.length + 1,
      phase,
      "start-ms": start,
      "duration-ms": duration,
      "pages-sent": sent.pages,
      "pages-dirtied": pagesDirtied,
      "bytes-sent": sent.bytes,
      remaining: remainingPages * this.pageBytes,
      transferred: this.transferred,
      "dirty-pages-rate": seconds > 0 ? pagesDirtied / seconds : 0,
      mbps: seconds > 0 ? (sent.bytes * 8) / 1e6 / seconds : 0,
      "bandwidth-estimate":
        Number.isFinite(bandwidth) && bandwidth < Number.MAX_VALUE ? bandwidth : 0,
      "expected-downtime":
        bandwidth > 0 && bandwidth < Number.MAX_VALUE
          ? ((remainingPages * this.pageBytes) / bandwidth) * 1000
          : 0,
      "cpu-throttle-percentage": this.throttle.percentage,
      decision,
      reason,
    };
    this.rounds.push(round);
    this.o.onRound?.(round.round, round.remaining, this.o.guestBytes);
    return round;
  }

  /** Runs the migration to its end and returns the rounds and the summary. */
  async run(): Promise<MigrationResult> {
    this.clockMs = 0;
    this.rateWindowMs = 0;
    this.rateWindowBytes = 0;
    this.lastWindowRate = null;
    this.writesOwed = 0;
    this.windowOwedMs = 0;
    this.throttle = new AutoConverge(this.o);
    this.counts = emptyEncodeCounts();
    this.transferred = 0;
    this.pagesSentTotal = 0;
    this.syncs = 0;
    this.multifdPackets = 0;
    this.rounds = [];
    if (this.xbzrleCache) this.xbzrleCache.tags.bytes(this.layout.memory).fill(0);
    // Hash slots start unequal on the two sides (zeros here, ones there): a
    // page not encoded and decoded in this run cannot pass by a stale slot.
    this.sourceHashes?.bytes(this.layout.memory).fill(0);
    this.destination?.clearHashes();
    this.guestWrote = false;
    this.destinationWritten = false;
    return this.migrate();
  }

  private async migrate(): Promise<MigrationResult> {
    const o = this.o;
    const pages = this.guest.pages;
    // Setup: the skeleton VM on the destination, a round trip on the link.
    await this.advance(2 * o.latencyMs);
    const setupTime = this.clockMs;
    // Everything is dirty at the start, as QEMU's bitmap is.
    this.guest.dirty.markRange(this.guest.bitmap, 0, pages);
    let pendingPages = this.sync();
    let status: MigrationStatus = "completed";
    let failure: string | null = null;
    let precopyBytes = 0;
    let stallRounds = 0;
    let lastPending = Number.POSITIVE_INFINITY;
    let lastDirtyRate = 0;
    let switchTo: "stop-and-copy" | "postcopy" | "give-up" = "give-up";
    let expectedDowntime = 0;
    for (let round = 1; ; round++) {
      const start = this.clockMs;
      await this.advance(o.latencyMs);
      const sent = await this.sendSnapshot(true, round > 1 && o.xbzrle);
      await this.flushWrites();
      this.transferred += sent.bytes;
      precopyBytes += sent.bytes;
      this.pagesSentTotal += sent.pages;
      const duration = this.clockMs - start;
      const bandwidth = this.bandwidthEstimate(sent.bytes, duration);
      // The bitmap sync at the end of the round: what the guest dirtied meanwhile.
      pendingPages = this.sync();
      const pendingBytes = pendingPages * this.pageBytes;
      lastDirtyRate = duration > 0 ? pendingPages / (duration / 1000) : 0;
      expectedDowntime = bandwidth < Number.MAX_VALUE ? (pendingBytes / bandwidth) * 1000 : 0;
      if (sent.timedOut || this.clockMs > o.timeoutMs) {
        status = "not-converged";
        failure = `timeout: ${formatBytes(pendingBytes)} still pending after ${(this.clockMs / 1000).toFixed(1)} s (limit ${(o.timeoutMs / 1000).toFixed(1)} s)`;
        this.record(
          "precopy",
          start,
          sent,
          pendingPages,
          pendingPages,
          bandwidth,
          "give-up",
          failure,
        );
        break;
      }
      const throttled = this.throttle.afterSync(pendingBytes, sent.bytes, duration);
      let verdict = decide(o.policy, {
        round,
        pendingBytes,
        pagesSent: sent.pages,
        bandwidth,
        transferredBytes: this.transferred,
        ramBytes: o.guestBytes,
        downtimeLimitMs: o.downtimeLimitMs,
        maxRounds: o.maxRounds,
      });
      if (verdict.decision === "continue" && o.policy === "qemu") {
        // Stall detection (as KubeVirt's): pending stops shrinking and nothing is left to throttle.
        stallRounds = pendingBytes >= lastPending * STALL_FACTOR ? stallRounds + 1 : 0;
        if (stallRounds >= STALL_ROUNDS && !this.throttle.canRise) {
          // The rate at which the guest dirties pages (every write, repeats
          // included): the distinct-page rate saturates at the guest's size.
          const dirtyBytesRate =
            o.writesPerSecond * (1 - this.throttle.percentage / 100) * this.pageBytes;
          verdict = {
            decision: "give-up",
            reason:
              dirtyBytesRate >= bandwidth
                ? `dirty rate ${formatBytes(dirtyBytesRate)}/s is above bandwidth ${formatBytes(bandwidth)}/s: pending ${formatBytes(pendingBytes)} stopped shrinking for ${STALL_ROUNDS} rounds`
                : `pending ${formatBytes(pendingBytes)} stopped shrinking for ${STALL_ROUNDS} rounds: the writable working set does not fit bandwidth x downtime-limit ${formatBytes(bandwidth * (o.downtimeLimitMs / 1000))}`,
          };
        }
      }
      lastPending = pendingBytes;
      let decision: RoundDecision = verdict.decision;
      let reason = verdict.reason;
      if (
        verdict.decision === "continue" &&
        o.postcopyAfterRounds !== null &&
        round >= o.postcopyAfterRounds
      ) {
        decision = "switch-to-postcopy";
        reason = `post-copy after ${o.postcopyAfterRounds} pre-copy rounds (${formatBytes(pendingBytes)} pending)`;
      } else if (verdict.decision === "continue" && throttled) {
        decision = "throttle";
        reason = `${reason}; bytes dirtied > 50% of bytes sent twice: throttle to ${this.throttle.percentage}%`;
      }
      this.record("precopy", start, sent, pendingPages, pendingPages, bandwidth, decision, reason);
      if (decision === "stop-and-copy") {
        switchTo = "stop-and-copy";
        break;
      }
      if (decision === "switch-to-postcopy") {
        switchTo = "postcopy";
        break;
      }
      if (decision === "give-up") {
        status = "not-converged";
        failure = reason;
        break;
      }
    }

    let downtime = 0;
    let downtimeBytes = 0;
    let postcopyBytes = 0;
    let faults = 0;
    let faultWaitMs = 0;
    if (status === "completed") {
      // Stop-and-copy: vCPUs paused, the rest and the device state sent, then switch over.
      const start = this.clockMs;
      await this.advance(o.latencyMs, false);
      let sent: Sent = { pages: 0, bytes: 0 };
      if (switchTo === "stop-and-copy") {
        sent = await this.sendSnapshot(false, o.xbzrle);
      }
      this.destination?.receiveDeviceState(this.deviceBlob);
      const stateBytes = o.deviceStateBytes;
      await this.advance(this.linkMs(stateBytes), false);
      await this.advance(o.switchoverMs, false);
      downtimeBytes = sent.bytes + stateBytes;
      this.transferred += downtimeBytes;
      this.pagesSentTotal += sent.pages;
      downtime = this.clockMs - start;
      const remainingAfter = switchTo === "postcopy" ? pendingPages : 0;
      this.record(
        "stop-and-copy",
        start,
        { pages: sent.pages, bytes: downtimeBytes },
        0,
        remainingAfter,
        o.maxBandwidth,
        switchTo === "postcopy" ? "switch-to-postcopy" : "stop-and-copy",
        switchTo === "postcopy"
          ? `paused for device state (${formatBytes(stateBytes)}) and switchover (${o.switchoverMs} ms); ${formatBytes(remainingAfter * this.pageBytes)} left for post-copy`
          : `sent the last ${sent.pages} pages and device state (${formatBytes(stateBytes)}), switchover ${o.switchoverMs} ms`,
      );
      if (switchTo === "postcopy") {
        const post = await this.postcopy();
        postcopyBytes = post.bytes;
        faults = post.faults;
        faultWaitMs = post.faultWaitMs;
        if (post.timedOut) {
          status = "failed";
          failure = `timeout during post-copy with ${post.missing} pages still on the source (the guest cannot run without them)`;
        }
      }
    }

    let verified: boolean | null = null;
    if (o.content && status === "completed") {
      const mismatch = await this.verify();
      verified = mismatch === null;
      if (mismatch) {
        status = "failed";
        failure = mismatch;
      }
    }
    const totalTime = this.clockMs;
    const pending = status === "completed" ? 0 : pendingPages * this.pageBytes;
    const summary: MigrationSummary = {
      status,
      reason: failure,
      mode: o.content ? "content" : "metadata",
      policy: o.policy === "hyperv" ? `hyperv-${o.hypervVersion}` : o.policy,
      transferred: this.transferred,
      remaining: pending,
      total: o.guestBytes,
      duplicate: this.counts.zero,
      normal: this.counts.normal,
      "normal-bytes": this.counts.normal * this.pageBytes,
      "dirty-pages-rate": lastDirtyRate,
      mbps: totalTime > 0 ? (this.transferred * 8) / 1e6 / (totalTime / 1000) : 0,
      "pages-per-second": totalTime > 0 ? this.pagesSentTotal / (totalTime / 1000) : 0,
      "dirty-sync-count": this.syncs,
      "precopy-bytes": precopyBytes,
      "downtime-bytes": downtimeBytes,
      "postcopy-bytes": postcopyBytes,
      "expected-downtime": expectedDowntime,
      downtime,
      "setup-time": setupTime,
      "total-time": totalTime,
      "cpu-throttle-percentage": this.throttle.percentage,
      "xbzrle-cache": o.xbzrle ? this.xbzrleStats() : null,
      "postcopy-remote-faults": faults,
      "postcopy-fault-wait-ms": faultWaitMs,
      rounds: this.rounds.length,
      verified,
      "multifd-channels": o.multifdChannels,
      "multifd-packets": this.multifdPackets,
      "xbzrle-unchanged-pages": this.counts.unchanged,
    };
    return { rounds: this.rounds, summary };
  }

  private xbzrleStats(): XbzrleCacheStats {
    const c = this.counts;
    const lookups = c.cacheMiss + c.xbzrlePages + c.overflow + c.unchanged;
    const bytes = c.xbzrleBytes + c.xbzrlePages * XBZRLE_COUNTED_OVERHEAD;
    return {
      "cache-size": this.o.xbzrleCacheBytes,
      bytes,
      pages: c.xbzrlePages,
      "cache-miss": c.cacheMiss,
      "cache-miss-rate": lookups > 0 ? c.cacheMiss / lookups : 0,
      "encoding-rate": bytes > 0 ? (c.xbzrlePages * this.pageBytes) / bytes : 0,
      overflow: c.overflow,
    };
  }

  /**
   * Post-copy: the guest runs on the destination; missing pages are pushed in
   * the background at link speed, and a page the guest touches before it
   * arrived is a remote fault, fetched at once (a round trip plus the page).
   */
  private async postcopy(): Promise<
    Sent & { faults: number; faultWaitMs: number; timedOut: boolean; missing: number }
  > {
    const o = this.o;
    const pages = this.guest.pages;
    this.missingBitmap ??= DirtyBitmap.allocate(
      this.layout,
      "postcopy-missing",
      pages,
      o.pageShift,
    );
    const missingBitmap = this.missingBitmap;
    this.guest.dirty.merge(missingBitmap, this.snapshot);
    const missing = missingBitmap.region.bytes(this.layout.memory);
    let missingCount = this.guest.dirty.count(missingBitmap);
    const isMissing = (p: number) => (((missing[p >>> 3] ?? 0) >>> (p & 7)) & 1) === 1;
    const clear = (p: number) => {
      missing[p >>> 3] = (missing[p >>> 3] ?? 0) & ~(1 << (p & 7));
    };
    const pageRecord = this.pageBytes + RECORD_HEADER_BYTES;
    const listed = new Uint32Array(this.layout.memory.buffer, this.list.offset, LIST_PAGES);
    const sent: Sent = { pages: 0, bytes: 0 };
    let faults = 0;
    let faultWaitMs = 0;
    let scan = 0;
    const start = this.clockMs;
    let rounds = 0;
    const sendPages = async (numbers: number[]): Promise<number> => {
      let bytes = 0;
      for (let i = 0; i < numbers.length; i += LIST_PAGES) {
        const part = numbers.slice(i, i + LIST_PAGES);
        if (o.content) {
          listed.set(part);
          bytes += (await this.sendListed(part.length, false, false)).bytes;
        } else {
          bytes += part.length * pageRecord;
          this.counts.normal += part.length;
        }
      }
      return bytes;
    };
    while (missingCount > 0) {
      rounds++;
      const windowStart = this.clockMs;
      // The guest runs a window on the destination.
      const writes = Math.floor((o.writesPerSecond * o.windowMs) / 1000);
      if (writes > 0) this.guestWrote = true;
      await this.guest.write(writes);
      this.sync();
      const faulted: number[] = [];
      const mirrored: number[] = [];
      this.guest.dirty.resetCursor(this.cursor);
      for (
        let n = this.guest.dirty.iterate(this.snapshot, this.cursor, this.list);
        n > 0;
        n = this.guest.dirty.iterate(this.snapshot, this.cursor, this.list)
      ) {
        for (let i = 0; i < n; i++) {
          const p = listed[i] ?? 0;
          if (isMissing(p)) {
            faulted.push(p);
            clear(p);
          } else mirrored.push(p);
        }
      }
      faults += faulted.length;
      missingCount -= faulted.length;
      const pageMs = this.linkMs(pageRecord);
      faultWaitMs += faulted.length * (2 * o.latencyMs + pageMs);
      let bytes = await sendPages(faulted);
      if (o.content && this.destination) {
        // Pages already on the destination were written there by the guest itself.
        const ram = this.ram().bytes(this.layout.memory);
        if (mirrored.length > 0) this.destinationWritten = true;
        for (const p of mirrored) {
          this.destination.writePage(p, ram.subarray(p * this.pageBytes, (p + 1) * this.pageBytes));
        }
      }
      // The background push fills the rest of the window.
      const budget = Number.isFinite(o.maxBandwidth)
        ? Math.max(
            1,
            Math.floor((o.maxBandwidth * o.windowMs) / 1000 / pageRecord) - faulted.length,
          )
        : missingCount;
      const push: number[] = [];
      while (push.length < budget && missingCount > 0 && scan < pages) {
        const byte = missing[scan >>> 3] ?? 0;
        if (byte === 0 && (scan & 7) === 0) {
          scan += 8;
          continue;
        }
        if (isMissing(scan)) {
          push.push(scan);
          clear(scan);
          missingCount--;
        }
        scan++;
      }
      bytes += await sendPages(push);
      sent.pages += faulted.length + push.length;
      sent.bytes += bytes;
      this.transferred += bytes;
      this.pagesSentTotal += faulted.length + push.length;
      this.clockMs = windowStart + Math.max(o.windowMs, this.linkMs(bytes));
      if (this.clockMs > o.timeoutMs) {
        this.record(
          "postcopy",
          start,
          sent,
          0,
          missingCount,
          o.maxBandwidth,
          "give-up",
          "timeout during post-copy",
        );
        return { ...sent, faults, faultWaitMs, timedOut: true, missing: missingCount };
      }
    }
    this.record(
      "postcopy",
      start,
      sent,
      0,
      0,
      o.maxBandwidth,
      "continue",
      `${rounds} windows: ${faults} remote faults (${faultWaitMs.toFixed(1)} ms waiting), the rest pushed in the background`,
    );
    return { ...sent, faults, faultWaitMs, timedOut: false, missing: 0 };
  }

  /**
   * Content mode: every destination page against the source, by hash.
   * Returns why not, or null.
   *
   * Both sides recorded a hash per page in the run: the source's from its
   * bytes as encoded, the destination's from its bytes as the decoder wrote
   * them. When nothing else wrote either side since (the guest never ran
   * writes in this run; the destination was written only by the decoder and
   * not handed out before verification), those tables are the pages' hashes
   * now and are compared as they are. Otherwise, or when they differ, both
   * memories are hashed afresh and the fresh tables decide.
   */
  private async verify(): Promise<string | null> {
    const kernel = this.kernel;
    const destination = this.destination;
    const table = this.sourceHashes;
    if (!kernel || !destination || !table) return null;
    const pages = this.guest.pages;
    if (this.o.beforeVerify) {
      this.destinationWritten = true;
      this.o.beforeVerify(destination.ram.bytes(destination.layout.memory));
    }
    if (!this.guestWrote && !this.destinationWritten) {
      const recorded = firstMismatch(kernel.hashTable(table, pages), destination.recordedHashes());
      if (recorded === null) return this.verifyDeviceState(destination);
    }
    let source: BigUint64Array;
    let theirs: BigUint64Array;
    if (this.o.multifdChannels > 0) {
      // With multifd's pool at hand both sides hash at once: the source on a
      // worker, the destination here. (Without it, a worker is not worth its
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
    return this.verifyDeviceState(destination);
  }

  private verifyDeviceState(destination: Destination): string | null {
    if (!destination.deviceStateEquals(this.deviceBlob)) {
      return "verification failed: the destination's device state differs from the source's";
    }
    return null;
  }
}

/** A seeded device-state blob (what the VM's devices would serialize). */
function deviceState(bytes: number, seed: number): Uint8Array {
  const blob = new Uint8Array(bytes);
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    blob[i] = state & 0xff;
  }
  return blob;
}

/**
 * Runs one virtual-time live migration (pre-copy, optionally post-copy) and
 * returns its rounds and summary in QEMU's names. Deterministic for a seed.
 *
 * @throws MigrationConfigError for options that cannot run (before anything is allocated).
 */
export async function runMigration(options: MigrationOptions): Promise<MigrationResult> {
  const migration = new Migration(options);
  try {
    return await migration.run();
  } finally {
    await migration.close();
  }
}
