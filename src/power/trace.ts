import { TraceError } from "./errors.js";

/**
 * A utilization trace: one row per sample, each the utilization over the
 * interval that ends at its time and starts at the previous row's (or 0).
 *
 *   time,cpu0,cpu1,...,cpuN-1     (percent busy of each processor)
 *   time,total                    (percent busy of the whole machine)
 *
 * Times are seconds, strictly increasing; utilizations are 0 to 100.
 */
export interface UtilizationTrace {
  /** "total" for one column of the whole machine, else the processor count. */
  readonly columns: "total" | number;
  /** End of each sample, s. */
  readonly times: Float64Array;
  /** Utilization as a fraction 0-1, row by row (one value per column). */
  readonly values: Float64Array;
}

/** Largest trace file read, bytes. */
export const MAX_TRACE_BYTES = 16 * 1024 * 1024;
/** Most samples in a trace. */
export const MAX_TRACE_ROWS = 1_000_000;
/** Most processor columns in a trace. */
export const MAX_TRACE_PROCESSORS = 1024;

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** Reads one cell as a number, or says where it is not one. */
function cellNumber(text: string, line: number, column: number, name: string): number {
  const trimmed = text.trim();
  if (!NUMBER.test(trimmed)) {
    throw new TraceError(
      `line ${line}, column ${column} (${name}): '${trimmed.slice(0, 32)}' is not a number`,
    );
  }
  return Number(trimmed);
}

/**
 * Reads a utilization trace from CSV text (RFC 4180 without quoting; CRLF or
 * LF line ends), checking every cell before it is used.
 *
 * @throws TraceError naming the line, the column and the value that is wrong.
 */
export function parseTrace(text: string): UtilizationTrace {
  if (text.length > MAX_TRACE_BYTES) {
    throw new TraceError(`the trace is ${text.length} bytes (at most ${MAX_TRACE_BYTES})`);
  }
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[lines.length - 1]?.trim() === "") lines.pop();
  const header = (lines[0] ?? "").split(",").map((name) => name.trim());
  if (header.length < 2 || header[0] !== "time") {
    throw new TraceError(
      "line 1: the header must be 'time' then 'total' or cpu0, cpu1, ... (one column per processor)",
    );
  }
  let columns: "total" | number;
  if (header.length === 2 && header[1] === "total") {
    columns = "total";
  } else {
    const cpus = header.length - 1;
    if (cpus > MAX_TRACE_PROCESSORS) {
      throw new TraceError(`line 1: ${cpus} processor columns (at most ${MAX_TRACE_PROCESSORS})`);
    }
    header.slice(1).forEach((name, i) => {
      if (name !== `cpu${i}`) {
        throw new TraceError(
          `line 1, column ${i + 2}: expected 'cpu${i}', found '${name.slice(0, 32)}'`,
        );
      }
    });
    columns = cpus;
  }
  const rows = lines.length - 1;
  if (rows < 1) throw new TraceError("the trace has a header but no samples");
  if (rows > MAX_TRACE_ROWS) {
    throw new TraceError(`the trace has ${rows} samples (at most ${MAX_TRACE_ROWS})`);
  }
  const width = header.length - 1;
  const times = new Float64Array(rows);
  const values = new Float64Array(rows * width);
  let previous = 0;
  for (let r = 0; r < rows; r++) {
    const line = r + 2;
    const cells = (lines[r + 1] ?? "").split(",");
    if (cells.length !== header.length) {
      throw new TraceError(
        `line ${line} has ${cells.length} cells but the header has ${header.length}`,
      );
    }
    const time = cellNumber(cells[0] ?? "", line, 1, "time");
    if (!(time > previous) || time > 1e7) {
      throw new TraceError(
        `line ${line}, column 1 (time): ${time} s does not come after ${previous} s (times are seconds, increasing, up to 1e7)`,
      );
    }
    times[r] = time;
    previous = time;
    for (let c = 0; c < width; c++) {
      const name = header[c + 1] ?? "";
      const value = cellNumber(cells[c + 1] ?? "", line, c + 2, name);
      if (!(value >= 0 && value <= 100)) {
        throw new TraceError(
          `line ${line}, column ${c + 2} (${name}): utilization ${value} is not a percentage from 0 to 100`,
        );
      }
      values[r * width + c] = value / 100;
    }
  }
  return { columns, times, values };
}

/** Writes a trace as CSV (the form {@link parseTrace} reads). */
export function formatTrace(trace: UtilizationTrace): string {
  const width = trace.columns === "total" ? 1 : trace.columns;
  const names =
    trace.columns === "total" ? ["total"] : Array.from({ length: width }, (_, i) => `cpu${i}`);
  const lines = [["time", ...names].join(",")];
  for (const [r, time] of trace.times.entries()) {
    const cells = Array.from(trace.values.subarray(r * width, (r + 1) * width), (v) =>
      Number((v * 100).toFixed(2)),
    );
    lines.push([Number(time.toFixed(6)), ...cells].join(","));
  }
  return `${lines.join("\n")}\n`;
}

/** Processors-worth of load in sample `row` on a machine of `processors` processors. */
export function traceLoad(trace: UtilizationTrace, row: number, processors: number): number {
  if (trace.columns === "total") return (trace.values[row] ?? 0) * processors;
  let sum = 0;
  for (let c = 0; c < trace.columns; c++) sum += trace.values[row * trace.columns + c] ?? 0;
  return sum;
}
