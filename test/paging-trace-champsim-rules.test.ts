import { describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import {
  CHAMPSIM_LOAD_TYPE_RECORD_BYTES,
  CHAMPSIM_RECORD_BYTES,
  type ParseOptions,
  RecordBuffer,
  sniffFormat,
  traceParser,
} from "../src/paging/trace.js";
import { champsimRecord, champsimTrace } from "./support/champsim.js";

/*
 * ChampSim's binary records (ChampSim inc/trace_instruction.h,
 * `input_instr`: ip u64 at byte 0, is_branch and branch_taken u8 at 8 and 9,
 * register numbers at 10 to 15, destination_memory 2 x u64 at 16,
 * source_memory 4 x u64 at 32; 64 bytes, 65 with the trailing load_type
 * byte of the layout that has it), and how a trace's format is guessed
 * from its first bytes.
 */

const FETCH = ACCESS.execute | ACCESS.user;
const READ = ACCESS.user;
const WRITE = ACCESS.write | ACCESS.user;

/** Records read from the bytes pushed in pieces, as [page address, kind]. */
function read(
  pieces: Uint8Array[],
  options: ParseOptions = {},
  format: "champsim" | "champsim-load-type" = "champsim",
) {
  const parser = traceParser("t.champsim", format, options);
  const out = new RecordBuffer(1);
  for (const piece of pieces) parser.push(piece, out);
  parser.end(out);
  const records: [number, number][] = [];
  for (let i = 0; i < out.count; i++) {
    const low = out.words[2 * i] as number;
    const high = out.words[2 * i + 1] as number;
    records.push([high * 2 ** 32 + (low - (low & 0xfff)), low & 0xfff]);
  }
  return { records, skipped: parser.skipped, kernel: parser.kernel };
}

function refusal(pieces: Uint8Array[], options: ParseOptions = {}): string {
  try {
    read(pieces, options);
  } catch (error) {
    expect(error).toBeInstanceOf(TraceFormatError);
    return (error as Error).message;
  }
  throw new Error("the records were taken");
}

describe("ChampSim records", () => {
  it("are 64 bytes, or 65 with load_type", () => {
    expect(CHAMPSIM_RECORD_BYTES).toBe(64);
    expect(CHAMPSIM_LOAD_TYPE_RECORD_BYTES).toBe(65);
    const one = { ip: 0x401000n, src: [0x7000n], dst: [0x9000n] };
    const want = [
      [0x401000, FETCH],
      [0x7000, READ],
      [0x9000, WRITE],
    ];
    const twoOf = champsimTrace([
      champsimRecord(one, 2),
      champsimRecord({ ...one, ip: 0x402000n }, 2),
    ]);
    expect(read([twoOf], {}, "champsim-load-type").records).toEqual([
      ...want,
      [0x402000, FETCH],
      ...want.slice(1),
    ]);
  });

  it("give the fetch, each load slot in order, then each store slot, skipping empty slots", () => {
    const r = champsimRecord({
      ip: 0x401000n,
      src: [0n, 0x11000n, 0n, 0x14000n],
      dst: [0x21000n, 0x22000n],
    });
    expect(read([r]).records).toEqual([
      [0x401000, FETCH],
      [0x11000, READ],
      [0x14000, READ],
      [0x21000, WRITE],
      [0x22000, WRITE],
    ]);
    const lastSlots = champsimRecord({
      ip: 0x401000n,
      src: [0n, 0n, 0n, 0x31000n],
      dst: [0n, 0x32000n],
    });
    expect(read([lastSlots]).records).toEqual([
      [0x401000, FETCH],
      [0x31000, READ],
      [0x32000, WRITE],
    ]);
  });

  it("are read whole across pieces cut anywhere", () => {
    const bytes = champsimTrace([
      champsimRecord({ ip: 0x401000n, src: [0x5000n] }),
      champsimRecord({ ip: 0x402000n, dst: [0x6000n] }),
    ]);
    const whole = read([bytes]).records;
    expect(whole).toHaveLength(4);
    for (const cut of [1, 40, 63, 64, 65, 100, 127]) {
      expect(read([bytes.subarray(0, cut), bytes.subarray(cut)]).records).toEqual(whole);
    }
    expect(
      read([bytes.subarray(0, 10), bytes.subarray(10, 20), bytes.subarray(20)]).records,
    ).toEqual(whole);
  });

  it("need an instruction pointer and branch flags of 0 or 1", () => {
    expect(read([champsimRecord({ ip: 0x401000n, branch: 1, taken: 1 })]).records).toEqual([
      [0x401000, FETCH],
    ]);
    const good = champsimRecord({ ip: 0x401000n });
    expect(refusal([good, champsimRecord({ ip: 0n, src: [0x5000n] })])).toBe(
      "t.champsim:record 2: instruction pointer is 0",
    );
    expect(refusal([champsimRecord({ ip: 0x401000n, branch: 2 })])).toBe(
      "t.champsim:record 1: branch flags must be 0 or 1",
    );
    expect(refusal([champsimRecord({ ip: 0x401000n, taken: 2 })])).toBe(
      "t.champsim:record 1: branch flags must be 0 or 1",
    );
    // Lenient: the record is skipped whole, none of its operands read.
    const lenient = read([champsimRecord({ ip: 0n, src: [0x5000n] }), good], { lenient: true });
    expect(lenient.records).toEqual([[0x401000, FETCH]]);
    expect(lenient.skipped).toBe(1);
  });

  it("count a kernel-space address (bits 63:47 set) as kernel and skipped, and go on", () => {
    const kernel = 0xffff800000001000n;
    const r = champsimRecord({ ip: 0x401000n, src: [kernel, 0x5000n], dst: [0xffffffff81000000n] });
    const { records, skipped, kernel: counted } = read([r]);
    expect(records).toEqual([
      [0x401000, FETCH],
      [0x5000, READ],
    ]);
    expect(counted).toBe(2);
    expect(skipped).toBe(2);
    // A kernel fetch is skipped too, its operands still read.
    const fetch = read([champsimRecord({ ip: kernel, src: [0x6000n] })]);
    expect(fetch.records).toEqual([[0x6000, READ]]);
    expect(fetch.kernel).toBe(1);
  });

  it("refuse an address past 57 bits that is not in kernel space, and one past the user space", () => {
    // Bits 63:47 not all set: 0xffff7fff... is neither user nor kernel.
    for (const address of [0xffff7fffffff0000n, 1n << 57n]) {
      expect(refusal([champsimRecord({ ip: 0x401000n, src: [address] })])).toBe(
        "t.champsim:record 1: address beyond 57 bits and not in kernel space",
      );
    }
    // 2^57 - 4096: a number, past the 5-level user space.
    expect(refusal([champsimRecord({ ip: 0x401000n, src: [(1n << 57n) - 4096n] })])).toBe(
      "t.champsim:record 1: address 0x1fffffffffff000 is beyond the 5-level user address space (56 bits)",
    );
    expect(read([champsimRecord({ ip: 0x401000n, src: [(1n << 56n) - 4096n] })]).records).toEqual([
      [0x401000, FETCH],
      [2 ** 56 - 4096, READ],
    ]);
    expect(refusal([champsimRecord({ ip: 0x401000n, dst: [1n << 47n] })], { levels: 4 })).toBe(
      "t.champsim:record 1: address 0x800000000000 is beyond the 4-level user address space (47 bits): run with --levels 5",
    );
    expect(
      read([champsimRecord({ ip: 0x401000n, dst: [(1n << 47n) - 1n] })], { levels: 4 }).records,
    ).toEqual([
      [0x401000, FETCH],
      [2 ** 47 - 4096, WRITE],
    ]);
  });

  it("stop at a malformed operand when lenient: its record's later operands are not read", () => {
    const r = champsimRecord({ ip: 0x401000n, src: [0x5000n, 1n << 57n, 0x6000n], dst: [0x7000n] });
    const next = champsimRecord({ ip: 0x402000n });
    const { records, skipped, kernel } = read([r, next], { lenient: true });
    expect(records).toEqual([
      [0x401000, FETCH],
      [0x5000, READ],
      [0x402000, FETCH],
    ]);
    expect(skipped).toBe(1);
    expect(kernel).toBe(0);
    // A bad store stops the record too (there is no later operand to lose).
    const store = read([champsimRecord({ ip: 0x401000n, dst: [1n << 57n, 0x8000n] })], {
      lenient: true,
    });
    expect(store.records).toEqual([[0x401000, FETCH]]);
    expect(store.skipped).toBe(1);
  });

  it("refuse a last record cut short, naming its number and size, or skip it when lenient", () => {
    const whole = champsimRecord({ ip: 0x401000n });
    expect(refusal([whole, whole.subarray(0, 40)])).toBe(
      "t.champsim:record 2: truncated record: 40 of 64 bytes",
    );
    const lenient = read([whole, whole.subarray(0, 1)], { lenient: true });
    expect(lenient.records).toEqual([[0x401000, FETCH]]);
    expect(lenient.skipped).toBe(1);
    // No bytes left over: nothing to refuse.
    expect(read([whole]).skipped).toBe(0);
  });
});

describe("a trace's format, guessed from its first bytes", () => {
  const text = (s: string) => new TextEncoder().encode(s);

  it("is lackey when a line has lackey's shape or Valgrind's header, plain otherwise", () => {
    expect(sniffFormat(text("==99== Lackey, an example Valgrind tool\n"))).toBe("lackey");
    expect(sniffFormat(text("# made by hand\nI  0400d7d4,8\n"))).toBe("lackey");
    expect(sniffFormat(text(" L 7ff000398,8\n"))).toBe("lackey");
    expect(sniffFormat(text(" M 7ff000398,8\n"))).toBe("lackey");
    expect(sniffFormat(text("R 0x7ff000398\nW 1000\n"))).toBe("plain");
    expect(sniffFormat(text(" X 7ff000398,8\n"))).toBe("plain");
    // Tabs, CR and LF are text; so are the bytes 32 to 126.
    expect(sniffFormat(text("R\t1000\r\n~ \n"))).toBe("plain");
  });

  it("is binary when one of the first 512 bytes is not text: then ChampSim in the layout whose records line up", () => {
    expect(sniffFormat(text("R 1000\n\x7f"))).toBe("champsim");
    expect(sniffFormat(text("R 1000\n\x1f"))).toBe("champsim");
    // A byte past the first 512 is not looked at.
    expect(sniffFormat(text(`${"R 1000\n".repeat(80)}\x00`))).toBe("plain");
    const records = (size: 64 | 65) =>
      champsimTrace(
        Array.from({ length: 20 }, (_, i) =>
          champsimRecord(
            { ip: 0x401000n + BigInt(i) * 0x10n, src: [0x7fff0000n], branch: i % 2 },
            size === 65 ? 1 : undefined,
          ),
        ),
      );
    expect(sniffFormat(records(64))).toBe("champsim");
    expect(sniffFormat(records(65))).toBe("champsim-load-type");
    // Kernel-space instruction pointers count as records too.
    const kernel = champsimTrace(
      Array.from({ length: 20 }, () => champsimRecord({ ip: 0xffffffff81000000n }, 3)),
    );
    expect(sniffFormat(kernel)).toBe("champsim-load-type");
  });
});
