import { randomInt } from "node:crypto";
import type { Socket } from "node:net";
import { Guest } from "../../guest/guest.js";
import { DirtyBitmap } from "../../memory/dirty-bitmap.js";
import { MemoryLayout } from "../../memory/layout.js";
import { Region } from "../../memory/region.js";
import { KernelPool } from "../../pool/pool.js";
import { connectSecure, type TransportSecurity } from "../../transport/secure.js";
import { formatBytes } from "../../util/units.js";
import { type PagedRam, StreamKernel } from "../../wasm/stream.js";
import type { WorkloadSpec } from "../../workload/spec.js";
import { MigrationBitmap } from "../migration-bitmap.js";
import type { GiveUpRule } from "../options.js";
import { decide } from "../policy.js";
import type {
  MigrationPhase,
  MigrationResult,
  MigrationRound,
  MigrationStatus,
  MigrationSummary,
  RoundDecision,
} from "../stats.js";
import { LiveConfigError, PeerError } from "./errors.js";
import { FrameError, FrameType } from "./frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "./frame-codec.js";
import { fillDeviceState, prefillGuest } from "./guest-image.js";
import { Inbox } from "./inbox.js";
import { describeSocketError, Link, LinkError } from "./link.js";
import {
  encodeError,
  encodeHello,
  encodeVerifyEnd,
  MAX_DEVICE_STATE_BYTES,
  MAX_DIGESTS_PER_FRAME,
  MAX_PAGES_PER_FRAME,
} from "./messages.js";
import { TokenBucket } from "./token-bucket.js";
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
/** Replies a source accepts are tiny. */
const REPLY_MAX_PAYLOAD = 4096;

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
  /** How long to wait for the connection and each reply, ms (default 10,000). */
  readonly replyTimeoutMs?: number;
  /** TLS for the connection (default: plain TCP). */
  readonly security?: TransportSecurity;
  /**
   * Check every destination page against the source's digest at the end
   * (default true). Off, only the frame digests guard the stream.
   */
  readonly verify?: boolean;
  /** Called as each round ends. */
  readonly onRound?: (round: MigrationRound) => void;
  /** Called after each pages frame with the bytes sent so far. */
  readonly onProgress?: (bytesSent: number) => void;
}

/** What a migration attempt tracks while it runs. */
interface Attempt {
  readonly rounds: MigrationRound[];
  readonly started: number;
  setupMs: number;
  pagesSent: number;
  precopyBytes: number;
  downtimeBytes: number;
  syncs: number;
  remainingPages: number;
  downtimeMs: number;
  totalMs: number;
  verified: boolean | null;
  phase: string;
  policy: string;
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
  private attempts = 0;
  private closed = false;
  /** The attempt under way (or the last one) and its link, for {@link LiveSource.activity}. */
  private current: { readonly attempt: Attempt; link: Link | undefined } | undefined;

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
    return { phase: current.attempt.phase, bytesSent: current.link?.queued ?? 0 };
  }

  /** Stops the vCPUs and the workers. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.runner.pause();
    await this.pool?.close();
  }

  /**
   * Migrates the running guest to a destination. Never throws for a failed
   * migration: the result's status says completed, failed or not-converged,
   * with the reason; after a failure the guest is still running here.
   */
  async migrate(options: LiveMigrationOptions): Promise<MigrationResult> {
    const downtimeLimitMs = options.downtimeLimitMs ?? DEFAULT_DOWNTIME_LIMIT_MS;
    const maxPasses = options.maxPasses ?? 0;
    const policy = maxPasses > 0 ? "hyperv" : (options.policy ?? "qemu");
    const maxRounds = maxPasses > 0 ? maxPasses : (options.maxRounds ?? null);
    const timeoutMs = options.timeoutMs ?? 60_000;
    const deviceStateBytes = options.deviceStateBytes ?? 64 * 1024;
    const replyTimeoutMs = options.replyTimeoutMs ?? 10_000;
    checkMigration(options, deviceStateBytes);
    this.attempts++;
    const attempt: Attempt = {
      rounds: [],
      started: performance.now(),
      setupMs: 0,
      pagesSent: 0,
      precopyBytes: 0,
      downtimeBytes: 0,
      syncs: 0,
      remainingPages: this.guest.pages,
      downtimeMs: 0,
      totalMs: 0,
      verified: null,
      phase: "setup",
      policy,
    };
    this.current = { attempt, link: undefined };
    const where = `${options.host}:${options.port}`;
    let socket: Socket | undefined;
    let link: Link | undefined;
    const inbox = new Inbox();
    try {
      socket = await openConnection(options, replyTimeoutMs);
      link = new Link(
        socket,
        // One 100 ms window of the rate, as QEMU's limiter: a slow link does not burst.
        options.maxBandwidth ? new TokenBucket(options.maxBandwidth) : undefined,
      );
      this.current.link = link;
      const reader = new FrameReader(
        this.layout.memory,
        this.kernel,
        this.replyStaging,
        (frame) => inbox.take(frame),
        REPLY_MAX_PAYLOAD,
      );
      const activeLink = link;
      socket.on("data", (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (error) {
          inbox.fail(error as Error);
          activeLink.fail(error as Error);
        }
      });
      socket.on("close", () =>
        inbox.fail(new LinkError(link?.down?.message ?? "the connection closed")),
      );
      const writer = new FrameWriter(this.layout.memory, this.kernel, this.sendSlots);
      const sessionId = randomInt(2 ** 32 - 1);
      const hello = writer.payload(32);
      const helloBytes = encodeHello(hello, {
        guestBytes: this.options.guestBytes,
        pageShift: LIVE_PAGE_SHIFT,
        sessionId,
        deviceStateBytes,
        verify: options.verify ?? true,
      });
      await link.send(writer.seal(FrameType.hello, helloBytes));
      const accept = await inbox.next("accept", replyTimeoutMs, "accept the migration");
      if (accept.sessionId !== sessionId) {
        throw new FrameError(
          "payload",
          `the destination accepted session ${accept.sessionId}, not ${sessionId}`,
        );
      }
      attempt.setupMs = performance.now() - attempt.started;

      // Clear the dirty log (two flips: both halves are synced away, one
      // possibly left from a failed attempt): the first pass then sends
      // every page, and the guest's writes from here on are the next sync's.
      this.pending.sync();
      this.pending.moveInto(this.late);
      this.pending.sync();
      this.pending.markAll();
      let round = 1;
      const pendingHistory: number[] = [];
      let previousPagesSent: number | null = null;
      for (;;) {
        attempt.phase = `pre-copy pass ${round}`;
        const start = performance.now();
        const bytesBefore = link.queued;
        const writesBefore = this.runner.writes;
        const sent = await this.sendSnapshot(writer, link, inbox, options.onProgress);
        attempt.pagesSent += sent;
        const dirtied = this.pending.sync();
        attempt.syncs++;
        attempt.remainingPages = dirtied;
        const duration = performance.now() - start;
        // The guest's real write rate, repeats included (the distinct pages
        // it dirtied saturate at the guest's size).
        const writeRate =
          duration > 0 ? ((this.runner.writes - writesBefore) / duration) * 1000 : 0;
        const bandwidth = link.meter.estimate();
        const pending = dirtied * PAGE_BYTES;
        const threshold = (bandwidth * downtimeLimitMs) / 1000;
        const elapsed = performance.now() - attempt.started;
        pendingHistory.push(pending);
        const verdict = decide(policy, {
          round,
          pendingBytes: pending,
          pagesSent: sent,
          bandwidth,
          transferredBytes: link.queued,
          ramBytes: this.options.guestBytes,
          downtimeLimitMs,
          maxRounds,
          pendingHistory,
          previousPagesSent,
          elapsedMs: elapsed,
          maxTimeMs: timeoutMs,
          giveUp: options.giveUp ?? "projection",
          canThrottle: false,
          writeBytesRate: writeRate * PAGE_BYTES,
        });
        previousPagesSent = sent;
        let decision: RoundDecision = verdict.decision;
        let reason = verdict.reason;
        if (decision === "continue" && elapsed >= timeoutMs) {
          decision = "give-up";
          reason = `no convergence within ${timeoutMs} ms: ${Math.round(writeRate)} pages/s dirtied against ${formatBytes(bandwidth)}/s of bandwidth, ${formatBytes(pending)} pending above the ${formatBytes(threshold)} the downtime-limit allows`;
        }
        const bytesSent = link.queued - bytesBefore;
        attempt.precopyBytes += bytesSent;
        this.record(attempt, options, {
          round,
          phase: "precopy",
          start,
          duration,
          pagesSent: sent,
          pagesDirtied: dirtied,
          bytesSent,
          remaining: pending,
          transferred: link.queued,
          bandwidth,
          expectedDowntime: bandwidth > 0 ? (pending / bandwidth) * 1000 : 0,
          decision,
          reason,
        });
        if (decision === "give-up") {
          await this.cancel(link, writer, `migration cancelled by the source: ${reason}`);
          return this.result(attempt, "not-converged", reason, link.queued);
        }
        if (decision === "stop-and-copy") break;
        round++;
      }

      // Stop-and-copy: vCPUs out of guest mode, the rest of memory and the device state.
      attempt.phase = "stop-and-copy";
      const paused = performance.now();
      await this.runner.pause();
      this.pending.syncPaused(this.late);
      attempt.syncs++;
      const bytesBefore = link.queued;
      const finalPages = await this.sendSnapshot(writer, link, inbox, options.onProgress);
      attempt.pagesSent += finalPages;
      const device = writer.payload(deviceStateBytes);
      const deviceBytes = new Uint8Array(device.buffer, device.byteOffset, deviceStateBytes);
      fillDeviceState(deviceBytes, this.options.seed + this.attempts);
      const deviceDigest = this.kernel.hash(writer.staging, writer.payloadStart, deviceStateBytes);
      await link.send(writer.seal(FrameType.deviceState, deviceStateBytes));
      await link.send(writer.seal(FrameType.switchover, 0));
      await inbox.next("resumed", replyTimeoutMs, "resume the guest");
      attempt.downtimeMs = performance.now() - paused;
      attempt.totalMs = performance.now() - attempt.started;
      attempt.remainingPages = 0;
      attempt.downtimeBytes = link.queued - bytesBefore;
      const migrated = link.queued;
      this.record(attempt, options, {
        round: round + 1,
        phase: "stop-and-copy",
        start: paused,
        duration: attempt.downtimeMs,
        pagesSent: finalPages,
        pagesDirtied: 0,
        bytesSent: attempt.downtimeBytes,
        remaining: 0,
        transferred: link.queued,
        bandwidth: link.meter.estimate(),
        expectedDowntime: 0,
        decision: "stop-and-copy",
        reason: `vCPUs paused; ${finalPages} pages and ${formatBytes(deviceStateBytes)} of device state sent; the destination resumed`,
      });

      if (options.verify === false) {
        socket.end();
        return this.result(attempt, "completed", null, migrated);
      }
      // Verification: the destination checks every page against the source's digests.
      attempt.phase = "verification";
      await this.sendDigests(writer, link, deviceDigest);
      const { result } = await inbox.next("result", replyTimeoutMs * 4, "report verification");
      attempt.verified = result.mismatches === 0 && result.deviceStateGood;
      socket.end();
      if (!attempt.verified) {
        this.runner.resume();
        const reason =
          result.mismatches > 0
            ? `verification failed: ${result.mismatches} destination pages differ from the source (first: page ${result.firstMismatch})`
            : "verification failed: the device state differs from the source's";
        return this.result(attempt, "failed", reason, migrated);
      }
      return this.result(attempt, "completed", null, migrated);
    } catch (error) {
      socket?.destroy();
      // The source VM keeps running: a failed migration changes nothing here.
      this.runner.resume();
      return this.result(
        attempt,
        "failed",
        this.explain(error as Error, where, attempt, link),
        link?.queued ?? 0,
      );
    }
  }

  /**
   * Sends every pending page, in pages frames: each frame's page list is
   * harvested from the migration bitmap straight into its staging slot.
   * Returns pages sent.
   */
  private async sendSnapshot(
    writer: FrameWriter,
    link: Link,
    inbox: Inbox,
    onProgress: ((bytes: number) => void) | undefined,
  ): Promise<number> {
    const listStart = writer.payloadStart + 8;
    this.pending.resetCursor(this.cursor);
    let sent = 0;
    for (;;) {
      if (inbox.failed) throw inbox.failed;
      // Pages frames go out of their slot without a copy: wait for the slot to be free.
      await writer.ready();
      const staging = writer.staging;
      const list = new Region({
        name: "frame page list",
        offset: staging.offset + listStart,
        byteLength: MAX_PAGES_PER_FRAME * 4,
      });
      const count = this.pending.next(this.cursor, list);
      if (count === 0) return sent;
      const header = writer.payload(8);
      header.setUint32(0, count, true);
      header.setUint32(4, 0, true);
      this.kernel.gather(this.ram, staging, listStart, count, staging, listStart + count * 4);
      const frame = writer.sealInPlace(FrameType.pages, 8 + count * (4 + PAGE_BYTES));
      await link.send(frame.wire, frame.sent);
      sent += count;
      onProgress?.(link.queued);
    }
  }

  /** Sends the digest of every page, then the end of verification. */
  private async sendDigests(writer: FrameWriter, link: Link, deviceDigest: bigint): Promise<void> {
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

  /** Tells the destination to discard what it has, and closes. */
  private async cancel(link: Link, writer: FrameWriter, reason: string): Promise<void> {
    try {
      await link.send(writer.frame(FrameType.error, encodeError(reason)));
      link.socket.end();
    } catch {
      link.socket.destroy();
    }
  }

  private explain(error: Error, where: string, attempt: Attempt, link: Link | undefined): string {
    const sent = link ? ` after ${formatBytes(link.queued)} sent` : "";
    if (error instanceof FrameError && error.kind === "foreign")
      return `${where}: ${error.message}`;
    if (error instanceof FrameError && error.kind === "version")
      return `${where}: ${error.message}`;
    if (attempt.phase === "setup" && error instanceof LinkError) {
      return `cannot migrate to ${where}: ${error.message}`;
    }
    if (error instanceof LinkError) {
      return `the connection to ${where} dropped during ${attempt.phase}${sent}: ${error.message}`;
    }
    if (error instanceof PeerError) return `${error.message} (during ${attempt.phase}${sent})`;
    return `${attempt.phase}${sent}: ${error.message}`;
  }

  private record(
    attempt: Attempt,
    options: LiveMigrationOptions,
    r: {
      round: number;
      phase: MigrationPhase;
      start: number;
      duration: number;
      pagesSent: number;
      pagesDirtied: number;
      bytesSent: number;
      remaining: number;
      transferred: number;
      bandwidth: number;
      expectedDowntime: number;
      decision: RoundDecision;
      reason: string;
    },
  ): void {
    const seconds = r.duration / 1000;
    const round: MigrationRound = {
      round: r.round,
      phase: r.phase,
      "start-ms": r.start - attempt.started,
      "duration-ms": r.duration,
      "pages-sent": r.pagesSent,
      "pages-dirtied": r.pagesDirtied,
      "bytes-sent": r.bytesSent,
      remaining: r.remaining,
      transferred: r.transferred,
      "dirty-pages-rate": seconds > 0 ? r.pagesDirtied / seconds : 0,
      mbps: seconds > 0 ? (r.bytesSent * 8) / seconds / 1e6 : 0,
      "bandwidth-estimate": r.bandwidth,
      "expected-downtime": r.expectedDowntime,
      "cpu-throttle-percentage": 0,
      decision: r.decision,
      reason: r.reason,
    };
    attempt.rounds.push(round);
    options.onRound?.(round);
  }

  private result(
    attempt: Attempt,
    status: MigrationStatus,
    reason: string | null,
    transferred: number,
  ): MigrationResult {
    const totalMs = attempt.totalMs || performance.now() - attempt.started;
    const last = attempt.rounds.filter((r) => r.phase === "precopy").at(-1);
    const summary: MigrationSummary = {
      status,
      reason,
      mode: "live-tcp",
      policy: attempt.policy,
      transferred,
      remaining: status === "completed" ? 0 : attempt.remainingPages * PAGE_BYTES,
      total: this.options.guestBytes,
      duplicate: 0,
      normal: attempt.pagesSent,
      "normal-bytes": attempt.pagesSent * PAGE_BYTES,
      "dirty-pages-rate": last?.["dirty-pages-rate"] ?? 0,
      mbps: totalMs > 0 ? (transferred * 8) / (totalMs / 1000) / 1e6 : 0,
      "pages-per-second": totalMs > 0 ? attempt.pagesSent / (totalMs / 1000) : 0,
      "dirty-sync-count": attempt.syncs,
      "precopy-bytes": attempt.precopyBytes,
      "downtime-bytes": attempt.downtimeBytes,
      "postcopy-bytes": 0,
      "expected-downtime": last?.["expected-downtime"] ?? 0,
      downtime: attempt.downtimeMs,
      "setup-time": attempt.setupMs,
      "total-time": totalMs,
      "cpu-throttle-percentage": 0,
      "xbzrle-cache": null,
      "postcopy-remote-faults": 0,
      "postcopy-fault-wait-ms": 0,
      rounds: attempt.rounds.length,
      verified: attempt.verified,
    };
    return { rounds: attempt.rounds, summary };
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
