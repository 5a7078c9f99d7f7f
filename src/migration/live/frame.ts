/*
 * The live-migration stream's frame format. Every byte between source and
 * destination travels in a frame; each is checked before it is trusted.
 *
 * Frame layout (little-endian):
 *
 *   0       4      5      6       8          12         16         20        24
 *   +-------+------+------+-------+----------+----------+----------+---------+
 *   | magic | ver- | type | flags | sequence | payload  | header   | reserved|
 *   | HVLM  | sion | u8   | u16=0 | u32      | length   | check    | u32 = 0 |
 *   |       | u8=1 |      |       |          | u32      | u32      |         |
 *   +-------+------+------+-------+----------+----------+----------+---------+
 *   24                                 24 + length     24 + length + 8
 *   +----------------------------------+---------------+
 *   | payload (at most 8 MiB)          | frame digest  |
 *   |                                  | u64           |
 *   +----------------------------------+---------------+
 *
 * header check = low 32 bits of XXH64(bytes 0..16): a corrupted length is
 * caught before the reader waits for, or allocates, a single payload byte.
 * frame digest = XXH64(bytes 0..24 + length): a corrupted payload fails the
 * migration instead of writing wrong memory. Sequence numbers start at 0 on
 * each side of a connection and rise by one per frame.
 */

/** "HVLM" as the first four bytes of every frame. */
export const FRAME_MAGIC = Uint8Array.of(0x48, 0x56, 0x4c, 0x4d);
/** The protocol version this build speaks. */
export const PROTOCOL_VERSION = 1;
/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 24;
/** Bytes of the digest after the payload. */
export const FRAME_DIGEST_BYTES = 8;
/** Largest payload a frame may carry: bounds what a reader buffers. */
export const MAX_FRAME_PAYLOAD = 8 * 1024 * 1024;
/** Largest frame on the wire. */
export const MAX_FRAME_BYTES = FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD + FRAME_DIGEST_BYTES;

/** Byte offsets of the header's fields. */
export const FrameHeader = {
  magic: 0,
  version: 4,
  type: 5,
  flags: 6,
  sequence: 8,
  length: 12,
  check: 16,
  reserved: 20,
} as const;

/** The frame types, and which side sends each. */
export const FrameType = {
  /** source -> destination: the guest's geometry; first frame of a session. */
  hello: 1,
  /** destination -> source: ready to receive. */
  accept: 2,
  /** source -> destination: a batch of pages. */
  pages: 3,
  /** source -> destination: the device-state blob, sent while paused. */
  deviceState: 4,
  /** source -> destination: stop-and-copy is over; resume. */
  switchover: 5,
  /** destination -> source: every page and the device state are in; resumed. */
  resumed: 6,
  /** source -> destination: XXH64 of a run of source pages. */
  verify: 7,
  /** source -> destination: no more digests; report. */
  verifyEnd: 8,
  /** destination -> source: what verification found. */
  result: 9,
  /** either side: the session is over, with the reason in UTF-8. */
  error: 10,
  /** source -> destination: page-stream records (zero pages, whole pages, XBZRLE deltas). */
  records: 11,
  /** source -> destination, first frame of a multifd channel's connection: the session it joins. */
  channelHello: 12,
  /** source -> destination on a multifd channel: every frame of this pass before it. */
  sync: 13,
  /** destination -> source: every channel's frames before its sync of this epoch have landed. */
  synced: 14,
  /**
   * source -> destination before a post-copy switch: pages the destination
   * holds stale copies of (dirtied since sent) or none at all (QEMU's
   * postcopy discard, migration/postcopy-ram.c).
   */
  discard: 15,
  /** source -> destination after the device state: run the guest here, pull what is missing (QEMU's POSTCOPY_LISTEN and POSTCOPY_RUN). */
  postcopyRun: 16,
  /** destination -> source, the return path: a vCPU faulted on these pages (QEMU's MIG_RP_MSG_REQ_PAGES). */
  pageRequest: 17,
  /** source -> destination: every page has been sent at least once; post-copy is over. */
  postcopyEnd: 18,
  /** destination -> source: every page is in; the fault counts and blocktimes measured here. */
  postcopyDone: 19,
  /**
   * source -> destination, first frame of a new connection to a post-copy
   * session paused by a broken link: the session it resumes; asks for the
   * received-page bitmap (QEMU's MIG_CMD_RECV_BITMAP, migration/savevm.c).
   */
  recoverHello: 20,
  /**
   * destination -> source on the return path: which pages the destination
   * holds (QEMU's MIG_RP_MSG_RECV_BITMAP, migration/ram.c
   * ramblock_recv_bitmap_send).
   */
  recvBitmap: 21,
  /** source -> destination: what is left to send was rebuilt from the bitmap; resume (QEMU's MIG_CMD_POSTCOPY_RESUME). */
  postcopyResume: 22,
  /** destination -> source: post-copy runs again (QEMU's MIG_RP_MSG_RESUME_ACK). */
  resumeAck: 23,
} as const;

/** A frame type's number. */
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType];

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

/** A frame type's name, for messages. */
export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `unknown type ${type}`;
}

/** Why a frame was refused. */
export type FrameErrorKind =
  | "foreign"
  | "version"
  | "header"
  | "length"
  | "digest"
  | "sequence"
  | "type"
  | "payload";

/** A frame (or a peer) that cannot be trusted; the message says what and where. */
export class FrameError extends Error {
  override name = "FrameError";

  constructor(
    readonly kind: FrameErrorKind,
    message: string,
  ) {
    super(message);
  }
}

/** A parsed, checked frame header. */
export interface FrameHeaderFields {
  readonly version: number;
  readonly type: FrameTypeCode;
  readonly sequence: number;
  readonly length: number;
}

/** Shows what a foreign peer sent, printable ASCII only, for an error line. */
export function excerpt(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes.subarray(0, 24)) {
    text +=
      byte >= 0x20 && byte < 0x7f
        ? String.fromCharCode(byte)
        : `\\x${byte.toString(16).padStart(2, "0")}`;
  }
  return text;
}

/**
 * Checks a header's magic, version, reserved fields, type and length (not
 * its check field, which needs the hash kernel). `first` says whether this is
 * the first frame of the stream, where a wrong magic means a foreign peer.
 *
 * @throws FrameError saying what is wrong.
 */
export function parseHeader(
  header: Uint8Array,
  first: boolean,
  sequenceWanted: number,
): FrameHeaderFields {
  if (header.length < FRAME_HEADER_BYTES) {
    throw new FrameError(
      "header",
      `frame header of ${header.length} bytes, need ${FRAME_HEADER_BYTES}`,
    );
  }
  for (let i = 0; i < 4; i++) {
    if (header[i] !== FRAME_MAGIC[i]) {
      throw first
        ? new FrameError(
            "foreign",
            `the peer does not speak hvlab's migration protocol (it sent "${excerpt(header)}")`,
          )
        : new FrameError("header", `frame ${sequenceWanted}: bad magic, the stream is corrupted`);
    }
  }
  const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
  const version = view.getUint8(FrameHeader.version);
  if (version !== PROTOCOL_VERSION) {
    throw new FrameError(
      "version",
      `the peer speaks hvlab migration protocol version ${version}; this hvlab speaks version ${PROTOCOL_VERSION}`,
    );
  }
  const type = view.getUint8(FrameHeader.type);
  if (!TYPE_NAMES.has(type)) {
    throw new FrameError("type", `frame ${sequenceWanted}: unknown frame type ${type}`);
  }
  if (
    view.getUint16(FrameHeader.flags, true) !== 0 ||
    view.getUint32(FrameHeader.reserved, true) !== 0
  ) {
    throw new FrameError("header", `frame ${sequenceWanted}: reserved header fields are not zero`);
  }
  const sequence = view.getUint32(FrameHeader.sequence, true);
  if (sequence !== sequenceWanted) {
    throw new FrameError(
      "sequence",
      `frame ${sequence} arrived where frame ${sequenceWanted} was due`,
    );
  }
  const length = view.getUint32(FrameHeader.length, true);
  if (length > MAX_FRAME_PAYLOAD) {
    throw new FrameError(
      "length",
      `frame ${sequence}: payload of ${length} bytes is over the ${MAX_FRAME_PAYLOAD}-byte limit`,
    );
  }
  return { version, type: type as FrameTypeCode, sequence, length };
}

/** Writes a header's fields (all but the check) into `header`. */
export function writeHeader(
  header: DataView,
  type: FrameTypeCode,
  sequence: number,
  length: number,
): void {
  for (let i = 0; i < 4; i++) header.setUint8(i, FRAME_MAGIC[i] ?? 0);
  header.setUint8(FrameHeader.version, PROTOCOL_VERSION);
  header.setUint8(FrameHeader.type, type);
  header.setUint16(FrameHeader.flags, 0, true);
  header.setUint32(FrameHeader.sequence, sequence >>> 0, true);
  header.setUint32(FrameHeader.length, length, true);
  header.setUint32(FrameHeader.check, 0, true);
  header.setUint32(FrameHeader.reserved, 0, true);
}
