/** What was wrong with a frame: the code names the field that failed its check. */
export type FrameErrorCode =
  | "truncated"
  | "bad-version"
  | "bad-ihl"
  | "bad-total-length"
  | "bad-extension-header"
  | "bad-data-offset"
  | "bad-udp-length"
  | "too-large";

/** A frame failed a bounds or consistency check; says which field and where. */
export class FrameError extends RangeError {
  override name = "FrameError";

  /**
   * @param code - which check failed
   * @param offset - byte offset in the frame of the field that failed it
   * @param detail - what was found and what was expected
   */
  constructor(
    readonly code: FrameErrorCode,
    readonly offset: number,
    detail: string,
  ) {
    super(`frame: ${detail} (${code} at byte ${offset})`);
  }
}

/** What was wrong with a large send. */
export type SendErrorCode =
  | "bad-mss"
  | "too-large"
  | "not-offloadable"
  | "bad-template"
  | "bad-id"
  | "no-room";

/** A large send cannot be segmented as asked. */
export class SendError extends RangeError {
  override name = "SendError";

  constructor(
    readonly code: SendErrorCode,
    detail: string,
  ) {
    super(`large send: ${detail} (${code})`);
  }
}

/** What was wrong with a capture file. */
export type CaptureErrorCode =
  | "truncated"
  | "bad-magic"
  | "bad-version"
  | "bad-block"
  | "bad-length"
  | "unsupported-link-type"
  | "too-large";

/** A capture file is corrupt or of a kind hvlab does not read; says where. */
export class CaptureError extends RangeError {
  override name = "CaptureError";

  constructor(
    readonly code: CaptureErrorCode,
    readonly offset: number,
    detail: string,
  ) {
    super(`capture: ${detail} (${code} at byte ${offset})`);
  }
}
