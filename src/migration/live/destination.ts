import { createServer, type Server, type Socket } from "node:net";
import { MemoryLayout } from "../../memory/layout.js";
import { Region } from "../../memory/region.js";
import { checkExposure, secureIncoming, type TransportSecurity } from "../../transport/secure.js";
import { formatBytes } from "../../util/units.js";
import { PAGE_SCRATCH_BYTES, PageKernel, PageStreamError } from "../../wasm/page.js";
import { DIGEST_BYTES, type PagedRam, StreamKernel } from "../../wasm/stream.js";
import { LiveConfigError } from "./errors.js";
import { FrameError, FrameType, frameTypeName } from "./frame.js";
import { FrameReader, FrameWriter, type ReceivedFrame, stagingBytes } from "./frame-codec.js";
import { describeSocketError } from "./link.js";
import {
  checkRecordsPayload,
  decodeChannelHello,
  decodeDiscard,
  decodeEpoch,
  decodeError,
  decodeHello,
  decodePagesHeader,
  decodePostcopyEnd,
  decodePostcopyResume,
  decodePostcopyRun,
  decodeRecoverHello,
  decodeVerifyEnd,
  decodeVerifyHeader,
  encodeAccept,
  encodeEpoch,
  encodeError,
  encodePageRequest,
  encodePostcopyDone,
  encodeRecvBitmap,
  encodeResult,
  encodeResumeAck,
  type Hello,
  MAX_DIGESTS_PER_FRAME,
  MAX_RECORDS_PAYLOAD,
  MAX_RECV_BITMAP_PAGES,
  postcopyDoneBytes,
  recvBitmapBytes,
} from "./messages.js";
import { PostcopyGuest } from "./postcopy-guest.js";
import { MAX_RECOVER_WAIT_MS } from "./postcopy-recovery.js";
import { LIVE_PAGE_SHIFT, MAX_LIVE_GUEST_BYTES } from "./source.js";

/** How a destination listens. */
export interface DestinationOptions {
  /** Address to listen on (default 127.0.0.1: loopback). */
  readonly host?: string;
  /** Port (0: an ephemeral port the system picks). */
  readonly port: number;
  /** Largest guest accepted (default 2 GiB). */
  readonly maxGuestBytes?: number;
  /** Completed migrations after which the server closes (default 1; 0: serve until closed). */
  readonly sessions?: number;
  /** Called as each session ends. */
  readonly onSession?: (report: DestinationReport) => void;
  /** TLS and authorisation of incoming connections (default: plain TCP, loopback only). */
  readonly security?: TransportSecurity;
  /**
   * Milliseconds a new connection has to send its hello (default 5 s): a peer
   * that connects and says nothing must not hold the one migration slot.
   */
  readonly handshakeTimeoutMs?: number;
  /**
   * Milliseconds a session may go without receiving a byte once it has said
   * hello (default 10 s): a source that stops (SIGSTOP, a dead link) is
   * discarded like any failed session and the slot frees.
   */
  readonly idleTimeoutMs?: number;
  /**
   * QEMU's postcopy recovery: a connection lost during post-copy pauses the
   * session instead of failing it; the guest keeps running here (a vCPU
   * that faults on a missing page stays blocked) and the source may
   * reconnect and resume within this many ms (default 0: a break fails the
   * session and loses the guest). The listener stays open meanwhile: it is
   * where QEMU's migrate-recover would listen again.
   */
  readonly postcopyRecoverMs?: number;
}

/** Default of {@link DestinationOptions.handshakeTimeoutMs}. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Default of {@link DestinationOptions.idleTimeoutMs}. */
export const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
/** Longest handshake or idle timeout accepted: one hour. */
export const MAX_TIMEOUT_MS = 3_600_000;
/**
 * TCP keepalive probe delay: the kernel then notices a peer whose host went
 * away even while this side has nothing to send.
 */
const KEEPALIVE_DELAY_MS = 1_000;

/** What a destination reports for one incoming migration. */
export interface DestinationReport {
  /** 1 for the first connection. */
  readonly session: number;
  readonly peer: string;
  readonly status: "completed" | "failed";
  readonly reason: string | null;
  readonly guestBytes: number;
  readonly pagesReceived: number;
  readonly payloadBytes: number;
  readonly frames: number;
  /** Every page matched the source's digest, and the device state too (null: not reached). */
  readonly verified: boolean | null;
  readonly mismatches: number;
  readonly durationMs: number;
  /** Whether a partial copy was discarded (wiped) because the session failed. */
  readonly discarded: boolean;
  /** multifd channels that joined the session (0: pages came on the main connection). */
  readonly channels: number;
  /** multifd syncs every channel reached (one per pass). */
  readonly syncs: number;
  /** Post-copy, when the guest switched to it: the page requests sent and the writes its vCPUs did here. */
  readonly postcopy?: {
    readonly requests: number;
    readonly writes: number;
    readonly dropped: number;
  };
  /** Post-copy recovery, when the session paused at least once. */
  readonly recovery?: {
    readonly pauses: number;
    readonly pausedMs: number;
    /** Pages missing here at each resume: what the source had left to send. */
    readonly missingAtResume: readonly number[];
    /** Pages requested again at the resumes (vCPUs still waited on them). */
    readonly rerequested: number;
  };
}

/** Guest RAM the destination receives one migration into, wiped on discard. */
interface Landing {
  readonly ram: PagedRam;
  dirty: boolean;
}

/** Name of the one region every incoming guest lands in. */
const LANDING_REGION = "destination-ram";

/**
 * Ends a connection with a last frame, and drops it soon after whether or not
 * the peer hangs up: a stopped or silent peer never sends its FIN.
 */
function sayAndDrop(socket: Socket, frame: Uint8Array): void {
  socket.end(frame);
  setTimeout(() => socket.destroy(), KEEPALIVE_DELAY_MS).unref();
}

/**
 * The destination of live migrations: listens on a TCP port, receives one
 * migration at a time into its own memory, checks every frame before a byte
 * of it lands, verifies every page against the source's digests, and
 * discards (wipes) the partial copy of any session that fails, so that a
 * retry starts clean.
 */
export class DestinationServer {
  readonly reports: DestinationReport[] = [];
  private readonly layout = new MemoryLayout();
  private readonly kernel: StreamKernel;
  private readonly receiveStaging: Region;
  private readonly replyStaging: Region;
  private readonly digests: Region;
  /** One page digest for the post-copy guest's bookkeeping. */
  private readonly postcopyDigest: Region;
  /** The landing region, as large as the largest guest received so far. */
  private landingRegion: Region | undefined;
  /** Whether the landing region holds bytes of an earlier migration. */
  private landingDirty = false;
  private readonly pageKernel: PageKernel;
  /** Receive staging of multifd channels, one per connection, reused across sessions. */
  private readonly channelStaging: Region[] = [];
  private readonly channelStagingFree: Region[] = [];
  /** Reply staging of a recovery connection: large enough for the received-page bitmap. */
  private recoveryStaging: Region | undefined;
  /** The active session, paused by a broken link in post-copy: a new connection may resume it. */
  private resumable: ((socket: Socket) => void) | undefined;
  /** Fails the paused session at once (the server closes): its wait ends with it. */
  private abandon: (() => void) | undefined;
  /** The active session, while it waits for multifd channels to join. */
  private joinable: ((socket: Socket, staging: Region) => void) | undefined;
  private active: Socket | undefined;
  /** Pages the session holding the slot has received so far. */
  private activePages: () => number = () => 0;
  /** Every open connection, so that closing drops peers that never hang up. */
  private readonly sockets = new Set<Socket>();
  private sessionCount = 0;
  private completed = 0;
  private finished: Promise<DestinationReport>;
  private finish!: (report: DestinationReport) => void;

  private constructor(
    private readonly server: Server,
    private readonly options: DestinationOptions,
  ) {
    this.receiveStaging = this.layout.allocate("destination-receive-staging", stagingBytes(), 4096);
    this.replyStaging = this.layout.allocate("destination-reply-staging", stagingBytes(1024));
    this.digests = this.layout.allocate(
      "destination-digests",
      MAX_DIGESTS_PER_FRAME * DIGEST_BYTES,
    );
    this.postcopyDigest = this.layout.allocate("destination-postcopy-digest", 8);
    this.kernel = StreamKernel.on(
      this.layout.memory,
      this.layout.allocate("destination-scratch", 64),
    );
    this.pageKernel = PageKernel.on(
      this.layout.memory,
      this.layout.allocate("destination-page-scratch", PAGE_SCRATCH_BYTES),
    );
    this.finished = new Promise((resolve) => {
      this.finish = resolve;
    });
    const security = options.security ?? { kind: "plain", insecure: false };
    const incoming = secureIncoming(
      security,
      {
        accepted: ({ socket }) => this.accept(socket),
        refused: (reason, peer, reply) => this.refuse(reason, peer, reply),
      },
      options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    );
    server.on("connection", incoming);
  }

  /**
   * Starts listening.
   *
   * @throws LiveConfigError with one line when the port is in use or the address is bad.
   */
  static async listen(options: DestinationOptions): Promise<DestinationServer> {
    const host = options.host ?? "127.0.0.1";
    const maxGuest = options.maxGuestBytes ?? MAX_LIVE_GUEST_BYTES;
    if (!Number.isSafeInteger(options.port) || options.port < 0 || options.port > 65_535) {
      throw new LiveConfigError(`port must be from 0 to 65535, not ${options.port}`);
    }
    if (
      !Number.isSafeInteger(maxGuest) ||
      maxGuest < 1024 ** 2 ||
      maxGuest > MAX_LIVE_GUEST_BYTES
    ) {
      throw new LiveConfigError(
        `largest guest must be from 1 MiB to ${formatBytes(MAX_LIVE_GUEST_BYTES)}`,
      );
    }
    checkExposure(host, options.security ?? { kind: "plain", insecure: false });
    for (const [name, value] of [
      ["handshake timeout", options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS],
      ["idle timeout", options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < 1 || value > MAX_TIMEOUT_MS) {
        throw new LiveConfigError(
          `${name} must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}, not ${value}`,
        );
      }
    }
    const recoverMs = options.postcopyRecoverMs ?? 0;
    if (!Number.isSafeInteger(recoverMs) || recoverMs < 0 || recoverMs > MAX_RECOVER_WAIT_MS) {
      throw new LiveConfigError(
        `post-copy recovery wait must be a whole number of ms from 0 to ${MAX_RECOVER_WAIT_MS}, not ${recoverMs}`,
      );
    }
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error: NodeJS.ErrnoException) => {
        reject(
          new LiveConfigError(
            error.code === "EADDRINUSE"
              ? `port ${options.port} on ${host} is in use`
              : `cannot listen on ${host}:${options.port}: ${describeSocketError(error)}`,
          ),
        );
      });
      server.listen(options.port, host, () => {
        server.removeAllListeners("error");
        resolve();
      });
    });
    return new DestinationServer(server, { ...options, host, maxGuestBytes: maxGuest });
  }

  /** The address and port listened on. */
  get address(): { host: string; port: number } {
    const address = this.server.address();
    if (!address || typeof address === "string") throw new Error("the server is not listening");
    return { host: address.address, port: address.port };
  }

  /** Whether a migration holds the one slot right now. */
  get receiving(): boolean {
    return this.active !== undefined;
  }

  /** Pages received so far by the migration holding the slot (0 when none does). */
  get pagesReceiving(): number {
    return this.active === undefined ? 0 : this.activePages();
  }

  /** Resolves with the report of the session that completes the last wanted migration. */
  done(): Promise<DestinationReport> {
    return this.finished;
  }

  /** Stops listening and drops any session in progress. */
  async close(): Promise<void> {
    this.abandon?.();
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /**
   * The landing memory for a guest of `guestBytes`: one region, laid out last
   * and grown in place to the largest guest seen, of which each migration
   * uses the front. A destination that receives migrations of mixed sizes
   * thus holds only its largest guest, never one region per size.
   */
  private landing(guestBytes: number): Landing {
    let region = this.landingRegion;
    if (!region) region = this.layout.allocate(LANDING_REGION, guestBytes, 4096);
    else if (region.byteLength < guestBytes)
      region = this.layout.extendLast(LANDING_REGION, guestBytes);
    this.landingRegion = region;
    const view = new Region({
      name: LANDING_REGION,
      offset: region.offset,
      byteLength: guestBytes,
    });
    if (this.landingDirty) {
      // An earlier guest's bytes must not show through pages this one never sends.
      region.bytes(this.layout.memory).fill(0);
      this.landingDirty = false;
    }
    return { ram: { region: view, pageShift: LIVE_PAGE_SHIFT }, dirty: false };
  }

  /** Bytes of shared memory this destination holds. */
  get memoryBytes(): number {
    return this.layout.memory.buffer.byteLength;
  }

  /** A connection TLS or --tls-authz turned away: reported as a failed session; no slot was taken. */
  private refuse(reason: string, peer: string, reply: Socket | undefined): void {
    const report: DestinationReport = {
      session: ++this.sessionCount,
      peer,
      status: "failed",
      reason: `refused: ${reason}`,
      guestBytes: 0,
      pagesReceived: 0,
      payloadBytes: 0,
      frames: 0,
      verified: null,
      mismatches: 0,
      durationMs: 0,
      discarded: false,
      channels: 0,
      syncs: 0,
    };
    if (reply?.writable) {
      const writer = new FrameWriter(this.layout.memory, this.kernel, this.replyStaging, 1024);
      // Said, then gone: a refused peer holds no connection open.
      reply.end(writer.frame(FrameType.error, encodeError(`refused: ${reason}`)), () =>
        reply.destroy(),
      );
    } else {
      reply?.destroy();
    }
    this.reports.push(report);
    this.options.onSession?.(report);
  }

  /** A receive staging region for a multifd channel (allocated once, reused after the channel closes). */
  private takeChannelStaging(): Region {
    const free = this.channelStagingFree.pop();
    if (free) return free;
    const region = this.layout.allocate(
      `destination-channel-staging-${this.channelStaging.length}`,
      stagingBytes(MAX_RECORDS_PAYLOAD),
      4096,
    );
    this.channelStaging.push(region);
    return region;
  }

  /** A reply writer for a recovery connection, on its own staging (a bitmap is up to 64 KiB). */
  private recoveryWriter(): FrameWriter {
    const max = recvBitmapBytes(MAX_RECV_BITMAP_PAGES);
    this.recoveryStaging ??= this.layout.allocate(
      "destination-recovery-staging",
      stagingBytes(max),
    );
    return new FrameWriter(this.layout.memory, this.kernel, this.recoveryStaging, max);
  }

  private accept(incoming: Socket): void {
    this.sockets.add(incoming);
    incoming.once("close", () => this.sockets.delete(incoming));
    incoming.setNoDelay(true);
    incoming.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    if (this.resumable) {
      // A post-copy session is paused here: this may be its source, back.
      this.resumable(incoming);
      return;
    }
    /** The session's connection: a post-copy recovery replaces it. */
    let socket = incoming;
    const session = ++this.sessionCount;
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let writer = new FrameWriter(this.layout.memory, this.kernel, this.replyStaging, 1024);
    if (this.active && this.joinable) {
      // The active session waits for its multifd channels: this may be one.
      this.joinable(socket, this.takeChannelStaging());
      return;
    }
    if (this.active) {
      // One migration at a time: the landing memory belongs to the active one.
      sayAndDrop(
        socket,
        writer.frame(
          FrameType.error,
          encodeError("the destination is receiving another migration"),
        ),
      );
      return;
    }
    this.active = socket;
    const started = performance.now();
    const handshakeMs = this.options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const idleMs = this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    // Until the hello the whole handshake has one deadline (a peer dribbling
    // a byte a second does not extend it); after it, silence is what counts.
    const handshake = setTimeout(() => {
      if (!state.hello) timedOut(`no hello within ${handshakeMs} ms of connecting`);
    }, handshakeMs);
    const idle = () => {
      if (state.hello) {
        timedOut(`nothing received for ${idleMs} ms after ${state.pages} pages`);
      }
    };
    socket.setTimeout(idleMs, idle);
    const state = {
      hello: undefined as Hello | undefined,
      landing: undefined as Landing | undefined,
      pages: 0,
      switchedOver: false,
      deviceDigest: undefined as bigint | undefined,
      deviceBytes: 0,
      nextVerifyPage: 0,
      mismatches: 0,
      firstMismatch: null as number | null,
      over: false,
      /** The multifd channels joined, by index, and the last sync epoch each reached. */
      channels: [] as ({ socket: Socket; epoch: number } | undefined)[],
      synced: 0,
      /** Pages the source listed as stale or unsent before a post-copy switch. */
      discards: [] as Uint32Array[],
      /** The guest running here since a post-copy switch. */
      postcopy: undefined as PostcopyGuest | undefined,
      /** Post-copy is over: every page arrived and the vCPUs were stopped for verification. */
      postcopyEnded: false,
      /** Post-copy paused on a broken link: since when, why, and the bounded wait's timer. */
      paused: undefined as
        | { since: number; cause: string; timer: ReturnType<typeof setTimeout> }
        | undefined,
      /** A recovery connection's handshake: its recover-hello is due, or its postcopy-resume. */
      resuming: undefined as "hello" | "resume" | undefined,
      recovery: { pauses: 0, pausedMs: 0, missingAtResume: [] as number[], rerequested: 0 },
      /** Payload bytes and frames of the connections before the current one. */
      readBefore: { bytes: 0, frames: 0 },
    };
    this.activePages = () => state.pages;
    const newReader = () =>
      new FrameReader(this.layout.memory, this.kernel, this.receiveStaging, (frame) =>
        handle(frame),
      );
    let reader = newReader();
    const recoverMs = this.options.postcopyRecoverMs ?? 0;

    const end = (
      status: "completed" | "failed",
      reason: string | null,
      verified: boolean | null,
    ) => {
      if (state.over) return;
      state.over = true;
      clearTimeout(handshake);
      if (state.paused) clearTimeout(state.paused.timer);
      if (this.active === socket) {
        this.resumable = undefined;
        this.abandon = undefined;
      }
      socket.setTimeout(0);
      if (this.active === socket) this.joinable = undefined;
      for (const channel of state.channels) channel?.socket.destroy();
      const guest = state.postcopy;
      // The vCPUs stop before the landing memory is wiped: none writes after.
      if (guest) void guest.stop();
      let discarded = false;
      if (status === "failed" && state.landing?.dirty) {
        // Discard the partial copy: nothing of a failed migration survives.
        state.landing.ram.region.bytes(this.layout.memory).fill(0);
        state.landing.dirty = false;
        this.landingDirty = false;
        discarded = true;
      }
      if (this.active === socket) this.active = undefined;
      const report: DestinationReport = {
        session,
        peer,
        status,
        reason,
        guestBytes: state.hello?.guestBytes ?? 0,
        pagesReceived: state.pages,
        payloadBytes: state.readBefore.bytes + reader.bytes,
        frames: state.readBefore.frames + reader.frames,
        verified,
        mismatches: state.mismatches,
        durationMs: performance.now() - started,
        discarded,
        channels: state.channels.filter(Boolean).length,
        syncs: state.synced,
        ...(guest
          ? {
              postcopy: {
                requests: guest.requestsSent,
                writes: guest.writes,
                dropped: guest.dropped,
              },
            }
          : {}),
        ...(state.recovery.pauses > 0
          ? {
              recovery: {
                ...state.recovery,
                missingAtResume: [...state.recovery.missingAtResume],
                pausedMs:
                  state.recovery.pausedMs +
                  (state.paused ? performance.now() - state.paused.since : 0),
              },
            }
          : {}),
      };
      this.reports.push(report);
      this.options.onSession?.(report);
      if (status === "completed") {
        this.completed++;
        const wanted = this.options.sessions ?? 1;
        if (wanted > 0 && this.completed >= wanted) {
          this.server.close();
          this.finish(report);
        }
      }
    };

    const fail = (cause: string, tell: boolean) => {
      if (state.over) return;
      const reason = lost(cause);
      if (tell && socket.writable) socket.end(writer.frame(FrameType.error, encodeError(reason)));
      else socket.destroy();
      end("failed", reason, null);
    };

    // A silent peer may never read nor close: say why, then drop the socket
    // once the reason is flushed instead of waiting for the peer's FIN.
    const timedOut = (cause: string) => {
      if (state.over) return;
      if (pausable()) {
        pause(cause);
        return;
      }
      const reason = lost(cause);
      if (socket.writable) {
        sayAndDrop(socket, writer.frame(FrameType.error, encodeError(reason)));
      } else socket.destroy();
      end("failed", reason, null);
    };

    /**
     * A session that fails during post-copy loses the guest: it ran here
     * since the switch, and the pages still on the source are gone with
     * the connection (QEMU's known risk of post-copy).
     */
    const lost = (cause: string): string => {
      const guest = state.postcopy;
      if (!guest || state.postcopyEnded) return cause;
      return `${cause}; post-copy broke with ${guest.missing} pages still on the source: the guest ran here since the switch and is lost (the source holds its paused copy as of the switch)`;
    };

    /** Starts the guest here: the source switched to post-copy. */
    const runPostcopy = (frame: ReceivedFrame, hello: Hello, landing: Landing) => {
      const run = decodePostcopyRun(frame.payload);
      const guest = new PostcopyGuest(
        {
          memory: this.layout.memory,
          ram: landing.ram,
          kernel: this.kernel,
          digest: this.postcopyDigest,
          request: (page) => {
            // While paused the request waits: the resume sends it again.
            if (state.over || state.paused || !socket.writable) return;
            socket.write(
              writer.seal(FrameType.pageRequest, encodePageRequest(writer.payload(8), page, 1)),
            );
          },
          failed: (error) => fail(`the guest's vCPU failed: ${error.message}`, true),
        },
        hello.guestBytes / 2 ** LIVE_PAGE_SHIFT,
        run,
      );
      for (const pages of state.discards) guest.discard(pages);
      state.discards.length = 0;
      state.postcopy = guest;
      landing.dirty = true;
      this.landingDirty = true;
      guest.start();
    };

    /** Lands a pages frame during post-copy: each page only where the guest has none yet. */
    const landPostcopy = (frame: ReceivedFrame, guest: PostcopyGuest) => {
      if (frame.type !== FrameType.pages) {
        throw new FrameError("type", `${frameTypeName(frame.type)} frame during post-copy`);
      }
      const pageBytes = 2 ** LIVE_PAGE_SHIFT;
      const count = decodePagesHeader(frame.payload, pageBytes);
      const at = frame.staging.offset + frame.payloadStart;
      const list = new DataView(this.layout.memory.buffer, at + 8, count * 4);
      for (let i = 0; i < count; i++) {
        const page = list.getUint32(i * 4, true);
        if (page >= guest.pages) {
          throw new FrameError(
            "payload",
            `pages frame ${frame.sequence}: page ${page} is outside the guest's ${guest.pages} pages`,
          );
        }
        if (guest.land(page, at + 8 + count * 4 + i * pageBytes)) state.pages++;
      }
    };

    /** The source sent every page: stop the vCPUs (to verify a still image) and report what post-copy measured. */
    const endPostcopy = (frame: ReceivedFrame, hello: Hello, guest: PostcopyGuest) => {
      decodePostcopyEnd(frame.payload);
      if (guest.missing > 0) {
        throw new FrameError(
          "payload",
          `the source ended post-copy with ${guest.missing} pages never sent`,
        );
      }
      state.postcopyEnded = true;
      void guest.stop().then((done) => {
        if (state.over) return;
        const bytes = postcopyDoneBytes(done.vcpuBlocktime.length);
        const frame = writer.seal(
          FrameType.postcopyDone,
          encodePostcopyDone(writer.payload(bytes), done),
        );
        if (!hello.verify) {
          socket.end(frame);
          end("completed", null, null);
          return;
        }
        socket.write(frame);
      });
    };

    const handle = (frame: ReceivedFrame) => {
      const hello = state.hello;
      if (!hello) {
        if (frame.type === FrameType.recoverHello) {
          throw new FrameError(
            "type",
            "no post-copy migration is paused here to resume (this destination never had it, gave up waiting, or restarted)",
          );
        }
        if (frame.type !== FrameType.hello) {
          throw new FrameError(
            "type",
            `the first frame must be hello, not ${frameTypeName(frame.type)}`,
          );
        }
        const h = decodeHello(frame.payload);
        const limit = this.options.maxGuestBytes ?? MAX_LIVE_GUEST_BYTES;
        if (h.guestBytes > limit) {
          throw new FrameError(
            "payload",
            `a guest of ${formatBytes(h.guestBytes)} is over this destination's limit of ${formatBytes(limit)}`,
          );
        }
        state.hello = h;
        state.landing = this.landing(h.guestBytes);
        if (h.channels > 0) this.joinable = (channel, staging) => join(channel, staging);
        socket.write(writer.seal(FrameType.accept, encodeAccept(writer.payload(8), h.sessionId)));
        return;
      }
      const landing = state.landing as Landing;
      const pageBytes = 2 ** LIVE_PAGE_SHIFT;
      const guest = state.postcopy;
      if (state.resuming && guest) {
        recoveryFrame(frame, hello, guest);
        return;
      }
      switch (frame.type) {
        case FrameType.pages:
        case FrameType.records:
          if (guest && !state.postcopyEnded) landPostcopy(frame, guest);
          else land(frame);
          return;
        case FrameType.discard:
          if (state.switchedOver) throw new FrameError("type", "discard frame after the switch");
          state.discards.push(decodeDiscard(frame.payload, hello.guestBytes / pageBytes));
          return;
        case FrameType.postcopyEnd:
          if (!guest || state.postcopyEnded) {
            throw new FrameError("type", "postcopy-end frame outside post-copy");
          }
          endPostcopy(frame, hello, guest);
          return;
        case FrameType.deviceState:
          if (frame.length !== hello.deviceStateBytes) {
            throw new FrameError(
              "payload",
              `device state of ${frame.length} bytes, the hello announced ${hello.deviceStateBytes}`,
            );
          }
          state.deviceBytes = frame.length;
          state.deviceDigest = this.kernel.hash(frame.staging, frame.payloadStart, frame.length);
          return;
        case FrameType.switchover:
        case FrameType.postcopyRun:
          if (state.switchedOver) {
            throw new FrameError("type", `${frameTypeName(frame.type)} frame after the switch`);
          }
          if (
            state.deviceDigest === undefined ||
            (frame.type === FrameType.switchover && frame.length !== 0)
          ) {
            throw new FrameError(
              "payload",
              `${frameTypeName(frame.type)} before the device state, or with a payload`,
            );
          }
          if (
            hello.channels > 0 &&
            !Array.from({ length: hello.channels }, (_, i) => state.channels[i]).every(
              (c) => c !== undefined && c.epoch === state.synced,
            )
          ) {
            throw new FrameError(
              "type",
              `switchover before every multifd channel synced its last pass (${state.channels.filter(Boolean).length} of ${hello.channels} joined, sync ${state.synced})`,
            );
          }
          state.switchedOver = true;
          if (frame.type === FrameType.postcopyRun) {
            runPostcopy(frame, hello, landing);
            socket.write(writer.seal(FrameType.resumed, 0));
            return;
          }
          if (!hello.verify) {
            // Nothing left to receive: the guest is whole and resumed here.
            socket.end(writer.seal(FrameType.resumed, 0));
            end("completed", null, null);
            return;
          }
          socket.write(writer.seal(FrameType.resumed, 0));
          return;
        case FrameType.verify: {
          if (!state.switchedOver) throw new FrameError("type", "verify frame before switchover");
          if (guest && !state.postcopyEnded) {
            throw new FrameError("type", "verify frame before post-copy ended");
          }
          const { first, count } = decodeVerifyHeader(frame.payload);
          const pages = hello.guestBytes / pageBytes;
          if (first !== state.nextVerifyPage || first + count > pages) {
            throw new FrameError(
              "payload",
              `verify frame for pages ${first} to ${first + count - 1}, expected from page ${state.nextVerifyPage} of ${pages}`,
            );
          }
          this.kernel.hashPages(landing.ram, first, count, this.digests);
          const ours = new BigUint64Array(this.layout.memory.buffer, this.digests.offset, count);
          const theirs = new DataView(
            this.layout.memory.buffer,
            frame.staging.offset + frame.payloadStart + 8,
            count * 8,
          );
          for (let i = 0; i < count; i++) {
            const page = first + i;
            const source = theirs.getBigUint64(i * 8, true);
            // A page the guest wrote here after the switch: it began from the
            // source's final copy, and nothing landed on it after its last write.
            const good =
              guest?.wrote(page) === true
                ? guest.touched[page] === source && ours[i] === guest.written[page]
                : ours[i] === source;
            if (!good) {
              state.mismatches++;
              state.firstMismatch ??= first + i;
            }
          }
          state.nextVerifyPage = first + count;
          return;
        }
        case FrameType.verifyEnd: {
          const { pages, deviceDigest } = decodeVerifyEnd(frame.payload);
          const guestPages = hello.guestBytes / pageBytes;
          if (pages !== guestPages || state.nextVerifyPage !== guestPages) {
            throw new FrameError(
              "payload",
              `verification covered ${state.nextVerifyPage} of ${guestPages} pages`,
            );
          }
          const deviceGood = deviceDigest === state.deviceDigest;
          socket.end(
            writer.seal(
              FrameType.result,
              encodeResult(writer.payload(16), {
                mismatches: state.mismatches,
                firstMismatch: state.firstMismatch,
                pagesReceived: state.pages,
                deviceStateGood: deviceGood,
              }),
            ),
          );
          const verified = state.mismatches === 0 && deviceGood;
          if (verified) {
            end("completed", null, true);
          } else {
            end(
              "failed",
              `verification failed: ${state.mismatches} pages differ from the source${deviceGood ? "" : ", and the device state differs"}`,
              false,
            );
          }
          return;
        }
        case FrameType.error:
          throw new FrameError(
            "payload",
            `the source stopped the migration: ${decodeError(frame.payload)}`,
          );
        default:
          throw new FrameError(
            "type",
            `a source does not send ${frameTypeName(frame.type)} frames`,
          );
      }
    };

    /** Lands a pages or records frame (from the main connection or a channel) in guest RAM. */
    const land = (frame: ReceivedFrame) => {
      const landing = state.landing as Landing;
      const name = frameTypeName(frame.type);
      if (state.switchedOver) throw new FrameError("type", `${name} frame after switchover`);
      landing.dirty = true;
      this.landingDirty = true;
      if (frame.type === FrameType.pages) {
        const count = decodePagesHeader(frame.payload, 2 ** LIVE_PAGE_SHIFT);
        const listStart = frame.payloadStart + 8;
        this.kernel.scatter(
          frame.staging,
          listStart + count * 4,
          frame.staging,
          listStart,
          count,
          landing.ram,
        );
        state.pages += count;
        return;
      }
      checkRecordsPayload(frame.payload);
      const records = new Region({
        name: `records frame ${frame.sequence}`,
        offset: frame.staging.offset + frame.payloadStart,
        byteLength: frame.length,
      });
      try {
        state.pages += this.pageKernel.decodePages(
          records,
          frame.length,
          landing.ram.region,
          LIVE_PAGE_SHIFT,
        );
      } catch (error) {
        if (error instanceof PageStreamError) {
          throw new FrameError("payload", `records frame ${frame.sequence}: ${error.message}`);
        }
        throw error;
      }
    };

    /**
     * A connection that may be one of this session's multifd channels: its
     * first frame must say so. It then carries pages, records and syncs; when
     * every channel has reached a pass's sync, the main connection says
     * synced (QEMU's multifd_recv_sync_main).
     */
    const join = (channel: Socket, staging: Region) => {
      this.sockets.add(channel);
      channel.setNoDelay(true);
      channel.setKeepAlive(true, KEEPALIVE_DELAY_MS);
      let index = -1;
      const hello = state.hello as Hello;
      const joinTimer = setTimeout(
        () => drop(`multifd channel sent no channel-hello within ${handshakeMs} ms`),
        handshakeMs,
      );
      const drop = (reason: string) => {
        clearTimeout(joinTimer);
        channel.destroy();
        if (index >= 0) fail(`multifd channel ${index}: ${reason}`, true);
      };
      const channelReader = new FrameReader(
        this.layout.memory,
        this.kernel,
        staging,
        (frame) => {
          if (index < 0) {
            if (frame.type === FrameType.hello) {
              throw new FrameError("payload", "the destination is receiving another migration");
            }
            if (frame.type !== FrameType.channelHello) {
              throw new FrameError(
                "type",
                `the first frame of a multifd channel must be channelHello, not ${frameTypeName(frame.type)}`,
              );
            }
            const joined = decodeChannelHello(frame.payload);
            if (joined.sessionId !== hello.sessionId || joined.channels !== hello.channels) {
              throw new FrameError("payload", "the destination is receiving another migration");
            }
            if (state.channels[joined.index]) {
              throw new FrameError("payload", `multifd channel ${joined.index} joined twice`);
            }
            clearTimeout(joinTimer);
            index = joined.index;
            state.channels[index] = { socket: channel, epoch: state.synced };
            // Every channel is in: later connections are other sources, turned away at once.
            if (state.channels.filter(Boolean).length === hello.channels) this.joinable = undefined;
            return;
          }
          const mine = state.channels[index] as { socket: Socket; epoch: number };
          switch (frame.type) {
            case FrameType.pages:
            case FrameType.records:
              land(frame);
              return;
            case FrameType.sync: {
              const epoch = decodeEpoch(frame.payload, "sync");
              if (epoch !== mine.epoch + 1) {
                throw new FrameError(
                  "payload",
                  `sync ${epoch} where sync ${mine.epoch + 1} was due`,
                );
              }
              mine.epoch = epoch;
              const joined = state.channels.filter(Boolean);
              if (
                joined.length === hello.channels &&
                joined.every((c) => (c?.epoch ?? 0) >= epoch) &&
                state.synced < epoch
              ) {
                state.synced = epoch;
                socket.write(writer.seal(FrameType.synced, encodeEpoch(writer.payload(8), epoch)));
              }
              return;
            }
            default:
              throw new FrameError(
                "type",
                `a multifd channel does not carry ${frameTypeName(frame.type)} frames`,
              );
          }
        },
        MAX_RECORDS_PAYLOAD,
      );
      channel.on("data", (chunk: Buffer) => {
        if (state.over) return;
        // Pages on a channel are the session's traffic: the main connection is not idle.
        socket.setTimeout(idleMs);
        try {
          channelReader.push(chunk);
        } catch (error) {
          const e = error as FrameError;
          if (index < 0) {
            clearTimeout(joinTimer);
            // Told on the refused connection's own stream, from its frame 0:
            // the session's writer numbers the main connection's frames, and
            // a frame it spent here would be a gap the source refuses.
            const told = new FrameWriter(this.layout.memory, this.kernel, this.replyStaging, 1024);
            sayAndDrop(channel, told.frame(FrameType.error, encodeError(e.message)));
          } else drop(e.message);
        }
      });
      channel.on("error", () => channel.destroy());
      channel.on("close", () => {
        clearTimeout(joinTimer);
        this.sockets.delete(channel);
        this.channelStagingFree.push(staging);
        if (index >= 0 && !state.over && !state.switchedOver) {
          fail(`multifd channel ${index} closed mid-migration after ${state.pages} pages`, true);
        }
      });
    };

    /** The connection's handlers; a replaced connection's events are ignored. */
    const listen = (s: Socket) => {
      s.on("data", (chunk: Buffer) => {
        if (state.over || s !== socket) return;
        try {
          reader.push(chunk);
        } catch (error) {
          const message = (error as Error).message;
          const cancelled = message.startsWith("the source stopped");
          // A recovery connection that is not this session's source goes; the session stays paused.
          if (state.resuming && !cancelled) {
            sayAndDrop(s, writer.frame(FrameType.error, encodeError(message)));
            pause(`a recovery connection was refused: ${message}`, false);
            return;
          }
          // A source that cancelled says so in an error frame: no need to answer it.
          fail(message, !cancelled);
        }
      });
      s.on("error", (error) => {
        if (s === socket) broken(`the connection failed: ${describeSocketError(error)}`);
      });
      s.on("close", () => {
        if (s !== socket || state.over) return;
        broken(
          state.hello
            ? `the connection closed mid-migration after ${state.pages} pages`
            : "the connection closed before a hello",
        );
      });
    };

    /** Whether a broken link pauses this session instead of failing it. */
    const pausable = () =>
      recoverMs > 0 && state.postcopy !== undefined && !state.postcopyEnded && !state.over;

    /** The connection broke or failed. */
    const broken = (cause: string) => {
      if (state.over) return;
      if (pausable()) pause(cause);
      else fail(cause, false);
    };

    /**
     * QEMU's postcopy_pause_incoming (migration/savevm.c): the connection is
     * dropped, the guest keeps running on what it has (a vCPU that faults
     * stays blocked, its blocktime counting) and the session waits, at most
     * `postcopyRecoverMs` in all, for its source to reconnect. A break
     * during a recovery returns to the same pause.
     */
    const pause = (cause: string, drop = true) => {
      if (state.over) return;
      socket.setTimeout(0);
      if (drop) socket.destroy();
      state.resuming = undefined;
      if (!state.paused) {
        state.recovery.pauses++;
        state.paused = {
          since: performance.now(),
          cause,
          timer: setTimeout(() => {
            fail(
              `${cause}; post-copy paused and no source resumed it within ${recoverMs} ms`,
              false,
            );
          }, recoverMs),
        };
      }
      this.resumable = (next) => reattach(next);
      this.abandon = () =>
        fail(`${cause}; the destination closed while post-copy was paused`, false);
    };

    /** A new connection while paused: the session's source, if its first frame says so. */
    const reattach = (next: Socket) => {
      // One recovery at a time: other connections meanwhile are turned away.
      this.resumable = undefined;
      state.readBefore.bytes += reader.bytes;
      state.readBefore.frames += reader.frames;
      socket = next;
      this.active = next;
      writer = this.recoveryWriter();
      reader = newReader();
      state.resuming = "hello";
      socket.setTimeout(idleMs, idle);
      listen(next);
    };

    /**
     * The recovery handshake (QEMU migration/savevm.c,
     * loadvm_postcopy_handle_resume): a recover-hello naming this session
     * is answered with the received-page bitmap; the source's
     * postcopy-resume must then count exactly the pages missing here, and
     * is acknowledged; then the pages the vCPUs still wait on are requested
     * again and post-copy goes on.
     */
    const recoveryFrame = (frame: ReceivedFrame, hello: Hello, guest: PostcopyGuest) => {
      const pages = hello.guestBytes / 2 ** LIVE_PAGE_SHIFT;
      if (state.resuming === "hello") {
        if (frame.type !== FrameType.recoverHello) {
          throw new FrameError(
            "type",
            `a post-copy migration is paused here, waiting for its source: the first frame must be recoverHello, not ${frameTypeName(frame.type)}`,
          );
        }
        const back = decodeRecoverHello(frame.payload);
        if (back.sessionId !== hello.sessionId || back.guestPages !== pages) {
          throw new FrameError(
            "payload",
            `recover-hello for session ${back.sessionId} of ${back.guestPages} pages: the session paused here is ${hello.sessionId} of ${pages} pages`,
          );
        }
        state.resuming = "resume";
        const bytes = recvBitmapBytes(pages);
        socket.write(
          writer.seal(
            FrameType.recvBitmap,
            encodeRecvBitmap(writer.payload(bytes), pages, (page) => guest.has(page)),
          ),
        );
        return;
      }
      if (frame.type !== FrameType.postcopyResume) {
        throw new FrameError(
          "type",
          `after the received-page bitmap the source must send postcopyResume, not ${frameTypeName(frame.type)}`,
        );
      }
      const left = decodePostcopyResume(frame.payload);
      if (left !== guest.missing) {
        throw new FrameError(
          "payload",
          `postcopy-resume frame: the source has ${left} pages left to send, ${guest.missing} are missing here`,
        );
      }
      const paused = state.paused;
      if (paused) {
        clearTimeout(paused.timer);
        state.recovery.pausedMs += performance.now() - paused.since;
      }
      state.paused = undefined;
      state.resuming = undefined;
      this.abandon = undefined;
      state.recovery.missingAtResume.push(left);
      const awaited = guest.awaitedPages();
      state.recovery.rerequested += awaited.length;
      socket.write(
        writer.seal(FrameType.resumeAck, encodeResumeAck(writer.payload(8), awaited.length)),
      );
      for (const page of awaited) {
        socket.write(
          writer.seal(FrameType.pageRequest, encodePageRequest(writer.payload(8), page, 1)),
        );
      }
    };

    listen(socket);
  }
}
