import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  LACKEY_SCAN_RECORDS,
  LACKEY_TEXT_BYTES,
  LackeyScanner,
} from "../src/paging/lackey-scanner.js";
import { ACCESS } from "../src/paging/mmu.js";
import { RecordBuffer } from "../src/paging/trace.js";

/*
 * LackeyScanner.lines's contract, observed directly: the trace parser falls
 * back to its general parser for any line the scanner hands on, so through
 * the parser a scanner that skipped work would give the same records. Here
 * each line of the usual shape (Valgrind lackey/lk_main.c: `I  addr,size`,
 * ` L|S|M addr,size`) must come back as records, every other line as a call
 * of `other` in order, and the return value must be where the unfinished
 * line starts.
 */
const enc = (s: string) => Uint8Array.from(Buffer.from(s, "latin1"));
const U = ACCESS.user;

function scanAll(scanner: LackeyScanner, d: Uint8Array, start = 0) {
  const out = new RecordBuffer(1);
  const events: string[] = [];
  let lines = 0;
  const rest = scanner.lines(
    d,
    start,
    56,
    out,
    (n) => {
      lines += n;
    },
    (from, lf) => events.push(`other ${from}-${lf} after ${out.count} records, ${lines} lines`),
  );
  return { rest, words: [...out.words.subarray(0, out.count * 2)], lines, events };
}

describe("the lackey line scanner's contract (LackeyScanner.lines)", () => {
  const scanner = new LackeyScanner(new MemoryLayout(), "scanner contract");

  it("turns usual lines into records, hands each other line on in order, and returns where the cut line starts", () => {
    const text = "I  400,8\n==1== msg\n L 7ff000398,8\n\n M 2000,4\n S 10,";
    const r = scanAll(scanner, enc(text));
    expect(r.words).toEqual([
      ACCESS.execute | U, // 0x400 is in page 0
      0,
      (0xff000000 | U) >>> 0,
      0x7,
      0x2000 | U,
      0,
      0x2000 | ACCESS.write | U,
      0,
    ]);
    // The message after one line's record; the empty line after two.
    expect(r.events).toEqual([
      "other 9-18 after 1 records, 1 lines",
      "other 34-34 after 2 records, 2 lines",
    ]);
    expect(r.lines).toBe(3);
    expect(r.rest).toBe(text.indexOf(" S 10,"));
  });

  it("returns the text's length when it ends with a newline, and starts at `start`", () => {
    const text = "I  1000,1\n L 2000,1\n";
    const whole = scanAll(scanner, enc(text));
    expect(whole.rest).toBe(text.length);
    expect(whole.words).toEqual([0x1000 | ACCESS.execute | U, 0, 0x2000 | U, 0]);
    const second = scanAll(scanner, enc(text), 10);
    expect(second.rest).toBe(text.length);
    expect(second.words).toEqual([0x2000 | U, 0]);
    expect(scanAll(scanner, enc("\n"), 0).events).toEqual(["other 0-0 after 0 records, 0 lines"]);
  });

  it("reads a text past its 1 MiB piece and its records region, with no line handed on", () => {
    // 7-byte modify lines give 2 records each: the records region (262,144) fills
    // inside the first piece, and 170,000 lines (1.2 MB) go past the piece.
    // Every 1,000th line names a page of its own, so that records out of order show.
    const count = 170_000;
    const lines: string[] = [];
    for (let i = 0; i < count; i++) {
      lines.push(i % 1000 === 0 ? ` M ${(i * 4096).toString(16)},4` : " M 7,1");
    }
    const d = enc(`${lines.join("\n")}\nI  5,1`);
    expect(d.length).toBeGreaterThan(LACKEY_TEXT_BYTES);
    expect(2 * (LACKEY_TEXT_BYTES / 7)).toBeGreaterThan(LACKEY_SCAN_RECORDS);
    const r = scanAll(scanner, d);
    expect(r.events).toEqual([]);
    expect(r.lines).toBe(count);
    expect(r.rest).toBe(d.length - "I  5,1".length);
    expect(r.words.length).toBe(4 * count);
    for (let i = 0; i < count; i++) {
      const page = i % 1000 === 0 ? i * 4096 : 0;
      const low = page % 2 ** 32;
      const high = Math.floor(page / 2 ** 32);
      const at = 4 * i;
      if (
        r.words[at] !== (low | U) ||
        r.words[at + 1] !== high ||
        r.words[at + 2] !== (low | ACCESS.write | U) >>> 0 ||
        r.words[at + 3] !== high
      ) {
        expect(r.words.slice(at, at + 4), `line ${i}`).toEqual([
          low | U,
          high,
          (low | ACCESS.write | U) >>> 0,
          high,
        ]);
      }
    }
  });

  it("hands on a usual-looking line longer than a whole piece, and goes on after it", () => {
    const long = `I  400,${"1".repeat(LACKEY_TEXT_BYTES + 10)}`;
    const d = enc(`I  1000,1\n${long}\n L 3000,8\n`);
    const r = scanAll(scanner, d);
    expect(r.events).toEqual([`other 10-${10 + long.length} after 1 records, 1 lines`]);
    expect(r.words).toEqual([0x1000 | ACCESS.execute | U, 0, 0x3000 | U, 0]);
    expect(r.rest).toBe(d.length);
    // The same line cut by the text's end: its start comes back, for the next chunk.
    expect(scanAll(scanner, enc(`I  1000,1\n${long}`)).rest).toBe(10);
  });

  it("keeps one scanner per thread", () => {
    const shared = LackeyScanner.shared();
    expect(shared).toBeInstanceOf(LackeyScanner);
    expect(LackeyScanner.shared()).toBe(shared);
  });
});

describe("the lackey scanner's regions", () => {
  it("are named after the scanner (lackey by default), so that a memory map says whose they are", () => {
    const layout = new MemoryLayout();
    new LackeyScanner(layout);
    new LackeyScanner(layout, "second");
    const names = layout.list().map((r) => r.name);
    expect(names).toEqual(
      expect.arrayContaining(["lackey text", "lackey records", "lackey scan state", "second text"]),
    );
  });
});
