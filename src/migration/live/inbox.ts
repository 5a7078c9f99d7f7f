import { PeerError } from "./errors.js";
import { FrameError, FrameType, frameTypeName } from "./frame.js";
import type { ReceivedFrame } from "./frame-codec.js";
import {
  decodeAccept,
  decodeEpoch,
  decodeError,
  decodePageRequest,
  decodePostcopyDone,
  decodeRecvBitmap,
  decodeResult,
  decodeResumeAck,
  type PostcopyDone,
  type VerifyResult,
} from "./messages.js";

/** A reply from the destination, decoded at once (its frame's bytes are reused). */
export type Reply =
  | { readonly type: "accept"; readonly sessionId: number }
  | { readonly type: "resumed" }
  | { readonly type: "result"; readonly result: VerifyResult }
  | { readonly type: "synced"; readonly epoch: number }
  | { readonly type: "postcopyDone"; readonly done: PostcopyDone }
  | { readonly type: "recvBitmap"; readonly pages: number; readonly bits: Uint8Array }
  | { readonly type: "resumeAck"; readonly rerequested: number };

/** Where the return path's page requests go during post-copy: throws to refuse one. */
export type PageRequestHandler = (first: number, count: number) => void;

/**
 * The source's queue of replies from the destination. An error frame, a bad
 * frame or a dropped connection fails every wait at once with the reason.
 */
export class Inbox {
  private readonly queue: Reply[] = [];
  private waiter: { resolve: (reply: Reply) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;
  /**
   * Post-copy's return path: set while post-copy runs. A page request at any
   * other time is a protocol error.
   */
  onPageRequest: PageRequestHandler | undefined;

  /** Why the inbox failed, if it did. */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Decodes a frame from the destination (call from the frame reader). */
  take(frame: ReceivedFrame): void {
    switch (frame.type) {
      case FrameType.accept:
        this.deliver({ type: "accept", sessionId: decodeAccept(frame.payload) });
        return;
      case FrameType.resumed:
        if (frame.length !== 0) throw new FrameError("payload", "resumed frame: payload not empty");
        this.deliver({ type: "resumed" });
        return;
      case FrameType.result:
        this.deliver({ type: "result", result: decodeResult(frame.payload) });
        return;
      case FrameType.synced:
        this.deliver({ type: "synced", epoch: decodeEpoch(frame.payload, "synced") });
        return;
      case FrameType.postcopyDone:
        this.deliver({ type: "postcopyDone", done: decodePostcopyDone(frame.payload) });
        return;
      case FrameType.recvBitmap:
        this.deliver({ type: "recvBitmap", ...decodeRecvBitmap(frame.payload) });
        return;
      case FrameType.resumeAck:
        this.deliver({ type: "resumeAck", rerequested: decodeResumeAck(frame.payload) });
        return;
      case FrameType.pageRequest: {
        const handler = this.onPageRequest;
        if (!handler) {
          throw new FrameError("type", `frame ${frame.sequence}: a page request outside post-copy`);
        }
        const { first, count } = decodePageRequest(frame.payload);
        handler(first, count);
        return;
      }
      case FrameType.error:
        this.fail(
          new PeerError(`the destination stopped the migration: ${decodeError(frame.payload)}`),
        );
        return;
      default:
        throw new FrameError(
          "type",
          `frame ${frame.sequence}: a destination does not send ${frameTypeName(frame.type)} frames`,
        );
    }
  }

  /** Fails every present and future wait with `error` (the first reason wins). */
  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.waiter?.reject(error);
    this.waiter = undefined;
  }

  private deliver(reply: Reply): void {
    if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve(reply);
    } else {
      this.queue.push(reply);
    }
  }

  /** The next reply, which must be of `type`, within `timeoutMs`. */
  async next<T extends Reply["type"]>(
    type: T,
    timeoutMs: number,
    what: string,
  ): Promise<Extract<Reply, { type: T }>> {
    if (this.failure) throw this.failure;
    const queued = this.queue.shift();
    const reply =
      queued ??
      (await new Promise<Reply>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.waiter = undefined;
          reject(new PeerError(`the destination did not ${what} within ${timeoutMs} ms`));
        }, timeoutMs);
        this.waiter = {
          resolve: (r) => {
            clearTimeout(timer);
            resolve(r);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        };
      }));
    if (reply.type !== type) {
      throw new FrameError(
        "type",
        `expected a ${type} frame from the destination, got ${reply.type}`,
      );
    }
    return reply as Extract<Reply, { type: T }>;
  }
}
