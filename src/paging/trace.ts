import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createGunzip } from "node:zlib";
import { TraceFormatError } from "./errors.js";
import { ACCESS } from "./mmu.js";

/** Trace formats hvlab reads (REFERENCE.md section 2). */
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
    if (this.count * 2 >= this.words.length) {
      const bigger = new Uint32Array(this.words.length * 2);
      bigger.set(this.words);
      this.words = bigger;
    }
    const low = address % 4294967296;
    this.words[this.count * 2] = ((low - (low % 4096)) | kind) >>> 0;
    this.words[this.count * 2 + 1] = (address - low) / 4294967296;
    this.count++;
  }
  clear(): void {
    this.count = 0;
  }
}

/** Parsing options. */
export interface ParseOptions {
  /** Skip malformed lines or records (counting them) instead of stopping. */
  readonly lenient?: boolean;
}

/** A streaming parser: bytes in, records out, errors with the file and line. */
export interface TraceParser {
  /** Parses a chunk of the (decompressed) stream. */
  push(bytes: Uint8Array, out: RecordBuffer): void;
  /** The stream ended. */
  end(out: RecordBuffer): void;
  /** Lines or records skipped as malformed (lenient mode). */
  readonly skipped: number;
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
  private line = 0;
  private carry: Uint8Array = new Uint8Array(0);

  constructor(
    private readonly file: string,
    private readonly format: "lackey" | "plain",
    private readonly options: ParseOptions,
  ) {}

  push(bytes: Uint8Array, out: RecordBuffer): void {
    let data = bytes;
    if (this.carry.length > 0) {
      data = new Uint8Array(this.carry.length + bytes.length);
      data.set(this.carry);
      data.set(bytes, this.carry.length);
    }
    let start = 0;
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

  /** Parses hex from `i`; returns [value, next index] or null. */
  private hex(d: Uint8Array, i: number, end: number): [number, number] | null {
    if (i + 1 < end && d[i] === CH_0 && d[i + 1] === CH_x) i += 2;
    let value = 0;
    const first = i;
    while (i < end) {
      const h = hexValue(d[i] as number);
      if (h < 0) break;
      value = value * 16 + h;
      i++;
    }
    if (i === first || i - first > 15 || value >= MAX_ADDRESS) return null;
    return [value, i];
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
    out.push(parsed[0], kind);
  }
}

/** ChampSim binary records: the instruction fetch, then its loads and stores. */
class ChampSimParser implements TraceParser {
  skipped = 0;
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

  /** A u64 as a number, or -1 past 57 bits. */
  private u64(view: DataView, at: number): number {
    const low = view.getUint32(at, true);
    const high = view.getUint32(at + 4, true);
    if (high >= 2 ** 25) return -1;
    return high * 4294967296 + low;
  }

  private parse(view: DataView, at: number, out: RecordBuffer): void {
    this.record++;
    const ip = this.u64(view, at);
    const isBranch = view.getUint8(at + 8);
    const taken = view.getUint8(at + 9);
    if (ip <= 0 || isBranch > 1 || taken > 1) {
      const reason =
        ip <= 0 ? "instruction pointer is 0 or beyond 57 bits" : "branch flags must be 0 or 1";
      if (!this.options.lenient)
        throw new TraceFormatError(this.file, this.record, reason, "record");
      this.skipped++;
      return;
    }
    out.push(ip, ACCESS.execute | ACCESS.user);
    // source_memory (4 x u64 at byte 32) are loads; destination_memory (2 x u64 at 16) are stores.
    for (let k = 0; k < 4; k++) {
      const a = this.u64(view, at + 32 + 8 * k);
      if (a > 0) out.push(a, ACCESS.user);
    }
    for (let k = 0; k < 2; k++) {
      const a = this.u64(view, at + 16 + 8 * k);
      if (a > 0) out.push(a, ACCESS.write | ACCESS.user);
    }
  }
}

/** A parser for `format`. */
export function traceParser(
  file: string,
  format: TraceFormat,
  options: ParseOptions = {},
): TraceParser {
  if (format === "lackey" || format === "plain") return new TextParser(file, format, options);
  return new ChampSimParser(file, format, options);
}

/** Guesses a format from the first (decompressed) bytes. */
export function sniffFormat(head: Uint8Array): TraceFormat {
  const text = Buffer.from(head.subarray(0, 4096)).toString("latin1");
  const sample = head.subarray(0, 512);
  const printable = sample.every((c) => c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127));
  if (!printable) return "champsim";
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
export interface StreamOptions extends ParseOptions {
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
  readonly skipped: number;
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
  let totalBytes: number;
  try {
    totalBytes = (await stat(file)).size;
  } catch (error) {
    throw new TraceFormatError(file, 0, `cannot open: ${(error as Error).message}`);
  }
  const head = await new Promise<Buffer>((resolve, reject) => {
    const probe = createReadStream(file, { start: 0, end: 1 });
    const parts: Buffer[] = [];
    probe.on("data", (c) => parts.push(c as Buffer));
    probe.on("end", () => resolve(Buffer.concat(parts)));
    probe.on("error", reject);
  });
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  // Listeners and the pipe are attached in the same tick, so no chunk is missed.
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  let bytesRead = 0;
  raw.on("data", (chunk) => {
    bytesRead += chunk.length;
  });
  const source: AsyncIterable<Buffer> = gzip ? raw.pipe(createGunzip()) : raw;
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
      options.onProgress?.({ bytesRead, totalBytes, records });
    }
  } catch (error) {
    raw.destroy();
    if (error instanceof TraceFormatError) throw error;
    throw new TraceFormatError(file, 0, `cannot read: ${(error as Error).message}`);
  }
  format ??= "plain";
  parser ??= traceParser(file, format, options);
  out.clear();
  parser.end(out);
  records += out.count;
  if (out.count > 0) await sink(out);
  return { format, gzip, records, skipped: parser.skipped, bytes: totalBytes };
}
