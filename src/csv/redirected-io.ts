import { MAX_IO_BYTES, ProtocolError } from "./protocol.js";
import { decodeExactUtf8 } from "./utf8.js";

/*
 * A redirected READ or WRITE: the payload of a node-protocol frame of type
 * 17 that a node whose storage path is cut (or whose volume is in a backup
 * window) sends to the coordinator, which does the I/O on its own path.
 * It names the file and a byte range of it, not LUN sectors: the
 * coordinator maps the range through its own file table, as Windows sends
 * redirected I/O over SMB to the coordinator's NTFS by file handle, so a
 * node holding a stale extent map cannot write over another file.
 *
 *   0      1          2            4              12          16           16+n
 *   +------+----------+------------+--------------+-----------+------------+-----------------+
 *   | kind | reserved | name bytes | file offset  | length    | name       | data (WRITE:    |
 *   | u8   | u8 = 0   | n, u16     | u64          | u32       | UTF-8      |  length bytes)  |
 *   +------+----------+------------+--------------+-----------+------------+-----------------+
 *
 * The reply is GOOD (a READ's bytes), CHECK CONDITION (the reason: no such
 * file, a range outside it) or BUSY: the receiver is not the coordinator
 * now, and the sender retries where the next heartbeat says the role is.
 */

/** What a redirected request asks for. */
export const RedirectedKind = { read: 0, write: 1 } as const;

/** Bytes of the fixed part of a redirected request. */
export const REDIRECTED_HEADER_BYTES = 16;
/** Longest file name on the volume, in UTF-8 bytes (as the file table holds it). */
export const MAX_REDIRECTED_NAME_BYTES = 128;
/** Largest redirected READ or WRITE: half a target I/O, so name and header fit one frame. */
export const MAX_REDIRECTED_BYTES = MAX_IO_BYTES / 2;

/** One redirected request, checked. */
export interface RedirectedRequest {
  readonly kind: "read" | "write";
  readonly name: string;
  readonly offset: number;
  readonly length: number;
  /** The bytes of a WRITE (a view into the frame). */
  readonly data?: Uint8Array;
}

/** Encodes a redirected READ (`data` absent) or WRITE. */
export function encodeRedirected(
  name: string,
  offset: number,
  length: number,
  data?: Uint8Array,
): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  if (nameBytes.length < 1 || nameBytes.length > MAX_REDIRECTED_NAME_BYTES)
    throw new RangeError(
      `a redirected request names a file of 1 to ${MAX_REDIRECTED_NAME_BYTES} bytes`,
    );
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw new RangeError(
      `a redirected request's offset must be a whole number of bytes, not ${offset}`,
    );
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_REDIRECTED_BYTES)
    throw new RangeError(
      `a redirected request carries 0 to ${MAX_REDIRECTED_BYTES} bytes, not ${length}`,
    );
  if (data && data.length !== length)
    throw new RangeError(`a redirected WRITE of ${length} bytes was given ${data.length}`);
  const out = new Uint8Array(REDIRECTED_HEADER_BYTES + nameBytes.length + (data?.length ?? 0));
  const view = new DataView(out.buffer);
  out[0] = data ? RedirectedKind.write : RedirectedKind.read;
  view.setUint16(2, nameBytes.length, true);
  view.setBigUint64(4, BigInt(offset), true);
  view.setUint32(12, length, true);
  out.set(nameBytes, REDIRECTED_HEADER_BYTES);
  if (data) out.set(data, REDIRECTED_HEADER_BYTES + nameBytes.length);
  return out;
}

/**
 * Checks a redirected request's payload.
 *
 * @throws ProtocolError naming the field and its byte offset in the payload.
 */
export function parseRedirected(payload: Uint8Array): RedirectedRequest {
  const fail = (at: number, what: string): never => {
    throw new ProtocolError(`redirected I/O: byte ${at}: ${what}`);
  };
  if (payload.length < REDIRECTED_HEADER_BYTES)
    fail(
      0,
      `payload of ${payload.length} bytes is shorter than the ${REDIRECTED_HEADER_BYTES}-byte header`,
    );
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const kindByte = payload[0];
  if (kindByte !== RedirectedKind.read && kindByte !== RedirectedKind.write)
    fail(0, `kind ${kindByte} is not 0 (READ) or 1 (WRITE)`);
  if (payload[1] !== 0) fail(1, "reserved byte must be zero");
  const nameBytes = view.getUint16(2, true);
  if (nameBytes < 1 || nameBytes > MAX_REDIRECTED_NAME_BYTES)
    fail(2, `name of ${nameBytes} bytes, expected 1 to ${MAX_REDIRECTED_NAME_BYTES}`);
  const offset = view.getBigUint64(4, true);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) fail(4, `offset ${offset} is past 2^53`);
  const length = view.getUint32(12, true);
  if (length > MAX_REDIRECTED_BYTES)
    fail(12, `length ${length} is more than ${MAX_REDIRECTED_BYTES}`);
  const dataAt = REDIRECTED_HEADER_BYTES + nameBytes;
  const write = kindByte === RedirectedKind.write;
  const expected = dataAt + (write ? length : 0);
  if (payload.length !== expected)
    fail(
      Math.min(payload.length, expected),
      `payload of ${payload.length} bytes, expected ${expected} for a ${write ? "WRITE" : "READ"} of ${length} bytes`,
    );
  let name = "";
  try {
    name = decodeExactUtf8(payload.subarray(REDIRECTED_HEADER_BYTES, dataAt));
  } catch {
    fail(REDIRECTED_HEADER_BYTES, "the file name is not UTF-8");
  }
  return {
    kind: write ? "write" : "read",
    name,
    offset: Number(offset),
    length,
    ...(write ? { data: payload.subarray(dataAt) } : {}),
  };
}
