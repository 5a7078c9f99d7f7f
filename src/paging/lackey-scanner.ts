import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import {
  LACKEY_RECORD_BYTES,
  LACKEY_STATE_BYTES,
  LackeyKernel,
  LackeyStop,
} from "../wasm/lackey.js";

/** Where scanned records go: words in pairs, a count, and room made on demand. */
export interface RecordSink {
  words: Uint32Array;
  count: number;
  /** Makes room for `more` records beyond `count`. */
  reserve(more: number): void;
}

/** Bytes of text the kernel scans at a time: a gunzip chunk (1 MiB) in one piece. */
export const LACKEY_TEXT_BYTES = 1 << 20;
/** Records the kernel writes before the scanner hands them on (2 MiB of records). */
export const LACKEY_SCAN_RECORDS = 1 << 18;

/**
 * Turns a chunk of lackey text into records with the wasm line scanner
 * (assembly/lackey.ts): the text is copied once into a region of the shared
 * memory, the kernel turns every line of the usual shape into records, and
 * each line of another shape goes to the caller's general parser, which
 * says what it is (a message, a malformed line). Used on one thread, one
 * chunk at a time.
 */
export class LackeyScanner {
  private readonly kernel: LackeyKernel;
  private readonly text: Region;
  private readonly records: Region;
  private readonly state: Region;

  constructor(layout: MemoryLayout, name = "lackey") {
    this.kernel = LackeyKernel.on(layout.memory);
    this.text = layout.allocate(`${name} text`, LACKEY_TEXT_BYTES);
    this.records = layout.allocate(`${name} records`, LACKEY_SCAN_RECORDS * LACKEY_RECORD_BYTES);
    this.state = layout.allocate(`${name} scan state`, LACKEY_STATE_BYTES);
  }

  private static own: LackeyScanner | undefined;

  /** The thread's scanner over a small memory of its own, made on first use. */
  static shared(): LackeyScanner {
    LackeyScanner.own ??= new LackeyScanner(new MemoryLayout());
    return LackeyScanner.own;
  }

  /**
   * Scans the whole lines of `d` from `start`: records of lines of the usual
   * shape are appended to `out` (and counted by `onLines` before anything
   * else is called), and each other line [from, lf) goes to `other`, in
   * order. Returns where the line that `d` ends inside starts (`d.length`
   * when none): the caller carries it into the next chunk.
   */
  lines(
    d: Uint8Array,
    start: number,
    addressBits: 47 | 56,
    out: RecordSink,
    onLines: (lines: number) => void,
    other: (from: number, lf: number) => void,
  ): number {
    const memory = this.kernel.memory;
    const n = d.length;
    let pos = start;
    // d[base, end) is in the text region; end <= pos forces a copy.
    let base = 0;
    let end = 0;
    while (pos < n) {
      if (pos >= end) {
        base = pos;
        end = Math.min(n, pos + LACKEY_TEXT_BYTES);
        new Uint8Array(memory.buffer, this.text.offset, end - base).set(d.subarray(base, end));
      }
      const scan = this.kernel.scan(
        this.text,
        pos - base,
        end - base,
        this.records,
        LACKEY_SCAN_RECORDS,
        addressBits,
        this.state,
      );
      if (scan.records > 0) {
        out.reserve(scan.records);
        out.words.set(
          new Uint32Array(memory.buffer, this.records.offset, scan.records * 2),
          out.count * 2,
        );
        out.count += scan.records;
      }
      onLines(scan.lines);
      const at = base + scan.position;
      if (scan.stop === LackeyStop.full) {
        pos = at;
        continue;
      }
      if (scan.stop === LackeyStop.end) {
        if (end === n) return at;
        if (at > base) {
          // The piece ended inside a line: the next piece starts with it.
          pos = at;
          end = at;
          continue;
        }
        // A line longer than a whole piece: the general parser takes it.
      }
      const lf = d.indexOf(10, at);
      if (lf < 0) return at;
      other(at, lf);
      pos = lf + 1;
    }
    return pos;
  }
}
