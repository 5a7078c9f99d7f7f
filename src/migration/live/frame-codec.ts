import type { Region } from "../../memory/region.js";
import { looksLikeTls, TLS_PEER_OF_PLAIN } from "../../transport/secure.js";
import type { StreamKernel } from "../../wasm/stream.js";
import {
  excerpt,
  FRAME_DIGEST_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameError,
  FrameHeader,
  type FrameHeaderFields,
  type FrameTypeCode,
  frameTypeName,
  MAX_FRAME_PAYLOAD,
  parseHeader,
  writeHeader,
} from "./frame.js";

/** The low 32 bits of a digest: the header check. */
function low32(digest: bigint): number {
  return Number(digest & 0xffff_ffffn);
}

/** Bytes of a staging region that can hold any frame up to `maxPayload`. */
export function stagingBytes(maxPayload = MAX_FRAME_PAYLOAD): number {
  return FRAME_HEADER_BYTES + maxPayload + FRAME_DIGEST_BYTES;
}

/**
 * Builds frames in staging slots of the shared memory: the caller writes the
 * payload at {@link FrameWriter.payloadStart} of the current slot, then
 * {@link FrameWriter.seal} fills the header, hashes the frame with the stream
 * kernel and hands back a copy for the socket, or
 * {@link FrameWriter.sealInPlace} hands back a view of the slot itself (no
 * copy) that stays busy until the socket has taken it. With several slots,
 * the next frame is built while earlier ones are still being written.
 */
export class FrameWriter {
  /** Where the payload starts in a staging slot. */
  readonly payloadStart = FRAME_HEADER_BYTES;
  private sequence = 0;
  private slot = 0;
  private readonly busy: (Promise<void> | undefined)[];
  private readonly slots: readonly Region[];

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly kernel: StreamKernel,
    /** One or more slots, each at least {@link stagingBytes} of `maxPayload` bytes. */
    staging: Region | readonly Region[],
    private readonly maxPayload = MAX_FRAME_PAYLOAD,
  ) {
    this.slots = Array.isArray(staging) ? staging : [staging as Region];
    if (this.slots.length === 0) throw new RangeError("a frame writer needs a staging slot");
    for (const slot of this.slots) slot.check(0, stagingBytes(maxPayload), "frame staging");
    this.busy = this.slots.map(() => undefined);
  }

  /** Frames sealed so far. */
  get frames(): number {
    return this.sequence;
  }

  /** The slot the next frame is built in. */
  get staging(): Region {
    return this.slots[this.slot] as Region;
  }

  /** Waits until the current slot's last in-place frame has left. */
  async ready(): Promise<void> {
    await this.busy[this.slot];
    this.busy[this.slot] = undefined;
  }

  /** A view of the payload area for `length` bytes. */
  payload(length: number): DataView {
    if (this.busy[this.slot]) throw new Error("frame staging slot still being sent: await ready()");
    const at = this.staging.check(this.payloadStart, length, "frame payload");
    return new DataView(this.memory.buffer, at, length);
  }

  /** Fills the header and digest of the frame in the current slot; returns its length. */
  private close(type: FrameTypeCode, length: number): number {
    if (this.busy[this.slot]) throw new Error("frame staging slot still being sent: await ready()");
    if (!Number.isSafeInteger(length) || length < 0 || length > this.maxPayload) {
      throw new RangeError(
        `frame payload of ${length} bytes is over the ${this.maxPayload}-byte limit`,
      );
    }
    const staging = this.staging;
    const header = new DataView(this.memory.buffer, staging.offset, FRAME_HEADER_BYTES);
    writeHeader(header, type, this.sequence, length);
    header.setUint32(FrameHeader.check, low32(this.kernel.hash(staging, 0, 16)), true);
    const body = FRAME_HEADER_BYTES + length;
    this.kernel.hashInto(staging, 0, body, staging, body);
    this.sequence++;
    return body + FRAME_DIGEST_BYTES;
  }

  /** Seals a frame whose `length`-byte payload is in staging; returns a copy of its wire bytes. */
  seal(type: FrameTypeCode, length: number): Buffer {
    const bytes = this.close(type, length);
    const wire = Buffer.allocUnsafe(bytes);
    wire.set(new Uint8Array(this.memory.buffer, this.staging.offset, bytes));
    return wire;
  }

  /**
   * Seals a frame and returns a view of the slot itself for the socket, and
   * the callback to call once the socket has taken it; moves to the next slot.
   */
  sealInPlace(type: FrameTypeCode, length: number): { wire: Buffer; sent: () => void } {
    const bytes = this.close(type, length);
    const wire = Buffer.from(this.memory.buffer, this.staging.offset, bytes);
    let sent!: () => void;
    this.busy[this.slot] = new Promise<void>((resolve) => {
      sent = resolve;
    });
    this.slot = (this.slot + 1) % this.slots.length;
    return { wire, sent };
  }

  /** Seals a frame with a payload given as bytes. */
  frame(type: FrameTypeCode, payload: Uint8Array = new Uint8Array(0)): Buffer {
    new Uint8Array(this.memory.buffer, this.staging.offset + this.payloadStart, payload.length).set(
      payload,
    );
    return this.seal(type, payload.length);
  }
}

/** A frame that passed every check, its payload still in the reader's staging region. */
export interface ReceivedFrame extends FrameHeaderFields {
  /** The staging region holding the frame. */
  readonly staging: Region;
  /** Offset of the payload within `staging`. */
  readonly payloadStart: number;
  /** The payload, a view over staging valid only until the handler returns. */
  readonly payload: DataView;
}

/**
 * Reassembles frames from socket chunks into a staging region and checks
 * each one (magic, version, header check, sequence, length bound, digest)
 * before handing it to `onFrame`, which must consume it before returning.
 * After the first error every later push throws the same error.
 */
export class FrameReader {
  private readonly header = new Uint8Array(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private current: FrameHeaderFields | undefined;
  private bodyFill = 0;
  private sequence = 0;
  private failure: FrameError | undefined;
  /** Payload bytes accepted so far. */
  bytes = 0;

  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly kernel: StreamKernel,
    private readonly staging: Region,
    private readonly onFrame: (frame: ReceivedFrame) => void,
    private readonly maxPayload = MAX_FRAME_PAYLOAD,
  ) {
    staging.check(0, stagingBytes(maxPayload), "frame staging");
  }

  /** Frames accepted so far. */
  get frames(): number {
    return this.sequence;
  }

  /** Whether bytes of an unfinished frame are held. */
  get midFrame(): boolean {
    return this.headerFill > 0 || this.current !== undefined;
  }

  /**
   * Takes the next bytes of the stream.
   *
   * @throws FrameError for the first frame that fails a check (and ever after).
   */
  push(chunk: Uint8Array): void {
    if (this.failure) throw this.failure;
    try {
      this.consume(chunk);
    } catch (error) {
      if (error instanceof FrameError) this.failure = error;
      throw error;
    }
  }

  private consume(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      const current = this.current;
      if (!current) {
        const take = Math.min(FRAME_HEADER_BYTES - this.headerFill, chunk.length - at);
        this.header.set(chunk.subarray(at, at + take), this.headerFill);
        this.headerFill += take;
        at += take;
        this.checkMagicSoFar();
        if (this.headerFill === FRAME_HEADER_BYTES) this.openFrame();
        continue;
      }
      const need = current.length + FRAME_DIGEST_BYTES - this.bodyFill;
      const take = Math.min(need, chunk.length - at);
      new Uint8Array(
        this.memory.buffer,
        this.staging.offset + FRAME_HEADER_BYTES + this.bodyFill,
        take,
      ).set(chunk.subarray(at, at + take));
      this.bodyFill += take;
      at += take;
      if (this.bodyFill === current.length + FRAME_DIGEST_BYTES) this.closeFrame(current);
    }
  }

  /** A foreign peer is refused on its first bytes, even before a whole header came. */
  private checkMagicSoFar(): void {
    const n = Math.min(this.headerFill, FRAME_MAGIC.length);
    for (let i = 0; i < n; i++) {
      if (this.header[i] !== FRAME_MAGIC[i]) {
        const first = this.header.subarray(0, this.headerFill);
        throw this.sequence === 0
          ? new FrameError(
              "foreign",
              looksLikeTls(first)
                ? TLS_PEER_OF_PLAIN
                : `the peer does not speak hvlab's migration protocol (it sent "${excerpt(first)}")`,
            )
          : new FrameError("header", `frame ${this.sequence}: bad magic, the stream is corrupted`);
      }
    }
  }

  private openFrame(): void {
    const fields = parseHeader(this.header, this.sequence === 0, this.sequence);
    if (fields.length > this.maxPayload) {
      throw new FrameError(
        "length",
        `frame ${fields.sequence} (${frameTypeName(fields.type)}): payload of ${fields.length} bytes is over this side's ${this.maxPayload}-byte limit`,
      );
    }
    new Uint8Array(this.memory.buffer, this.staging.offset, FRAME_HEADER_BYTES).set(this.header);
    const check = new DataView(this.header.buffer).getUint32(FrameHeader.check, true);
    if (low32(this.kernel.hash(this.staging, 0, 16)) !== check) {
      throw new FrameError(
        "header",
        `frame ${fields.sequence}: header check failed, the header is corrupted`,
      );
    }
    this.current = fields;
    this.bodyFill = 0;
  }

  private closeFrame(fields: FrameHeaderFields): void {
    const body = FRAME_HEADER_BYTES + fields.length;
    const sent = new DataView(this.memory.buffer, this.staging.offset + body, 8).getBigUint64(
      0,
      true,
    );
    if (this.kernel.hash(this.staging, 0, body) !== sent) {
      throw new FrameError(
        "digest",
        `frame ${fields.sequence} (${frameTypeName(fields.type)}): digest mismatch, ${fields.length} payload bytes corrupted in transit`,
      );
    }
    this.current = undefined;
    this.headerFill = 0;
    this.bodyFill = 0;
    this.sequence++;
    this.bytes += fields.length;
    this.onFrame({
      ...fields,
      staging: this.staging,
      payloadStart: FRAME_HEADER_BYTES,
      payload: new DataView(
        this.memory.buffer,
        this.staging.offset + FRAME_HEADER_BYTES,
        fields.length,
      ),
    });
  }
}
