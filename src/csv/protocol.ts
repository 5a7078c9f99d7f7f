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
  if (payload.length > MAX_PAYLOAD)
    throw new RangeError(`a frame carries at most ${MAX_PAYLOAD} bytes, not ${payload.length}`);
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(Header.magic, MAGIC, true);
  out[Header.version] = PROTOCOL_VERSION;
  out[Header.type] = type;
  out[Header.status] = status;
  view.setUint32(Header.tag, tag >>> 0, true);
  view.setUint32(Header.length, payload.length, true);
  view.setUint32(Header.headerCrc, crc32c(out.subarray(0, Header.headerCrc)), true);
  view.setUint32(Header.payloadCrc, crc32c(payload), true);
  out.set(payload, HEADER_BYTES);
  return out;
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
      const whole = this.take(HEADER_BYTES + length);
      const payload = whole.subarray(HEADER_BYTES);
      if (crc32c(payload) !== view.getUint32(Header.payloadCrc, true))
        fail("payload CRC", "does not match");
      frames.push({
        type: head[Header.type] ?? 0,
        status: head[Header.status] ?? 0,
        tag: view.getUint32(Header.tag, true),
        payload,
      });
      this.consumed += HEADER_BYTES + length;
    }
    return frames;
  }

  /** The first `n` buffered bytes, without taking them. */
  private peek(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first && first.length >= n) return first.subarray(0, n);
    return this.gather(n, false);
  }

  /** Takes the first `n` buffered bytes. */
  private take(n: number): Uint8Array {
    return this.gather(n, true);
  }

  private gather(n: number, consume: boolean): Uint8Array {
    const first = this.chunks[0];
    if (consume && first && first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    let i = 0;
    while (at < n) {
      const chunk = this.chunks[i];
      if (!chunk) break;
      const part = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, part), at);
      at += part;
      if (consume) {
        if (part === chunk.length) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(part);
      } else i++;
    }
    if (consume) this.buffered -= n;
    return out;
  }
}
