import { Guest } from "../guest/guest.js";
import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { formatBytes } from "../util/units.js";
import { CURSOR_BYTES } from "../wasm/dirty.js";
import { RECORD_HEADER_BYTES } from "../wasm/page.js";
import { InProcessLink, LIST_PAGES } from "./in-process-link.js";
import { MigrationBitmap } from "./migration-bitmap.js";
import {
  type MigrationOptions,
  type ResolvedMigrationOptions,
  resolveMigrationOptions,
} from "./options.js";
import { runPrecopy } from "./precopy/driver.js";
import { RoundRecorder } from "./precopy/recorder.js";
import type {
  Pass,
  PostcopyOutcome,
  PrecopyClock,
  PrecopyGuest,
  PrecopyTransport,
} from "./precopy/types.js";
import {
  chunkBytes,
  type QemuIterationOptions,
  thresholdBytes,
  ZERO_RECORD_BYTES,
} from "./qemu-iteration/iteration.js";
import { SentPages } from "./sent-pages.js";
import type { MigrationResult } from "./stats.js";
import { VirtualLink } from "./virtual-link.js";
import { runVirtualPostcopy } from "./virtual-postcopy.js";
import { VirtualRunState } from "./virtual-run-state.js";
import { xbzrleCacheStats } from "./xbzrle-stats.js";

export { MULTIFD_PACKET_PAGES, PACKET_BYTES } from "./in-process-link.js";

/**
 * A virtual-time live migration: the source guest (its RAM, dirty bitmap and
 * vCPU workloads), the link, and in content mode a destination with its own
 * memory (src/migration/in-process-link.ts). Construct once (allocating and
 * seeding the guest), then {@link Migration.run}; each run migrates the guest
 * as it is at that moment (benchmarks run it again and again).
 */
export class Migration {
  private readonly o: ResolvedMigrationOptions;
  private readonly layout = new MemoryLayout();
  private readonly guest: Guest;
  private readonly pageBytes: number;
  /** The pages synced and not yet sent: the retired half of the guest's dirty log. */
  private readonly pending: MigrationBitmap;
  private readonly cursor: Region;
  private readonly list: Region;
  /** Content mode: the destination and the link that moves pages to it. */
  private readonly content: InProcessLink | undefined;

  /** The current run's state: a fresh object per run. */
  private s: VirtualRunState;
  /** The current run's link and clock, over its state. */
  private v: VirtualLink;
  private missingBitmap: DirtyBitmap | undefined;
  /** QEMU's iteration: where a running sync ORs the new dirty pages on the way (scratch). */
  private lateBitmap: DirtyBitmap | undefined;
  /** QEMU's iteration: the pages sent so far this run, which the destination holds. */
  private readonly sent: SentPages | undefined;

  constructor(options: MigrationOptions) {
    this.o = resolveMigrationOptions(options);
    const o = this.o;
    this.pageBytes = 2 ** o.pageShift;
    this.s = new VirtualRunState(o);
    this.guest = new Guest(this.layout, {
      bytes: o.guestBytes,
      pageShift: o.pageShift,
      content: o.content,
      vcpus: o.vcpus,
      workload: o.workload,
      seed: o.seed,
      name: "source",
      // A sync flips the pair; a round then harvests the retired bitmap
      // into page numbers in one pass as it sends.
      doubleBuffered: true,
    });
    this.v = new VirtualLink(o, this.guest, this.s);
    this.pending = new MigrationBitmap(this.guest);
    this.cursor = this.layout.allocate("migration-cursor", CURSOR_BYTES);
    this.list = this.layout.allocate("migration-page-list", LIST_PAGES * 4);
    if (o.content) this.content = new InProcessLink(o, this.layout, this.guest, this.list);
    if (o.qemuIteration) this.sent = new SentPages(this.guest);
  }

  /** Source guest RAM (content mode), as bytes. */
  sourceRamBytes(): Uint8Array | undefined {
    return this.guest.ram?.bytes(this.layout.memory);
  }

  /** Destination guest RAM (content mode), as bytes. */
  destinationRamBytes(): Uint8Array | undefined {
    const d = this.content?.destination;
    return d?.ram.bytes(d.layout.memory);
  }

  /** Closes the pool of multifd channels, if one was started. */
  async close(): Promise<void> {
    await this.content?.close();
  }

  /**
   * Flips the guest's dirty log into the migration bitmap (a sync). Returns
   * pages pending. Under QEMU's iteration pages a pass left unsent are still
   * pending, so the sync ORs the new dirty pages into them (a page in both
   * counts once), as `migration_bitmap_sync` does; on virtual time no vCPU
   * writes during the sync, so the merge is safe while the guest "runs".
   */
  private sync(): number {
    this.s.syncs++;
    const merge = this.s.unsentKept;
    this.s.unsentKept = false;
    if (merge || (this.o.qemuIteration && this.s.syncs > 1)) {
      this.lateBitmap ??= DirtyBitmap.allocate(
        this.layout,
        "qemu-iteration-late",
        this.guest.pages,
        this.o.pageShift,
      );
      return this.pending.syncPaused(this.lateBitmap);
    }
    return this.pending.sync();
  }

  /** Sends the page numbers now in the list (the first `count`), in content mode. */
  private sendListed(
    count: number,
    running: boolean,
    xbzrle: boolean,
    untilMs = Number.POSITIVE_INFINITY,
  ): Promise<Pass> {
    const content = this.content;
    if (!content) throw new Error("content mode not set up");
    return content.sendListed(
      this.s,
      (bytes, run, until) => this.v.link(bytes, run, until),
      count,
      running,
      xbzrle,
      untilMs,
    );
  }

  /**
   * Sends every pending page, harvesting the migration bitmap batch by batch
   * as it goes. Stops early (returning what was sent)
   * when the clock passes the timeout while the guest runs.
   */
  private async sendSnapshot(running: boolean, xbzrle: boolean, untilMs: number): Promise<Pass> {
    const it = this.o.qemuIteration;
    if (it) return this.sendIterating(it, running, untilMs);
    const sent = { pages: 0, bytes: 0 };
    const pageRecord = this.pageBytes + RECORD_HEADER_BYTES;
    this.pending.resetCursor(this.cursor);
    for (;;) {
      const n = this.pending.next(this.cursor, this.list);
      if (n === 0) break;
      if (!this.o.content) {
        // Metadata mode: every page goes whole; no bytes to look at.
        const perWindow = Number.isFinite(this.o.maxBandwidth)
          ? Math.max(1, Math.floor((this.o.maxBandwidth * this.o.windowMs) / 1000 / pageRecord))
          : n;
        for (let left = n; left > 0; ) {
          const pages = Math.min(left, perWindow);
          left -= pages;
          const share = await this.v.link(pages * pageRecord, running, untilMs);
          const out = Math.floor(pages * share);
          sent.pages += out;
          sent.bytes += out * pageRecord;
          this.s.counts.normal += out;
          this.s.counts.bytes += out * pageRecord;
          if (share < 1) return this.keepUnsent(n - left - pages + out, n, sent);
        }
        continue;
      }
      const part = await this.sendListed(n, running, xbzrle, untilMs);
      sent.pages += part.pages;
      sent.bytes += part.bytes;
      // The link sends the list in its order: what got out is its first pages.
      if (part.cut) return this.keepUnsent(Math.min(part.pages, n), n, sent);
    }
    return { ...sent, cut: false };
  }

  /**
   * A pass cut at the time limit: the batch's pages from `from` on never
   * left, and the pages not yet harvested are still in the pending set, so
   * all of them stay pending and the next sync merges the new dirty pages
   * into them (QEMU counts unsent pages as remaining) instead of flipping
   * the log over them.
   */
  private keepUnsent(from: number, to: number, sent: { pages: number; bytes: number }): Pass {
    this.pending.putBack(this.list, from, to);
    this.s.unsentKept = true;
    return { ...sent, cut: true };
  }

  /**
   * QEMU's iteration (metadata mode): sends the pending pages in chunks of
   * one iteration each and, while the guest runs, looks at the pending
   * estimate before every chunk: below `threshold_size` the pass ends and
   * the driver syncs, with the unsent pages still pending. Paused (the
   * completion) it sends everything with no rate limit, the pages it never
   * sent before at the pace of the destination's first touch.
   */
  private async sendIterating(
    it: QemuIterationOptions,
    running: boolean,
    untilMs: number,
  ): Promise<Pass> {
    const sent = { pages: 0, bytes: 0 };
    const pageRecord = this.pageBytes + RECORD_HEADER_BYTES;
    const chunk = Math.max(1, Math.floor(chunkBytes(it, this.o.maxBandwidth) / pageRecord));
    let remaining = this.s.pendingPages;
    // QEMU's estimate counts the zero pages the first pass has still to
    // scan as whole pages (they are set in its bitmap until scanned).
    const below = () =>
      running &&
      (remaining + this.s.zeroTailPages) * this.pageBytes <
        thresholdBytes(this.s.lastWindowRate, this.o.downtimeLimitMs);
    // The scan goes on from where the last iteration left it and wraps at
    // the end of RAM, as QEMU's does (`last_seen_block` and `last_page` in
    // `ram_find_and_save_block`): a pass cut short at the threshold does not
    // send the low pages again before it reached the high ones, and the
    // pages of its batch it did not send are the next pass's first.
    // The estimate is looked at between iterations, and an iteration's
    // scan goes on past the end of RAM: `left` is what the current one may
    // still send, across batches.
    let left = chunk;
    const due = () => left === chunk && below();
    let wrapped = false;
    while (!due()) {
      const n = this.pending.next(this.cursor, this.list);
      if (n === 0) {
        // The working set is behind the scan: the zero pages past it come next.
        if (this.s.zeroTailPages > 0) {
          const tail = await this.scanZeroTail(it, running, untilMs);
          sent.bytes += tail.bytes;
          if (tail.cut) return { ...sent, cut: true };
          left = chunk;
          continue;
        }
        if (wrapped) break;
        this.pending.resetCursor(this.cursor);
        wrapped = true;
        continue;
      }
      wrapped = false;
      for (let at = 0; at < n; ) {
        if (due()) {
          this.leaveUnsent(at, n);
          return { ...sent, cut: false };
        }
        const pages = Math.min(n - at, left);
        // Paused, every page of the chunk goes: those new to the destination
        // are counted before, to be timed at their own pace.
        const fresh = running ? 0 : this.recordSent(at, at + pages);
        const share = await this.v.link(pages * pageRecord, running, untilMs, fresh * pageRecord);
        const out = Math.floor(pages * share);
        if (running) this.recordSent(at, at + out);
        sent.pages += out;
        sent.bytes += out * pageRecord;
        this.s.counts.normal += out;
        this.s.counts.bytes += out * pageRecord;
        remaining -= out;
        at += pages;
        left = left > pages ? left - pages : chunk;
        if (share < 1) {
          this.leaveUnsent(at - pages + out, n);
          return { ...sent, cut: true };
        }
      }
    }
    return { ...sent, cut: false };
  }

  /**
   * QEMU's iteration: the listed pages `from` to `to` (at least one) stay
   * pending, and the scan resumes at the first of them, as QEMU's goes on
   * from the page it stopped at.
   */
  private leaveUnsent(from: number, to: number): void {
    this.pending.putBack(this.list, from, to);
    this.pending.resumeAt(this.cursor, this.list, from);
  }

  /** Records the listed pages `from` to `to` as sent; returns how many went for the first time. */
  private recordSent(from: number, to: number): number {
    return (this.sent as SentPages).record(this.list, from, to);
  }

  /**
   * The first pass's scan of the zero pages past the working set: no link
   * time (a header each), the host's scan time, measured. The clock moves a
   * bandwidth window at a time, so QEMU's windows see the scan's trickle of
   * bytes and its threshold falls with it, as QEMU's does; the guest writes
   * meanwhile. Stops at `untilMs` while the guest runs.
   */
  private async scanZeroTail(
    it: QemuIterationOptions,
    running: boolean,
    untilMs: number,
  ): Promise<{ bytes: number; cut: boolean }> {
    const msPerPage = 1000 / (it.zeroScanRate ?? Number.POSITIVE_INFINITY);
    const perWindow = Math.max(1, Math.floor(this.o.windowMs / msPerPage));
    let bytes = 0;
    while (this.s.zeroTailPages > 0) {
      let pages = Math.min(this.s.zeroTailPages, perWindow);
      let cut = false;
      if (running && this.s.clockMs + pages * msPerPage > untilMs) {
        pages = Math.max(0, Math.floor((untilMs - this.s.clockMs) / msPerPage));
        cut = true;
      }
      const out = pages * ZERO_RECORD_BYTES;
      await this.v.advance(
        cut ? Math.max(0, untilMs - this.s.clockMs) : pages * msPerPage,
        running,
        out,
      );
      this.s.zeroTailPages -= pages;
      this.s.counts.zero += pages;
      this.s.counts.bytes += out;
      bytes += out;
      if (cut) return { bytes, cut: true };
    }
    return { bytes, cut: false };
  }

  /**
   * Runs the migration to its end through the pre-copy driver and returns
   * the rounds and the summary. Each run starts from a fresh run state.
   */
  async run(): Promise<MigrationResult> {
    const o = this.o;
    const s = new VirtualRunState(o);
    this.s = s;
    this.v = new VirtualLink(o, this.guest, s);
    this.content?.startRun();
    this.sent?.clear();
    this.pending.clear();
    this.pending.resetCursor(this.cursor);
    const clock: PrecopyClock = { kind: "virtual", now: () => s.clockMs };
    const onRound = o.onRound;
    return runPrecopy({
      guest: this.precopyGuest(s),
      clock,
      transport: this.transport(s),
      policy: {
        name: o.policy,
        label: summaryPolicy(o),
        downtimeLimitMs: o.downtimeLimitMs,
        maxRounds: o.maxRounds,
        timeoutMs: o.timeoutMs,
        giveUp: o.giveUp,
        postcopyAfterRounds: o.postcopyAfterRounds,
      },
      recorder: new RoundRecorder(
        clock,
        this.pageBytes,
        o.guestBytes,
        onRound ? (r) => onRound(r.round, r.remaining, o.guestBytes) : undefined,
      ),
    });
  }

  /** The source guest on virtual time: its log flips at each sync, its writes run per window. */
  private precopyGuest(s: VirtualRunState): PrecopyGuest {
    const o = this.o;
    return {
      pageBytes: this.pageBytes,
      ramBytes: o.guestBytes,
      logAll: () => {
        this.sync();
        s.pendingPages = this.pending.markAll();
        return s.pendingPages;
      },
      sync: () => {
        s.pendingPages = this.sync();
        return s.pendingPages;
      },
      // The vCPUs stop; nothing dirties a page after the last sync. QEMU
      // syncs once more at completion (`ram_save_complete`): it counts.
      pause: async () => {
        if (o.qemuIteration) s.pendingPages = this.sync();
        return s.pendingPages;
      },
      resume: () => {},
      writeRate: () => o.writesPerSecond * (1 - s.throttle.percentage / 100),
      get syncs() {
        return s.syncs;
      },
      throttle: s.throttle,
    };
  }

  /** The in-process link (records, or multifd channels on the pool) on virtual time. */
  private transport(s: VirtualRunState): PrecopyTransport {
    const o = this.o;
    return {
      mode: o.content ? "content" : "metadata",
      open: () => this.v.advance(2 * o.latencyMs),
      sendPending: async ({ running, round, untilMs }) => {
        if (running) await this.v.advance(o.latencyMs);
        // QEMU's setup and first pages: after the first sync, before the pass.
        if (running && round === 1 && o.qemuIteration)
          await this.v.advance(Math.min(o.qemuIteration.startMs, Math.max(0, untilMs - s.clockMs)));
        const pass = await this.sendSnapshot(running, round > 1 && o.xbzrle, untilMs);
        // The writes owed for the round's last part of a window land before the sync.
        if (running) await this.v.flushWrites();
        s.transferred += pass.bytes;
        return pass;
      },
      bandwidth: (bytes, ms) => this.v.bandwidthEstimate(bytes, ms),
      rate: () => o.maxBandwidth,
      get transferred() {
        return s.transferred;
      },
      switchover: async () => {
        const stateBytes = o.deviceStateBytes;
        if (this.content) this.content.destination.receiveDeviceState(this.content.deviceBlob);
        const it = o.qemuIteration;
        if (it) {
          const stateMs = this.v.linkMs(stateBytes, false);
          await this.v.advance(it.stopMs + stateMs, false);
          s.transferred += stateBytes;
          return {
            bytes: stateBytes,
            fixed: `stopping and handing over ${it.stopMs} ms, device state ${formatBytes(stateBytes)} (${stateMs.toFixed(1)} ms) with no rate limit`,
          };
        }
        const stateMs = this.v.linkMs(stateBytes);
        await this.v.advance(o.latencyMs + stateMs + o.switchoverMs, false);
        s.transferred += stateBytes;
        return {
          bytes: stateBytes,
          fixed: `switchover ${Number(o.switchoverMs.toFixed(1))} ms, device state ${formatBytes(stateBytes)} (${stateMs.toFixed(1)} ms) and latency ${o.latencyMs} ms`,
        };
      },
      cancel: async () => {},
      postcopy: (_pendingPages, untilMs) => this.postcopy(untilMs),
      verify: async () => this.content?.verify(s),
      counters: () => ({
        duplicate: s.counts.zero,
        normal: s.counts.normal,
        xbzrle: o.xbzrle ? xbzrleCacheStats(s.counts, o.xbzrleCacheBytes, this.pageBytes) : null,
        xbzrleUnchanged: s.counts.unchanged,
        multifd: { channels: o.multifdChannels, packets: s.multifdPackets, bytes: s.multifdBytes },
      }),
      explain: (error, phase) => `${phase}: ${error.message}`,
    };
  }

  /** Post-copy on virtual time (src/migration/virtual-postcopy.ts). */
  private postcopy(untilMs: number): Promise<PostcopyOutcome> {
    this.missingBitmap ??= DirtyBitmap.allocate(
      this.layout,
      "postcopy-missing",
      this.guest.pages,
      this.o.pageShift,
    );
    return runVirtualPostcopy(
      {
        o: this.o,
        guest: this.guest,
        memory: this.layout.memory,
        pending: this.pending,
        cursor: this.cursor,
        list: this.list,
        missing: this.missingBitmap,
        s: this.s,
        destination: this.content?.destination,
        sync: () => this.sync(),
        linkMs: (bytes) => this.v.linkMs(bytes),
        sendListed: (count) => this.sendListed(count, false, false),
      },
      untilMs,
    );
  }
}

/** The policy's name in the summary: hyperv with its release. */
function summaryPolicy(o: ResolvedMigrationOptions): string {
  return o.policy === "hyperv" ? `hyperv-${o.hypervVersion}` : o.policy;
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
