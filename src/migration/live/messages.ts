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
 *   24 u32 multifd channels (0: pages on this connection only)
 *   28 u32 reserved = 0
 *
 *   records: page-stream records (the page kernel's, QEMU's RAM records:
 *   ZERO, PAGE, XBZRLE; see assembly/page.ts), 1 to MAX_RECORDS_PAYLOAD bytes
 *
 *   channel-hello (16)        sync (8)               synced (8)
 *   0 u32 session id          0 u32 epoch            0 u32 epoch
 *   4 u32 channel index       4 u32 reserved = 0     4 u32 reserved = 0
 *   8 u32 channels
 *   12 u32 reserved = 0
 *
 *   verify                    verify-end (16)        result (16)
 *   0 u32 first page          0 u32 pages verified   0 u32 mismatching pages
 *   4 u32 count n             4 u32 reserved = 0     4 u32 first mismatch (2^32-1: none)
 *   8 u64 x n XXH64 digests   8 u64 device digest    8 u32 pages received (mod 2^32)
 *                                                    12 u32 device state good (1) or not (0)
 *
 *   error: the reason as UTF-8, at most 1,024 bytes.
 *
 *   Post-copy (QEMU migration/postcopy-ram.c; docs/migration-live.md):
 *
 *   discard                   postcopy-run (16)        page-request (8)
 *   0 u32 count n             0 u32 vCPUs (1..64)      0 u32 first page
 *   4 u32 reserved = 0        4 u32 workload seed      4 u32 count (1..MAX_PAGES_PER_FRAME)
 *   8 u32 x n page numbers    8 f64 writes per second
 *
 *   postcopy-end (8)          postcopy-done (32 + 8n)
 *   0 u32 pages pushed        0  u32 requests sent
 *   4 u32 reserved = 0        4  u32 vCPUs n
 *                             8  u32 pages dropped (already there)
 *                             12 u32 reserved = 0
 *                             16 f64 phase ms (vCPUs started to stopped)
 *                             24 f64 postcopy-blocktime ms (all vCPUs blocked at once)
 *                             32 f64 x n postcopy-vcpu-blocktime ms
 *
 *   Post-copy recovery (QEMU migration/ram.c ramblock_recv_bitmap_send and
 *   ram_dirty_bitmap_reload; migration/savevm.c loadvm_postcopy_handle_resume):
 *
 *   recover-hello (8)         recv-bitmap (16 + 8w)         postcopy-resume (8)
 *   0 u32 session id          0  u32 guest pages n          0 u32 pages left to send
 *   4 u32 guest pages         4  u32 reserved = 0           4 u32 reserved = 0
 *                             8  u64 x w bitmap, w = ceil(n / 64): bit p
 *                                (byte p >> 3, bit p & 7) set where page p
 *                                is received; bits past n are 0
 *                             8 + 8w u64 end mark 0x0123456789abcdef
 *
 *   resume-ack (8)
 *   0 u32 value (1, QEMU's MIGRATION_RESUME_ACK_VALUE)
 *   4 u32 pages the destination requested again (its vCPUs still wait on them)
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
/** Largest records payload: QEMU's multifd packet (512 KiB) and a little over. */
export const MAX_RECORDS_PAYLOAD = 1024 * 1024 + 64 * 1024;
/** Most multifd channels a session may open (QEMU allows 255; beyond a few, a loopback gains nothing). */
export const MAX_MULTIFD_CHANNELS = 16;
/** Page numbers per discard frame. */
export const MAX_DISCARD_PAGES = 65_536;
/** Most vCPUs a post-copy destination runs (a postcopy-done frame lists each one's blocktime). */
export const MAX_POSTCOPY_VCPUS = 64;
/** Fastest write rate a post-copy destination's vCPUs run at, writes per second. */
export const MAX_POSTCOPY_WRITE_RATE = 1_000_000;
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
  /** multifd channels that will join the session (0: none). */
  readonly channels: number;
}

/** A multifd channel joining a session (QEMU: the channel's initial packet, migration/multifd.c). */
export interface ChannelHello {
  readonly sessionId: number;
  readonly index: number;
  readonly channels: number;
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
  view.setUint32(24, hello.channels, true);
  view.setUint32(28, 0, true);
  return 32;
}

/** Reads a hello payload. Sizes are checked by the destination against its own limits. */
export function decodeHello(view: DataView): Hello {
  exactly(view, 32, "hello");
  const flags = view.getUint32(20, true);
  if ((flags & ~HELLO_NO_VERIFY) !== 0) throw payloadError("hello", `unknown flags ${flags}`);
  if (view.getUint32(28, true) !== 0) throw payloadError("hello", "reserved field is not zero");
  const channels = view.getUint32(24, true);
  if (channels > MAX_MULTIFD_CHANNELS) {
    throw payloadError(
      "hello",
      `${channels} multifd channels is over the limit of ${MAX_MULTIFD_CHANNELS}`,
    );
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
    channels,
  };
}

/** Writes a channel-hello payload (16 bytes). */
export function encodeChannelHello(view: DataView, hello: ChannelHello): number {
  view.setUint32(0, hello.sessionId >>> 0, true);
  view.setUint32(4, hello.index, true);
  view.setUint32(8, hello.channels, true);
  view.setUint32(12, 0, true);
  return 16;
}

/** Reads a channel-hello payload; the index is checked against the channels it names. */
export function decodeChannelHello(view: DataView): ChannelHello {
  exactly(view, 16, "channel-hello");
  if (view.getUint32(12, true) !== 0) {
    throw payloadError("channel-hello", "reserved field is not zero");
  }
  const channels = view.getUint32(8, true);
  const index = view.getUint32(4, true);
  if (channels < 1 || channels > MAX_MULTIFD_CHANNELS || index >= channels) {
    throw payloadError(
      "channel-hello",
      `channel ${index} of ${channels} (channels from 1 to ${MAX_MULTIFD_CHANNELS})`,
    );
  }
  return { sessionId: view.getUint32(0, true), index, channels };
}

/** Writes a sync or synced payload (8 bytes): the epoch. */
export function encodeEpoch(view: DataView, epoch: number): number {
  view.setUint32(0, epoch >>> 0, true);
  view.setUint32(4, 0, true);
  return 8;
}

/** Reads a sync or synced payload: the epoch. */
export function decodeEpoch(view: DataView, what: "sync" | "synced"): number {
  exactly(view, 8, what);
  if (view.getUint32(4, true) !== 0) throw payloadError(what, "reserved field is not zero");
  return view.getUint32(0, true);
}

/** Checks a records payload's size (each record is checked by the decoder as it lands). */
export function checkRecordsPayload(view: DataView): void {
  if (view.byteLength < 1 || view.byteLength > MAX_RECORDS_PAYLOAD) {
    throw payloadError(
      "records",
      `payload of ${view.byteLength} bytes is not from 1 to ${MAX_RECORDS_PAYLOAD}`,
    );
  }
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

/** How the destination's vCPUs run once post-copy starts (their state travels with the device state). */
export interface PostcopyRun {
  readonly vcpus: number;
  readonly seed: number;
  /** Guest writes per second over all vCPUs (0: idle). */
  readonly writesPerSecond: number;
}

/** What the destination measured over post-copy (QEMU's query-migrate names in comments). */
export interface PostcopyDone {
  /** postcopy-requests: page requests sent on the return path. */
  readonly requests: number;
  /** Pages that arrived where the destination already had them (a late background copy, a second request): dropped. */
  readonly dropped: number;
  /** From the vCPUs' start to their stop, ms. */
  readonly phaseMs: number;
  /** postcopy-blocktime: time every vCPU was blocked at once, ms. */
  readonly blocktime: number;
  /** postcopy-vcpu-blocktime: time each vCPU was blocked, ms. */
  readonly vcpuBlocktime: readonly number[];
}

/** Writes a discard payload for `pages` (1 to {@link MAX_DISCARD_PAGES} page numbers). */
export function encodeDiscard(view: DataView, pages: ArrayLike<number>): number {
  view.setUint32(0, pages.length, true);
  view.setUint32(4, 0, true);
  for (let i = 0; i < pages.length; i++) view.setUint32(8 + i * 4, pages[i] ?? 0, true);
  return 8 + pages.length * 4;
}

/** Reads a discard payload: its page numbers, each below `guestPages`. */
export function decodeDiscard(view: DataView, guestPages: number): Uint32Array {
  if (view.byteLength < 8) throw payloadError("discard", `payload of ${view.byteLength} bytes`);
  const count = view.getUint32(0, true);
  if (count < 1 || count > MAX_DISCARD_PAGES) {
    throw payloadError("discard", `page count ${count} is not from 1 to ${MAX_DISCARD_PAGES}`);
  }
  if (view.getUint32(4, true) !== 0) throw payloadError("discard", "reserved field is not zero");
  if (view.byteLength !== 8 + count * 4) {
    throw payloadError(
      "discard",
      `${count} pages need ${8 + count * 4} bytes, the payload has ${view.byteLength}`,
    );
  }
  const pages = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const page = view.getUint32(8 + i * 4, true);
    if (page >= guestPages) {
      throw payloadError("discard", `page ${page} is outside the guest's ${guestPages} pages`);
    }
    pages[i] = page;
  }
  return pages;
}

/** Writes a postcopy-run payload (16 bytes). */
export function encodePostcopyRun(view: DataView, run: PostcopyRun): number {
  view.setUint32(0, run.vcpus, true);
  view.setUint32(4, run.seed >>> 0, true);
  view.setFloat64(8, run.writesPerSecond, true);
  return 16;
}

/** Reads a postcopy-run payload. */
export function decodePostcopyRun(view: DataView): PostcopyRun {
  exactly(view, 16, "postcopy-run");
  const vcpus = view.getUint32(0, true);
  if (vcpus < 1 || vcpus > MAX_POSTCOPY_VCPUS) {
    throw payloadError("postcopy-run", `${vcpus} vCPUs is not from 1 to ${MAX_POSTCOPY_VCPUS}`);
  }
  const writesPerSecond = view.getFloat64(8, true);
  if (!(writesPerSecond >= 0 && writesPerSecond <= MAX_POSTCOPY_WRITE_RATE)) {
    throw payloadError(
      "postcopy-run",
      `${writesPerSecond} writes per second is not from 0 to ${MAX_POSTCOPY_WRITE_RATE}`,
    );
  }
  return { vcpus, seed: view.getUint32(4, true), writesPerSecond };
}

/** Writes a page-request payload (8 bytes). */
export function encodePageRequest(view: DataView, first: number, count: number): number {
  view.setUint32(0, first >>> 0, true);
  view.setUint32(4, count >>> 0, true);
  return 8;
}

/**
 * Reads a page-request payload. The range is checked against the guest by
 * the source, which alone knows it here: `guestPages` when given.
 */
export function decodePageRequest(
  view: DataView,
  guestPages?: number,
): { first: number; count: number } {
  exactly(view, 8, "page-request");
  const first = view.getUint32(0, true);
  const count = view.getUint32(4, true);
  if (count < 1 || count > MAX_PAGES_PER_FRAME) {
    throw payloadError("page-request", `count ${count} is not from 1 to ${MAX_PAGES_PER_FRAME}`);
  }
  if (guestPages !== undefined && first + count > guestPages) {
    throw payloadError(
      "page-request",
      `pages ${first} to ${first + count - 1} are outside the guest's ${guestPages} pages`,
    );
  }
  return { first, count };
}

/** Writes a postcopy-end payload (8 bytes). */
export function encodePostcopyEnd(view: DataView, pagesPushed: number): number {
  view.setUint32(0, pagesPushed >>> 0, true);
  view.setUint32(4, 0, true);
  return 8;
}

/** Reads a postcopy-end payload: the pages pushed (mod 2^32). */
export function decodePostcopyEnd(view: DataView): number {
  exactly(view, 8, "postcopy-end");
  if (view.getUint32(4, true) !== 0) {
    throw payloadError("postcopy-end", "reserved field is not zero");
  }
  return view.getUint32(0, true);
}

/** Bytes of a postcopy-done payload for `vcpus` vCPUs. */
export function postcopyDoneBytes(vcpus: number): number {
  return 32 + vcpus * 8;
}

/** Writes a postcopy-done payload. */
export function encodePostcopyDone(view: DataView, done: PostcopyDone): number {
  view.setUint32(0, done.requests >>> 0, true);
  view.setUint32(4, done.vcpuBlocktime.length, true);
  view.setUint32(8, done.dropped >>> 0, true);
  view.setUint32(12, 0, true);
  view.setFloat64(16, done.phaseMs, true);
  view.setFloat64(24, done.blocktime, true);
  done.vcpuBlocktime.forEach((ms, i) => {
    view.setFloat64(32 + i * 8, ms, true);
  });
  return postcopyDoneBytes(done.vcpuBlocktime.length);
}

/** Reads a postcopy-done payload; every time is a finite, non-negative figure no longer than the phase. */
export function decodePostcopyDone(view: DataView): PostcopyDone {
  if (view.byteLength < 32) {
    throw payloadError("postcopy-done", `payload of ${view.byteLength} bytes`);
  }
  const vcpus = view.getUint32(4, true);
  if (vcpus < 1 || vcpus > MAX_POSTCOPY_VCPUS) {
    throw payloadError("postcopy-done", `${vcpus} vCPUs is not from 1 to ${MAX_POSTCOPY_VCPUS}`);
  }
  exactly(view, postcopyDoneBytes(vcpus), "postcopy-done");
  if (view.getUint32(12, true) !== 0) {
    throw payloadError("postcopy-done", "reserved field is not zero");
  }
  const phaseMs = view.getFloat64(16, true);
  if (!(Number.isFinite(phaseMs) && phaseMs >= 0)) {
    throw payloadError("postcopy-done", `phase of ${phaseMs} ms`);
  }
  const time = (at: number, what: string) => {
    const ms = view.getFloat64(at, true);
    if (!(Number.isFinite(ms) && ms >= 0 && ms <= phaseMs)) {
      throw payloadError("postcopy-done", `${what} of ${ms} ms in a phase of ${phaseMs} ms`);
    }
    return ms;
  };
  const blocktime = time(24, "blocktime");
  const vcpuBlocktime = Array.from({ length: vcpus }, (_, i) =>
    time(32 + i * 8, `vCPU ${i} blocktime`),
  );
  return {
    requests: view.getUint32(0, true),
    dropped: view.getUint32(8, true),
    phaseMs,
    blocktime,
    vcpuBlocktime,
  };
}

/** Most pages a received-page bitmap covers: the largest live guest's (2 GiB of 4 KiB pages). */
export const MAX_RECV_BITMAP_PAGES = 2 ** 19;
/**
 * The received-page bitmap's end mark: a payload cut or shifted in the middle
 * does not end on it (QEMU's RAMBLOCK_RECV_BITMAP_ENDING, migration/ram.c).
 */
export const RECV_BITMAP_END_MARK = 0x0123456789abcdefn;
/** QEMU's MIGRATION_RESUME_ACK_VALUE (migration/migration.h). */
export const RESUME_ACK_VALUE = 1;

/** A reconnecting source's first frame: the session it resumes and the guest's pages. */
export interface RecoverHello {
  readonly sessionId: number;
  readonly guestPages: number;
}

/** Writes a recover-hello payload (8 bytes). */
export function encodeRecoverHello(view: DataView, hello: RecoverHello): number {
  view.setUint32(0, hello.sessionId >>> 0, true);
  view.setUint32(4, hello.guestPages >>> 0, true);
  return 8;
}

/** Reads a recover-hello payload. */
export function decodeRecoverHello(view: DataView): RecoverHello {
  exactly(view, 8, "recover-hello");
  return { sessionId: view.getUint32(0, true), guestPages: view.getUint32(4, true) };
}

/** Bytes of a recv-bitmap payload for `pages` pages. */
export function recvBitmapBytes(pages: number): number {
  return 16 + Math.ceil(pages / 64) * 8;
}

/**
 * Writes a recv-bitmap payload: `received(p)` says whether page p is held.
 * Returns its length.
 */
export function encodeRecvBitmap(
  view: DataView,
  pages: number,
  received: (page: number) => boolean,
): number {
  const bytes = recvBitmapBytes(pages);
  view.setUint32(0, pages >>> 0, true);
  view.setUint32(4, 0, true);
  for (let at = 8; at < bytes - 8; at++) view.setUint8(at, 0);
  for (let page = 0; page < pages; page++) {
    if (!received(page)) continue;
    const at = 8 + (page >> 3);
    view.setUint8(at, view.getUint8(at) | (1 << (page & 7)));
  }
  view.setBigUint64(bytes - 8, RECV_BITMAP_END_MARK, true);
  return bytes;
}

/**
 * Reads a recv-bitmap payload: its page count and a copy of its bits (the
 * frame's bytes are reused). The count, the length it implies, the end
 * mark, the reserved field and the bits past the count are all checked.
 */
export function decodeRecvBitmap(view: DataView): { pages: number; bits: Uint8Array } {
  if (view.byteLength < 16) {
    throw payloadError("recv-bitmap", `payload of ${view.byteLength} bytes, at least 16`);
  }
  const pages = view.getUint32(0, true);
  if (pages < 1 || pages > MAX_RECV_BITMAP_PAGES) {
    throw payloadError("recv-bitmap", `${pages} pages is not from 1 to ${MAX_RECV_BITMAP_PAGES}`);
  }
  exactly(view, recvBitmapBytes(pages), "recv-bitmap");
  if (view.getUint32(4, true) !== 0) {
    throw payloadError("recv-bitmap", "reserved field is not zero");
  }
  const end = view.byteLength - 8;
  const mark = view.getBigUint64(end, true);
  if (mark !== RECV_BITMAP_END_MARK) {
    throw payloadError(
      "recv-bitmap",
      `end mark at byte ${end} is 0x${mark.toString(16)}, not 0x${RECV_BITMAP_END_MARK.toString(16)}`,
    );
  }
  const bits = new Uint8Array(end - 8);
  for (let i = 0; i < bits.length; i++) bits[i] = view.getUint8(8 + i);
  for (let page = pages; page < bits.length * 8; page++) {
    if (((bits[page >> 3] ?? 0) >> (page & 7)) & 1) {
      throw payloadError("recv-bitmap", `bit ${page} is set past the guest's ${pages} pages`);
    }
  }
  return { pages, bits };
}

/** Writes a postcopy-resume payload (8 bytes). */
export function encodePostcopyResume(view: DataView, pagesLeft: number): number {
  view.setUint32(0, pagesLeft >>> 0, true);
  view.setUint32(4, 0, true);
  return 8;
}

/** Reads a postcopy-resume payload: the pages the source has left to send. */
export function decodePostcopyResume(view: DataView): number {
  exactly(view, 8, "postcopy-resume");
  if (view.getUint32(4, true) !== 0) {
    throw payloadError("postcopy-resume", "reserved field is not zero");
  }
  return view.getUint32(0, true);
}

/** Writes a resume-ack payload (8 bytes). */
export function encodeResumeAck(view: DataView, rerequested: number): number {
  view.setUint32(0, RESUME_ACK_VALUE, true);
  view.setUint32(4, rerequested >>> 0, true);
  return 8;
}

/** Reads a resume-ack payload: the pages the destination requested again. */
export function decodeResumeAck(view: DataView): number {
  exactly(view, 8, "resume-ack");
  const value = view.getUint32(0, true);
  if (value !== RESUME_ACK_VALUE) {
    throw payloadError("resume-ack", `value ${value}, not ${RESUME_ACK_VALUE}`);
  }
  return view.getUint32(4, true);
}
