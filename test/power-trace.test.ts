import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TraceError } from "../src/power/errors.js";
import { parseProcStat } from "../src/power/record.js";
import {
  formatTrace,
  MAX_TRACE_BYTES,
  MAX_TRACE_ROWS,
  parseTrace,
  traceLoad,
} from "../src/power/trace.js";

const VALID = "time,cpu0,cpu1,cpu2\n0.1,10,20,30\n0.2,0,100,50.5\n";

describe("utilization trace reader", () => {
  it("reads per-processor and whole-machine traces", () => {
    const trace = parseTrace(VALID);
    expect(trace.columns).toBe(3);
    expect([...trace.times]).toEqual([0.1, 0.2]);
    expect(traceLoad(trace, 0, 16)).toBeCloseTo(0.6, 12);
    expect(traceLoad(trace, 1, 16)).toBeCloseTo(1.505, 12);
    const total = parseTrace("time,total\r\n1,25\r\n2,50\r\n");
    expect(total.columns).toBe("total");
    expect(traceLoad(total, 1, 16)).toBe(8);
    expect(parseTrace(formatTrace(trace))).toEqual(trace);
  });

  it.each([
    ["", "line 1: the header"],
    ["time,cpu0\n", "no samples"],
    ["time,cpu1\n1,2\n", "expected 'cpu0', found 'cpu1'"],
    ["t,cpu0\n1,2\n", "line 1: the header"],
    ["time,cpu0,cpu1\n1,2\n", "line 2 has 2 cells but the header has 3"],
    ["time,cpu0\n1,abc\n", "line 2, column 2 (cpu0): 'abc' is not a number"],
    ["time,cpu0\n1,\n", "line 2, column 2 (cpu0): '' is not a number"],
    ["time,cpu0\n1,101\n", "utilization 101 is not a percentage"],
    ["time,cpu0\n1,-1\n", "utilization -1 is not a percentage"],
    ["time,cpu0\n1,5\n1,5\n", "line 3, column 1 (time): 1 s does not come after 1 s"],
    ["time,cpu0\n0,5\n", "0 s does not come after 0 s"],
    ["time,total\nNaN,5\n", "'NaN' is not a number"],
    ["time,total\n1,Infinity\n", "'Infinity' is not a number"],
  ])("refuses %j naming where", (text, message) => {
    expect(() => parseTrace(text)).toThrow(TraceError);
    expect(() => parseTrace(text)).toThrow(message);
  });

  it("refuses oversized traces before reading them", () => {
    expect(() => parseTrace(`time,total\n${"1,1\n".repeat(5_000_000)}`)).toThrow(/at most/);
    const wide = `time,${Array.from({ length: 1025 }, (_, i) => `cpu${i}`).join(",")}\n`;
    expect(() => parseTrace(wide)).toThrow(/1025 processor columns/);
  });

  it("reads cells and names with spaces around them, and ignores blank lines at the end", () => {
    const trace = parseTrace("time, cpu0 ,cpu1\n 0.5 , 10,20\n1,30 , 40 \n  \n\r\n\n");
    expect(trace.columns).toBe(2);
    expect([...trace.times]).toEqual([0.5, 1]);
    expect([...trace.values]).toEqual([0.1, 0.2, 0.3, 0.4]);
    expect(() => parseTrace("\n \n")).toThrow(TraceError);
  });

  it("sums a row's own processors only", () => {
    const trace = parseTrace("time,cpu0,cpu1\n1,10,20\n2,40,80\n");
    expect(traceLoad(trace, 0, 16)).toBeCloseTo(0.3, 12);
    expect(traceLoad(trace, 1, 16)).toBeCloseTo(1.2, 12);
  });

  it("writes a whole-machine trace as it reads it", () => {
    const total = parseTrace("time,total\n0.5,25\n1,62.5\n");
    expect(formatTrace(total)).toBe("time,total\n0.5,25\n1,62.5\n");
    expect(parseTrace(formatTrace(total))).toEqual(total);
  });

  it.each([
    ["time\n1\n", "line 1: the header must be"],
    ["time,total,cpu1\n1,2,3\n", "line 1, column 2: expected 'cpu0', found 'total'"],
    ["time,cpu0,cpu2\n1,2,3\n", "line 1, column 3: expected 'cpu1', found 'cpu2'"],
    [
      `time,cpu0,${"x".repeat(40)}\n1,2,3\n`,
      `line 1, column 3: expected 'cpu1', found '${"x".repeat(32)}'\n`,
    ],
    ["time,cpu0\nabc,5\n", "line 2, column 1 (time): 'abc' is not a number"],
    [`time,cpu0\n1,${"9".repeat(20)}x\n`, `line 2, column 2 (cpu0): '${"9".repeat(20)}x' is not`],
    [`time,cpu0\n1,${"7".repeat(40)}x\n`, `line 2, column 2 (cpu0): '${"7".repeat(32)}' is not`],
    ["time,cpu0,cpu1\n1,5,101\n", "line 2, column 3 (cpu1): utilization 101 is not a percentage"],
    ["time,total\n10000000.5,5\n", "10000000.5 s does not come after 0 s"],
  ])("refuses %j saying exactly where", (text, message) => {
    expect(() => parseTrace(text)).toThrow(TraceError);
    if (message.endsWith("\n")) {
      expect(() => parseTrace(text)).toThrow(new TraceError(message.slice(0, -1)));
    } else {
      expect(() => parseTrace(text)).toThrow(message);
    }
  });

  it("takes every limit at its end: 16 MiB, 1,000,000 samples, 1,024 processors, time 1e7 s", () => {
    const head = "time,total\n1,";
    const exact = `${head}${" ".repeat(MAX_TRACE_BYTES - head.length - 3)}50\n`;
    expect(exact.length).toBe(MAX_TRACE_BYTES);
    expect([...parseTrace(exact).values]).toEqual([0.5]);
    expect(() => parseTrace(`${exact} `)).toThrow(
      new TraceError(`the trace is ${MAX_TRACE_BYTES + 1} bytes (at most ${MAX_TRACE_BYTES})`),
    );
    // A million samples pass the count (and are read: the first one is
    // refused, by its own line); one more is refused before any is read.
    const rows = (n: number) => `time,total\nx,1\n${"1,1\n".repeat(n - 1)}`;
    expect(() => parseTrace(rows(MAX_TRACE_ROWS))).toThrow(
      new TraceError("line 2, column 1 (time): 'x' is not a number"),
    );
    expect(() => parseTrace(rows(MAX_TRACE_ROWS + 1))).toThrow(
      new TraceError(`the trace has ${MAX_TRACE_ROWS + 1} samples (at most ${MAX_TRACE_ROWS})`),
    );
    const names = Array.from({ length: 1024 }, (_, i) => `cpu${i}`).join(",");
    const wide = parseTrace(`time,${names}\n1,${new Array(1024).fill(50).join(",")}\n`);
    expect(wide.columns).toBe(1024);
    expect([...parseTrace("time,total\n10000000,5\n").times]).toEqual([1e7]);
  });

  it("only ever returns a checked trace or throws a TraceError (fuzzed, 100,000 cases)", () => {
    // Plain checks, not expect(): 100,000 calls of it would take half a minute.
    let accepted = 0;
    let refused = 0;
    const check = (text: string) => {
      try {
        const trace = parseTrace(text);
        const width = trace.columns === "total" ? 1 : trace.columns;
        if (trace.values.length !== trace.times.length * width) throw new Error("ragged trace");
        for (const v of trace.values) if (!(v >= 0 && v <= 1)) throw new Error(`value ${v}`);
        for (let i = 1; i < trace.times.length; i++) {
          if (!((trace.times[i] as number) > (trace.times[i - 1] as number))) {
            throw new Error("times out of order");
          }
        }
        accepted++;
      } catch (error) {
        if (!(error instanceof TraceError) || error.message.includes("\n")) throw error;
        refused++;
      }
    };
    // Mutations of a valid trace: a character replaced, inserted or removed.
    const alphabet = "0123456789.,-+eE \r\ncputimeotalNa";
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            at: fc.nat(VALID.length),
            op: fc.constantFrom("replace", "insert", "delete"),
            ch: fc.constantFrom(...alphabet),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (edits) => {
          let text = VALID;
          for (const { at, op, ch } of edits) {
            const i = at % (text.length + 1);
            text =
              op === "insert"
                ? text.slice(0, i) + ch + text.slice(i)
                : op === "replace"
                  ? text.slice(0, i) + ch + text.slice(i + 1)
                  : text.slice(0, i) + text.slice(i + 1);
          }
          check(text);
        },
      ),
      { numRuns: 70_000 },
    );
    // Random text over the trace's own alphabet.
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...alphabet), maxLength: 40 }), (tail) =>
        check(`time,cpu0\n${tail}`),
      ),
      { numRuns: 30_000 },
    );
    expect(accepted + refused).toBe(100_000);
    expect(accepted).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(1000);
  });
});

describe("/proc/stat reader", () => {
  it("counts busy as everything but idle and iowait", () => {
    const times = parseProcStat(
      "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 1 2 3 40 4 5 6 7 0 0\ncpu1 0 0 0 10\nintr 1 2\n",
    );
    expect(times.busy).toEqual([1 + 2 + 3 + 5 + 6 + 7, 0]);
    expect(times.total).toEqual([1 + 2 + 3 + 40 + 4 + 5 + 6 + 7, 10]);
    expect(() => parseProcStat("cpu 1 2 3 4\n")).toThrow(/no per-processor lines/);
    expect(() => parseProcStat("cpu0 1 x 3 4\n")).toThrow(/cpu0/);
  });

  it("reads every processor of a machine with more than ten, fields split by any run of blanks", () => {
    const lines = Array.from({ length: 12 }, (_, i) => `cpu${i} ${i} 0 1 100 0 0 0 0 0 0`);
    const times = parseProcStat(`cpu  66 0 12 1200 0 0 0 0 0 0\n${lines.join("\n")}\nctxt 5\n`);
    expect(times.busy).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(times.total).toEqual(Array.from({ length: 12 }, (_, i) => i + 101));
    expect(parseProcStat("cpu0 1  2\t3   4\n")).toEqual({ busy: [6], total: [10] });
  });

  it("refuses a processor line that is cut short or holds a negative count, naming it", () => {
    expect(() => parseProcStat("cpu3 1 2 3\n")).toThrow(
      new TraceError("/proc/stat: cannot read the line for cpu3"),
    );
    expect(() => parseProcStat("cpu3 1 2 3 \n")).toThrow(/cpu3/);
    expect(() => parseProcStat("cpu0 1 2 3 4\ncpu1 1 -2 3 4\n")).toThrow(
      new TraceError("/proc/stat: cannot read the line for cpu1"),
    );
  });
});
