import { describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import { type ParseOptions, RecordBuffer, sniffFormat, traceParser } from "../src/paging/trace.js";
import { champsimRecord, champsimTrace } from "./support/champsim.js";

/*
 * Where the trace parsers' addresses stop being exact, what a ChampSim
 * error names, and how the 65-byte ChampSim layout is told from the
 * 64-byte one (ChampSim inc/trace_instruction.h: ip u64 little-endian at
 * byte 0, is_branch and branch_taken at 8 and 9, destination_memory at 16,
 * source_memory at 32).
 */

function parseError(format: "plain" | "champsim", bytes: Uint8Array, options: ParseOptions = {}) {
  const parser = traceParser("t", format, options);
  const out = new RecordBuffer();
  try {
    parser.push(bytes, out);
    parser.end(out);
  } catch (error) {
    expect(error).toBeInstanceOf(TraceFormatError);
    return error as TraceFormatError;
  }
  throw new Error("the trace was taken");
}

describe("addresses past 2^53", () => {
  it("are named by their page, exact, once address and offset no longer add up exactly", () => {
    // 2^53 + 0x10: as a double 2^53 + 16 happens to be exact, but past 2^53
    // only the page is kept, so that no rounding can carry into it.
    const error = parseError("plain", new TextEncoder().encode("R 20000000000010"), { levels: 4 });
    expect(error.message).toBe(
      "t:1: address 0x20000000000000 is beyond the 4-level user address space (47 bits): run with --levels 5",
    );
  });
});

describe("ChampSim errors", () => {
  it("name the record, not a line, as their unit", () => {
    const cut = parseError("champsim", champsimRecord({ ip: 0x401000n }).subarray(0, 10));
    expect(cut.unit).toBe("record");
    expect(cut.line).toBe(1);
    const zero = parseError("champsim", champsimRecord({ ip: 0n }));
    expect(zero.unit).toBe("record");
    expect(zero.reason).toBe("instruction pointer is 0");
  });

  it("past the user space, lenient: the record stops at that operand", () => {
    const parser = traceParser("t", "champsim", { lenient: true, levels: 4 });
    const out = new RecordBuffer();
    parser.push(champsimRecord({ ip: 0x401000n, src: [1n << 47n, 0x5000n] }), out);
    parser.end(out);
    expect(out.count).toBe(1);
    expect((out.words[0] as number) & 0xfff).toBe(ACCESS.execute | ACCESS.user);
    expect(parser.skipped).toBe(1);
  });
});

describe("the ChampSim layout, guessed", () => {
  it("reads instruction pointers little-endian, bits 63:32 in the second word", () => {
    // User addresses with bits 46:32 set: read big-endian, their high word
    // would be neither user nor kernel space.
    const records = Array.from({ length: 20 }, (_, i) =>
      champsimRecord({ ip: 0x7fff_0040_1000n + BigInt(i) * 4n, src: [0x7ffe_0000_1000n] }, 0),
    );
    expect(sniffFormat(champsimTrace(records))).toBe("champsim-load-type");
  });

  it("does not count records whose instruction pointer is 0", () => {
    // 65-byte records of ip 0 and flags 0, every other byte 0x55: read at
    // 65 bytes none is plausible (no pointer), read at 64 the first few are
    // (0x55 lands in their pointers, zeros in their flags) until the shift
    // brings 0x55 into the flags. The 64-byte layout has more.
    const record = new Uint8Array(65).fill(0x55);
    record.fill(0, 0, 10);
    const records = Array.from({ length: 20 }, () => record);
    expect(sniffFormat(champsimTrace(records))).toBe("champsim");
  });
});
