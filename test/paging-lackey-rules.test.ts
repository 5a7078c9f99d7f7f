import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ACCESS } from "../src/paging/mmu.js";
import { LACKEY_STATE_BYTES, LackeyKernel, LackeyStop } from "../src/wasm/lackey.js";

/*
 * The lackey line scanner's rules, each on a line worked out by hand from
 * the format Valgrind's lackey prints with --trace-mem=yes (lackey/lk_main.c:
 * trace_instr "I  %08lx,%lu\n", trace_load " L %08lx,%lu\n", trace_store
 * " S %08lx,%lu\n", trace_modify " M %08lx,%lu\n"). A record is the walk
 * kernel's: the page address's bits 31:12 and the access kind (src/paging/mmu.ts
 * ACCESS) in the low word, address bits 63:32 in the high word.
 */

const layout = new MemoryLayout();
const kernel = LackeyKernel.on(layout.memory);
const text = layout.allocate("lackey rules text", 256);
const records = layout.allocate("lackey rules records", 16 * 8);
const state = layout.allocate("lackey rules state", LACKEY_STATE_BYTES);

const USER = ACCESS.user;
const WRITE = ACCESS.write;
const EXECUTE = ACCESS.execute;

/** Scans all of `line` (4-level paging, room for 16 records): the stop, the lines and the record words. */
function scanText(line: string) {
  const bytes = Buffer.from(line, "latin1");
  new Uint8Array(layout.memory.buffer, text.offset, 256).fill(0);
  new Uint8Array(layout.memory.buffer, text.offset, bytes.length).set(bytes);
  // Records left from an earlier scan must not pass for this one's.
  new Uint8Array(layout.memory.buffer, records.offset, 16 * 8).fill(0xee);
  const r = kernel.scan(text, 0, bytes.length, records, 16, 47, state);
  const words = [...new Uint32Array(layout.memory.buffer, records.offset, r.records * 2)];
  return { stop: r.stop, position: r.position, lines: r.lines, words };
}

/** The two words of one record: page bits 31:12 with the kind, then bits 63:32. */
const record = (low: number, high: number) => [low >>> 0, high >>> 0];

describe("the lackey line scanner's rules (lackey/lk_main.c's trace lines)", () => {
  it("reads an instruction fetch (I) as an execute access by the user", () => {
    expect(scanText("I  0400d7d4,8\n")).toEqual({
      stop: LackeyStop.end,
      position: 14,
      lines: 1,
      words: record(0x0400d000 | EXECUTE | USER, 0),
    });
  });

  it("reads a load (L) as a user read, without write or execute", () => {
    expect(scanText(" L 0400d7d4,8\n").words).toEqual(record(0x0400d000 | USER, 0));
  });

  it("reads a store (S) as a user write", () => {
    expect(scanText(" S 0400d7d4,8\n").words).toEqual(record(0x0400d000 | WRITE | USER, 0));
  });

  it("reads a modify (M) as two records from one line: the load, then the store", () => {
    const r = scanText(" M 0421c7f0,4\n");
    expect(r.lines).toBe(1);
    expect(r.words).toEqual([
      ...record(0x0421c000 | USER, 0),
      ...record(0x0421c000 | WRITE | USER, 0),
    ]);
    // Lines after a modify land after both of its records.
    expect(scanText(" M 0421c7f0,4\n L 1000,1\n").words).toEqual([
      ...record(0x0421c000 | USER, 0),
      ...record(0x0421c000 | WRITE | USER, 0),
      ...record(0x1000 | USER, 0),
    ]);
  });

  it("keeps address bits 63:32 in the record's high word", () => {
    // 0x7ff000398: bits 63:32 are 0x7, bits 31:12 0xff000.
    expect(scanText(" L 7ff000398,8\n").words).toEqual(record(0xff000000 | USER, 0x7));
    // The top of a 47-bit user space: 0x7fff_ffff_f000.
    expect(scanText(" S 7ffffffff000,8\n").words).toEqual(
      record(0xfffff000 | WRITE | USER, 0x7fff),
    );
  });

  it("writes the page's address: the byte offset (bits 11:0) is dropped, the kind takes its place", () => {
    // Offset 0xfff would set every kind bit were it kept.
    expect(scanText(" L 12345fff,1\n").words).toEqual(record(0x12345000 | USER, 0));
    expect(scanText("I  00000ffa,2\n").words).toEqual(record(EXECUTE | USER, 0));
  });

  it("reads upper-case hex digits A-F as a-f", () => {
    const lower = scanText(" L 7ffabcdef0,8\n");
    const upper = scanText(" L 7FFABCDEF0,8\n");
    // 0x7f_fabc_def0: bits 63:32 are 0x7f, bits 31:12 0xfabcd.
    expect(lower.words).toEqual(record(0xfabcd000 | USER, 0x7f));
    expect(upper).toEqual(lower);
    expect(scanText("I  0040ABCD,4\n").words).toEqual(record(0x0040a000 | EXECUTE | USER, 0));
  });

  it("refuses an access of size 0 (lackey prints the size of a real access, at least 1 byte)", () => {
    for (const line of [" L 1000,0\n", " S 1000,00\n", "I  1000,0\n", " M 1000,000\n"]) {
      expect(scanText(line), JSON.stringify(line)).toEqual({
        stop: LackeyStop.otherLine,
        position: 0,
        lines: 0,
        words: [],
      });
    }
    // After a good line, the scan stops at the size-0 line's first byte.
    expect(scanText(" L 2000,4\n L 1000,0\n")).toEqual({
      stop: LackeyStop.otherLine,
      position: 10,
      lines: 1,
      words: record(0x2000 | USER, 0),
    });
    // A size with a zero digit in it is still a size.
    expect(scanText(" L 1000,10\n").words).toEqual(record(0x1000 | USER, 0));
  });

  it("ends a line at a CR before its LF (a trace saved with CRLF line ends)", () => {
    expect(scanText(" L 1000,8\r\n S 2000,4\r\n")).toEqual({
      stop: LackeyStop.end,
      position: 22,
      lines: 2,
      words: [...record(0x1000 | USER, 0), ...record(0x2000 | WRITE | USER, 0)],
    });
  });
});
