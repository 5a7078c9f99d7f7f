import { InvalidArgumentError } from "commander";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { integerOption, numberOption, sizeOption } from "../src/cli/options.js";

/* Option parsers see whatever a user types: fuzz them. */

describe("option parsers", () => {
  const parsers = {
    size: sizeOption(4096, 2 ** 44),
    integer: integerOption(-5, 1_000_000),
    number: numberOption(0, 1),
  };

  it.each(Object.entries(parsers))(
    "%s returns a bounded value or an InvalidArgumentError",
    (_, parse) => {
      fc.assert(
        fc.property(
          fc.oneof(fc.string({ maxLength: 30 }), fc.double().map(String), fc.integer().map(String)),
          (text) => {
            try {
              const value = parse(text);
              expect(Number.isFinite(value)).toBe(true);
            } catch (error) {
              expect(error).toBeInstanceOf(InvalidArgumentError);
            }
          },
        ),
        { numRuns: 10_000 },
      );
    },
  );

  it("keeps values within their bounds", () => {
    expect(parsers.size("1TiB")).toBe(2 ** 40);
    expect(() => parsers.size("1KiB")).toThrow("must be from 4KiB to 16TiB");
    expect(() => parsers.size("32TiB")).toThrow(InvalidArgumentError);
    expect(parsers.integer(" 42 ")).toBe(42);
    expect(() => parsers.integer("4.2")).toThrow("not a whole number");
    expect(() => parsers.integer("-6")).toThrow("must be from -5");
    expect(parsers.number("0.25")).toBe(0.25);
    expect(() => parsers.number("NaN")).toThrow("not a number");
    expect(() => parsers.number("")).toThrow("not a number");
    expect(() => parsers.number("1.5")).toThrow("must be from 0 to 1");
  });
});
