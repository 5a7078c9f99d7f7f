import { chmodSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import type { BlockFile } from "../storage/block-file.js";
import {
  looksLikeTls,
  secureIncoming,
  TLS_PEER_OF_PLAIN,
  type TransportSecurity,
} from "../transport/secure.js";
import { TokenBucket } from "../transport/token-bucket.js";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  frameParts,
  joinPieces,
  MAX_IO_BYTES,
  Op,
  ProtocolError,
  piecesFrom,
  piecesLength,
  piecesUpTo,
  REPLY,
  Status,
  sendFrame,
} from "./protocol.js";
import { BoardPublisher } from "./registration-board.js";
import {
  InAction,
  PersistentReservations,
  type PrOutcome,
  ReservationType,
} from "./reservations.js";
import { decodeExactUtf8 } from "./utf8.js";

/** Options of {@link LunTarget}. */
export interface TargetOptions {
  /** Bytes per second the LUN path carries (reads and writes together); unset: unthrottled. */
  readonly throttleBytesPerSecond?: number;
  /** Milliseconds added to every READ and WRITE, as a Fibre Channel path's round trip. */
  readonly latencyMs?: number;
  /** A connection must log in within this many ms. */
  readonly handshakeTimeoutMs?: number;
  /** A connection silent this long is closed. */
  readonly idleTimeoutMs?: number;
  /** Whether FLUSH calls fdatasync (off for scratch LUNs). */
  readonly durable?: boolean;
  /** TLS for every connection (plain TCP by default; src/transport/secure.ts). */
  readonly security?: TransportSecurity;
  /** Called with each connection refused by TLS or `--tls-authz` (one line). */
  readonly onRefused?: (reason: string, peer: string) => void;
  /**
   * Where to publish the registration board (registration-board.ts) for
   * nodes that do direct I/O on the LUN over their own path; unset: none,
   * and nodes reach the LUN through this target only.
   */
  readonly registrations?: string;
}

/** What the target has done, for `status` and tests. */
export interface TargetCounters {
  connections: number;
  reads: number;
  writes: number;
  bytesRead: number;
  bytesWritten: number;
  conflicts: number;
  protocolErrors: number;
  /** Connections refused by TLS or `--tls-authz`. */
  refused: number;
}

/** Longest initiator name in UTF-8 bytes. */
export const MAX_INITIATOR_BYTES = 64;

/**
 * `hvlab csv target`: owns a LUN and serves block reads and writes at byte
 * offsets to nodes over TCP (loopback, or TLS beyond it), in the protocol of protocol.ts,
 * enforcing SCSI-3 persistent reservations. A connection that breaks the
 * protocol is sent an error frame and closed; the others are not touched.
 */
export class LunTarget {
  readonly reservations = new PersistentReservations();
  readonly counters: TargetCounters = {
    connections: 0,
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    conflicts: 0,
    protocolErrors: 0,
    refused: 0,
  };
  private readonly server: Server;
  private readonly localServers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly bucket: TokenBucket | undefined;
  private readonly board: BoardPublisher | undefined;
  readonly bytes: number;

  constructor(
    private readonly lun: BlockFile,
    private readonly options: TargetOptions = {},
  ) {
    this.bytes = lun.size();
    const rate = options.throttleBytesPerSecond;
    if (rate !== undefined) this.bucket = new TokenBucket(rate, Math.max(MAX_IO_BYTES, rate / 100));
    if (options.latencyMs !== undefined && !(options.latencyMs >= 0 && options.latencyMs <= 10_000))
      throw new RangeError(`target latency must be 0 to 10000 ms, not ${options.latencyMs}`);
    if (options.registrations !== undefined) {
      this.board = new BoardPublisher(options.registrations, this.bytes);
      this.board.publish(this.reservations);
    }
    const incoming = secureIncoming(options.security ?? { kind: "plain", insecure: false }, {
      accepted: ({ socket }) => this.serve(socket),
      refused: (reason, peer, reply) => {
        this.counters.refused++;
        options.onRefused?.(reason, peer);
        // The peer reads why in the block protocol's own error frame when a channel exists.
        if (reply) {
          reply.end(encodeFrame(Op.error, 0, new TextEncoder().encode(reason)));
          setTimeout(() => reply.destroy(), 1000).unref();
        }
      },
    });
    this.server = createServer((socket) => {
      // Every accepted socket is tracked from the start, so close() also ends one mid-handshake.
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      socket.on("error", () => {});
      incoming(socket);
    });
  }

  /** Listens on `host`:`port` (127.0.0.1 and 0, any free port, by default); returns the port. */
  async listen(port = 0, host = "127.0.0.1"): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => resolve());
    });
    const address = this.server.address();
    if (address === null || typeof address === "string")
      throw new Error("the target has no TCP address");
    return address.port;
  }

  /**
   * Also listens on the Unix socket `path` (made mode 0600: only this
   * user's processes reach it), for nodes on this host. Same protocol and
   * reservations; plain, as QEMU's `unix:` migration is, since no byte
   * leaves the host. A local socket skips the TCP stack (segmentation,
   * acknowledgements, checksums); how much that saves depends on the host.
   */
  async listenLocal(path: string): Promise<void> {
    const local = createServer((socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
      socket.on("error", () => {});
      this.serve(socket);
    });
    await new Promise<void>((resolve, reject) => {
      local.once("error", reject);
      local.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
    this.localServers.push(local);
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    // Nodes writing over their own path stop before the target's connections go.
    this.board?.close(this.reservations);
    for (const socket of this.sockets) socket.destroy();
    await Promise.all(
      [this.server, ...this.localServers].map(
        (server) => new Promise<void>((resolve) => server.close(() => resolve())),
      ),
    );
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    this.counters.connections++;
    socket.setNoDelay(true);
    const reader = new FrameReader();
    let initiator: string | undefined;
    let queue = Promise.resolve();
    let closed = false;
    const handshake = setTimeout(
      () => refuse("no LOGIN within the handshake timeout"),
      this.options.handshakeTimeoutMs ?? 5000,
    );
    socket.setTimeout(this.options.idleTimeoutMs ?? 300_000, () => refuse("idle timeout"));
    const refuse = (why: string): void => {
      if (closed) return;
      closed = true;
      this.counters.protocolErrors++;
      clearTimeout(handshake);
      socket.end(encodeFrame(Op.error, 0, new TextEncoder().encode(why)));
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    socket.on("close", () => {
      closed = true;
      clearTimeout(handshake);
      this.sockets.delete(socket);
    });
    socket.on("error", () => {});
    const plain = (this.options.security?.kind ?? "plain") === "plain";
    let first = true;
    socket.on("data", (chunk: Buffer) => {
      if (closed) return;
      // A TLS ClientHello to a plain listener is told so, rather than "bad magic".
      if (first && plain && looksLikeTls(chunk)) {
        refuse(TLS_PEER_OF_PLAIN);
        return;
      }
      first = false;
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        refuse((error as Error).message);
        return;
      }
      for (const frame of frames) {
        if (initiator === undefined) {
          if (frame.type !== Op.login) {
            refuse(`the first frame must be LOGIN, not type ${frame.type}`);
            return;
          }
          let name: string;
          try {
            name = decodeExactUtf8(frame.payload);
          } catch {
            refuse("LOGIN: the initiator name is not UTF-8");
            return;
          }
          if (frame.payload.length === 0 || frame.payload.length > MAX_INITIATOR_BYTES) {
            refuse(`LOGIN: the initiator name must be 1 to ${MAX_INITIATOR_BYTES} bytes`);
            return;
          }
          initiator = name;
          clearTimeout(handshake);
          const reply = new Uint8Array(8);
          new DataView(reply.buffer).setBigUint64(0, BigInt(this.bytes), true);
          socket.write(encodeFrame(Op.login | REPLY, frame.tag, reply));
          continue;
        }
        const who = initiator;
        // Requests of one connection run in order; connections run side by side.
        queue = queue.then(async () => {
          if (closed) return;
          try {
            const reply = await this.execute(who, frame);
            if (!closed) sendFrame(socket, reply);
          } catch (error) {
            refuse(
              error instanceof ProtocolError
                ? error.message
                : `target error: ${(error as Error).message}`,
            );
          }
        });
      }
    });
  }

  /**
   * Runs one request of a logged-in initiator; returns its reply frame (as
   * the pieces of {@link frameParts}: a READ's data is not copied into a
   * frame), or throws a {@link ProtocolError} when the request breaks the
   * protocol.
   */
  async execute(initiator: string, frame: Frame): Promise<Uint8Array[]> {
    // A WRITE's data stays in the pieces it arrived in (joining them would copy 256 KiB);
    // every other request is small and is read as one array.
    const pieces = frame.pieces ?? [frame.payload];
    const dataIo = frame.type === Op.read || frame.type === Op.write;
    const p = dataIo ? joinPieces(piecesUpTo(pieces, 12)) : frame.payload;
    const payloadBytes = dataIo ? piecesLength(pieces) : p.length;
    const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const reply = (payload?: Uint8Array, status: number = Status.good) =>
      frameParts(frame.type | REPLY, frame.tag, payload ? [payload] : [], status);
    const text = (s: string) => new TextEncoder().encode(s);
    switch (frame.type) {
      case Op.read:
      case Op.write: {
        const write = frame.type === Op.write;
        if (payloadBytes < 12 || (!write && payloadBytes !== 12))
          throw new ProtocolError(
            `${write ? "WRITE" : "READ"}: payload of ${payloadBytes} bytes is not an address`,
          );
        const offset = Number(view.getBigUint64(0, true));
        const length = write ? payloadBytes - 12 : view.getUint32(8, true);
        if (write && view.getUint32(8, true) !== length)
          throw new ProtocolError(
            `WRITE: length field ${view.getUint32(8, true)} is not the ${length} bytes sent`,
          );
        if (
          length > MAX_IO_BYTES ||
          offset + length > this.bytes ||
          !Number.isSafeInteger(offset + length)
        )
          return reply(
            text(
              `${write ? "WRITE" : "READ"} of ${length} bytes at ${offset} is outside the LUN's ${this.bytes} bytes`,
            ),
            Status.checkCondition,
          );
        if (
          write ? !this.reservations.mayWrite(initiator) : !this.reservations.mayRead(initiator)
        ) {
          this.counters.conflicts++;
          return reply(text(this.conflictReason(initiator)), Status.reservationConflict);
        }
        if (this.options.latencyMs) await sleep(this.options.latencyMs);
        if (this.bucket) await this.bucket.take(length);
        // A preemption may have landed while this request waited on the path: check again
        // where the bytes meet the LUN, as a real device checks when the command runs.
        if (
          write ? !this.reservations.mayWrite(initiator) : !this.reservations.mayRead(initiator)
        ) {
          this.counters.conflicts++;
          return reply(text(this.conflictReason(initiator)), Status.reservationConflict);
        }
        if (write) {
          // One gathered pwritev of the pieces the socket delivered: no copy in user space.
          this.lun.writev(piecesFrom(pieces, 12), offset);
          this.counters.writes++;
          this.counters.bytesWritten += length;
          return reply();
        }
        // Filled by the read below (a short read is refused), so not zeroed first.
        const out: Uint8Array = Buffer.allocUnsafeSlow(length);
        const n = this.lun.read(out, offset);
        if (n !== length)
          return reply(
            text(`READ: the LUN returned ${n} of ${length} bytes`),
            Status.checkCondition,
          );
        this.counters.reads++;
        this.counters.bytesRead += length;
        return reply(out);
      }
      case Op.flush:
        if (this.options.durable ?? true) this.lun.sync();
        return reply();
      case Op.reserveOut: {
        if (p.length !== 20)
          throw new ProtocolError(`PERSISTENT RESERVE OUT: payload of ${p.length} bytes, not 20`);
        const outcome = this.reservations.out(initiator, {
          action: p[0] ?? 0,
          type: p[1] ?? 0,
          key: view.getBigUint64(4, true),
          serviceKey: view.getBigUint64(12, true),
        });
        // Published before GOOD goes back: once a PREEMPT is answered, no direct write
        // that starts afterwards finds the preempted key on the board.
        if (outcome.status === "good") this.board?.publish(this.reservations);
        return outcomeReply(outcome, reply, text, this.counters);
      }
      case Op.reserveIn: {
        if (p.length !== 1)
          throw new ProtocolError(`PERSISTENT RESERVE IN: payload of ${p.length} bytes, not 1`);
        const r = this.reservations;
        if (p[0] === InAction.readKeys) {
          const keys = r.registeredKeys();
          const out = new Uint8Array(4 + 8 * keys.length);
          const v = new DataView(out.buffer);
          v.setUint32(0, r.generation, true);
          for (const [i, k] of keys.entries()) v.setBigUint64(4 + 8 * i, k, true);
          return reply(out);
        }
        if (p[0] === InAction.readReservation) {
          const held = r.held();
          const out = new Uint8Array(held ? 13 : 4);
          const v = new DataView(out.buffer);
          v.setUint32(0, r.generation, true);
          if (held) {
            v.setBigUint64(4, held.key, true);
            out[12] = held.type;
          }
          return reply(out);
        }
        return reply(
          text(`PERSISTENT RESERVE IN service action ${p[0]} is not supported`),
          Status.checkCondition,
        );
      }
      default:
        throw new ProtocolError(`request type ${frame.type} is not one the target serves`);
    }
  }

  /**
   * Why `initiator`'s READ or WRITE meets a reservation: under a
   * registrants-only type (5, 6) it is not registered; under a holder-only
   * type (1, 3) a registered initiator is refused because it does not hold
   * the reservation (SPC-4, the persistent reservation types).
   */
  private conflictReason(initiator: string): string {
    const type = this.reservations.held()?.type;
    const holderOnly =
      type === ReservationType.writeExclusive || type === ReservationType.exclusiveAccess;
    return holderOnly && this.reservations.keyOf(initiator) !== undefined
      ? `${initiator} does not hold the LUN's reservation (type ${type})`
      : `${initiator} is not registered: the LUN is reserved`;
  }
}

function outcomeReply(
  outcome: PrOutcome,
  reply: (payload?: Uint8Array, status?: number) => Uint8Array[],
  text: (s: string) => Uint8Array,
  counters: TargetCounters,
): Uint8Array[] {
  if (outcome.status === "good") return reply();
  if (outcome.status === "conflict") {
    counters.conflicts++;
    return reply(text(outcome.reason), Status.reservationConflict);
  }
  return reply(text(outcome.reason), Status.checkCondition);
}
