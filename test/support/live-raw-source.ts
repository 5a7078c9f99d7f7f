import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { MemoryLayout } from "../../src/memory/layout.js";
import type { Region } from "../../src/memory/region.js";
import { FrameType, type FrameTypeCode } from "../../src/migration/live/frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "../../src/migration/live/frame-codec.js";
import {
  encodeChannelHello,
  encodeEpoch,
  encodeError,
  encodeHello,
  encodeVerifyEnd,
  type Hello,
} from "../../src/migration/live/messages.js";
import { StreamKernel } from "../../src/wasm/stream.js";

const PAGE_BYTES = 4096;

/** A frame a raw peer received: its type and a copy of its payload. */
export interface RawFrame {
  readonly type: number;
  readonly payload: DataView;
}

/**
 * A source that speaks the live stream's frames by hand (docs/migration.md,
 * the live mode's protocol), one frame at a time, so a test can send a
 * destination exactly the sequence a rule is about, right or wrong. Its
 * guest is its own RAM, zero until the test writes it; the frames it sends
 * carry that RAM's bytes and digests, computed as a source does.
 */
export class RawSource {
  readonly ram: Uint8Array;
  readonly received: RawFrame[] = [];
  readonly closed: Promise<void>;
  private readonly layout = new MemoryLayout();
  private readonly kernel: StreamKernel;
  private readonly ramRegion: Region;
  private readonly writer: FrameWriter;
  private readonly out: Region;
  private waiting: (() => void) | undefined;

  private constructor(
    readonly socket: Socket,
    readonly guestBytes: number,
  ) {
    this.kernel = StreamKernel.on(this.layout.memory, this.layout.allocate("raw-scratch", 64));
    this.ramRegion = this.layout.allocate("raw-ram", guestBytes, 4096);
    this.ram = this.ramRegion.bytes(this.layout.memory);
    this.out = this.layout.allocate("raw-out", (guestBytes / PAGE_BYTES) * 8 + 64);
    this.writer = new FrameWriter(
      this.layout.memory,
      this.kernel,
      this.layout.allocate("raw-send", stagingBytes(), 4096),
    );
    const reader = new FrameReader(
      this.layout.memory,
      this.kernel,
      this.layout.allocate("raw-receive", stagingBytes(), 4096),
      (frame) => {
        const copy = new Uint8Array(frame.length);
        copy.set(new Uint8Array(frame.payload.buffer, frame.payload.byteOffset, frame.length));
        this.received.push({ type: frame.type, payload: new DataView(copy.buffer) });
        this.waiting?.();
      },
    );
    socket.on("data", (chunk: Buffer) => reader.push(chunk));
    socket.on("error", () => {});
    this.closed = once(socket, "close").then(() => {
      this.waiting?.();
    });
  }

  /** Connects to a destination on loopback, with a guest of `guestBytes` (zero-filled). */
  static async connect(port: number, guestBytes = 1024 ** 2): Promise<RawSource> {
    const socket = connect(port, "127.0.0.1");
    await once(socket, "connect");
    return new RawSource(socket, guestBytes);
  }

  /** Sends one frame; `build` writes the payload and returns its length. */
  send(type: FrameTypeCode, build?: (view: DataView) => number): void {
    const length = build ? build(this.writer.payload(stagingBytes() - 64)) : 0;
    this.socket.write(this.writer.seal(type, length));
  }

  /** Sends a frame whose payload is these bytes. */
  sendBytes(type: FrameTypeCode, payload: Uint8Array): void {
    this.socket.write(this.writer.frame(type, payload));
  }

  /** The hello of this guest; `fields` overrides any field. */
  hello(fields: Partial<Hello> = {}): void {
    this.send(FrameType.hello, (view) =>
      encodeHello(view, {
        guestBytes: this.guestBytes,
        pageShift: 12,
        sessionId: 77,
        deviceStateBytes: 64,
        verify: true,
        channels: 0,
        ...fields,
      }),
    );
  }

  /** A multifd channel's first frame. */
  channelHello(index: number, channels: number, sessionId = 77): void {
    this.send(FrameType.channelHello, (view) =>
      encodeChannelHello(view, { sessionId, index, channels }),
    );
  }

  /** A pages frame carrying these pages of this guest's RAM, in this order. */
  pages(numbers: readonly number[]): void {
    this.send(FrameType.pages, (view) => {
      view.setUint32(0, numbers.length, true);
      view.setUint32(4, 0, true);
      const data = 8 + numbers.length * 4;
      numbers.forEach((page, i) => {
        view.setUint32(8 + i * 4, page, true);
        // A page past the guest (a frame the destination must refuse) carries zeros.
        new Uint8Array(view.buffer, view.byteOffset + data + i * PAGE_BYTES, PAGE_BYTES).set(
          this.ram.subarray(page * PAGE_BYTES, (page + 1) * PAGE_BYTES),
        );
      });
      return data + numbers.length * PAGE_BYTES;
    });
  }

  /** A sync (multifd channels) or epoch frame's 8-byte payload. */
  epoch(type: FrameTypeCode, epoch: number): void {
    this.send(type, (view) => encodeEpoch(view, epoch));
  }

  /** The device state: `bytes` bytes of the value `fill`. */
  deviceState(bytes = 64, fill = 0x5a): void {
    this.sendBytes(FrameType.deviceState, new Uint8Array(bytes).fill(fill));
  }

  /** XXH64 of a device state of `bytes` bytes of `fill`, as the destination digests it. */
  deviceDigest(bytes = 64, fill = 0x5a): bigint {
    const region = this.layout.get("raw-out");
    region.bytes(this.layout.memory).fill(fill, 0, bytes);
    return this.kernel.hash(region, 0, bytes);
  }

  /** Verify frames for pages `first` to `first + count - 1`, with this guest's page digests. */
  verify(first: number, count: number): void {
    // Pages past the guest (a frame the destination must refuse) get zero digests.
    const inside = Math.max(0, Math.min(count, this.guestBytes / PAGE_BYTES - first));
    const digests = new Uint8Array(count * 8);
    if (inside > 0) {
      this.kernel.hashPages({ region: this.ramRegion, pageShift: 12 }, first, inside, this.out);
      digests.set(this.out.bytes(this.layout.memory).subarray(0, inside * 8));
    }
    this.send(FrameType.verify, (view) => {
      view.setUint32(0, first, true);
      view.setUint32(4, count, true);
      new Uint8Array(view.buffer, view.byteOffset + 8, count * 8).set(digests);
      return 8 + count * 8;
    });
  }

  /** The verify-end frame: `pages` covered and the device state's digest. */
  verifyEnd(pages: number, deviceDigest: bigint): void {
    this.send(FrameType.verifyEnd, (view) => encodeVerifyEnd(view, pages, deviceDigest));
  }

  /** An error frame with this reason. */
  error(reason: string): void {
    this.sendBytes(FrameType.error, encodeError(reason));
  }

  /** Waits for the next frame received after the first `seen`, or for the connection to close. */
  async frame(seen: number): Promise<RawFrame | undefined> {
    while (this.received.length <= seen) {
      if (this.socket.destroyed || this.socket.readableEnded) {
        return this.received[seen];
      }
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
    }
    return this.received[seen];
  }

  /** Text of an error frame. */
  static text(frame: RawFrame | undefined): string {
    if (frame?.type !== FrameType.error) return `not an error frame: ${JSON.stringify(frame)}`;
    return new TextDecoder().decode(
      new Uint8Array(frame.payload.buffer, frame.payload.byteOffset, frame.payload.byteLength),
    );
  }

  /** Destroys the connection. */
  close(): void {
    this.socket.destroy();
  }
}
