import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  completionRate,
  MIN_COMPLETION_BYTES,
  MIN_COMPLETION_MS,
  QEMU_STOP_MS,
} from "../src/qemu/completion-rate.js";

const MiB = 1024 ** 2;

describe("the completion's rate from QEMU's downtime-bytes and downtime", () => {
  it("8 MiB in 9 ms of downtime: 8 MiB over the 4 ms left after the fixed stop", () => {
    expect(QEMU_STOP_MS).toBe(5);
    expect(completionRate(8 * MiB, 9, 1)).toBeCloseTo((8 * MiB * 1000) / 4, 3);
  });

  it("the model fed a completion gives back its downtime: the stop, then the bytes at the rate", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MIN_COMPLETION_BYTES, max: 1024 * MiB }),
        fc.integer({ min: QEMU_STOP_MS + MIN_COMPLETION_MS, max: 2000 }),
        (bytes, downtimeMs) => {
          const rate = completionRate(bytes, downtimeMs, 1);
          expect(QEMU_STOP_MS + (bytes / rate) * 1000).toBeCloseTo(downtimeMs, 6);
        },
      ),
    );
  });

  it("too few bytes, or too little time past the stop, give the fallback", () => {
    expect(completionRate(MIN_COMPLETION_BYTES - 1, 50, 123)).toBe(123);
    expect(completionRate(64 * MiB, QEMU_STOP_MS + MIN_COMPLETION_MS - 1, 123)).toBe(123);
    expect(completionRate(64 * MiB, 3, 123)).toBe(123);
    expect(completionRate(64 * MiB, QEMU_STOP_MS + MIN_COMPLETION_MS, 123)).toBeCloseTo(
      (64 * MiB * 1000) / MIN_COMPLETION_MS,
      3,
    );
  });
});
