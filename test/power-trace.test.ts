import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { TraceError } from "../src/power/errors.js";
import { parseProcStat } from "../src/power/record.js";
import { formatTrace, parseTrace, traceLoad } from "../src/power/trace.js";

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
});
