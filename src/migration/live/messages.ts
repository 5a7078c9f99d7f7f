/*
 * Payloads of the live-migration frames (little-endian). Every decoder
 * checks lengths and reserved fields and bounds every count before use.
 *
 *   hello (32 bytes)          accept (8)             pages
 *   0  f64 guest bytes        0 u32 session id       0  u32 count n (1..MAX_PAGES_PER_FRAME)
 *   8  u32 page shift (12)    4 u32 reserved = 0     4  u32 reserved = 0
 *   12 u32 session id                                8  u32 x n page numbers
 *   16 u32 device-state bytes                        8 + 4n  n pages, back to back
 *   20 u32 flags: bit 0 = no page verification; other bits 0
 *   24 u32 x 2 reserved = 0
 *
 *   verify                    verify-end (16)        result (16)
 *   0 u32 first page          0 u32 pages verified   0 u32 mismatching pages
 *   4 u32 count n             4 u32 reserved = 0     4 u32 first mismatch (2^32-1: none)
 *   8 u64 x n XXH64 digests   8 u64 device digest    8 u32 pages received (mod 2^32)
 *                                                    12 u32 device state good (1) or not (0)
 *
 *   error: the reason as UTF-8, at most 1,024 bytes.
 */
import { FrameError } from "./frame.js";

/** Pages per pages frame (1 MiB of 4 KiB pages): big enough to amortize a write. */
export const MAX_PAGES_PER_FRAME = 256;
/** Page digests per verify frame. */
export const MAX_DIGESTS_PER_FRAME = 65_536;
/** Longest error reason. */
export const MAX_ERROR_BYTES = 1024;
/** Largest device-state blob (one frame). */
export const MAX_DEVICE_STATE_BYTES = 4 * 1024 * 1024;
/** "No mismatch" in a result. */
export const NO_MISMATCH = 0xffff_ffff;

/** What the source says about the guest it will send. */
export interface Hello {
  readonly guestBytes: number;
  readonly pageShift: number;
  readonly sessionId: number;
  readonly deviceStateBytes: number;
  /** Whether the destination checks every page against the source's digests at the end. */
  readonly verify: boolean;
}

/** Hello flag: skip the final page verification (benchmarks of the stream alone). */
const HELLO_NO_VERIFY = 1;

/** What verification found on the destination. */
export interface VerifyResult {
  readonly mismatches: number;
  /** First page whose digest differs, or null. */
  readonly firstMismatch: number | null;
  readonly pagesReceived: number;
  readonly deviceStateGood: boolean;
}

function payloadError(what: string, detail: string): FrameError {
  return new FrameError("payload", `${what} frame: ${detail}`);
}

function exactly(view: DataView, bytes: number, what: string): void {
  if (view.byteLength !== bytes) {
    throw payloadError(what, `payload of ${view.byteLength} bytes, expected ${bytes}`);
  }
}

/** Writes a hello payload (32 bytes). */
export function encodeHello(view: DataView, hello: Hello): number {
  view.setFloat64(0, hello.guestBytes, true);
  view.setUint32(8, hello.pageShift, true);
  view.setUint32(12, hello.sessionId >>> 0, true);
  view.setUint32(16, hello.deviceStateBytes, true);
  view.setUint32(20, hello.verify ? 0 : HELLO_NO_VERIFY, true);
  for (let at = 24; at < 32; at += 4) view.setUint32(at, 0, true);
  return 32;
}

/** Reads a hello payload. Sizes are checked by the destination against its own limits. */
export function decodeHello(view: DataView): Hello {
  exactly(view, 32, "hello");
  const flags = view.getUint32(20, true);
  if ((flags & ~HELLO_NO_VERIFY) !== 0) throw payloadError("hello", `unknown flags ${flags}`);
  for (let at = 24; at < 32; at += 4) {
    if (view.getUint32(at, true) !== 0) throw payloadError("hello", "reserved fields are not zero");
  }
  const guestBytes = view.getFloat64(0, true);
  if (!Number.isSafeInteger(guestBytes) || guestBytes <= 0) {
    throw payloadError("hello", `guest size ${guestBytes} is not a positive whole number of bytes`);
  }
  const pageShift = view.getUint32(8, true);
  if (pageShift !== 12)
    throw payloadError("hello", `page shift ${pageShift} (only 4 KiB pages: 12)`);
  if (guestBytes % 2 ** pageShift !== 0) {
    throw payloadError("hello", `guest size ${guestBytes} is not a whole number of pages`);
  }
  const deviceStateBytes = view.getUint32(16, true);
  if (deviceStateBytes > MAX_DEVICE_STATE_BYTES) {
    throw payloadError(
      "hello",
      `device state of ${deviceStateBytes} bytes is over ${MAX_DEVICE_STATE_BYTES}`,
    );
  }
  return {
    guestBytes,
    pageShift,
    sessionId: view.getUint32(12, true),
    deviceStateBytes,
    verify: (flags & HELLO_NO_VERIFY) === 0,
  };
}

/** Writes an accept payload (8 bytes). */
export function encodeAccept(view: DataView, sessionId: number): number {
  view.setUint32(0, sessionId >>> 0, true);
  view.setUint32(4, 0, true);
  return 8;
}

/** Reads an accept payload: the session id. */
export function decodeAccept(view: DataView): number {
  exactly(view, 8, "accept");
  if (view.getUint32(4, true) !== 0) throw payloadError("accept", "reserved field is not zero");
  return view.getUint32(0, true);
}

/**
 * Checks a pages payload's shape for `pageBytes`-byte pages and returns its
 * page count (page numbers are checked against the guest by the scatter).
 */
export function decodePagesHeader(view: DataView, pageBytes: number): number {
  if (view.byteLength < 8) throw payloadError("pages", `payload of ${view.byteLength} bytes`);
  const count = view.getUint32(0, true);
  if (count < 1 || count > MAX_PAGES_PER_FRAME) {
    throw payloadError("pages", `page count ${count} is not from 1 to ${MAX_PAGES_PER_FRAME}`);
  }
  if (view.getUint32(4, true) !== 0) throw payloadError("pages", "reserved field is not zero");
  const expected = 8 + count * (4 + pageBytes);
  if (view.byteLength !== expected) {
    throw payloadError(
      "pages",
      `${count} pages need ${expected} bytes, the payload has ${view.byteLength}`,
    );
  }
  return count;
}

/** Writes a verify-end payload (16 bytes). */
export function encodeVerifyEnd(view: DataView, pages: number, deviceDigest: bigint): number {
  view.setUint32(0, pages >>> 0, true);
  view.setUint32(4, 0, true);
  view.setBigUint64(8, deviceDigest, true);
  return 16;
}

/** Reads a verify-end payload. */
export function decodeVerifyEnd(view: DataView): { pages: number; deviceDigest: bigint } {
  exactly(view, 16, "verify-end");
  if (view.getUint32(4, true) !== 0) throw payloadError("verify-end", "reserved field is not zero");
  return { pages: view.getUint32(0, true), deviceDigest: view.getBigUint64(8, true) };
}

/** Checks a verify payload's shape; returns its first page and count. */
export function decodeVerifyHeader(view: DataView): { first: number; count: number } {
  if (view.byteLength < 8) throw payloadError("verify", `payload of ${view.byteLength} bytes`);
  const first = view.getUint32(0, true);
  const count = view.getUint32(4, true);
  if (count < 1 || count > MAX_DIGESTS_PER_FRAME) {
    throw payloadError("verify", `digest count ${count} is not from 1 to ${MAX_DIGESTS_PER_FRAME}`);
  }
  if (view.byteLength !== 8 + count * 8) {
    throw payloadError(
      "verify",
      `${count} digests need ${8 + count * 8} bytes, the payload has ${view.byteLength}`,
    );
  }
  return { first, count };
}

/** Writes a result payload (16 bytes). */
export function encodeResult(view: DataView, result: VerifyResult): number {
  view.setUint32(0, result.mismatches >>> 0, true);
  view.setUint32(4, result.firstMismatch ?? NO_MISMATCH, true);
  view.setUint32(8, result.pagesReceived >>> 0, true);
  view.setUint32(12, result.deviceStateGood ? 1 : 0, true);
  return 16;
}

/** Reads a result payload. */
export function decodeResult(view: DataView): VerifyResult {
  exactly(view, 16, "result");
  const good = view.getUint32(12, true);
  if (good > 1) throw payloadError("result", `device-state flag ${good} is not 0 or 1`);
  const first = view.getUint32(4, true);
  return {
    mismatches: view.getUint32(0, true),
    firstMismatch: first === NO_MISMATCH ? null : first,
    pagesReceived: view.getUint32(8, true),
    deviceStateGood: good === 1,
  };
}

/** The bytes of an error payload: the reason, cut to {@link MAX_ERROR_BYTES}. */
export function encodeError(reason: string): Uint8Array {
  const bytes = new TextEncoder().encode(reason);
  return bytes.subarray(0, MAX_ERROR_BYTES);
}

/** Reads an error payload as text (invalid UTF-8 is replaced, never trusted). */
export function decodeError(view: DataView): string {
  if (view.byteLength > MAX_ERROR_BYTES) {
    throw payloadError("error", `reason of ${view.byteLength} bytes is over ${MAX_ERROR_BYTES}`);
  }
  const text = new TextDecoder("utf-8", { fatal: false }).decode(
    new Uint8Array(view.buffer, view.byteOffset, view.byteLength).slice(),
  );
  // One line: a peer cannot inject terminal control or extra lines.
  return [...text].map((c) => (c < " " || c === "\u007f" ? " " : c)).join("");
}
