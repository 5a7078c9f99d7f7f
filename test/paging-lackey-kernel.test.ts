import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { scanLackeyOracle } from "../src/oracle/lackey.js";
import { TraceFormatError } from "../src/paging/errors.js";
import { LackeyScanner } from "../src/paging/lackey-scanner.js";
import { ACCESS } from "../src/paging/mmu.js";
import { RecordBuffer, traceParser } from "../src/paging/trace.js";
import { LACKEY_STATE_BYTES, LackeyKernel, LackeyStop } from "../src/wasm/lackey.js";

const layout = new MemoryLayout();
const kernel = LackeyKernel.on(layout.memory);
const TEXT = 4096;
const text = layout.allocate("lackey test text", TEXT + 64);
const records = layout.allocate("lackey test records", 64 * 8);
const state = layout.allocate("lackey test state", LACKEY_STATE_BYTES);
const enc = (s: string) => Uint8Array.from(Buffer.from(s, "latin1"));

/** Places `bytes` at byte `shift` of the text region and scans [shift + from, shift + to). */
function scan(
  bytes: Uint8Array,
  shift: number,
  from: number,
  to: number,
  capacity: number,
  bits: 47 | 56,
) {
  new Uint8Array(layout.memory.buffer, text.offset, TEXT + 64).fill(0x41);
  new Uint8Array(layout.memory.buffer, text.offset + shift, bytes.length).set(bytes);
  const r = kernel.scan(text, shift + from, shift + to, records, capacity, bits, state);
  const words = [...new Uint32Array(layout.memory.buffer, records.offset, r.records * 2)];
  return { stop: r.stop, position: r.position - shift, words, lines: r.lines };
}

/** A lackey-like line: mostly accesses, some of every other shape the parser must tell apart. */
const line = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.constantFrom("I  ", " L ", " S ", " M "),
        fc.oneof(
          fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }),
          fc.bigInt({ min: 0n, max: (1n << 60n) - 1n }),
          fc.bigInt({ min: 0n, max: 0xffffn }),
        ),
        fc.boolean(),
        fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(0, 10, 100000)),
        fc.constantFrom("", "", "", "\r"),
        fc.integer({ min: 0, max: 2 }),
      )
      .map(([op, a, upper, size, cr, pad]) => {
        const hex = "0".repeat(pad) + (upper ? a.toString(16).toUpperCase() : a.toString(16));
        return `${op}${hex},${size}${cr}`;
      }),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "==4242== Lackey",
      "--4242-- x",
      "",
      "\r",
      "I",
      " L",
      "I  0x400,8",
      " X 400,8",
      " L 400,",
      " L ,8",
      " L 400;8",
      "I  400,8 ",
      "I 400,8",
    ),
  },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
);
const trace = fc.array(line, { maxLength: 40 }).map((lines) => enc(lines.join("\n")));

describe("the lackey line scanner (assembly/lackey.ts) against its oracle", () => {
  it("writes the oracle's records and stops where it stops: cuts at every position, unaligned, every capacity", () => {
    fc.assert(
      fc.property(
        trace,
        fc.integer({ min: 0, max: 63 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 2, max: 64 }),
        fc.constantFrom(47 as const, 56 as const),
        (bytes, shift, a, b, capacity, bits) => {
          fc.pre(bytes.length <= TEXT);
          const from = bytes.length === 0 ? 0 : a % (bytes.length + 1);
          const to = from + (b % (bytes.length - from + 1));
          const got = scan(bytes, shift, from, to, capacity, bits);
          const want = scanLackeyOracle(bytes, from, to, capacity, bits);
          expect(got).toEqual({ ...want, words: want.words.map((w) => w >>> 0) });
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("reads the known shapes: one record each, two for a modify, kinds from src/paging/mmu.ts", () => {
    const known = enc("I  0400d7d4,8\n L 7ff000398,8\n S 7ff000398,8\r\n M 0421c7f0,4\n");
    const r = scan(known, 3, 0, known.length, 16, 47);
    expect(r.stop).toBe(LackeyStop.end);
    expect(r.lines).toBe(4);
    expect(r.position).toBe(known.length);
    const u = ACCESS.user;
    expect(r.words).toEqual(
      [
        0x0400d000 | ACCESS.execute | u,
        0,
        0xff000000 | u,
        0x7,
        0xff000000 | ACCESS.write | u,
        0x7,
        0x0421c000 | u,
        0,
        0x0421c000 | ACCESS.write | u,
        0,
      ].map((w) => w >>> 0),
    );
    // A message stops the scan at its first byte; a cut line at its first byte too.
    expect(scan(enc("I  1000,1\n==1== x\n"), 0, 0, 18, 16, 47)).toMatchObject({
      stop: LackeyStop.otherLine,
      position: 10,
      lines: 1,
    });
    expect(scan(enc("I  1000,1\n L 20"), 0, 0, 15, 16, 47)).toMatchObject({
      stop: LackeyStop.end,
      position: 10,
      lines: 1,
    });
    // 2^47 needs 5 levels; a modify does not start without room for both records.
    expect(scan(enc(" L 800000000000,8\n"), 0, 0, 19, 16, 47).stop).toBe(LackeyStop.otherLine);
    expect(scan(enc(" L 800000000000,8\n"), 0, 0, 19, 16, 56).words).toEqual([0x4, 0x8000]);
    expect(scan(enc("I  1,1\n M 2,1\n"), 0, 0, 14, 2, 47)).toMatchObject({
      stop: LackeyStop.full,
      position: 7,
      lines: 1,
    });
  });

  it("refuses ranges outside its regions before wasm runs", () => {
    expect(() => kernel.scan(text, 0, TEXT + 65, records, 2, 47, state)).toThrow(RegionBoundsError);
    expect(() => kernel.scan(text, 0, 10, records, 65, 47, state)).toThrow(/lackey records/);
    expect(() =>
      kernel.scan(text, 0, 10, records, 2, 47, layout.allocate("tiny state", 8)),
    ).toThrow(/lackey scan state/);
    expect(() => kernel.scan(text, 5, 4, records, 2, 47, state)).toThrow(/before its start/);
    expect(() => kernel.scan(text, 0, 4, records, 2, 48, state)).toThrow(/47 or 56/);
    expect(() => kernel.scan(text, 0, 4, records, 1, 47, state)).toThrow(/capacity/);
  });
});

/** Every record word and the skipped count of `bytes` parsed whole or in `pieces`. */
function parse(bytes: Uint8Array, cuts: number[], scanner: LackeyScanner, lenient = true) {
  const parser = traceParser("t.lackey", "lackey", { lenient, scanner });
  const out = new RecordBuffer(1);
  let at = 0;
  for (const cut of [...cuts.map((c) => c % (bytes.length + 1))].sort((x, y) => x - y)) {
    parser.push(bytes.subarray(at, cut), out);
    at = cut;
  }
  parser.push(bytes.subarray(at), out);
  parser.end(out);
  return { words: [...out.words.subarray(0, out.count * 2)], skipped: parser.skipped };
}

/** The reference: each line on its own, by the oracle (a line of another shape: a message, or skipped). */
function perLine(bytes: Uint8Array) {
  const words: number[] = [];
  let skipped = 0;
  const text = Buffer.from(bytes).toString("latin1");
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  for (const l of lines) {
    const body = l.endsWith("\r") ? l.slice(0, -1) : l;
    // Valgrind's messages (==pid==, --pid--): the general parser passes over any line starting = or -.
    if (body === "" || body.startsWith("=") || body.startsWith("-")) continue;
    const one = scanLackeyOracle(enc(`${body}\n`), 0, body.length + 1, 4, 56);
    // The general parser also reads a 0x prefix.
    const plain = /^(I {2}| [LSM] )0x/.test(body) ? body.replace(/^(.{3})0x/, "$1") : body;
    const again =
      one.lines === 1 ? one : scanLackeyOracle(enc(`${plain}\n`), 0, plain.length + 1, 4, 56);
    if (again.lines === 1) words.push(...again.words.map((w) => w >>> 0));
    else skipped++;
  }
  return { words, skipped };
}

describe("the lackey parser over the scanner", () => {
  const scanner = new LackeyScanner(layout, "parser test");

  it("reads every line as the oracle reads it alone, however the stream is cut", () => {
    fc.assert(
      fc.property(trace, fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
        const got = parse(bytes, cuts, scanner);
        expect(got).toEqual(parse(bytes, [], scanner));
        const want = perLine(bytes);
        expect(got.words).toEqual(want.words);
        expect(got.skipped).toBe(want.skipped);
      }),
      { numRuns: 1000 },
    );
  });

  it("reads a trace longer than the scanner's text region and records in one push", () => {
    const lines: string[] = [];
    for (let i = 0; i < 200_000; i++)
      lines.push(i % 7 === 0 ? ` M ${(i * 4096).toString(16)},4` : `I  ${(i * 64).toString(16)},4`);
    lines.splice(100_000, 0, "==1== in the middle");
    const bytes = enc(`${lines.join("\n")}\n`);
    expect(bytes.length).toBeGreaterThan(2 ** 20);
    const got = parse(bytes, [], scanner, false);
    expect(got.words.length / 2).toBe(200_000 + Math.ceil(200_000 / 7));
    expect(got.words).toEqual(perLine(bytes).words);
  });

  it("fuzz: random bytes never crash it; strict mode fails with a TraceFormatError naming the line", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        (bytes, cuts) => {
          const lenient = parse(bytes, cuts, scanner);
          expect(lenient.words.length % 2).toBe(0);
          try {
            parse(bytes, cuts, scanner, false);
          } catch (error) {
            expect(error).toBeInstanceOf(TraceFormatError);
            expect((error as Error).message).toMatch(/^t\.lackey:\d+: /);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
