import { describe, expect, it } from "vitest";
import { PagingError, TraceFormatError } from "../src/paging/errors.js";

describe("paging errors as they print", () => {
  it("name themselves, so a message reads 'PagingError: ...'", () => {
    expect(String(new PagingError("zone full"))).toBe("PagingError: zone full");
    expect(String(new TraceFormatError("t.lackey", 3, "bad address"))).toBe(
      "TraceFormatError: t.lackey:3: bad address",
    );
  });

  it("say the file and the line, the record, or the file alone", () => {
    const line = new TraceFormatError("a.txt", 12, "no comma");
    const record = new TraceFormatError("b.bin", 7, "bad kind", "record");
    const file = new TraceFormatError("c.bin", 0, "too large", "file");
    expect([line.message, record.message, file.message]).toEqual([
      "a.txt:12: no comma",
      "b.bin:record 7: bad kind",
      "c.bin: too large",
    ]);
    expect([line.file, line.line, line.reason, line.unit]).toEqual([
      "a.txt",
      12,
      "no comma",
      "line",
    ]);
    expect(record).toBeInstanceOf(Error);
  });
});
