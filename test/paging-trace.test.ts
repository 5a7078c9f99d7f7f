import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import {
  RecordBuffer,
  sniffFormat,
  streamTrace,
  type TraceFormat,
  traceParser,
} from "../src/paging/trace.js";
import { champsimRecord, champsimTrace } from "./support/champsim.js";
import { fileTempDir } from "./support/temp.js";

const dir = fileTempDir("trace");

function parse(text: string | Uint8Array, format: TraceFormat, lenient = false) {
  const parser = traceParser("t.trace", format, { lenient });
  const out = new RecordBuffer(4);
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  parser.push(bytes, out);
  parser.end(out);
  const records: { va: number; kind: number }[] = [];
  for (let i = 0; i < out.count; i++) {
    const low = out.words[2 * i] as number;
    records.push({
      va: (out.words[2 * i + 1] as number) * 2 ** 32 + ((low - (low & 0xfff)) >>> 0),
      kind: low & 0xfff,
    });
  }
  return { records, skipped: parser.skipped, kernel: parser.kernel };
}

describe("trace formats (Valgrind lackey, ChampSim)", () => {
  it("reads lackey: I (fetch), L, S, M (load + store); skips ==pid== lines", () => {
    const { records } = parse(
      "==123== Lackey\nI  0400d7d4,8\n L 7ff000398,8\n S 7ff000390,4\n M 0421b3c0,4\n==123== done\n",
      "lackey",
    );
    expect(records).toEqual([
      { va: 0x400d000, kind: ACCESS.execute | ACCESS.user },
      { va: 0x7ff000000, kind: ACCESS.user },
      { va: 0x7ff000000, kind: ACCESS.write | ACCESS.user },
      { va: 0x421b000, kind: ACCESS.user },
      { va: 0x421b000, kind: ACCESS.write | ACCESS.user },
    ]);
  });

  it("keeps the page of an address past 2^53 exact, whichever parser reads its line", () => {
    // 0x76943744004ffe has 55 bits: as a double it rounds to a multiple of 4,
    // and 0xffe rounds up into the next page. A record keeps the page only.
    const page = 0x76943744004000;
    const fetch = ACCESS.execute | ACCESS.user;
    // With its newline the wasm line scanner reads it; without, the last line, the general parser.
    expect(parse("I  76943744004ffe,1\n", "lackey").records).toEqual([{ va: page, kind: fetch }]);
    expect(parse("I  76943744004ffe,1", "lackey").records).toEqual([{ va: page, kind: fetch }]);
    expect(parse(" S 0x76943744004ffe,8\n", "lackey").records).toEqual([
      { va: page, kind: ACCESS.write | ACCESS.user },
    ]);
    expect(parse("W 76943744004ffe\nR 0xfffffffffffffe\n", "plain").records).toEqual([
      { va: page, kind: ACCESS.write | ACCESS.user },
      { va: 2 ** 56 - 4096, kind: ACCESS.user },
    ]);
  });

  it("reads plain R/W lines with or without 0x, and comments", () => {
    const { records } = parse("# comment\nR 0x7fff1234\nW 1000\nr\t2000\r\n", "plain");
    expect(records.map((r) => [r.va, r.kind])).toEqual([
      [0x7fff1000, ACCESS.user],
      [0x1000, ACCESS.write | ACCESS.user],
      [0x2000, ACCESS.user],
    ]);
  });

  it("reads ChampSim records in both layouts: the fetch, loads, then stores", () => {
    for (const loadType of [undefined, 1]) {
      const rec = champsimRecord(
        { ip: 0x401000n, dst: [0x7f0000002000n, 0n], src: [0x7f0000001000n, 0n, 0x600000n, 0n] },
        loadType,
      );
      const { records } = parse(rec, loadType === undefined ? "champsim" : "champsim-load-type");
      expect(records).toEqual([
        { va: 0x401000, kind: ACCESS.execute | ACCESS.user },
        { va: 0x7f0000001000, kind: ACCESS.user },
        { va: 0x600000, kind: ACCESS.user },
        { va: 0x7f0000002000, kind: ACCESS.write | ACCESS.user },
      ]);
    }
  });

  it("says the file and line of a malformed line, or skips and counts it when lenient", () => {
    const bad = "I  0400d7d4,8\n Q 1234,8\n L zz,8\n";
    expect(() => parse(bad, "lackey")).toThrow(/t\.trace:2: not a lackey access/);
    const lenient = parse(bad, "lackey", true);
    expect(lenient.records).toHaveLength(1);
    expect(lenient.skipped).toBe(2);
    expect(() => parse("R 0x12 junk\n", "plain")).toThrow(/t\.trace:1: unexpected text/);
    expect(() =>
      parse(champsimRecord({ ip: 1n, dst: [], src: [] }).subarray(0, 40), "champsim"),
    ).toThrow(/record 1: truncated/);
  });

  it("streams plain and gzip files, sniffing the format", async () => {
    const lines = Array.from(
      { length: 50_000 },
      (_, i) => ` L ${(0x10000 + i * 4096).toString(16)},8`,
    ).join("\n");
    const text = `==1== x\n${lines}\n`;
    const plainFile = join(dir, "a.lackey");
    const gzFile = join(dir, "a.lackey.gz");
    writeFileSync(plainFile, text);
    writeFileSync(gzFile, gzipSync(text));
    for (const file of [plainFile, gzFile]) {
      let seen = 0;
      const summary = await streamTrace(file, (r) => {
        seen += r.count;
      });
      expect(summary.format).toBe("lackey");
      expect(summary.records).toBe(50_000);
      expect(seen).toBe(50_000);
      expect(summary.gzip).toBe(file.endsWith(".gz"));
    }
    expect(sniffFormat(champsimRecord({ ip: 1n, dst: [], src: [] }))).toBe("champsim");
    expect(sniffFormat(new TextEncoder().encode("W 0x10\n"))).toBe("plain");
    await expect(streamTrace(join(dir, "missing"), () => {})).rejects.toThrow(TraceFormatError);
  });

  it("reads the recorded trace of a real program (test/fixtures/touch.lackey.gz)", async () => {
    const file = join(import.meta.dirname, "fixtures", "touch.lackey.gz");
    let stores = 0;
    const summary = await streamTrace(file, (r) => {
      for (let i = 0; i < r.count; i++)
        if (((r.words[2 * i] as number) & ACCESS.write) !== 0) stores++;
    });
    expect(summary).toMatchObject({ format: "lackey", gzip: true, skipped: 0 });
    // 199,437 accesses: valgrind 3.19 lackey of touch.c, M lines counted as a load and a store.
    expect(summary.records).toBe(199_437);
    // touch.c writes one byte per 4 KiB page of its 4 MiB array: at least 1,024 stores.
    expect(stores).toBeGreaterThanOrEqual(1024);
  });

  it("splits lines across chunks exactly as whole", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(2 ** 30), { minLength: 1, maxLength: 50 }),
        fc.nat(),
        (addrs, cut) => {
          const text = addrs.map((a) => ` S ${a.toString(16)},4`).join("\n");
          const bytes = new TextEncoder().encode(text);
          const at = cut % (bytes.length + 1);
          const parser = traceParser("t", "lackey");
          const out = new RecordBuffer(2);
          parser.push(bytes.subarray(0, at), out);
          parser.push(bytes.subarray(at), out);
          parser.end(out);
          expect(out.count).toBe(addrs.length);
        },
      ),
    );
  });

  it("reads lackey lines in any chunking as a line-by-line reading of the same text does", () => {
    // The parser reads the usual lines in one pass over each chunk and hands any
    // other line to its general path: a regular-expression reading of the lines,
    // one at a time, is the reference for records, skips and line numbers.
    const line = fc.oneof(
      fc
        .tuple(
          fc.constantFrom("I  ", " L ", " S ", " M "),
          fc.constantFrom("", "0x"),
          fc.bigInt({ min: 0n, max: 2n ** 48n }),
          fc.nat(64),
          fc.constantFrom("", "\r"),
        )
        .map(([op, prefix, a, size, cr]) => `${op}${prefix}${a.toString(16)},${size}${cr}`),
      fc.constantFrom("==123== Lackey", "--123-- note", "", "I 400,8", " X 10,4", "I  zz,4"),
      fc.string({ maxLength: 12 }).filter((x) => !x.includes("\n")),
    );
    const reference = (lines: string[]) => {
      const records: { va: number; kind: number }[] = [];
      let skipped = 0;
      let firstBad = 0;
      for (const [n, raw] of lines.entries()) {
        const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        // Valgrind's own messages (==pid==, --pid--): skipped by their first byte.
        if (text === "" || text.startsWith("=") || text.startsWith("-")) continue;
        const m = /^(I {2}| [LSM] )(?:0x)?([0-9a-fA-F]{1,15}),([0-9]+)$/.exec(text);
        const va = m ? Number.parseInt(m[2] ?? "", 16) : Number.NaN;
        if (!m || Number(m[3]) === 0 || !(va < 2 ** 47)) {
          skipped++;
          firstBad ||= n + 1;
          continue;
        }
        const page = va - (va % 4096);
        const op = m[1];
        if (op === "I  ") records.push({ va: page, kind: ACCESS.execute | ACCESS.user });
        else if (op === " L ") records.push({ va: page, kind: ACCESS.user });
        else if (op === " S ") records.push({ va: page, kind: ACCESS.write | ACCESS.user });
        else {
          records.push({ va: page, kind: ACCESS.user });
          records.push({ va: page, kind: ACCESS.write | ACCESS.user });
        }
      }
      return { records, skipped, firstBad };
    };
    fc.assert(
      fc.property(
        fc.array(line, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.boolean(),
        (lines, cuts, lenient) => {
          const bytes = new TextEncoder().encode(lines.join("\n"));
          const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((x, y) => x - y);
          const parser = traceParser("t.lackey", "lackey", { lenient, levels: 4 });
          const out = new RecordBuffer(1);
          const want = reference(lines);
          const read = () => {
            let from = 0;
            for (const cut of [...at, bytes.length]) {
              parser.push(bytes.subarray(from, cut), out);
              from = cut;
            }
            parser.end(out);
          };
          if (!lenient && want.firstBad > 0) {
            expect(read).toThrow(new RegExp(`^t\\.lackey:${want.firstBad}: `));
            return;
          }
          read();
          const got = parse(new Uint8Array(0), "lackey");
          got.records.length = 0;
          for (let i = 0; i < out.count; i++) {
            const low = out.words[2 * i] as number;
            got.records.push({
              va: (out.words[2 * i + 1] as number) * 2 ** 32 + ((low - (low & 0xfff)) >>> 0),
              kind: low & 0xfff,
            });
          }
          expect(got.records).toEqual(want.records);
          expect(parser.skipped).toBe(want.skipped);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("survives fuzzed input: records or a TraceFormatError, never anything else", () => {
    const seedText = "I  0400d7d4,8\n L 7ff000398,8\n S 7ff000390,4\n M 0421b3c0,4\nR 0x10\n";
    fc.assert(
      fc.property(
        fc.constantFrom("lackey", "plain", "champsim", "champsim-load-type" as const),
        fc.array(fc.record({ at: fc.nat(), byte: fc.nat(255) }), { maxLength: 20 }),
        fc.uint8Array({ maxLength: 300 }),
        (format, mutations, extra) => {
          const base = new TextEncoder().encode(seedText);
          const bytes = new Uint8Array(base.length + extra.length);
          bytes.set(base);
          bytes.set(extra, base.length);
          for (const m of mutations) bytes[m.at % bytes.length] = m.byte;
          let strict: ReturnType<typeof parse> | null = null;
          try {
            strict = parse(bytes, format);
            for (const r of strict.records) expect(r.va).toBeLessThan(2 ** 57);
          } catch (error) {
            expect(error).toBeInstanceOf(TraceFormatError);
          }
          // Lenient mode never throws. Where strict mode accepts the input, lenient mode
          // reads the same records and skips only what strict mode skips too (kernel-space
          // addresses); where strict mode refuses it, lenient mode skips at least the line
          // or record strict mode stopped at.
          const lenient = parse(bytes, format, true);
          if (strict) {
            expect(lenient.records).toEqual(strict.records);
            expect(lenient.skipped).toBe(strict.skipped);
            expect(lenient.skipped).toBe(lenient.kernel);
          } else {
            expect(lenient.skipped).toBeGreaterThan(lenient.kernel);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("trace errors say what went wrong and where", () => {
  const write = (name: string, bytes: string | Uint8Array) => {
    const file = join(dir, name);
    writeFileSync(file, bytes);
    return file;
  };

  it("refuses xz, zstd and bzip2 files by their magic, naming the compression", async () => {
    // Stream header magics: xz file format 2.1.1.1, RFC 8878 3.1.1 (zstd), bzip2's "BZh".
    const magics = {
      xz: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00],
      zstd: [0x28, 0xb5, 0x2f, 0xfd],
      bzip2: [0x42, 0x5a, 0x68, 0x39],
    };
    for (const [name, magic] of Object.entries(magics)) {
      const file = write(`t.${name}`, new Uint8Array([...magic, 1, 2, 3, 4, 5, 6, 7, 8]));
      await expect(streamTrace(file, () => {})).rejects.toThrow(
        new RegExp(`t\\.${name}: is ${name}-compressed: hvlab reads plain and gzip traces`),
      );
    }
  });

  it("detects the ChampSim layout with the load_type byte, plain and gzip", async () => {
    for (const loadType of [undefined, 2]) {
      const records = Array.from({ length: 300 }, (_, i) =>
        champsimRecord(
          {
            ip: 0x401000n + BigInt(i * 4),
            dst: [0n, 0n],
            src: [0x7f00_0000_0000n + BigInt(i * 64)],
          },
          loadType,
        ),
      );
      const bytes = champsimTrace(records);
      const expected = loadType === undefined ? "champsim" : "champsim-load-type";
      for (const [name, data] of [
        [`c${loadType ?? 0}.bin`, bytes],
        [`c${loadType ?? 0}.bin.gz`, gzipSync(bytes)],
      ] as const) {
        const summary = await streamTrace(write(name, data), () => {});
        expect(summary.format, name).toBe(expected);
        expect(summary.records, name).toBe(600);
        expect(summary.skipped, name).toBe(0);
      }
    }
  });

  it("counts ChampSim kernel-space addresses in skipped instead of dropping them silently", () => {
    const rec = champsimRecord({
      ip: 0x401000n,
      dst: [0xffff_ffff_8100_0000n],
      src: [0x7f00_0000_1000n, 0xffff_8880_0000_0000n],
    });
    const parser = traceParser("k.bin", "champsim");
    const out = new RecordBuffer();
    parser.push(rec, out);
    parser.end(out);
    expect(out.count).toBe(2); // the fetch and the user-space load
    expect(parser.skipped).toBe(2);
    expect(parser.kernel).toBe(2);
  });

  it("refuses an empty or comments-only trace instead of printing a table of zeros", async () => {
    for (const [name, text] of [
      ["empty.trace", ""],
      ["comments.trace", "# nothing\n# here\n"],
    ] as const) {
      await expect(streamTrace(write(name, text), () => {})).rejects.toThrow(
        new RegExp(`${name.replace(".", "\\.")}: no memory accesses`),
      );
    }
  });

  it("names the line of an address beyond the 4-level address space, and --levels 5", async () => {
    const file = write("high.lackey", "I  0400d7d4,8\n L 800000000000,8\n");
    await expect(streamTrace(file, () => {}, { levels: 4 })).rejects.toThrow(
      /high\.lackey:2: address 0x800000000000 is beyond the 4-level user address space \(47 bits\): run with --levels 5/,
    );
    const summary = await streamTrace(file, () => {}, { levels: 5 });
    expect(summary.records).toBe(2);
  });

  it("says a directory is not a trace file", async () => {
    await expect(streamTrace(dir, () => {})).rejects.toThrow(/is a directory, not a trace file/);
  });
});
