import { describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import { type ParseOptions, RecordBuffer, traceParser } from "../src/paging/trace.js";

/*
 * The text parsers' rules one line at a time. A trace's last line, without
 * its LF, is read by the general parser (the wasm line scanner reads only
 * whole lines), so each line here is given without one: these are the
 * rules of `TextParser`'s own path, which handles every line the scanner
 * hands on.
 *
 * Lackey's lines are those of Valgrind's lackey tool with --trace-mem=yes
 * (lackey/lk_main.c, `trace_instr` and `trace_load`/`trace_store`/
 * `trace_modify`: "I  %08lx,%lu", " L %08lx,%lu", " S ...", " M ...",
 * and Valgrind's own messages prefixed "==pid==" or "--pid--"). The plain
 * format is hvlab's own (docs/paging.md, "Traces"): `R` or `W`, blanks,
 * a hex address, `#` comments.
 */

const FETCH = ACCESS.execute | ACCESS.user;
const READ = ACCESS.user;
const WRITE = ACCESS.write | ACCESS.user;

/** Records of a text, pushed in the given pieces, as [page address, kind]. */
function read(
  format: "lackey" | "plain",
  pieces: string | string[],
  options: ParseOptions = {},
): { records: [number, number][]; skipped: number } {
  const parser = traceParser("t.trace", format, options);
  const out = new RecordBuffer(1);
  for (const piece of typeof pieces === "string" ? [pieces] : pieces) {
    parser.push(new TextEncoder().encode(piece), out);
  }
  parser.end(out);
  const records: [number, number][] = [];
  for (let i = 0; i < out.count; i++) {
    const low = out.words[2 * i] as number;
    const high = out.words[2 * i + 1] as number;
    records.push([high * 2 ** 32 + (low - (low & 0xfff)), low & 0xfff]);
  }
  return { records, skipped: parser.skipped };
}

/** The message a strict parser refuses the text with (fails if it takes it). */
function refusal(format: "lackey" | "plain", text: string, options: ParseOptions = {}): string {
  try {
    read(format, text, options);
  } catch (error) {
    expect(error).toBeInstanceOf(TraceFormatError);
    return (error as Error).message;
  }
  throw new Error(`'${text}' was taken`);
}

describe("hex addresses", () => {
  it("take the digits 0-9, a-f and A-F, and nothing next to them in ASCII", () => {
    const digits: [string, number][] = [
      ["0", 0],
      ["9", 9],
      ["a", 10],
      ["f", 15],
      ["A", 10],
      ["F", 15],
    ];
    for (const [digit, value] of digits) {
      expect(read("plain", `R ${digit}000`).records).toEqual([[value * 0x1000, READ]]);
    }
    // The characters on either side of each range: '/' ':' '@' 'G' '`' 'g'.
    for (const digit of ["/", ":", "@", "G", "`", "g"]) {
      expect(refusal("plain", `R ${digit}000`)).toBe("t.trace:1: bad hex address");
    }
  });

  it("take a 0x prefix (lower-case x) and at most 15 digits", () => {
    expect(read("plain", "R 0x5000").records).toEqual([[0x5000, READ]]);
    // 0 then X: the address is 0 and X is text after it.
    expect(refusal("plain", "R 0X5000")).toBe("t.trace:1: unexpected text after the address");
    // 0x with no digit after it is no address.
    expect(refusal("plain", "R 0x")).toBe("t.trace:1: bad hex address");
    // A lone 0 is address 0, not a prefix.
    expect(read("plain", "R 0").records).toEqual([[0, READ]]);
    expect(read("plain", `R ${"0".repeat(12)}123`).records).toEqual([[0, READ]]);
    expect(refusal("plain", `R ${"0".repeat(13)}123`)).toBe("t.trace:1: bad hex address");
    expect(read("lackey", `I  0x${"0".repeat(11)}7000,4`).records).toEqual([[0x7000, FETCH]]);
  });

  it("stop below 2^57, the most a record holds; past the user space they are refused by name", () => {
    // 2^57 is past any record: a bad address, whatever the levels.
    expect(refusal("plain", "R 200000000000000")).toBe("t.trace:1: bad hex address");
    // 2^57 - 1 is a number, past the 5-level user space (2^56); past 2^53
    // only its page is kept exact, and named.
    expect(refusal("plain", "R 1ffffffffffffff")).toBe(
      "t.trace:1: address 0x1fffffffffff000 is beyond the 5-level user address space (56 bits)",
    );
    // Up to 2^53 - 1 the address is exact, offset and all.
    expect(refusal("plain", "R 1fffffffffffff", { levels: 4 })).toBe(
      "t.trace:1: address 0x1fffffffffffff is beyond the 4-level user address space (47 bits): run with --levels 5",
    );
  });
});

describe("the user address space's limit (47 bits with 4 levels, 56 with 5)", () => {
  it("takes the last page below the limit and refuses the first past it, in both formats", () => {
    // Written out: 2^56 - 1 is no double.
    for (const [levels, bits, last] of [
      [4, 47, "7fffffffffff"],
      [5, 56, "ffffffffffffff"],
    ] as const) {
      const past = (2 ** bits).toString(16);
      const lastPage = 2 ** bits - 4096;
      expect(read("plain", `W ${last}`, { levels }).records).toEqual([[lastPage, WRITE]]);
      expect(read("lackey", ` S ${last},8`, { levels }).records).toEqual([[lastPage, WRITE]]);
      const message =
        levels === 4
          ? `t.trace:1: address 0x${past} is beyond the 4-level user address space (47 bits): run with --levels 5`
          : `t.trace:1: address 0x${past} is beyond the 5-level user address space (56 bits)`;
      expect(refusal("plain", `W ${past}`, { levels })).toBe(message);
      expect(refusal("lackey", ` S ${past},8`, { levels })).toBe(message);
    }
    // Five levels unless told otherwise.
    expect(read("plain", "R ffffffffffffff").records).toEqual([[2 ** 56 - 4096, READ]]);
  });
});

describe("lackey lines on the general path", () => {
  it("reads I as a fetch, L as a load, S as a store and M as a load then a store", () => {
    expect(read("lackey", "I  4001f0,3").records).toEqual([[0x400000, FETCH]]);
    expect(read("lackey", " L 7ff0001ff8,8").records).toEqual([[0x7ff0001000, READ]]);
    expect(read("lackey", " S 7ff0002ff8,8").records).toEqual([[0x7ff0002000, WRITE]]);
    expect(read("lackey", " M 601040,4").records).toEqual([
      [0x601000, READ],
      [0x601000, WRITE],
    ]);
  });

  it("skips Valgrind's own messages by their first character", () => {
    expect(read("lackey", "==4242== Copyright (C) 2002").records).toEqual([]);
    expect(read("lackey", "--4242-- warning").records).toEqual([]);
    expect(read("lackey", "=").records).toEqual([]);
  });

  it("refuses other shapes, naming what it expected", () => {
    const shape = "t.trace:1: not a lackey access (expected 'I  ', ' L ', ' S ' or ' M ')";
    for (const line of ["I 4000,4", "I\t 4000,4", " X 4000,4", " L\t4000,4", "L  4000,4", "x"]) {
      expect(refusal("lackey", line)).toBe(shape);
    }
    expect(refusal("lackey", "I  zz,4")).toBe("t.trace:1: bad hex address");
    expect(refusal("lackey", "I  4000")).toBe("t.trace:1: expected ',size' after the address");
    expect(refusal("lackey", "I  4000;4")).toBe("t.trace:1: expected ',size' after the address");
  });

  it("needs a decimal size of at least 1 ending the line", () => {
    expect(read("lackey", " L 4000,1").records).toEqual([[0x4000, READ]]);
    expect(read("lackey", " L 4000,09").records).toEqual([[0x4000, READ]]);
    expect(read("lackey", " L 4000,4096").records).toEqual([[0x4000, READ]]);
    for (const size of ["", "0", "00", "4x", "/", ":", "a", " 4"]) {
      expect(refusal("lackey", ` L 4000,${size}`)).toBe("t.trace:1: bad access size");
    }
  });
});

describe("plain lines", () => {
  it("read R or r as a read and W or w as a write, after a space or a tab", () => {
    expect(read("plain", "R 1000").records).toEqual([[0x1000, READ]]);
    expect(read("plain", "r\t2000").records).toEqual([[0x2000, READ]]);
    expect(read("plain", "W 3000").records).toEqual([[0x3000, WRITE]]);
    expect(read("plain", "w\t4000").records).toEqual([[0x4000, WRITE]]);
  });

  it("take any run of blanks around the address and nothing else after it", () => {
    expect(read("plain", "W \t \t5000 \t ").records).toEqual([[0x5000, WRITE]]);
    expect(refusal("plain", "W 5000 6")).toBe("t.trace:1: unexpected text after the address");
    expect(refusal("plain", "W 5000,8")).toBe("t.trace:1: unexpected text after the address");
  });

  it("refuses a line that does not start R or W, or has no blank after it", () => {
    for (const line of ["X 1000", "L 1000", "1000"]) {
      expect(refusal("plain", line)).toBe("t.trace:1: expected 'R' or 'W' and a hex address");
    }
    expect(refusal("plain", "R1000")).toBe("t.trace:1: expected a space after R/W");
    expect(refusal("plain", "R")).toBe("t.trace:1: expected a space after R/W");
    expect(refusal("plain", "R ")).toBe("t.trace:1: bad hex address");
    expect(refusal("plain", "R \t ")).toBe("t.trace:1: bad hex address");
  });

  it("skips comments and empty lines, CRLF ones too, and counts them as lines", () => {
    const text = "# a comment\n\n\r\nR 1000\r\n#\r\nW 2000\r\nQ";
    expect(refusal("plain", text)).toBe("t.trace:7: expected 'R' or 'W' and a hex address");
    expect(read("plain", text, { lenient: true })).toEqual({
      records: [
        [0x1000, READ],
        [0x2000, WRITE],
      ],
      skipped: 1,
    });
    // A CR that is the line's only byte is an empty line; one inside a line is not dropped.
    expect(read("plain", "\r").records).toEqual([]);
    expect(refusal("plain", "R 10\r00")).toBe("t.trace:1: unexpected text after the address");
  });
});

describe("lines across pieces and their length", () => {
  it("joins a line cut over several pieces, and reads the lines after it in place", () => {
    expect(read("plain", ["R 1", "0", "00\nW 2", "000\nR 3000\nW 4", "000"]).records).toEqual([
      [0x1000, READ],
      [0x2000, WRITE],
      [0x3000, READ],
      [0x4000, WRITE],
    ]);
    expect(read("lackey", ["I  40", "00,4\n S 50", "00,8\n L 6000,", "8\n"]).records).toEqual([
      [0x4000, FETCH],
      [0x5000, WRITE],
      [0x6000, READ],
    ]);
  });

  it("takes a line of 4,096 bytes and refuses one longer while it is read", () => {
    const longest = `R 1000${" ".repeat(4090)}`;
    expect(longest).toHaveLength(4096);
    expect(read("plain", longest).records).toEqual([[0x1000, READ]]);
    expect(read("plain", ["W 2000\n", longest.slice(0, 100), longest.slice(100)]).records).toEqual([
      [0x2000, WRITE],
      [0x1000, READ],
    ]);
    expect(refusal("plain", `W 2000\n${longest} `)).toBe("t.trace:2: line longer than 4096 bytes");
    // Lenient: skipped and counted, its bytes so far dropped.
    const lenient = read("plain", [`W 2000\n${longest}x`, "\nR 3000\n"], { lenient: true });
    expect(lenient.skipped).toBe(1);
    expect(lenient.records).toEqual([
      [0x2000, WRITE],
      [0x3000, READ],
    ]);
  });
});
