import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RETRY_BASE_MS, RETRY_CAP_MS, retryDelayMs } from "../src/migration/live/backoff.js";

describe("retry backoff", () => {
  it("doubles from the base up to the cap, half of it drawn at random", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((r) => retryDelayMs(r, () => 0))).toEqual([
      125, 250, 500, 1000, 2000, 4000, 5000, 5000,
    ]);
    expect([1, 2, 3, 7, 100].map((r) => retryDelayMs(r, () => 0.999_999))).toEqual([
      RETRY_BASE_MS,
      500,
      1000,
      RETRY_CAP_MS,
      RETRY_CAP_MS,
    ]);
  });

  it("stays within [ceiling/2, ceiling] for any draw, and six retries take seconds, not milliseconds", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (retry, draw) => {
          const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(retry - 1, 16));
          const delay = retryDelayMs(retry, () => draw);
          return delay >= Math.floor(ceiling / 2) && delay <= ceiling;
        },
      ),
    );
    let total = 0;
    for (let retry = 1; retry <= 6; retry++) total += retryDelayMs(retry);
    expect(total).toBeGreaterThanOrEqual(125 + 250 + 500 + 1000 + 2000 + 4000);
  });

  it("two sources that failed together draw different waits", () => {
    const waits = new Set(Array.from({ length: 20 }, () => retryDelayMs(5)));
    expect(waits.size).toBeGreaterThan(1);
  });

  it("refuses a retry number that is not a whole number from 1", () => {
    expect(() => retryDelayMs(0)).toThrow(/retry must be a whole number from 1, not 0/);
    expect(() => retryDelayMs(1.5)).toThrow(/not 1.5/);
  });
});
