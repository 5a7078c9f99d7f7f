import type { Socket } from "node:net";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import { describeTlsError, isTlsError } from "../../transport/secure.js";
import type { TokenBucket } from "../../transport/token-bucket.js";
import { BandwidthMeter } from "./bandwidth-meter.js";

/**
 * Bytes the socket may hold beyond what the kernel took before a sender
 * waits: enough that the kernel's buffer never runs dry while the next frame
 * is built (waiting on every frame's drain halves loopback throughput).
 */
const MAX_QUEUED_BYTES = 8 * 1024 * 1024;

/** The connection dropped or failed; the message says how and where. */
export class LinkError extends Error {
  override name = "LinkError";
}

/**
 * The sending side of a migration connection: optional throttling, the
 * socket's backpressure, and QEMU-style bandwidth windows counted as the
 * kernel takes the bytes.
 */
export class Link {
  readonly meter = new BandwidthMeter();
  private failure: Error | undefined;
  private sinceYield = 0;
  /** Bytes handed to the socket so far. */
  queued = 0;

  constructor(
    readonly socket: Socket,
    private readonly throttle?: TokenBucket,
  ) {
    socket.on("error", (error) => {
      this.failure ??= new LinkError(describeSocketError(error));
    });
    socket.on("close", () => {
      this.failure ??= new LinkError("the connection closed");
    });
  }

  /** Why the link is down, if it is. */
  get down(): Error | undefined {
    return this.failure;
  }

  /** Marks the link failed (a peer's error frame, a protocol error). */
  fail(error: Error): void {
    this.failure ??= error;
  }

  /**
   * Hands a throttled frame to the socket a window's bytes at a time, each
   * after its tokens: a frame much larger than the window (a 1 MiB pages
   * frame at 1,000 bytes/s) trickles out at the rate, so the peer keeps
   * hearing from this side instead of waiting the whole frame's time in
   * silence and then getting it in one burst.
   */
  private async sendThrottled(
    throttle: TokenBucket,
    bytes: Buffer,
    sent: (() => void) | undefined,
  ): Promise<void> {
    const slice = throttle.sliceBytes;
    for (let at = 0; at < bytes.length; at += slice) {
      const part = bytes.subarray(at, Math.min(bytes.length, at + slice));
      const last = at + slice >= bytes.length;
      await throttle.take(part.length);
      if (this.failure) {
        sent?.();
        throw this.failure;
      }
      this.socket.write(part, (error) => {
        if (!error) this.meter.record(part.length);
        if (last) sent?.();
      });
      this.queued += part.length;
    }
  }

  /**
   * Sends one frame's bytes, waiting for the throttle and the socket's
   * buffer. `sent` is called once the socket no longer needs the bytes.
   */
  async send(bytes: Buffer, sent?: () => void): Promise<void> {
    if (this.failure) {
      sent?.();
      throw this.failure;
    }
    if (this.throttle) await this.sendThrottled(this.throttle, bytes, sent);
    else {
      this.socket.write(bytes, (error) => {
        if (!error) this.meter.record(bytes.length);
        sent?.();
      });
      this.queued += bytes.length;
    }
    if (this.socket.writableLength > MAX_QUEUED_BYTES) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.socket.off("drain", done);
          this.socket.off("close", done);
          resolve();
        };
        this.socket.on("drain", done);
        this.socket.on("close", done);
      });
      this.sinceYield = 0;
    } else if (++this.sinceYield >= 16) {
      // Let replies, socket events and workers' completions run.
      this.sinceYield = 0;
      await yieldToLoop();
    }
    if (this.failure) throw this.failure;
  }
}

/** One line for a socket error. */
export function describeSocketError(error: NodeJS.ErrnoException): string {
  if (isTlsError(error)) return describeTlsError(error);
  switch (error.code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ECONNRESET":
      return "connection reset by the peer";
    case "EPIPE":
      return "the peer closed the connection";
    case "ETIMEDOUT":
      return "connection timed out";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `host not found (${error.code})`;
    case "EADDRINUSE":
      return "address in use";
    default:
      return error.message;
  }
}
