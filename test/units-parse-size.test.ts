import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { formatBytes, parseSize } from "../src/util/units.js";

describe("parseSize", () => {
  it.each([
    ["4096", 4096],
    ["64MiB", 64 * 1024 ** 2],
    ["1 TiB", 1024 ** 4],
    ["1.5GB", 1.5e9],
    ["2m", 2 * 1024 ** 2],
    ["16tib", 16 * 1024 ** 4],
  ])("reads %s", (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it.each(["", "MiB", "-1", "1XB", "1.2.3", "0x10", "1e3"])("refuses %j", (text) => {
    expect(() => parseSize(text)).toThrow(TypeError);
  });

  it("refuses fractions of a byte", () => {
    expect(() => parseSize("0.5")).toThrow("not a whole number of bytes");
  });

  it("never throws anything but a TypeError on arbitrary text (fuzz)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (text) => {
        try {
          const bytes = parseSize(text);
          expect(Number.isSafeInteger(bytes) && bytes >= 0).toBe(true);
        } catch (error) {
          expect(error).toBeInstanceOf(TypeError);
        }
      }),
      { numRuns: 20_000 },
    );
  });

  it("formats with binary units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(32 * 1024 ** 2)).toBe("32.0 MiB");
    expect(formatBytes(1024 ** 4)).toBe("1.0 TiB");
  });
});
