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

/*
 * The utilization trace and /proc/stat readers at their edges: blanks
 * around cells and at the end, each limit taken at its end and refused one
 * past it, and errors that say exactly where (line, column, the value cut
 * to 32 characters).
 */

describe("utilization trace reader at its edges", () => {
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
});

describe("/proc/stat reader at its edges", () => {
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
