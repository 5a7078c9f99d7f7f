import { createGunzip } from "node:zlib";
import { TraceFormatError } from "./errors.js";
import { LackeyScanner } from "./lackey-scanner.js";
import { ACCESS } from "./mmu.js";
import { openTraceSource, type TraceSourceOptions } from "./trace-source.js";

/** Trace formats hvlab reads (Valgrind lackey/lk_main.c; ChampSim inc/trace_instruction.h). */
export const TRACE_FORMATS = ["lackey", "plain", "champsim", "champsim-load-type"] as const;
/** A trace format name. */
export type TraceFormat = (typeof TRACE_FORMATS)[number];

/** ChampSim's input_instr: 64 bytes. */
export const CHAMPSIM_RECORD_BYTES = 64;
/** The newer layout with a trailing load_type byte. */
export const CHAMPSIM_LOAD_TYPE_RECORD_BYTES = 65;

/** Highest virtual address a record may carry (57 bits, 5-level paging). */
const MAX_ADDRESS = 2 ** 57;
/** Longest text line accepted before the line is malformed (stops unbounded buffering). */
const MAX_LINE = 4096;

/**
 * Output of a parser: records as pairs of u32 (low word: address bits 0-31
 * with bits 0-11 replaced by the access kind; high word: bits 32-63).
 */
export class RecordBuffer {
  words: Uint32Array;
  count = 0;
  constructor(capacity = 65_536) {
    this.words = new Uint32Array(capacity * 2);
  }
  /** Appends one access. */
  push(address: number, kind: number): void {
    if (this.count * 2 >= this.words.length) this.reserve(1);
    const low = address % 4294967296;
    this.words[this.count * 2] = ((low - (low % 4096)) | kind) >>> 0;
    this.words[this.count * 2 + 1] = (address - low) / 4294967296;
    this.count++;
  }
  clear(): void {
    this.count = 0;
  }
  /** Makes room for `more` records beyond `count` (so that a parser may write words directly). */
  reserve(more: number): void {
    const need = (this.count + more) * 2;
    if (need <= this.words.length) return;
    const bigger = new Uint32Array(Math.max(need, this.words.length * 2));
    bigger.set(this.words.subarray(0, this.count * 2));
    this.words = bigger;
  }
}

/** Parsing options. */
export interface ParseOptions {
  /** Skip malformed lines or records (counting them) instead of stopping. */
  readonly lenient?: boolean;
  /**
   * Paging levels of the guest the trace will run in: a user address needs
   * 47 bits with 4 levels, 56 with 5 (default 5: every address a record can
   * hold). An address past them is an error that names the line.
   */
  readonly levels?: 4 | 5;
  /** The lackey line scanner to use (default: this thread's own, over a small memory of its own). */
  readonly scanner?: LackeyScanner;
}

/** The user address space's size for `levels` of paging. */
function userLimit(options: ParseOptions): number {
  return options.levels === 4 ? 2 ** 47 : 2 ** 56;
}

function beyondMessage(address: number, options: ParseOptions): string {
  return options.levels === 4
    ? `address 0x${address.toString(16)} is beyond the 4-level user address space (47 bits): run with --levels 5`
    : `address 0x${address.toString(16)} is beyond the 5-level user address space (56 bits)`;
}

/** A streaming parser: bytes in, records out, errors with the file and line. */
export interface TraceParser {
  /** Parses a chunk of the (decompressed) stream. */
  push(bytes: Uint8Array, out: RecordBuffer): void;
  /** The stream ended. */
  end(out: RecordBuffer): void;
  /** Lines or records skipped as malformed (lenient mode), and kernel-space addresses skipped. */
  readonly skipped: number;
  /** Of those, kernel-space addresses (ChampSim records of kernel code): the guest model runs user space. */
  readonly kernel: number;
}

const CH_0 = 48;
const CH_9 = 57;
const CH_A = 65;
const CH_F = 70;
const CH_a = 97;
const CH_f = 102;
const CH_x = 120;
const CH_SPACE = 32;
const CH_TAB = 9;
const CH_COMMA = 44;
const CH_NL = 10;
const CH_CR = 13;

function hexValue(c: number): number {
  if (c >= CH_0 && c <= CH_9) return c - CH_0;
  if (c >= CH_a && c <= CH_f) return c - CH_a + 10;
  if (c >= CH_A && c <= CH_F) return c - CH_A + 10;
  return -1;
}

/** Line-oriented text parser: lackey or plain, one line at a time over byte chunks. */
class TextParser implements TraceParser {
  skipped = 0;
  readonly kernel = 0;
  private line = 0;
  private carry: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly file: string,
    private readonly format: "lackey" | "plain",
    private readonly options: ParseOptions,
    private readonly scanner: LackeyScanner | null,
  ) {}

  push(bytes: Uint8Array, out: RecordBuffer): void {
    let data = bytes;
    let start = 0;
    if (this.carry.length > 0) {
      // Only the line that straddles the chunks is joined; the rest is parsed in place.
      const nl = bytes.indexOf(CH_NL);
      const head = nl < 0 ? bytes : bytes.subarray(0, nl + 1);
      data = new Uint8Array(this.carry.length + head.length);
      data.set(this.carry);
      data.set(head, this.carry.length);
      if (nl >= 0) {
        this.parseLine(data, 0, data.length - 1, out);
        data = bytes;
        start = nl + 1;
      }
    }
    if (this.scanner && data === bytes) start = this.lackeyLines(this.scanner, data, start, out);
    for (;;) {
      const nl = data.indexOf(CH_NL, start);
      if (nl < 0) break;
      this.parseLine(data, start, nl, out);
      start = nl + 1;
    }
    this.carry = data.slice(start);
    if (this.carry.length > MAX_LINE) {
      this.line++;
      this.fail(`line longer than ${MAX_LINE} bytes`);
      this.carry = new Uint8Array(0);
    }
  }

  end(out: RecordBuffer): void {
    if (this.carry.length > 0) this.parseLine(this.carry, 0, this.carry.length, out);
    this.carry = new Uint8Array(0);
  }

  private fail(reason: string): void {
    if (this.options.lenient) {
      this.skipped++;
      return;
    }
    throw new TraceFormatError(this.file, this.line, reason);
  }

  private parseLine(d: Uint8Array, from: number, to: number, out: RecordBuffer): void {
    this.line++;
    let end = to;
    if (end > from && d[end - 1] === CH_CR) end--;
    if (end === from) return;
    if (this.format === "lackey") this.lackey(d, from, end, out);
    else this.plain(d, from, end, out);
  }

  /**
   * Parses hex from `i`; returns [value, next index] or null. Past 2^53 a
   * number is exact only in coarser steps, and rounding the offset could
   * carry into the page number: the page (bits 12 and up, all a record
   * keeps) and the offset are summed apart, and past 2^53 only the page is
   * returned, exact.
   */
  private hex(d: Uint8Array, i: number, end: number): [number, number] | null {
    if (i + 1 < end && d[i] === CH_0 && d[i + 1] === CH_x) i += 2;
    let page = 0; // the address >> 12: at most 2^48, exact
    let offset = 0; // the address's low 12 bits
    const first = i;
    while (i < end) {
      const h = hexValue(d[i] as number);
      if (h < 0) break;
      offset = offset * 16 + h;
      page = page * 16 + Math.floor(offset / 4096);
      offset %= 4096;
      i++;
    }
    if (i === first || i - first > 15) return null;
    const base = page * 4096;
    if (base >= MAX_ADDRESS) return null;
    return [base + offset <= Number.MAX_SAFE_INTEGER ? base + offset : base, i];
  }

  /**
   * The lackey fast path: whole lines of the usual shapes (`I  addr,size`,
   * ` L|S|M addr,size`) turned into records by the wasm line scanner; a
   * line of any other shape (Valgrind's messages, a malformed line) goes
   * through {@link parseLine}, which says what is wrong with it. Returns where
   * the last whole line ended.
   */
  private lackeyLines(
    scanner: LackeyScanner,
    d: Uint8Array,
    start: number,
    out: RecordBuffer,
  ): number {
    return scanner.lines(
      d,
      start,
      this.options.levels === 4 ? 47 : 56,
      out,
      (lines) => {
        this.line += lines;
      },
      (from, lf) => this.parseLine(d, from, lf, out),
    );
  }

  private lackey(d: Uint8Array, from: number, end: number, out: RecordBuffer): void {
    const c0 = d[from] as number;
    // Valgrind's own messages: ==pid== and --pid--.
    if (c0 === 61 || c0 === 45) return;
    let kind: number;
    let i: number;
    if (c0 === 73 && d[from + 1] === CH_SPACE && d[from + 2] === CH_SPACE) {
      kind = ACCESS.execute | ACCESS.user;
      i = from + 3;
    } else if (c0 === CH_SPACE && d[from + 2] === CH_SPACE) {
      const op = d[from + 1];
      if (op === 76) kind = ACCESS.user;
      else if (op === 83) kind = ACCESS.write | ACCESS.user;
      else if (op === 77) kind = -1;
      else {
        this.fail("not a lackey access (expected 'I  ', ' L ', ' S ' or ' M ')");
        return;
      }
      i = from + 3;
    } else {
      this.fail("not a lackey access (expected 'I  ', ' L ', ' S ' or ' M ')");
      return;
    }
    const parsed = this.hex(d, i, end);
    if (!parsed) {
      this.fail("bad hex address");
      return;
    }
    const [address, next] = parsed;
    if (address >= userLimit(this.options)) {
      this.fail(beyondMessage(address, this.options));
      return;
    }
    if (d[next] !== CH_COMMA) {
      this.fail("expected ',size' after the address");
      return;
    }
    let size = 0;
    let j = next + 1;
    for (; j < end; j++) {
      const c = d[j] as number;
      if (c < CH_0 || c > CH_9) break;
      size = size * 10 + c - CH_0;
    }
    if (j === next + 1 || j !== end || size === 0) {
      this.fail("bad access size");
      return;
    }
    if (kind === -1) {
      out.push(address, ACCESS.user);
      out.push(address, ACCESS.write | ACCESS.user);
    } else {
      out.push(address, kind);
    }
  }

  private plain(d: Uint8Array, from: number, end: number, out: RecordBuffer): void {
    const c0 = d[from] as number;
    if (c0 === 35) return; // a comment
    let kind: number;
    if (c0 === 82 || c0 === 114) kind = ACCESS.user;
    else if (c0 === 87 || c0 === 119) kind = ACCESS.write | ACCESS.user;
    else {
      this.fail("expected 'R' or 'W' and a hex address");
      return;
    }
    let i = from + 1;
    if (d[i] !== CH_SPACE && d[i] !== CH_TAB) {
      this.fail("expected a space after R/W");
      return;
    }
    while (i < end && (d[i] === CH_SPACE || d[i] === CH_TAB)) i++;
    const parsed = this.hex(d, i, end);
    if (!parsed) {
      this.fail("bad hex address");
      return;
    }
    let j = parsed[1];
    while (j < end && (d[j] === CH_SPACE || d[j] === CH_TAB)) j++;
    if (j !== end) {
      this.fail("unexpected text after the address");
      return;
    }
    if (parsed[0] >= userLimit(this.options)) {
      this.fail(beyondMessage(parsed[0], this.options));
      return;
    }
    out.push(parsed[0], kind);
  }
}

/** u64 markers: a kernel-space address, and one past 57 bits that is not. */
const KERNEL = -1;
const BEYOND = -2;

/** ChampSim binary records: the instruction fetch, then its loads and stores. */
class ChampSimParser implements TraceParser {
  skipped = 0;
  kernel = 0;
  private record = 0;
  private carry: Uint8Array = new Uint8Array(0);
  private readonly size: number;

  constructor(
    private readonly file: string,
    format: "champsim" | "champsim-load-type",
    private readonly options: ParseOptions,
  ) {
    this.size = format === "champsim" ? CHAMPSIM_RECORD_BYTES : CHAMPSIM_LOAD_TYPE_RECORD_BYTES;
  }

  push(bytes: Uint8Array, out: RecordBuffer): void {
    let data = bytes;
    if (this.carry.length > 0) {
      data = new Uint8Array(this.carry.length + bytes.length);
      data.set(this.carry);
      data.set(bytes, this.carry.length);
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    for (; at + this.size <= data.length; at += this.size) this.parse(view, at, out);
    this.carry = data.slice(at);
  }

  end(): void {
    if (this.carry.length > 0) {
      this.record++;
      const reason = `truncated record: ${this.carry.length} of ${this.size} bytes`;
      if (!this.options.lenient)
        throw new TraceFormatError(this.file, this.record, reason, "record");
      this.skipped++;
    }
  }

  /** A u64 as a number; KERNEL for a canonical kernel-space address; BEYOND past 57 bits otherwise. */
  private u64(view: DataView, at: number): number {
    const low = view.getUint32(at, true);
    const high = view.getUint32(at + 4, true);
    // The upper canonical half (bits 63:47 set): kernel space, which ChampSim traces of whole systems hold.
    if (high >= 0xffff8000) return KERNEL;
    if (high >= 2 ** 25) return BEYOND;
    return high * 4294967296 + low;
  }

  private malformed(reason: string): void {
    if (!this.options.lenient) throw new TraceFormatError(this.file, this.record, reason, "record");
    this.skipped++;
  }

  /** Pushes one operand; false when the record must stop (a malformed operand, lenient). */
  private operand(address: number, kind: number, out: RecordBuffer): boolean {
    if (address === 0) return true; // unused slot
    if (address === KERNEL) {
      this.kernel++;
      this.skipped++;
      return true;
    }
    if (address === BEYOND) {
      this.malformed("address beyond 57 bits and not in kernel space");
      return false;
    }
    if (address >= userLimit(this.options)) {
      this.malformed(beyondMessage(address, this.options));
      return false;
    }
    out.push(address, kind);
    return true;
  }

  private parse(view: DataView, at: number, out: RecordBuffer): void {
    this.record++;
    const ip = this.u64(view, at);
    const isBranch = view.getUint8(at + 8);
    const taken = view.getUint8(at + 9);
    if (ip === 0 || isBranch > 1 || taken > 1) {
      this.malformed(ip === 0 ? "instruction pointer is 0" : "branch flags must be 0 or 1");
      return;
    }
    if (!this.operand(ip, ACCESS.execute | ACCESS.user, out)) return;
    // source_memory (4 x u64 at byte 32) are loads; destination_memory (2 x u64 at 16) are stores.
    for (let k = 0; k < 4; k++) {
      if (!this.operand(this.u64(view, at + 32 + 8 * k), ACCESS.user, out)) return;
    }
    for (let k = 0; k < 2; k++) {
      if (!this.operand(this.u64(view, at + 16 + 8 * k), ACCESS.write | ACCESS.user, out)) return;
    }
  }
}

/** A parser for `format`. */
export function traceParser(
  file: string,
  format: TraceFormat,
  options: ParseOptions = {},
): TraceParser {
  if (format === "lackey" || format === "plain") {
    const scanner = format === "lackey" ? (options.scanner ?? LackeyScanner.shared()) : null;
    return new TextParser(file, format, options, scanner);
  }
  return new ChampSimParser(file, format, options);
}

/**
 * How many of the first records of `head`, read at `size` bytes each, look
 * like ChampSim records: an instruction pointer that is a user or kernel
 * address, branch flags 0 or 1. Records at the wrong size shift by a byte a
 * record and stop looking like records within a few.
 */
function plausibleRecords(head: Uint8Array, size: number): number {
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const n = Math.min(64, Math.floor(head.length / size));
  let good = 0;
  for (let i = 0; i < n; i++) {
    const at = i * size;
    const high = view.getUint32(at + 4, true);
    const ip = high * 2 ** 32 + view.getUint32(at, true);
    const user = ip > 0 && high < 2 ** 25;
    if ((user || high >= 0xffff8000) && view.getUint8(at + 8) <= 1 && view.getUint8(at + 9) <= 1)
      good++;
  }
  return good;
}

/** Guesses a format from the first (decompressed) bytes. */
export function sniffFormat(head: Uint8Array): TraceFormat {
  const text = Buffer.from(head.subarray(0, 4096)).toString("latin1");
  const sample = head.subarray(0, 512);
  const printable = sample.every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127));
  if (!printable) {
    // The layout with a trailing load_type byte (65 bytes) when its records line up and 64 do not.
    return plausibleRecords(head, CHAMPSIM_LOAD_TYPE_RECORD_BYTES) > plausibleRecords(head, 64)
      ? "champsim-load-type"
      : "champsim";
  }
  if (/^(==\d+==|I {2}[0-9a-fA-F]+,| [LSM] [0-9a-fA-F]+,)/m.test(text)) return "lackey";
  return "plain";
}

/** Progress of a trace being read. */
export interface TraceProgress {
  /** Compressed (on-disk) bytes read so far. */
  readonly bytesRead: number;
  readonly totalBytes: number;
  readonly records: number;
}

/** Options of {@link streamTrace}. */
export interface StreamOptions extends ParseOptions, TraceSourceOptions {
  /** The format, or "auto" to sniff it (default). */
  readonly format?: TraceFormat | "auto";
  /** Called after every chunk of the file. */
  readonly onProgress?: (progress: TraceProgress) => void;
}

/** What a streamed trace was. */
export interface TraceSummary {
  readonly format: TraceFormat;
  readonly gzip: boolean;
  readonly records: number;
  /** Malformed lines or records skipped (lenient), and kernel-space addresses skipped. */
  readonly skipped: number;
  /** Kernel-space addresses skipped (counted in `skipped` too). */
  readonly kernel: number;
  readonly bytes: number;
}

/**
 * Streams a trace file (plain or gzip) without loading it whole: each chunk's
 * records are handed to `sink` (which may wait, for example for ring space).
 */
export async function streamTrace(
  file: string,
  sink: (records: RecordBuffer) => Promise<void> | void,
  options: StreamOptions = {},
): Promise<TraceSummary> {
  const { head, stream: raw, totalBytes: announced } = await openTraceSource(file, options);
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  const refused = compressionRefused(head);
  if (refused) {
    raw.destroy();
    throw new TraceFormatError(
      file,
      0,
      `is ${refused}-compressed: hvlab reads plain and gzip traces (decompress it first, or recompress it with gzip)`,
      "file",
    );
  }
  // Listeners and the pipe are attached in the same tick, so no chunk is missed.
  let bytesRead = 0;
  raw.on("data", (chunk: Buffer) => {
    bytesRead += chunk.length;
  });
  // 1 MiB of decompressed text per chunk (zlib's default is 16 KiB): fewer, larger batches.
  let source: AsyncIterable<Buffer> = raw;
  if (gzip) {
    const gunzip = createGunzip({ chunkSize: 1 << 20 });
    // pipe() does not pass an error on: without this a URL cut off mid-body would leave gunzip waiting.
    raw.on("error", (error) => gunzip.destroy(error));
    source = raw.pipe(gunzip);
  }
  let parser: TraceParser | null = null;
  let format: TraceFormat | null =
    options.format && options.format !== "auto" ? options.format : null;
  const out = new RecordBuffer();
  let records = 0;
  try {
    for await (const chunk of source) {
      if (!parser) {
        format ??= sniffFormat(chunk);
        parser = traceParser(file, format, options);
      }
      out.clear();
      parser.push(chunk, out);
      records += out.count;
      if (out.count > 0) await sink(out);
      options.onProgress?.({ bytesRead, totalBytes: announced ?? bytesRead, records });
    }
  } catch (error) {
    raw.destroy();
    if (error instanceof TraceFormatError) throw error;
    throw new TraceFormatError(file, 0, `cannot read: ${(error as Error).message}`, "file");
  }
  format ??= "plain";
  parser ??= traceParser(file, format, options);
  out.clear();
  parser.end(out);
  records += out.count;
  if (out.count > 0) await sink(out);
  if (records === 0) {
    throw new TraceFormatError(
      file,
      0,
      parser.skipped > 0
        ? `no memory accesses: all ${parser.skipped} lines or records were skipped`
        : "no memory accesses: the trace is empty or holds only comments",
      "file",
    );
  }
  return {
    format,
    gzip,
    records,
    skipped: parser.skipped,
    kernel: parser.kernel,
    bytes: announced ?? bytesRead,
  };
}

/** The compression a trace's first bytes announce that hvlab does not read, or null. */
function compressionRefused(head: Uint8Array): string | null {
  const starts = (...magic: number[]) => magic.every((b, i) => head[i] === b);
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  return null;
}
