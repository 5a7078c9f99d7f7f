import { describe, expect, it, vi } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { TraceFormatError } from "../src/paging/errors.js";
import { LackeyScanner } from "../src/paging/lackey-scanner.js";
import { ACCESS } from "../src/paging/mmu.js";
import { RecordBuffer, sniffFormat, traceParser } from "../src/paging/trace.js";

/*
 * The parsers' record buffer, which scanner a text parser uses and with
 * which address width, and the shapes a line must have to be read as
 * lackey's (Valgrind lackey/lk_main.c: "I  %08lx,%lu", " L %08lx,%lu",
 * " S ...", " M ...") or to make a trace be guessed as lackey's.
 */

const text = (s: string) => new TextEncoder().encode(s);

/** Records of one text, as [page address, kind]. */
function read(format: "lackey" | "plain", s: string): [number, number][] {
  const parser = traceParser("t.trace", format);
  const out = new RecordBuffer(2);
  parser.push(text(s), out);
  parser.end(out);
  const records: [number, number][] = [];
  for (let i = 0; i < out.count; i++) {
    const low = out.words[2 * i] as number;
    records.push([(out.words[2 * i + 1] as number) * 2 ** 32 + (low - (low & 0xfff)), low & 0xfff]);
  }
  return records;
}

function refusal(format: "lackey" | "plain", s: string): string {
  try {
    read(format, s);
  } catch (error) {
    expect(error).toBeInstanceOf(TraceFormatError);
    return (error as Error).message;
  }
  throw new Error(`'${s}' was taken`);
}

describe("the record buffer", () => {
  it("holds the capacity asked, two words a record, and grows by doubling when full", () => {
    const out = new RecordBuffer(3);
    expect(out.words).toHaveLength(6);
    for (let i = 1; i <= 3; i++) out.push(i * 0x1000, ACCESS.user);
    expect(out.words).toHaveLength(6);
    out.push(0x1_2345_6000, ACCESS.write);
    expect(out.words).toHaveLength(12);
    expect(out.count).toBe(4);
    // The records before the growth are kept, in order; the high word holds bits 63:32.
    expect(Array.from(out.words.subarray(0, 8))).toEqual([
      0x1000 | ACCESS.user,
      0,
      0x2000 | ACCESS.user,
      0,
      0x3000 | ACCESS.user,
      0,
      0x2345_6000 | ACCESS.write,
      1,
    ]);
  });

  it("reserves room beyond its count: none when there is room, at least the room asked", () => {
    const out = new RecordBuffer(4);
    out.push(0x1000, ACCESS.user);
    const words = out.words;
    out.reserve(3);
    expect(out.words).toBe(words);
    out.reserve(4);
    // 1 + 4 records need 10 words; doubling gives 16.
    expect(out.words).toHaveLength(16);
    out.reserve(20);
    // 1 + 20 records need 42 words, more than double 16.
    expect(out.words).toHaveLength(42);
    expect(out.words[0]).toBe(0x1000 | ACCESS.user);
    out.clear();
    expect(out.count).toBe(0);
  });
});

describe("which scanner a text parser uses", () => {
  it("uses the scanner it is given, for lackey only, at 47 address bits with 4 levels and 56 with 5", () => {
    const scanner = new LackeyScanner(new MemoryLayout(), "given");
    const lines = vi.spyOn(scanner, "lines");
    for (const [levels, bits] of [
      [4, 47],
      [5, 56],
      [undefined, 56],
    ] as const) {
      lines.mockClear();
      const parser = traceParser("t.lackey", "lackey", { scanner, ...(levels ? { levels } : {}) });
      const out = new RecordBuffer();
      parser.push(text(" L 1000,8\n S 2000,8\n"), out);
      parser.end(out);
      expect(out.count).toBe(2);
      expect(lines).toHaveBeenCalledTimes(1);
      expect(lines.mock.calls[0]?.[2]).toBe(bits);
    }
    lines.mockClear();
    const plain = traceParser("t.plain", "plain", { scanner });
    plain.push(text("R 1000\n"), new RecordBuffer());
    expect(lines).not.toHaveBeenCalled();
  });

  it("reads no lackey line in a plain trace", () => {
    // Were the scanner run over plain text, it would take this line as a load.
    expect(refusal("plain", " L 1000,8\nR 2000\n")).toBe(
      "t.trace:1: expected 'R' or 'W' and a hex address",
    );
    // A plain trace's first line empty: read from the line after it.
    expect(read("plain", "\nR 2000\n")).toEqual([[0x2000, ACCESS.user]]);
    expect(read("lackey", "\n L 2000,4\n")).toEqual([[0x2000, ACCESS.user]]);
  });
});

describe("the shapes of lackey's lines", () => {
  it("need I and two spaces, or a space, L, S or M and a space", () => {
    const shape = "t.trace:1: not a lackey access (expected 'I  ', ' L ', ' S ' or ' M ')";
    // The general path reads the last line, without its LF.
    for (const line of ["X  4000,4", "Ix 4000,4", "xL 4000,4", " Lx4000,4", "  4000,4"]) {
      expect(refusal("lackey", line)).toBe(shape);
    }
    expect(read("lackey", "I  4000,4")).toEqual([[0x4000, ACCESS.execute | ACCESS.user]]);
  });

  it("take no 0x-like prefix but 0x itself", () => {
    expect(refusal("plain", "R 5x1000")).toBe("t.trace:1: unexpected text after the address");
    expect(refusal("lackey", " L 5x1000,4")).toBe("t.trace:1: expected ',size' after the address");
  });
});

describe("a trace guessed as lackey's", () => {
  it("has lackey's shape at the start of a line, with I and two spaces", () => {
    expect(sniffFormat(text("I 400d7d4,8\n"))).toBe("plain");
    expect(sniffFormat(text("R 1000 I  400d7d4,8\n"))).toBe("plain");
    expect(sniffFormat(text("R 1000\nI  400d7d4,8\n"))).toBe("lackey");
    expect(sniffFormat(text("== Lackey\n"))).toBe("plain");
    expect(sniffFormat(text("==7== Lackey\n"))).toBe("lackey");
  });

  it("is ChampSim's 64-byte layout when too few bytes hold a record of either", () => {
    expect(sniffFormat(new Uint8Array([1, 2, 3, 0, 0, 0, 0, 0, 0, 0]))).toBe("champsim");
  });
});
