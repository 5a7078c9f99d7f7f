import { crc32c } from "./checksum.js";

/*
 * The block protocol between `hvlab csv node` processes and `hvlab csv
 * target` (and between nodes, for forwarded metadata and redirected I/O).
 * Every message is one frame (little-endian):
 *
 *   0       4       5      6        7       8       12        16         20         24
 *   +-------+-------+------+--------+-------+-------+---------+----------+----------+-------------+
 *   | magic | ver-  | type | status | flags | tag   | payload | header   | payload  | payload     |
 *   | HVCS  | sion 1| u8   | u8     | u8=0  | u32   | length  | CRC-32C  | CRC-32C  | (<= 1 MiB   |
 *   |       |       |      |        |       |       | u32     | of 0..16 |          |  + 64 B)    |
 *   +-------+-------+------+--------+-------+-------+---------+----------+----------+-------------+
 *
 * The header CRC is checked before a payload byte is awaited or allocated,
 * so a corrupted length cannot make a reader wait for, or buffer, bytes
 * that will never come; the payload CRC (the iSCSI data digest's role,
 * RFC 7143 section 13.1) catches corrupted data before it reaches the LUN.
 * A reply carries its request's type with the high bit set and the
 * request's tag, so a client may keep several requests in flight.
 */

/** "HVCS" opens every frame. */
export const MAGIC = 0x53435648; // "HVCS" read as a little-endian u32
/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** Bytes of a frame header. */
export const HEADER_BYTES = 24;
/** Largest READ or WRITE: 1 MiB. */
export const MAX_IO_BYTES = 1 << 20;
/** Largest payload: a 1 MiB WRITE with its 12-byte address, and room for small records. */
export const MAX_PAYLOAD = MAX_IO_BYTES + 64;

/** Most pieces a received payload is kept in before it is joined (one gathered write each). */
const MAX_PIECES = 64;

/** Byte offsets of the header's fields. */
export const Header = {
  magic: 0,
  version: 4,
  type: 5,
  status: 6,
  flags: 7,
  tag: 8,
  length: 12,
  headerCrc: 16,
  payloadCrc: 20,
} as const;

/** Request types; a reply sets {@link REPLY}. */
export const Op = {
  /** First frame of a connection: the initiator's name (UTF-8, 1..64 bytes). Reply: LUN bytes u64. */
  login: 1,
  /** offset u64, length u32. Reply: the bytes. */
  read: 2,
  /** offset u64, then the bytes. */
  write: 3,
  /** Makes earlier writes durable. */
  flush: 4,
  /** PERSISTENT RESERVE OUT: service action u8, type u8, 2 reserved, key u64, service action key u64. */
  reserveOut: 5,
  /** PERSISTENT RESERVE IN: service action u8 (0 READ KEYS, 1 READ RESERVATION). */
  reserveIn: 6,
  /** Node protocol: a metadata operation forwarded to the coordinator (JSON payload). */
  metadata: 16,
  /** Node protocol: a data read or write sent through the coordinator (redirected I/O; redirected-io.ts). */
  redirected: 17,
  /** Node protocol: a heartbeat (JSON payload: node id, epoch, members seen). */
  heartbeat: 18,
  /** Node protocol, control: the node's status (reply: JSON, see src/csv/control.ts). */
  status: 19,
  /** Node protocol, control: move the coordinator role (JSON payload: the node to hand it to). */
  failover: 20,
  /** Either side: the connection is being closed; the payload says why (UTF-8). */
  error: 127,
} as const;

/** The bit a reply's type adds to its request's. */
export const REPLY = 0x80;

/**
 * Reply status, SAM's status codes where one exists (SAM-5 table 40): GOOD
 * 0x00, CHECK CONDITION 0x02 (the payload says why, as sense data would),
 * BUSY 0x08 (a node asked for what only the coordinator does: retry where
 * the role is now), RESERVATION CONFLICT 0x18.
 */
export const Status = {
  good: 0x00,
  checkCondition: 0x02,
  busy: 0x08,
  reservationConflict: 0x18,
} as const;

/** One frame, checked. */
export interface Frame {
  readonly type: number;
  readonly status: number;
  readonly tag: number;
  readonly payload: Uint8Array;
  /** The payload in the pieces it arrived in, where the reader kept them (see {@link ReceivedFrame}). */
  readonly pieces?: readonly Uint8Array[];
}

/** Joins pieces into one array (the piece itself when there is one). */
export function joinPieces(pieces: readonly Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0] as Uint8Array;
  let n = 0;
  for (const piece of pieces) n += piece.length;
  // Every byte is filled below, so the memory need not be zeroed first.
  const out: Uint8Array = Buffer.allocUnsafeSlow(n);
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/**
 * A frame as {@link FrameReader} cut it from the stream: its payload is
 * kept in the pieces the socket delivered (a 256 KiB WRITE arrives in
 * several), and joined into one array only when {@link payload} is read,
 * so the target can hand a WRITE's pieces to one gathered pwritev without
 * copying them first.
 */
export class ReceivedFrame implements Frame {
  private joined: Uint8Array | undefined;

  constructor(
    readonly type: number,
    readonly status: number,
    readonly tag: number,
    readonly pieces: readonly Uint8Array[],
  ) {}

  get payload(): Uint8Array {
    this.joined ??= joinPieces(this.pieces);
    return this.joined;
  }
}

/** Bytes the pieces hold together. */
export function piecesLength(pieces: readonly Uint8Array[]): number {
  let n = 0;
  for (const piece of pieces) n += piece.length;
  return n;
}

/** The first `n` bytes of `pieces` (fewer if they hold fewer), as pieces, without copying. */
export function piecesUpTo(pieces: readonly Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = n;
  for (const piece of pieces) {
    if (left === 0) break;
    out.push(piece.length <= left ? piece : piece.subarray(0, left));
    left -= Math.min(piece.length, left);
  }
  return out;
}

/** The pieces of `pieces` from byte `from` on, without copying. */
export function piecesFrom(pieces: readonly Uint8Array[], from: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = from;
  for (const piece of pieces) {
    if (skip >= piece.length) {
      skip -= piece.length;
      continue;
    }
    out.push(skip > 0 ? piece.subarray(skip) : piece);
    skip = 0;
  }
  return out;
}

/** A frame that breaks the protocol: the connection is closed with this message. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** Encodes one frame. */
export function encodeFrame(
  type: number,
  tag: number,
  payload: Uint8Array = new Uint8Array(0),
  status = 0,
): Uint8Array {
  const [header] = frameParts(type, tag, [payload], status);
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  out.set(header as Uint8Array, 0);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * One frame as the pieces to send one after the other: its header, then
 * `parts` themselves, not copied. The payload CRC runs over the parts in
 * turn (CRC-32C continues from one piece to the next), so a WRITE's data
 * goes from the caller's buffer to the socket with no copy in between;
 * the bytes on the wire are exactly {@link encodeFrame}'s.
 */
export function frameParts(
  type: number,
  tag: number,
  parts: readonly Uint8Array[],
  status = 0,
): Uint8Array[] {
  let length = 0;
  let payloadCrc = 0;
  for (const part of parts) {
    length += part.length;
    payloadCrc = crc32c(part, payloadCrc);
  }
  if (length > MAX_PAYLOAD)
    throw new RangeError(`a frame carries at most ${MAX_PAYLOAD} bytes, not ${length}`);
  const header = new Uint8Array(HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(Header.magic, MAGIC, true);
  header[Header.version] = PROTOCOL_VERSION;
  header[Header.type] = type;
  header[Header.status] = status;
  view.setUint32(Header.tag, tag >>> 0, true);
  view.setUint32(Header.length, length, true);
  view.setUint32(Header.headerCrc, crc32c(header.subarray(0, Header.headerCrc)), true);
  view.setUint32(Header.payloadCrc, payloadCrc, true);
  return [header, ...parts.filter((part) => part.length > 0)];
}

/** Writes a frame's pieces ({@link frameParts}) to `socket` as one burst (corked: one writev). */
export function sendFrame(
  socket: { cork(): void; uncork(): void; write(chunk: Uint8Array): boolean },
  pieces: readonly Uint8Array[],
): void {
  socket.cork();
  for (const piece of pieces) socket.write(piece);
  socket.uncork();
}

/**
 * Cuts a byte stream into frames. {@link FrameReader.push} takes the bytes
 * as they arrive and returns the whole frames; it throws a
 * {@link ProtocolError} (naming the field, the frame's byte offset in the
 * stream and what was wrong) at the first bad one, after which the stream
 * cannot be trusted and must be closed.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private consumed = 0;
  private failed: ProtocolError | undefined;

  constructor(private readonly maxPayload = MAX_PAYLOAD) {}

  /** Bytes held that do not yet make a frame. */
  get pending(): number {
    return this.buffered;
  }

  push(bytes: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    if (bytes.length > 0) {
      this.chunks.push(bytes);
      this.buffered += bytes.length;
    }
    const frames: Frame[] = [];
    while (this.buffered >= HEADER_BYTES) {
      const head = this.peek(HEADER_BYTES);
      const view = new DataView(head.buffer, head.byteOffset, HEADER_BYTES);
      const fail = (field: string, detail: string): never => {
        this.failed = new ProtocolError(
          `frame at stream byte ${this.consumed}: ${field}: ${detail}`,
        );
        throw this.failed;
      };
      if (view.getUint32(Header.magic, true) !== MAGIC) fail("magic", "not HVCS");
      const headerCrc = crc32c(head.subarray(0, Header.headerCrc));
      if (view.getUint32(Header.headerCrc, true) !== headerCrc)
        fail("header CRC", "does not match");
      if (head[Header.version] !== PROTOCOL_VERSION)
        fail("version", `${head[Header.version]} is not ${PROTOCOL_VERSION}`);
      if (head[Header.flags] !== 0) fail("flags", "must be zero");
      const length = view.getUint32(Header.length, true);
      if (length > this.maxPayload)
        fail("payload length", `${length} is more than ${this.maxPayload}`);
      if (this.buffered < HEADER_BYTES + length) break;
      let pieces = piecesFrom(this.takePieces(HEADER_BYTES + length), HEADER_BYTES);
      // A payload dribbled in many small reads is joined: no frame carries an unbounded list.
      if (pieces.length > MAX_PIECES) pieces = [joinPieces(pieces)];
      let payloadCrc = 0;
      for (const piece of pieces) payloadCrc = crc32c(piece, payloadCrc);
      if (payloadCrc !== view.getUint32(Header.payloadCrc, true))
        fail("payload CRC", "does not match");
      frames.push(
        new ReceivedFrame(
          head[Header.type] ?? 0,
          head[Header.status] ?? 0,
          view.getUint32(Header.tag, true),
          pieces,
        ),
      );
      this.consumed += HEADER_BYTES + length;
    }
    return frames;
  }

  /** The first `n` buffered bytes, without taking them. */
  private peek(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    return joinPieces(piecesUpTo(this.chunks, n));
  }

  /** Takes the first `n` buffered bytes as the pieces they arrived in (no copy). */
  private takePieces(n: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const chunk = this.chunks[0];
      if (!chunk) break;
      if (chunk.length <= left) {
        out.push(chunk);
        this.chunks.shift();
        left -= chunk.length;
      } else {
        out.push(chunk.subarray(0, left));
        this.chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n - left;
    return out;
  }
}
