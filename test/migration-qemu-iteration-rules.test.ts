import { describe, expect, it } from "vitest";
import {
  checkQemuIteration,
  MAX_WINDOW_RATES,
  MAX_ZERO_TAIL_PAGES,
  type QemuIterationOptions,
} from "../src/migration/qemu-iteration/iteration.js";

// The bounds of the host figures QEMU's iteration model takes
// (checkQemuIteration): each limit is inclusive, the first value past it is
// refused with the option named, and a negative time is no time.

const MiB = 1024 ** 2;
const host: QemuIterationOptions = {
  hostRate: 60 * MiB,
  completionRate: 400 * MiB,
  startMs: 120,
  stopMs: 4,
};

describe("QEMU iteration options: inclusive limits", () => {
  it("takes exactly MAX_WINDOW_RATES window rates and refuses one more", () => {
    const rates = new Array<number>(MAX_WINDOW_RATES).fill(MiB);
    expect(() => checkQemuIteration({ ...host, windowRates: rates })).not.toThrow();
    expect(() => checkQemuIteration({ ...host, windowRates: [...rates, MiB] })).toThrow(
      `${MAX_WINDOW_RATES + 1} window rates are more than ${MAX_WINDOW_RATES}`,
    );
  });

  it("takes a zero tail of exactly MAX_ZERO_TAIL_PAGES pages and refuses one more", () => {
    const scanned = { ...host, zeroScanRate: 1_000_000 };
    expect(() =>
      checkQemuIteration({ ...scanned, zeroTailPages: MAX_ZERO_TAIL_PAGES }),
    ).not.toThrow();
    expect(() =>
      checkQemuIteration({ ...scanned, zeroTailPages: MAX_ZERO_TAIL_PAGES + 1 }),
    ).toThrow(
      `zero tail must be 0 to ${MAX_ZERO_TAIL_PAGES} pages, not ${MAX_ZERO_TAIL_PAGES + 1}`,
    );
  });

  it("takes a start time of 0 to 600000 ms", () => {
    for (const startMs of [0, 600_000]) {
      expect(() => checkQemuIteration({ ...host, startMs })).not.toThrow();
    }
    for (const startMs of [600_001, -1, Number.NaN]) {
      expect(() => checkQemuIteration({ ...host, startMs })).toThrow(
        `start time must be 0 to 600000 ms, not ${startMs}`,
      );
    }
  });

  it("takes a stop cost of 0 to 60000 ms", () => {
    for (const stopMs of [0, 60_000]) {
      expect(() => checkQemuIteration({ ...host, stopMs })).not.toThrow();
    }
    for (const stopMs of [60_001, -1, Number.NaN]) {
      expect(() => checkQemuIteration({ ...host, stopMs })).toThrow(
        `stop cost must be 0 to 60000 ms, not ${stopMs}`,
      );
    }
  });
});
