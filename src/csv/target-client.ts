import { connect as connectLocal, type Socket } from "node:net";
import { connectSecure, type TransportSecurity } from "../transport/secure.js";
import { checkLunRange, type Lun } from "./lun.js";
import {
  type Frame,
  FrameReader,
  frameParts,
  MAX_IO_BYTES,
  Op,
  REPLY,
  Status,
  sendFrame,
} from "./protocol.js";
import { InAction, type Reservation, ServiceAction } from "./reservations.js";

const PLAIN: TransportSecurity = { kind: "plain", insecure: false };

/** The target refused a command with RESERVATION CONFLICT: this initiator has been fenced. */
export class ReservationConflictError extends Error {
  override name = "ReservationConflictError";
}

/** The target refused a command with CHECK CONDITION; the message is its reason. */
export class TargetCommandError extends Error {
  override name = "TargetCommandError";
}

/** The peer answered BUSY: it is not the coordinator now; ask again where the role is. */
export class BusyError extends Error {
  override name = "BusyError";
}

/** The connection to the target failed or was closed. */
export class TargetConnectionError extends Error {
  override name = "TargetConnectionError";
}

/**
 * A LUN served by `hvlab csv target`: the node side of the block protocol,
 * with requests pipelined by tag, and the persistent-reservation commands.
 */
export class TargetClient implements Lun {
  private readonly pending = new Map<
    number,
    { resolve: (f: Frame) => void; reject: (e: Error) => void }
  >();
  private nextTag = 1;
  private closedBecause: Error | undefined;
  bytes = 0;

  private constructor(
    private readonly socket: Socket,
    readonly name: string,
  ) {
    const reader = new FrameReader();
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => {
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        this.fail(new TargetConnectionError(`${name}: ${(error as Error).message}`));
        socket.destroy();
        return;
      }
      for (const frame of frames) {
        if (frame.type === Op.error) {
          this.fail(
            new TargetConnectionError(
              `${name}: the target closed the connection: ${new TextDecoder().decode(frame.payload)}`,
            ),
          );
          continue;
        }
        const waiter = this.pending.get(frame.tag);
        if (!waiter) continue;
        this.pending.delete(frame.tag);
        waiter.resolve(frame);
      }
    });
    socket.on("error", (error) =>
      this.fail(new TargetConnectionError(`${name}: ${error.message}`)),
    );
    socket.on("close", () =>
      this.fail(new TargetConnectionError(`${name}: the connection to the target closed`)),
    );
  }

  /**
   * Connects to a target (or a peer node) at `host:port` (127.0.0.1 by
   * default) with the client side of `security` (plain TCP by default; TLS
   * through src/transport/secure.ts) and logs in as `initiator`: connected
   * within `timeoutMs`, and LOGIN answered within `timeoutMs` more, or the
   * connection is closed and the promise rejects. (A paused process still
   * accepts connections in its kernel: without the second deadline its
   * caller held the connection, and its own process, open until the peer
   * answered, which a node stopped for good never does.)
   */
  static async connect(
    port: number,
    initiator: string,
    timeoutMs = 5000,
    endpoint: {
      readonly host?: string;
      readonly security?: TransportSecurity;
      /** A Unix socket of a target on this host (`hvlab csv target --socket`), used instead of TCP. */
      readonly socketPath?: string;
    } = {},
  ): Promise<TargetClient> {
    if (endpoint.socketPath !== undefined)
      return TargetClient.login(
        await connectUnix(endpoint.socketPath, timeoutMs),
        endpoint.socketPath,
        initiator,
        timeoutMs,
      );
    const host = endpoint.host ?? "127.0.0.1";
    let socket: Socket;
    try {
      socket = await connectSecure(
        host,
        port,
        endpoint.security ?? PLAIN,
        timeoutMs,
        (e) => e.message,
      );
    } catch (error) {
      throw new TargetConnectionError(`${host}:${port}: ${(error as Error).message}`);
    }
    return TargetClient.login(socket, `${host}:${port}`, initiator, timeoutMs);
  }

  private static async login(
    socket: Socket,
    where: string,
    initiator: string,
    timeoutMs: number,
  ): Promise<TargetClient> {
    const client = new TargetClient(socket, `${where} as ${initiator}`);
    const late = setTimeout(() => {
      client.fail(
        new TargetConnectionError(`${client.name}: no answer to LOGIN within ${timeoutMs} ms`),
      );
      socket.destroy();
    }, timeoutMs);
    let reply: Frame;
    try {
      reply = await client.request(Op.login, new TextEncoder().encode(initiator));
    } finally {
      clearTimeout(late);
    }
    client.bytes = Number(
      new DataView(reply.payload.buffer, reply.payload.byteOffset, 8).getBigUint64(0, true),
    );
    return client;
  }

  private fail(error: Error): void {
    this.closedBecause ??= error;
    for (const waiter of this.pending.values()) waiter.reject(this.closedBecause);
    this.pending.clear();
  }

  /**
   * Sends a request and waits for its reply (GOOD, or the status as an
   * error). A payload given as pieces is sent as they are, not joined: the
   * caller must leave them unchanged until the reply comes.
   */
  async request(type: number, payload?: Uint8Array | readonly Uint8Array[]): Promise<Frame> {
    if (this.closedBecause) throw this.closedBecause;
    const tag = this.nextTag;
    this.nextTag = (this.nextTag + 1) >>> 0 || 1;
    const reply = await new Promise<Frame>((resolve, reject) => {
      this.pending.set(tag, { resolve, reject });
      const parts =
        payload === undefined ? [] : payload instanceof Uint8Array ? [payload] : payload;
      sendFrame(this.socket, frameParts(type, tag, parts));
    });
    if (reply.type !== (type | REPLY))
      throw new TargetConnectionError(
        `${this.name}: reply of type ${reply.type} to a request of type ${type}`,
      );
    if (reply.status === Status.reservationConflict)
      throw new ReservationConflictError(
        `RESERVATION CONFLICT: ${new TextDecoder().decode(reply.payload)}`,
      );
    if (reply.status === Status.busy)
      throw new BusyError(`BUSY: ${new TextDecoder().decode(reply.payload)}`);
    if (reply.status !== Status.good)
      throw new TargetCommandError(`CHECK CONDITION: ${new TextDecoder().decode(reply.payload)}`);
    return reply;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkLunRange(this, offset, length);
    const out = new Uint8Array(length);
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += MAX_IO_BYTES) {
      const n = Math.min(MAX_IO_BYTES, length - at);
      const address = new Uint8Array(12);
      const view = new DataView(address.buffer);
      view.setBigUint64(0, BigInt(offset + at), true);
      view.setUint32(8, n, true);
      parts.push(
        this.request(Op.read, address).then((reply) => {
          if (reply.payload.length !== n)
            throw new TargetCommandError(`READ returned ${reply.payload.length} of ${n} bytes`);
          out.set(reply.payload, at);
        }),
      );
    }
    await Promise.all(parts);
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkLunRange(this, offset, data.length);
    const parts: Promise<Frame>[] = [];
    for (let at = 0; at < data.length; at += MAX_IO_BYTES) {
      const n = Math.min(MAX_IO_BYTES, data.length - at);
      const address = new Uint8Array(12);
      const view = new DataView(address.buffer);
      view.setBigUint64(0, BigInt(offset + at), true);
      view.setUint32(8, n, true);
      // The data goes to the socket from the caller's buffer: no copy into a frame.
      parts.push(this.request(Op.write, [address, data.subarray(at, at + n)]));
    }
    await Promise.all(parts);
  }

  async flush(): Promise<void> {
    await this.request(Op.flush);
  }

  /** PERSISTENT RESERVE OUT. */
  async reserveOut(action: number, type: number, key: bigint, serviceKey = 0n): Promise<void> {
    const payload = new Uint8Array(20);
    const view = new DataView(payload.buffer);
    payload[0] = action;
    payload[1] = type;
    view.setBigUint64(4, key, true);
    view.setBigUint64(12, serviceKey, true);
    await this.request(Op.reserveOut, payload);
  }

  /** REGISTER `key` (from unregistered). */
  register(key: bigint): Promise<void> {
    return this.reserveOut(ServiceAction.register, 0, 0n, key);
  }

  /** PERSISTENT RESERVE IN, READ KEYS: the PRgeneration and the registered keys. */
  async readKeys(): Promise<{ generation: number; keys: bigint[] }> {
    const reply = await this.request(Op.reserveIn, Uint8Array.of(InAction.readKeys));
    const p = reply.payload;
    const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const keys: bigint[] = [];
    for (let at = 4; at + 8 <= p.length; at += 8) keys.push(view.getBigUint64(at, true));
    return { generation: view.getUint32(0, true), keys };
  }

  /** PERSISTENT RESERVE IN, READ RESERVATION: the holder's key and type, if any. */
  async readReservation(): Promise<{
    generation: number;
    reservation?: Omit<Reservation, "holder">;
  }> {
    const reply = await this.request(Op.reserveIn, Uint8Array.of(InAction.readReservation));
    const p = reply.payload;
    const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
    const generation = view.getUint32(0, true);
    if (p.length < 13) return { generation };
    return { generation, reservation: { key: view.getBigUint64(4, true), type: p[12] ?? 0 } };
  }

  close(): void {
    this.fail(new TargetConnectionError(`${this.name}: closed`));
    this.socket.destroy();
  }
}

/** Connects to a Unix socket within `timeoutMs`. */
async function connectUnix(path: string, timeoutMs: number): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    const socket = connectLocal({ path });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TargetConnectionError(`${path}: no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("error", (error) => {
      clearTimeout(timer);
      reject(new TargetConnectionError(`${path}: ${error.message}`));
    });
  });
}
