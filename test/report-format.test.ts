import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { benchRatios, wrapTitle } from "../src/report/bench-chart.js";
import { formatNumber } from "../src/report/format.js";
import { formatSize, parseSize } from "../src/util/units.js";

describe("formatNumber, the report's one way of writing a number", () => {
  it("writes the figures of one table alike", () => {
    // The issue's own examples: 1.281e+4 and 1624 beside 1,625.
    expect(formatNumber(12_812.4)).toBe("12,812");
    expect(formatNumber(1624.6)).toBe("1,625");
    expect(formatNumber(1625)).toBe("1,625");
    expect(formatNumber(400_000_000)).toBe("400,000,000");
    expect(formatNumber(12.845)).toBe("12.8");
    expect(formatNumber(0.0318)).toBe("0.0318");
    expect(formatNumber(2.5)).toBe("2.5");
    expect(formatNumber(-3.25)).toBe("-3.25");
    expect(formatNumber(Number.NaN)).toBe("n/a");
  });

  it("never writes an exponent, and keeps three significant digits below 100", () => {
    fc.assert(
      fc.property(fc.double({ min: -1e15, max: 1e15, noNaN: true }), (value) => {
        const text = formatNumber(value);
        expect(text).not.toMatch(/e/i);
        const back = Number(text.replaceAll(",", ""));
        if (Math.abs(value) >= 100 || Number.isInteger(value)) {
          expect(Math.abs(back - value)).toBeLessThanOrEqual(0.5);
        } else if (value !== 0) {
          // Three significant digits: within half a unit of the third digit.
          expect(Math.abs(back - value)).toBeLessThanOrEqual(Math.abs(value) * 0.005 + 1e-300);
        }
      }),
      { numRuns: 5_000 },
    );
  });
});

describe("formatSize, sizes as the command line takes them", () => {
  it("uses the largest unit that holds the size whole", () => {
    expect(formatSize(64 * 1024 ** 3)).toBe("64GiB");
    expect(formatSize(1536 * 1024 ** 2)).toBe("1536MiB");
    expect(formatSize(4096)).toBe("4KiB");
    expect(formatSize(0)).toBe("0B");
    expect(formatSize(1_048_577)).toBe("1048577B");
  });

  it("reads back as the same number of bytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 50 }), (bytes) => {
        expect(parseSize(formatSize(bytes))).toBe(bytes);
      }),
      { numRuns: 5_000 },
    );
  });
});

describe("benchRatios, the benchmark chart's data", () => {
  const result = (impl: string, hz: number, rme: number) => ({
    case: "c",
    impl,
    hz,
    rme,
    bytesPerSecond: null,
    meanNs: 1e9 / hz,
    samples: 10,
  });

  it("divides by hvlab's first kernel in the case and combines the two margins", () => {
    const [own, oracle] = benchRatios([
      result("oracle", 10, 4) as never,
      result("hvlab", 1000, 3) as never,
    ]).sort((a, b) => b.ratio - a.ratio);
    expect(own).toMatchObject({ impl: "hvlab", ratio: 1, rme: 3 });
    expect(oracle?.ratio).toBeCloseTo(0.01, 12);
    expect(oracle?.rme).toBeCloseTo(5, 12); // sqrt(3^2 + 4^2)
    expect(oracle?.low).toBeCloseTo(0.01 / 1.05, 12);
    expect(oracle?.high).toBeCloseTo(0.01 * 1.05, 12);
  });

  it("keeps error bars above zero when the margin passes 100 %", () => {
    const [ratio] = benchRatios([result("hvlab", 5, 180) as never]);
    expect(ratio?.low).toBeGreaterThan(0);
    expect(ratio?.low).toBeCloseTo(1 / 2.8, 12);
  });
});

describe("wrapTitle, a long benchmark case name on several lines", () => {
  it("keeps every word in order, each line within the width unless one word is longer", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ minLength: 1, maxLength: 30 }).filter((w) => !w.includes(" ")),
          {
            maxLength: 40,
          },
        ),
        fc.integer({ min: 1, max: 100 }),
        (words, width) => {
          const lines = wrapTitle(words.join(" "), width);
          expect(lines.join(" ")).toBe(words.join(" "));
          for (const line of lines) {
            if (line.includes(" ")) expect(line.length).toBeLessThanOrEqual(width);
          }
        },
      ),
    );
  });

  it("wraps the paging case's name, which widened the tour's chart past the page", () => {
    const name =
      "whole commands: hvlab paging compare --trace FILE vs zcat FILE > /dev/null (gzip lackey trace, 54 MiB of text, 3,988,740 accesses, 5 configurations)";
    const lines = wrapTitle(name, 90);
    expect(lines.length).toBe(2);
    expect(lines.every((l) => l.length <= 90)).toBe(true);
  });
});
