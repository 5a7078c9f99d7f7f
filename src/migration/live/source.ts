import { randomInt } from "node:crypto";
import type { Socket } from "node:net";
import { Guest } from "../../guest/guest.js";
import { DirtyBitmap } from "../../memory/dirty-bitmap.js";
import { MemoryLayout } from "../../memory/layout.js";
import type { Region } from "../../memory/region.js";
import { KernelPool } from "../../pool/pool.js";
import { connectSecure, type TransportSecurity } from "../../transport/secure.js";
import { TokenBucket } from "../../transport/token-bucket.js";
import { formatBytes } from "../../util/units.js";
import {
  ENCODE_STATS_BYTES,
  PAGE_SCRATCH_BYTES,
  PageKernel,
  type XbzrleCacheRegions,
} from "../../wasm/page.js";
import { type PagedRam, StreamKernel } from "../../wasm/stream.js";
import type { WorkloadSpec } from "../../workload/spec.js";
import { AutoConverge, type AutoConvergeSettings } from "../auto-converge.js";
import { MigrationBitmap } from "../migration-bitmap.js";
import type { GiveUpRule } from "../options.js";
import { runPrecopy } from "../precopy/driver.js";
import { RoundRecorder } from "../precopy/recorder.js";
import type {
  Handover,
  Pass,
  PostcopyOutcome,
  PrecopyClock,
  PrecopyGuest,
  PrecopyTransport,
  TransportCounters,
} from "../precopy/types.js";
import type { MigrationResult, MigrationRound } from "../stats.js";
import { xbzrleCacheStats } from "../xbzrle-stats.js";
import { retryDelayMs } from "./backoff.js";
import { Deadline } from "./deadline.js";
import { LiveConfigError, PeerError } from "./errors.js";
import { FrameError, FrameType } from "./frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "./frame-codec.js";
import { fillDeviceState, prefillGuest } from "./guest-image.js";
import { Inbox } from "./inbox.js";
import { describeSocketError, Link, LinkError } from "./link.js";
import {
  encodeChannelHello,
  encodeDiscard,
  encodeEpoch,
  encodeError,
  encodeHello,
  encodePostcopyEnd,
  encodePostcopyResume,
  encodePostcopyRun,
  encodeRecoverHello,
  encodeVerifyEnd,
  MAX_DEVICE_STATE_BYTES,
  MAX_DIGESTS_PER_FRAME,
  MAX_DISCARD_PAGES,
  MAX_MULTIFD_CHANNELS,
  MAX_PAGES_PER_FRAME,
  MAX_POSTCOPY_VCPUS,
  MAX_POSTCOPY_WRITE_RATE,
  MAX_RECORDS_PAYLOAD,
  MAX_RECV_BITMAP_PAGES,
  type PostcopyDone,
  recvBitmapBytes,
} from "./messages.js";
import { idle, type Lane, PageSender, RECORD_LIST_PAGES } from "./page-sender.js";
import { PostcopyBacklog } from "./postcopy-backlog.js";
import { MAX_RECOVER_WAIT_MS, PostcopyRecovery, type PostcopyStatus } from "./postcopy-recovery.js";
import { VcpuRunner } from "./vcpu-runner.js";

/** Largest guest the live mode holds: both ends keep its bytes, often on one machine. */
export const MAX_LIVE_GUEST_BYTES = 2 * 1024 ** 3;
/** Page size of the live mode: 4 KiB. */
export const LIVE_PAGE_SHIFT = 12;
const PAGE_BYTES = 2 ** LIVE_PAGE_SHIFT;
/** QEMU's default downtime-limit, ms (QEMU migration/options.c, DEFAULT_MIGRATE_SET_DOWNTIME). */
export const DEFAULT_DOWNTIME_LIMIT_MS = 300;
/**
 * Staging slots for outgoing frames: pages frames leave from their slot
 * without a copy while the next ones are built.
 */
const SEND_SLOTS = 4;
/**
 * Pages per post-copy frame (256 KiB): a requested page waits behind at most
 * the frame on the link, so frames are kept short (QEMU gives requested
 * pages a channel of their own, postcopy-preempt, for the same reason).
 */
const POSTCOPY_FRAME_PAGES = 64;
/** Replies a source accepts are small; the largest is a 2 GiB guest's received-page bitmap (64 KiB). */
const REPLY_MAX_PAYLOAD = recvBitmapBytes(MAX_RECV_BITMAP_PAGES);
/** Staging slots per multifd channel: one frame built while the last one leaves. */
const CHANNEL_SLOTS = 2;
/** QEMU's default XBZRLE cache, 64 MiB (migration/options.c, DEFAULT_MIGRATE_XBZRLE_CACHE_SIZE). */
export const DEFAULT_XBZRLE_CACHE_BYTES = 64 * 1024 ** 2;
/** Largest XBZRLE cache a live source allocates (it shares the address space with the guest). */
export const MAX_XBZRLE_CACHE_BYTES = 1024 ** 3;

/** The guest a live source runs. */
export interface LiveGuestOptions {
  /** Guest RAM in bytes: whole 4 KiB pages, 1 MiB to 2 GiB. */
  readonly guestBytes: number;
  readonly vcpus: number;
  readonly workload: WorkloadSpec;
  /** Guest writes per second on the wall clock (0: idle; Infinity: flat out). */
  readonly writesPerSecond: number;
  /** Pool workers running the vCPUs (0: this thread). */
  readonly threads: number;
  readonly seed: number;
}

/** How one live migration runs. */
export interface LiveMigrationOptions {
  readonly host: string;
  readonly port: number;
  /** QEMU's downtime-limit, ms (default 300). */
  readonly downtimeLimitMs?: number;
  /**
   * The stop rule: "qemu" (default; a round cap given in `maxRounds` ends the
   * run as not converged) or "hyperv" (stop-and-copy at the pass cap anyway).
   */
  readonly policy?: "qemu" | "hyperv";
  /** The round cap (default none; give hyperv its release's cap). */
  readonly maxRounds?: number;
  /** Hyper-V's pass cap: `policy: "hyperv"` with this `maxRounds` (0: no cap, QEMU's rule). */
  readonly maxPasses?: number;
  /** When the qemu rule gives up before the timeout (default "projection"). */
  readonly giveUp?: GiveUpRule;
  /** Give up (not-converged) when pre-copy has run this long, ms (default 60,000). */
  readonly timeoutMs?: number;
  /** Throttle the link to this many bytes per second (0: unthrottled). */
  readonly maxBandwidth?: number;
  /** Device-state blob sent while paused, bytes (default 64 KiB). */
  readonly deviceStateBytes?: number;
  /**
   * A storage handover inside the blackout, ms (default 0): a VM on a
   * Cluster Shared Volume has its VHDs closed on the source and opened on
   * the destination while it is paused (`hvlab csv vms` measures it), so
   * the destination resumes only after it.
   */
  readonly storageHandoverMs?: number;
  /** How long to wait for the connection and each reply, ms (default 10,000). */
  readonly replyTimeoutMs?: number;
  /** TLS for the connection (default: plain TCP). */
  readonly security?: TransportSecurity;
  /**
   * Check every destination page against the source's digest at the end
   * (default true). Off, only the frame digests guard the stream.
   */
  readonly verify?: boolean;
  /** QEMU's auto-converge: throttle the vCPUs when they dirty faster than the link sends (default off). */
  readonly autoConverge?: AutoConvergeSettings;
  /** Send zero pages as ZERO records, a header and one byte (default off: every page whole). */
  readonly zeroPages?: boolean;
  /** QEMU's XBZRLE from the second pass on (default off; not with multifd, as in QEMU). */
  readonly xbzrle?: boolean;
  /** The XBZRLE cache, bytes: a power of two of at least one page (default 64 MiB, QEMU's). */
  readonly xbzrleCacheBytes?: number;
  /**
   * multifd channels: pages go over this many more TCP connections, the main
   * one keeping the control frames (QEMU's model, migration/multifd.c);
   * 0 (default) sends pages on the main connection.
   */
  readonly multifdChannels?: number;
  /**
   * Switch to post-copy after this many pre-copy passes (QEMU's
   * migrate-start-postcopy; default never): the guest then runs on the
   * destination, which pulls the pages it faults on while the rest are
   * pushed. A broken connection after the switch loses the guest, unless
   * `postcopyRecoverMs` is given.
   */
  readonly postcopyAfter?: number;
  /**
   * QEMU's postcopy recovery: a connection that breaks during post-copy
   * pauses it instead of failing it, and the source reconnects (retrying
   * with backoff) for up to this many ms, then resumes from the
   * destination's received-page bitmap (default 0: a break fails the run).
   */
  readonly postcopyRecoverMs?: number;
  /** Called on each post-copy status change (QEMU's query-migrate status), when recovery is on. */
  readonly onPostcopyStatus?: (status: PostcopyStatus) => void;
  /** Called as each round ends. */
  readonly onRound?: (round: MigrationRound) => void;
  /** Called after each pages frame with the bytes sent so far. */
  readonly onProgress?: (bytesSent: number) => void;
}

/**
 * The source of a live migration over TCP: a guest in content mode whose
 * vCPUs run on pool workers on the wall clock, and the pre-copy loop that
 * sends its pages to a destination. The guest keeps running across failed
 * attempts, so {@link LiveSource.migrate} can simply be called again.
 */
export class LiveSource {
  readonly layout: MemoryLayout;
  readonly guest: Guest;
  readonly runner: VcpuRunner;
  readonly ram: PagedRam;
  private readonly pool: KernelPool | undefined;
  private readonly kernel: StreamKernel;
  /** The pages synced and not yet sent: the retired half of the guest's dirty log. */
  private readonly pending: MigrationBitmap;
  private readonly late: DirtyBitmap;
  private readonly cursor: Region;
  private readonly sendSlots: readonly Region[];
  private readonly replyStaging: Region;
  private readonly pageKernel: PageKernel;
  private readonly recordList: Region;
  private readonly encodeStats: Region;
  /** The XBZRLE cache, allocated by the first migration that asks for it. */
  private xbzrleCache: { cache: XbzrleCacheRegions; scratch: Region } | undefined;
  /** Staging slots of each multifd channel, allocated as channels are first opened. */
  private readonly channelSlots: Region[][] = [];
  private attempts = 0;
  private closed = false;
  /** migrate-start-postcopy was asked during the attempt under way. */
  private postcopyAsked = false;
  /** The attempt under way (or the last one): its phase and transport, for {@link LiveSource.activity}. */
  private current: { phase: string; readonly transport: TcpTransport } | undefined;

  private constructor(readonly options: LiveGuestOptions) {
    checkGuest(options);
    this.layout = new MemoryLayout();
    this.guest = new Guest(this.layout, {
      bytes: options.guestBytes,
      content: true,
      vcpus: options.vcpus,
      workload: options.workload,
      seed: options.seed,
      name: "source",
      // The vCPUs run on the workers while the log is harvested: an
      // epoch-swapped pair spares the harvest a locked exchange per word.
      doubleBuffered: true,
    });
    if (!this.guest.ram)
      throw new LiveConfigError("the live mode needs guest bytes (content mode)");
    this.ram = { region: this.guest.ram, pageShift: LIVE_PAGE_SHIFT };
    prefillGuest(this.guest.ram.bytes(this.layout.memory), PAGE_BYTES, options.seed);
    this.pending = new MigrationBitmap(this.guest);
    this.late = DirtyBitmap.allocate(this.layout, "source-late-dirty", this.guest.pages);
    this.cursor = this.layout.allocate("source-cursor", 8);
    this.sendSlots = Array.from({ length: SEND_SLOTS }, (_, i) =>
      this.layout.allocate(`source-send-slot-${i}`, stagingBytes(), 4096),
    );
    this.replyStaging = this.layout.allocate(
      "source-reply-staging",
      stagingBytes(REPLY_MAX_PAYLOAD),
    );
    const scratch = this.layout.allocate("source-scratch", 64);
    this.kernel = StreamKernel.on(this.layout.memory, scratch);
    this.pageKernel = PageKernel.on(
      this.layout.memory,
      this.layout.allocate("source-page-scratch", PAGE_SCRATCH_BYTES),
    );
    this.recordList = this.layout.allocate("source-record-list", RECORD_LIST_PAGES * 4);
    this.encodeStats = this.layout.allocate("source-encode-stats", ENCODE_STATS_BYTES);
    this.pool =
      options.threads > 0
        ? new KernelPool(this.layout, { threads: options.threads, domains: ["guest"] })
        : undefined;
    this.runner = new VcpuRunner(this.guest, this.pool, options.writesPerSecond);
  }

  /** Builds the guest and starts its vCPUs. */
  static start(options: LiveGuestOptions): LiveSource {
    const source = new LiveSource(options);
    source.runner.resume();
    return source;
  }

  /**
   * What the latest migration attempt is doing (setup, pre-copy pass N,
   * stop-and-copy, verification) and the bytes it has handed to the socket:
   * what an interrupted command reports.
   */
  get activity(): { readonly phase: string; readonly bytesSent: number } | undefined {
    const current = this.current;
    if (!current) return undefined;
    return { phase: current.phase, bytesSent: current.transport.transferred };
  }

  /**
   * QEMU's migrate-start-postcopy: the attempt under way switches to
   * post-copy at the end of its current pre-copy pass (unless that pass
   * already ends pre-copy). Returns false when no attempt is in pre-copy.
   */
  startPostcopy(): boolean {
    const phase = this.current?.phase;
    if (phase === undefined || !(phase === "setup" || phase.startsWith("pre-copy"))) return false;
    this.postcopyAsked = true;
    return true;
  }

  /** Stops the vCPUs and the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.runner.pause();
    await this.pool?.close();
  }

  /**
   * Migrates the running guest to a destination, through the pre-copy driver
   * on the wall clock. Never throws for a failed migration: the result's
   * status says completed, failed or not-converged, with the reason; after a
   * failure the guest is still running here.
   */
  async migrate(options: LiveMigrationOptions): Promise<MigrationResult> {
    const downtimeLimitMs = options.downtimeLimitMs ?? DEFAULT_DOWNTIME_LIMIT_MS;
    const maxPasses = options.maxPasses ?? 0;
    const policy = maxPasses > 0 ? "hyperv" : (options.policy ?? "qemu");
    const maxRounds = maxPasses > 0 ? maxPasses : (options.maxRounds ?? null);
    const deviceStateBytes = options.deviceStateBytes ?? 64 * 1024;
    checkMigration(options, deviceStateBytes);
    if (options.postcopyAfter !== undefined && this.options.vcpus > MAX_POSTCOPY_VCPUS) {
      throw new LiveConfigError(
        `post-copy runs at most ${MAX_POSTCOPY_VCPUS} vCPUs on the destination, not ${this.options.vcpus}`,
      );
    }
    this.attempts++;
    this.postcopyAsked = false;
    const started = performance.now();
    const clock: PrecopyClock = { kind: "wall", now: () => performance.now() - started };
    const sender = new PageSender(
      {
        pending: this.pending,
        cursor: this.cursor,
        ram: this.ram,
        stream: this.kernel,
        page: this.pageKernel,
        list: this.recordList,
        stats: this.encodeStats,
      },
      {
        zeroPages: options.zeroPages ?? false,
        ...(options.xbzrle ? { xbzrle: this.freshXbzrleCache(options) } : {}),
      },
    );
    const transport = new TcpTransport(
      this,
      options,
      clock,
      deviceStateBytes,
      this.attempts,
      sender,
    );
    const current = { phase: "setup", transport };
    this.current = current;
    const onRound = options.onRound;
    const throttle = options.autoConverge?.autoConverge
      ? new AutoConverge(options.autoConverge)
      : undefined;
    this.runner.throttle = throttle;
    const result = await runPrecopy({
      guest: this.precopyGuest(clock, throttle),
      clock,
      transport,
      policy: {
        name: policy,
        label: policy,
        downtimeLimitMs,
        maxRounds,
        timeoutMs: options.timeoutMs ?? 60_000,
        giveUp: options.giveUp ?? "projection",
        postcopyAfterRounds: options.postcopyAfter ?? null,
        postcopyRequested: () => this.postcopyAsked,
      },
      recorder: new RoundRecorder(clock, PAGE_BYTES, this.options.guestBytes, onRound),
      onPhase: (phase) => {
        current.phase = phase;
      },
    });
    transport.close(result.summary.status === "completed");
    // The throttle ends with the migration (QEMU: cpu_throttle_stop): a guest left here runs at full speed.
    this.runner.throttle = undefined;
    return result;
  }

  /** The guest as the driver sees it: its dirty log, its vCPUs on the workers. */
  private precopyGuest(clock: PrecopyClock, throttle: AutoConverge | undefined): PrecopyGuest {
    let syncs = 0;
    let writesAt = this.runner.writes;
    let syncedAt = clock.now();
    let rate = 0;
    // The guest's real write rate, repeats included (the distinct pages it
    // dirtied saturate at the guest's size), measured between syncs.
    const measure = () => {
      const now = clock.now();
      rate = now > syncedAt ? ((this.runner.writes - writesAt) / (now - syncedAt)) * 1000 : 0;
      writesAt = this.runner.writes;
      syncedAt = now;
    };
    return {
      pageBytes: PAGE_BYTES,
      ramBytes: this.options.guestBytes,
      logAll: () => {
        // Clear the dirty log (two flips: both halves are synced away, one
        // possibly left from a failed attempt): the first pass then sends
        // every page, and the guest's writes from here on are the next sync's.
        this.pending.sync();
        this.pending.moveInto(this.late);
        this.pending.sync();
        syncs++;
        measure();
        return this.pending.markAll();
      },
      sync: () => {
        syncs++;
        measure();
        return this.pending.sync();
      },
      pause: async () => {
        await this.runner.pause();
        syncs++;
        return this.pending.syncPaused(this.late);
      },
      resume: () => this.runner.resume(),
      writeRate: () => rate,
      get syncs() {
        return syncs;
      },
      ...(throttle ? { throttle } : {}),
    };
  }

  /**
   * The XBZRLE cache for an attempt, empty: the destination of a new
   * attempt holds none of the versions an earlier one cached.
   */
  private freshXbzrleCache(options: LiveMigrationOptions): {
    cache: XbzrleCacheRegions;
    scratch: Region;
  } {
    const bytes = options.xbzrleCacheBytes ?? DEFAULT_XBZRLE_CACHE_BYTES;
    let held = this.xbzrleCache;
    if (held && held.cache.data.byteLength !== bytes) {
      throw new LiveConfigError(
        `this source's XBZRLE cache is ${formatBytes(held.cache.data.byteLength)}; it cannot change to ${formatBytes(bytes)} between attempts`,
      );
    }
    if (!held) {
      const slots = bytes / PAGE_BYTES;
      held = {
        cache: {
          slots,
          tags: this.layout.allocate("source-xbzrle-tags", slots * 4),
          data: this.layout.allocate("source-xbzrle-data", bytes, 4096),
        },
        scratch: this.layout.allocate("source-xbzrle-scratch", PAGE_BYTES),
      };
      this.xbzrleCache = held;
    }
    held.cache.tags.bytes(this.layout.memory).fill(0);
    return held;
  }

  /**
   * Takes every pending page out of the migration bitmap, in page order:
   * what post-copy still has to send, and what the destination must drop.
   */
  takePending(): Uint32Array {
    const pages: number[] = [];
    this.pending.resetCursor(this.cursor);
    const list = this.recordList;
    for (;;) {
      const count = this.pending.next(this.cursor, list);
      if (count === 0) break;
      const taken = new Uint32Array(this.layout.memory.buffer, list.offset, count);
      for (const page of taken) pages.push(page);
    }
    return Uint32Array.from(pages);
  }

  /** The staging slots of multifd channel `index` (allocated on first use, kept for later attempts). */
  channelStaging(index: number): readonly Region[] {
    let slots = this.channelSlots[index];
    if (!slots) {
      slots = Array.from({ length: CHANNEL_SLOTS }, (_, i) =>
        this.layout.allocate(
          `source-channel-${index}-slot-${i}`,
          stagingBytes(MAX_RECORDS_PAYLOAD),
          4096,
        ),
      );
      this.channelSlots[index] = slots;
    }
    return slots;
  }

  /** Sends the digest of every page, then the end of verification. */
  async sendDigests(writer: FrameWriter, link: Link, deviceDigest: bigint): Promise<void> {
    for (let first = 0; first < this.guest.pages; first += MAX_DIGESTS_PER_FRAME) {
      const count = Math.min(MAX_DIGESTS_PER_FRAME, this.guest.pages - first);
      const header = writer.payload(8);
      header.setUint32(0, first, true);
      header.setUint32(4, count, true);
      this.kernel.hashPages(this.ram, first, count, writer.staging, writer.payloadStart + 8);
      await link.send(writer.seal(FrameType.verify, 8 + count * 8));
    }
    await link.send(
      writer.seal(
        FrameType.verifyEnd,
        encodeVerifyEnd(writer.payload(16), this.guest.pages, deviceDigest),
      ),
    );
  }

  /** The wire's staging memory and the kernel that hashes and gathers in it. */
  get wire(): {
    layout: MemoryLayout;
    kernel: StreamKernel;
    sendSlots: readonly Region[];
    replyStaging: Region;
  } {
    return {
      layout: this.layout,
      kernel: this.kernel,
      sendSlots: this.sendSlots,
      replyStaging: this.replyStaging,
    };
  }
}

/**
 * TCP frames to a destination: the main connection carries the hello and
 * its accept, the device state and switchover, the verification digests
 * and every reply; pages go on it too, or on multifd channels (one more
 * connection each), each pass ending with a sync on every channel that the
 * destination confirms once every channel's pages have landed.
 */
class TcpTransport implements PrecopyTransport {
  readonly mode = "live-tcp" as const;
  private readonly where: string;
  private inbox = new Inbox();
  private readonly replyTimeoutMs: number;
  private readonly bucket: TokenBucket | undefined;
  private socket: Socket | undefined;
  private main: Lane | undefined;
  private readonly channels: { lane: Lane; socket: Socket }[] = [];
  private deviceDigest = 0n;
  private epoch = 0;
  /** Sends a deadline overtook, still on their way. */
  private inflight: Promise<void> | undefined;
  /** The connections were ended or dropped already. */
  private closed = false;
  /** The multifd channels carry nothing more: one closing no longer fails the run. */
  private channelsDone = false;
  /** What post-copy has to send: built at the switch, kept across reconnects. */
  private backlog: PostcopyBacklog | undefined;
  /** The session id the hello announced; a reconnecting source names it again. */
  private sessionId = 0;
  /** Bytes put on main connections that were dropped since (post-copy recovery opens new ones). */
  private retired = 0;

  constructor(
    private readonly source: LiveSource,
    private readonly options: LiveMigrationOptions,
    private readonly clock: PrecopyClock,
    private readonly deviceStateBytes: number,
    private readonly attempt: number,
    private readonly sender: PageSender,
  ) {
    this.where = `${options.host}:${options.port}`;
    this.replyTimeoutMs = options.replyTimeoutMs ?? 10_000;
    // One bucket for every connection: the cap is the migration's, as QEMU's max-bandwidth.
    this.bucket = options.maxBandwidth ? new TokenBucket(options.maxBandwidth) : undefined;
  }

  get transferred(): number {
    let bytes = this.retired + (this.main?.link.queued ?? 0);
    for (const { lane } of this.channels) bytes += lane.link.queued;
    return bytes;
  }

  private open_(): { link: Link; writer: FrameWriter; socket: Socket } {
    if (!this.main || !this.socket) throw new Error("the connection is not open");
    return { link: this.main.link, writer: this.main.writer, socket: this.socket };
  }

  async open(): Promise<void> {
    const options = this.options;
    const socket = await openConnection(options, this.replyTimeoutMs);
    const { link, writer } = this.attach(socket);
    const inbox = this.inbox;
    const sessionId = randomInt(2 ** 32 - 1);
    this.sessionId = sessionId;
    const channels = options.multifdChannels ?? 0;
    const helloBytes = encodeHello(writer.payload(32), {
      guestBytes: this.source.options.guestBytes,
      pageShift: LIVE_PAGE_SHIFT,
      sessionId,
      deviceStateBytes: this.deviceStateBytes,
      verify: options.verify ?? true,
      channels,
    });
    await link.send(writer.seal(FrameType.hello, helloBytes));
    const accept = await inbox.next("accept", this.replyTimeoutMs, "accept the migration");
    if (accept.sessionId !== sessionId) {
      throw new FrameError(
        "payload",
        `the destination accepted session ${accept.sessionId}, not ${sessionId}`,
      );
    }
    for (let index = 0; index < channels; index++) {
      await this.openChannel(sessionId, index, channels);
    }
  }

  /**
   * Makes `socket` the main connection: a fresh link, frame writer and inbox
   * (a reconnect after a post-copy break starts both sequences from 0).
   */
  private attach(socket: Socket): { link: Link; writer: FrameWriter } {
    const wire = this.source.wire;
    this.socket = socket;
    const link = new Link(socket, this.bucket);
    const inbox = new Inbox();
    this.inbox = inbox;
    const reader = new FrameReader(
      wire.layout.memory,
      wire.kernel,
      wire.replyStaging,
      (frame) => inbox.take(frame),
      REPLY_MAX_PAYLOAD,
    );
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (error) {
        inbox.fail(error as Error);
        link.fail(error as Error);
      }
    });
    socket.on("close", () =>
      inbox.fail(new LinkError(link.down?.message ?? "the connection closed")),
    );
    const writer = new FrameWriter(wire.layout.memory, wire.kernel, wire.sendSlots);
    this.main = { link, writer, frames: 0, bytes: 0 };
    return { link, writer };
  }

  /** Drops the main connection; the bytes it carried stay counted. */
  private detach(): void {
    if (this.main) this.retired += this.main.link.queued;
    this.socket?.destroy();
    this.main = undefined;
    this.socket = undefined;
  }

  /** Opens multifd channel `index`: its own connection, joined to the session by its first frame. */
  private async openChannel(sessionId: number, index: number, channels: number): Promise<void> {
    const wire = this.source.wire;
    let socket: Socket;
    try {
      socket = await openConnection(this.options, this.replyTimeoutMs);
    } catch (error) {
      throw new LinkError(`multifd channel ${index}: ${(error as Error).message}`);
    }
    const link = new Link(socket, this.bucket);
    const writer = new FrameWriter(
      wire.layout.memory,
      wire.kernel,
      this.source.channelStaging(index),
      MAX_RECORDS_PAYLOAD,
    );
    const lane: Lane = { name: `multifd channel ${index}`, link, writer, frames: 0, bytes: 0 };
    this.channels.push({ lane, socket });
    // The destination answers on the main connection only; a channel that
    // closes under a running migration fails it.
    socket.on("data", () => {});
    socket.on("close", () => {
      if (!this.closed && !this.channelsDone) {
        this.inbox.fail(
          new LinkError(
            `multifd channel ${index}: ${link.down?.message ?? "the connection closed"}`,
          ),
        );
      }
    });
    await link.send(
      writer.seal(
        FrameType.channelHello,
        encodeChannelHello(writer.payload(16), { sessionId, index, channels }),
      ),
    );
  }

  async sendPending(round: { running: boolean; round: number; untilMs: number }): Promise<Pass> {
    this.open_();
    const before = this.transferred;
    const lanes = this.channels.length > 0 ? this.channels.map((c) => c.lane) : [this.main as Lane];
    const pass = await this.sender.sendPass(lanes, {
      inbox: this.inbox,
      clock: this.clock,
      untilMs: round.running ? round.untilMs : Number.POSITIVE_INFINITY,
      // QEMU's XBZRLE starts once the cache has seen the pages: from the second pass.
      xbzrle: round.round > 1,
      onProgress: () => this.options.onProgress?.(this.transferred),
    });
    this.inflight = pass.inflight;
    if (!pass.cut && this.channels.length > 0) await this.sync();
    return { pages: pass.pages, bytes: this.transferred - before, cut: pass.cut };
  }

  /**
   * QEMU's multifd sync at the end of a pass: a sync frame on every channel,
   * then the destination's word that every channel's frames before it have
   * landed. A page sent again in the next pass, on another channel, cannot
   * then land before its older copy.
   */
  private async sync(): Promise<void> {
    const epoch = ++this.epoch;
    for (const { lane } of this.channels) {
      await idle(lane);
      lane.sending = lane.link.send(
        lane.writer.seal(FrameType.sync, encodeEpoch(lane.writer.payload(8), epoch)),
      );
      await idle(lane);
    }
    const synced = await this.inbox.next(
      "synced",
      this.replyTimeoutMs,
      `confirm multifd sync ${epoch}`,
    );
    if (synced.epoch !== epoch) {
      throw new FrameError(
        "payload",
        `the destination confirmed multifd sync ${synced.epoch}, not ${epoch}`,
      );
    }
  }

  bandwidth(): number {
    return this.rate();
  }

  rate(): number {
    let rate = this.main?.link.meter.estimate() ?? 0;
    for (const { lane } of this.channels) rate += lane.link.meter.estimate();
    return rate;
  }

  async switchover(to: "stop-and-copy" | "postcopy" = "stop-and-copy"): Promise<Handover> {
    const { link, writer } = this.open_();
    // Every page has landed (the last pass ended with a sync): the channels' work is done.
    this.channelsDone = true;
    const before = link.queued;
    await writer.ready();
    let discarded = 0;
    if (to === "postcopy") {
      // QEMU's discard (postcopy_each_ram_send_discard): the destination drops
      // what it holds of every page still pending, so its vCPUs fault on them.
      const pending = this.source.takePending();
      const backlog = new PostcopyBacklog(this.source.guest.pages, pending);
      this.backlog = backlog;
      // The return path opens before the switch: a vCPU may fault before `resumed` is read here.
      this.inbox.onPageRequest = (first, count) => backlog.request(first, count);
      discarded = pending.length;
      for (let at = 0; at < pending.length; at += MAX_DISCARD_PAGES) {
        const chunk = pending.subarray(at, at + MAX_DISCARD_PAGES);
        const bytes = encodeDiscard(writer.payload(8 + chunk.length * 4), chunk);
        await link.send(writer.seal(FrameType.discard, bytes));
      }
    }
    const handoverMs = this.options.storageHandoverMs ?? 0;
    // The VHDs change hands while the guest is paused: the resume waits for them.
    if (to === "stop-and-copy" && handoverMs > 0)
      await new Promise((resolve) => setTimeout(resolve, handoverMs));
    const bytes = this.deviceStateBytes;
    const device = writer.payload(bytes);
    fillDeviceState(
      new Uint8Array(device.buffer, device.byteOffset, bytes),
      this.source.options.seed + this.attempt,
    );
    this.deviceDigest = this.source.wire.kernel.hash(writer.staging, writer.payloadStart, bytes);
    await link.send(writer.seal(FrameType.deviceState, bytes));
    if (to === "postcopy") {
      const guest = this.source.options;
      const run = encodePostcopyRun(writer.payload(16), {
        vcpus: guest.vcpus,
        seed: guest.seed + this.attempt,
        writesPerSecond: Math.min(guest.writesPerSecond, MAX_POSTCOPY_WRITE_RATE),
      });
      await link.send(writer.seal(FrameType.postcopyRun, run));
    } else {
      await link.send(writer.seal(FrameType.switchover, 0));
    }
    await this.inbox.next("resumed", this.replyTimeoutMs, "resume the guest");
    return {
      bytes: link.queued - before,
      fixed:
        to === "postcopy"
          ? `a discard of ${discarded} pages, device state ${formatBytes(bytes)} and the destination's resume`
          : `device state ${formatBytes(bytes)}${handoverMs > 0 ? `, the storage handover (${handoverMs} ms)` : ""} and the destination's resume`,
    };
  }

  /**
   * Post-copy (QEMU migration/ram.c, ram_save_queue_pages and the
   * postcopy-ram.c return path): pushes every page still pending in page
   * order, one pages frame at a time, each frame taking the pages the
   * destination requested (MIG_RP_MSG_REQ_PAGES) first. Then post-copy's
   * end, and the destination's counts. The pre-copy time limit does not
   * apply: giving up now would lose the guest.
   *
   * A broken connection loses the guest, unless recovery is on
   * (`postcopyRecoverMs`): post-copy then pauses, reconnects and resumes
   * ({@link TcpTransport.recover}). A failure is reported, never thrown, and
   * the source's guest stays paused.
   */
  async postcopy(_pendingPages: number, _untilMs: number): Promise<PostcopyOutcome> {
    const backlog =
      this.backlog ?? new PostcopyBacklog(this.source.guest.pages, new Uint32Array(0));
    const waitMs = this.options.postcopyRecoverMs ?? 0;
    const recovery =
      waitMs > 0
        ? new PostcopyRecovery(() => this.clock.now(), this.options.onPostcopyStatus)
        : undefined;
    const before = this.transferred;
    let frames = 0;
    try {
      let done: PostcopyDone | undefined;
      while (!done) {
        try {
          frames += await this.push(backlog);
          done = await this.endPostcopy(backlog);
        } catch (error) {
          // Only a broken link pauses: a bad frame or a peer's error ends the run.
          if (!recovery || !(error instanceof LinkError)) throw error;
          await this.recover(error, backlog, recovery, waitMs);
        }
      }
      recovery?.end("completed", this.transferred);
      const faultWaitMs = done.vcpuBlocktime.reduce((a, b) => a + b, 0);
      const counts = recovery?.counts();
      return {
        pages: backlog.pushed,
        bytes: this.transferred - before,
        requests: done.requests,
        faultWaitMs,
        blocktime: done.blocktime,
        vcpuBlocktime: done.vcpuBlocktime,
        missing: 0,
        failure: null,
        windows: frames,
        ...(counts ? { recovery: counts } : {}),
        summary: `${frames} pages frames: ${done.requests} pages requested by the destination's vCPUs (blocked ${done.vcpuBlocktime.map((ms) => ms.toFixed(1)).join(" + ")} ms of a ${done.phaseMs.toFixed(1)} ms phase), the rest pushed in the background${counts && counts.pauses > 0 ? `; paused ${counts.pauses} times by a broken link (${counts.pausedMs.toFixed(0)} ms), resumed from the destination's bitmap with ${counts.pagesLeft.join(", ")} pages left` : ""}`,
      };
    } catch (error) {
      recovery?.end("failed", this.transferred);
      const missing = backlog.missing;
      const failure = `${this.explain(error as Error, "post-copy")}: the guest ran on the destination since the switch and is lost there (${missing} pages never sent); the source keeps its paused copy as of the switch: resume it or migrate again`;
      const told = `migration failed at the source: ${failure}`;
      // A frame the destination got wrong leaves the socket up though the
      // link is marked failed: say why on it, then drop it.
      if (error instanceof FrameError) await this.refuse(told);
      else await this.cancel(told).catch(() => {});
      const counts = recovery?.counts();
      return {
        pages: backlog.pushed,
        bytes: this.transferred - before,
        requests: 0,
        faultWaitMs: 0,
        blocktime: 0,
        vcpuBlocktime: [],
        missing,
        failure,
        windows: frames,
        ...(counts ? { recovery: counts } : {}),
      };
    } finally {
      this.inbox.onPageRequest = undefined;
    }
  }

  /** Pushes the backlog on the main connection, requested pages first; returns the frames sent. */
  private async push(backlog: PostcopyBacklog): Promise<number> {
    const { link, writer } = this.open_();
    const kernel = this.source.wire.kernel;
    let frames = 0;
    let sending: Promise<void> | undefined;
    for (;;) {
      if (this.inbox.failed) throw this.inbox.failed;
      // The last frame leaves before the next is built: requests that came
      // meanwhile go in it, ahead of the background's pages.
      await sending;
      await writer.ready();
      const list = backlog.take(MAX_PAGES_PER_FRAME, POSTCOPY_FRAME_PAGES);
      if (list.length === 0) break;
      const count = list.length;
      const header = writer.payload(8 + count * 4);
      header.setUint32(0, count, true);
      header.setUint32(4, 0, true);
      for (let i = 0; i < count; i++) header.setUint32(8 + i * 4, list[i] as number, true);
      const listStart = writer.payloadStart + 8;
      kernel.gather(
        this.source.ram,
        writer.staging,
        listStart,
        count,
        writer.staging,
        listStart + count * 4,
      );
      const frame = writer.sealInPlace(FrameType.pages, 8 + count * (4 + PAGE_BYTES));
      sending = link.send(frame.wire, frame.sent);
      sending.catch(() => {});
      frames++;
      this.options.onProgress?.(this.transferred);
    }
    await sending;
    return frames;
  }

  /** Post-copy's end frame, and the destination's counts. */
  private async endPostcopy(backlog: PostcopyBacklog): Promise<PostcopyDone> {
    const { link, writer } = this.open_();
    await link.send(
      writer.seal(FrameType.postcopyEnd, encodePostcopyEnd(writer.payload(8), backlog.pushed)),
    );
    const { done } = await this.inbox.next(
      "postcopyDone",
      this.replyTimeoutMs,
      "report the end of post-copy",
    );
    return done;
  }

  /**
   * Post-copy recovery, the source's side (QEMU migration/migration.c,
   * postcopy_pause, then a `migrate` with resume=true): the broken
   * connection is dropped and post-copy paused; the source keeps its guest
   * and its backlog, and reconnects with the retry backoff until the
   * destination listens again, for at most `waitMs`. A connection that
   * breaks again during the exchange pauses again and retries.
   *
   * @throws LinkError when no recovery succeeded within `waitMs`; FrameError
   * or PeerError when the destination answered wrongly or refused.
   */
  private async recover(
    cause: LinkError,
    backlog: PostcopyBacklog,
    recovery: PostcopyRecovery,
    waitMs: number,
  ): Promise<void> {
    recovery.pause(this.transferred);
    this.detach();
    const until = this.clock.now() + waitMs;
    let last: Error = cause;
    for (let retry = 1; ; retry++) {
      const left = until - this.clock.now();
      if (left <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(retryDelayMs(retry), left)));
      if (this.clock.now() >= until) break;
      try {
        await this.resume(backlog, recovery, until);
        return;
      } catch (error) {
        if (!(error instanceof LinkError)) throw error;
        last = error;
        if (recovery.current === "postcopy-recover") recovery.pause(this.transferred);
        this.detach();
      }
    }
    throw new LinkError(
      `${cause.message}; post-copy paused and no recovery within ${waitMs} ms (last try: ${last.message})`,
    );
  }

  /**
   * One recovery attempt on a new connection (QEMU's handshake): the
   * session named again, the destination's received-page bitmap
   * (MIG_RP_MSG_RECV_BITMAP), the backlog rebuilt from it as every page not
   * received (ram_dirty_bitmap_reload), the resume (MIG_CMD_POSTCOPY_RESUME)
   * and its acknowledgement (MIG_RP_MSG_RESUME_ACK).
   */
  private async resume(
    backlog: PostcopyBacklog,
    recovery: PostcopyRecovery,
    until: number,
  ): Promise<void> {
    const timeout = Math.max(1, Math.min(this.replyTimeoutMs, until - this.clock.now()));
    const socket = await openConnection(this.options, timeout);
    const { link, writer } = this.attach(socket);
    recovery.recover();
    const hello = encodeRecoverHello(writer.payload(8), {
      sessionId: this.sessionId,
      guestPages: backlog.guestPages,
    });
    await link.send(writer.seal(FrameType.recoverHello, hello));
    const bitmap = await this.inbox.next(
      "recvBitmap",
      this.replyTimeoutMs,
      "send its received-page bitmap",
    );
    const left = backlog.reload(bitmap.pages, bitmap.bits);
    // The destination sends again, after its acknowledgement, what its vCPUs wait on.
    this.inbox.onPageRequest = (first, count) => backlog.request(first, count);
    await link.send(
      writer.seal(FrameType.postcopyResume, encodePostcopyResume(writer.payload(8), left)),
    );
    const ack = await this.inbox.next("resumeAck", this.replyTimeoutMs, "acknowledge the resume");
    recovery.resume(left, ack.rerequested, this.transferred);
  }

  async cancel(reason: string): Promise<void> {
    if (this.closed || !this.socket || this.socket.destroyed) {
      // Nothing to tell it on: the connection is gone (or never opened).
      this.close(false);
      return;
    }
    const { link, writer, socket } = this.open_();
    // A stalled link may never take the error frame (nor free a slot for
    // it): it gets a second, then the socket goes.
    const deadline = new Deadline(this.clock, this.clock.now() + 1000);
    try {
      const sent = await deadline.race(
        (async () => {
          // Frames go in sequence: a pages frame still waiting on the link goes first.
          await this.inflight?.catch(() => {});
          await writer.ready();
          await link.send(writer.frame(FrameType.error, encodeError(reason)));
        })(),
      );
      if (sent) socket.end();
      else socket.destroy();
    } catch {
      socket.destroy();
    } finally {
      deadline.clear();
    }
    this.closed = true;
    for (const channel of this.channels) channel.socket.destroy();
  }

  /**
   * Ends the main connection with an error frame written straight to the
   * socket (the link refuses sends once a bad frame failed it), and drops it
   * a second later whether or not the peer hangs up.
   */
  private async refuse(reason: string): Promise<void> {
    const socket = this.socket;
    const writer = this.main?.writer;
    this.closed = true;
    for (const channel of this.channels) channel.socket.destroy();
    if (!socket || !writer || socket.destroyed) return;
    const deadline = new Deadline(this.clock, this.clock.now() + 1000);
    try {
      if (await deadline.race(writer.ready())) {
        socket.end(writer.frame(FrameType.error, encodeError(reason)));
      }
    } catch {
      // The slot never came free: the socket goes without a word.
    } finally {
      deadline.clear();
    }
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  async verify(): Promise<string | null | undefined> {
    if (this.options.verify === false) return undefined;
    const { link, writer } = this.open_();
    await this.source.sendDigests(writer, link, this.deviceDigest);
    const { result } = await this.inbox.next(
      "result",
      this.replyTimeoutMs * 4,
      "report verification",
    );
    if (result.mismatches > 0) {
      return `verification failed: ${result.mismatches} destination pages differ from the source (first: page ${result.firstMismatch})`;
    }
    return result.deviceStateGood
      ? null
      : "verification failed: the device state differs from the source's";
  }

  counters(): TransportCounters {
    const c = this.sender.counts;
    const o = this.options;
    let packets = 0;
    let bytes = 0;
    for (const { lane } of this.channels) {
      packets += lane.frames;
      bytes += lane.bytes;
    }
    return {
      duplicate: c.zero,
      normal: c.normal,
      xbzrle: o.xbzrle
        ? xbzrleCacheStats(c, o.xbzrleCacheBytes ?? DEFAULT_XBZRLE_CACHE_BYTES, PAGE_BYTES)
        : null,
      ...(o.xbzrle ? { xbzrleUnchanged: c.unchanged } : {}),
      ...(this.channels.length > 0
        ? { multifd: { channels: this.channels.length, packets, bytes } }
        : {}),
    };
  }

  explain(error: Error, phase: string): string {
    const where = this.where;
    const sent =
      this.main || this.retired > 0 ? ` after ${formatBytes(this.transferred)} sent` : "";
    if (error instanceof FrameError && (error.kind === "foreign" || error.kind === "version")) {
      return `${where}: ${error.message}`;
    }
    if (phase === "setup" && error instanceof LinkError) {
      return `cannot migrate to ${where}: ${error.message}`;
    }
    if (error instanceof LinkError) {
      return `the connection to ${where} dropped during ${phase}${sent}: ${error.message}`;
    }
    if (error instanceof PeerError) return `${error.message} (during ${phase}${sent})`;
    return `${phase}${sent}: ${error.message}`;
  }

  /** Ends the connection after a completed run; drops it after any other. */
  close(completed: boolean): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of [this.socket, ...this.channels.map((c) => c.socket)]) {
      if (completed) socket?.end();
      else socket?.destroy();
    }
  }
}

/** Opens a TCP (or TLS) connection, or fails with one line saying why. */
async function openConnection(options: LiveMigrationOptions, timeoutMs: number): Promise<Socket> {
  const security = options.security ?? { kind: "plain", insecure: false };
  try {
    return await connectSecure(
      options.host,
      options.port,
      security,
      timeoutMs,
      describeSocketError,
    );
  } catch (error) {
    throw new LinkError((error as Error).message);
  }
}

function checkGuest(options: LiveGuestOptions): void {
  const bytes = options.guestBytes;
  if (!Number.isSafeInteger(bytes) || bytes < 1024 ** 2 || bytes > MAX_LIVE_GUEST_BYTES) {
    throw new LiveConfigError(
      `live guest size must be from 1 MiB to ${formatBytes(MAX_LIVE_GUEST_BYTES)}, not ${bytes} bytes`,
    );
  }
  if (bytes % PAGE_BYTES !== 0) {
    throw new LiveConfigError(`guest size ${bytes} bytes is not a whole number of 4 KiB pages`);
  }
  if (!Number.isSafeInteger(options.threads) || options.threads < 0 || options.threads > 64) {
    throw new LiveConfigError(`threads must be from 0 to 64, not ${options.threads}`);
  }
}

function checkMigration(options: LiveMigrationOptions, deviceStateBytes: number): void {
  if (!Number.isSafeInteger(options.port) || options.port < 1 || options.port > 65_535) {
    throw new LiveConfigError(`port must be from 1 to 65535, not ${options.port}`);
  }
  if (options.downtimeLimitMs !== undefined && !(options.downtimeLimitMs > 0)) {
    throw new LiveConfigError(`downtime-limit must be positive, not ${options.downtimeLimitMs} ms`);
  }
  if (
    options.maxBandwidth !== undefined &&
    options.maxBandwidth !== 0 &&
    !(options.maxBandwidth > 0)
  ) {
    throw new LiveConfigError(
      `max-bandwidth must be positive (or 0: unthrottled), not ${options.maxBandwidth}`,
    );
  }
  const channels = options.multifdChannels ?? 0;
  if (!Number.isSafeInteger(channels) || channels < 0 || channels > MAX_MULTIFD_CHANNELS) {
    throw new LiveConfigError(
      `multifd channels must be from 0 to ${MAX_MULTIFD_CHANNELS}, not ${channels}`,
    );
  }
  if (options.postcopyAfter !== undefined) {
    if (!Number.isSafeInteger(options.postcopyAfter) || options.postcopyAfter < 1) {
      throw new LiveConfigError(
        `post-copy must start after at least 1 pre-copy pass, not ${options.postcopyAfter}`,
      );
    }
  }
  const recoverMs = options.postcopyRecoverMs;
  if (
    recoverMs !== undefined &&
    !(Number.isSafeInteger(recoverMs) && recoverMs >= 0 && recoverMs <= MAX_RECOVER_WAIT_MS)
  ) {
    throw new LiveConfigError(
      `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not ${recoverMs}`,
    );
  }
  if (options.xbzrle && channels > 0) {
    throw new LiveConfigError("XBZRLE does not work with multifd (as in QEMU): choose one");
  }
  if (options.xbzrle) {
    const cache = options.xbzrleCacheBytes ?? DEFAULT_XBZRLE_CACHE_BYTES;
    if (
      !Number.isSafeInteger(cache) ||
      cache < PAGE_BYTES ||
      cache > MAX_XBZRLE_CACHE_BYTES ||
      (cache & (cache - 1)) !== 0
    ) {
      throw new LiveConfigError(
        `XBZRLE cache must be a power of two from 4 KiB to ${formatBytes(MAX_XBZRLE_CACHE_BYTES)}, not ${cache} bytes`,
      );
    }
  }
  const handover = options.storageHandoverMs;
  if (
    handover !== undefined &&
    !(Number.isFinite(handover) && handover >= 0 && handover <= 3_600_000)
  )
    throw new LiveConfigError(`storage handover must be 0 to 3600000 ms, not ${handover}`);
  if (
    !Number.isSafeInteger(deviceStateBytes) ||
    deviceStateBytes < 0 ||
    deviceStateBytes > MAX_DEVICE_STATE_BYTES
  ) {
    throw new LiveConfigError(
      `device state must be from 0 to ${formatBytes(MAX_DEVICE_STATE_BYTES)}, not ${deviceStateBytes} bytes`,
    );
  }
}
