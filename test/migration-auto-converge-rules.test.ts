/*
 * Auto-converge's rules one at a time, as QEMU's migration/ram.c applies
 * them: migration_bitmap_sync checks once more than a second has passed,
 * migration_trigger_throttle counts a period "high" when the bytes dirtied
 * in it exceed throttle-trigger-threshold percent of the bytes sent, and
 * throttles on the second high period (dirty_rate_high_cnt reaching 2, not
 * reset by a low period between), and mig_throttle_guest_down starts at
 * cpu-throttle-initial, then adds cpu-throttle-increment (with tailslow, at
 * most the step that would bring the dirty bytes to the threshold), capped
 * at max-cpu-throttle.
 */
import { describe, expect, it } from "vitest";
import {
  AUTO_CONVERGE_HIGH_PERIODS,
  AUTO_CONVERGE_PERIOD_MS,
  AutoConverge,
  type AutoConvergeSettings,
} from "../src/migration/auto-converge.js";

const QEMU_DEFAULTS: AutoConvergeSettings = {
  autoConverge: true,
  throttleInitial: 20,
  throttleIncrement: 10,
  throttleMax: 99,
  throttleTriggerThreshold: 50,
  throttleTailslow: false,
};

/** One period: more than QEMU's 1,000 ms (end_time > last + 1000). */
const PERIOD = 1001;

/** Two high periods: one throttle step. */
function step(a: AutoConverge): boolean {
  a.afterSync(100, 100, PERIOD);
  return a.afterSync(100, 100, PERIOD);
}

describe("auto-converge's period and trigger", () => {
  it("QEMU's constants: a period of 1 s, throttled on the second high period", () => {
    expect(AUTO_CONVERGE_PERIOD_MS).toBe(1000);
    expect(AUTO_CONVERGE_HIGH_PERIODS).toBe(2);
  });

  it("off, it never throttles nor can rise, however much the guest dirties", () => {
    const off = new AutoConverge({ ...QEMU_DEFAULTS, autoConverge: false });
    expect(off.canRise).toBe(false);
    for (let i = 0; i < 6; i++) expect(off.afterSync(1e9, 1, 5000)).toBe(false);
    expect(off.percentage).toBe(0);
    expect(off.canRise).toBe(false);
  });

  it("checks only once more than a second has passed: syncs inside it add up", () => {
    const a = new AutoConverge(QEMU_DEFAULTS);
    // Two high periods, each made of syncs of 400 + 600 ms (1,000: no check yet) and 1 ms more.
    expect(a.afterSync(100, 100, 400)).toBe(false);
    expect(a.afterSync(100, 100, 600)).toBe(false);
    expect(a.afterSync(0, 0, 1)).toBe(false);
    expect(a.afterSync(100, 100, 1000)).toBe(false);
    expect(a.percentage).toBe(0);
    expect(a.afterSync(0, 0, 1)).toBe(true);
    expect(a.percentage).toBe(20);
  });

  it("a period of exactly 1,000 ms checks nothing, one past it checks (ram.c: end_time > last + 1000)", () => {
    const exact = new AutoConverge(QEMU_DEFAULTS);
    for (let i = 0; i < 4; i++) expect(exact.afterSync(100, 100, 1000 / 4)).toBe(false);
    expect(exact.percentage).toBe(0);
    const past = new AutoConverge(QEMU_DEFAULTS);
    expect(past.afterSync(100, 100, 1000.5)).toBe(false);
    expect(past.afterSync(100, 100, 1000.5)).toBe(true);
  });

  it("the bytes of a period are the sums of its syncs, compared with the threshold at the check", () => {
    // 30 + 30 dirtied against 50 + 50 sent: 60 > 50 % of 100, high.
    const summed = new AutoConverge(QEMU_DEFAULTS);
    for (let i = 0; i < 2; i++) {
      summed.afterSync(30, 50, 500);
      summed.afterSync(30, 50, 501);
    }
    expect(summed.percentage).toBe(20);
    // 10 + 40 dirtied against 50 + 50 sent: exactly 50 %, not over it.
    const even = new AutoConverge(QEMU_DEFAULTS);
    for (let i = 0; i < 4; i++) {
      even.afterSync(10, 50, 500);
      even.afterSync(40, 50, 501);
    }
    expect(even.percentage).toBe(0);
  });

  it("a period's counts start afresh after each check", () => {
    // A high period, then periods whose own bytes are low: were the first
    // period's bytes carried over, the second check would be high too.
    const a = new AutoConverge(QEMU_DEFAULTS);
    expect(a.afterSync(1000, 100, PERIOD)).toBe(false);
    expect(a.afterSync(0, 1000, PERIOD)).toBe(false);
    expect(a.percentage).toBe(0);
    // And the time: after a check, 1,000 ms more check nothing.
    const b = new AutoConverge(QEMU_DEFAULTS);
    expect(b.afterSync(100, 100, 5000)).toBe(false);
    expect(b.afterSync(100, 100, 1000)).toBe(false);
    expect(b.percentage).toBe(0);
    expect(b.afterSync(0, 0, 1)).toBe(true);
  });

  it("dirtied bytes must exceed the threshold: at it is not high, one byte over is", () => {
    const at = new AutoConverge({ ...QEMU_DEFAULTS, throttleTriggerThreshold: 80 });
    for (let i = 0; i < 4; i++) expect(at.afterSync(80, 100, PERIOD)).toBe(false);
    expect(at.percentage).toBe(0);
    const over = new AutoConverge({ ...QEMU_DEFAULTS, throttleTriggerThreshold: 80 });
    expect(over.afterSync(81, 100, PERIOD)).toBe(false);
    expect(over.afterSync(81, 100, PERIOD)).toBe(true);
    expect(over.percentage).toBe(20);
  });

  it("the second high period throttles even with a low one between (QEMU's count is not reset)", () => {
    const a = new AutoConverge(QEMU_DEFAULTS);
    expect(a.afterSync(100, 100, PERIOD)).toBe(false);
    expect(a.afterSync(10, 100, PERIOD)).toBe(false);
    expect(a.afterSync(100, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBe(20);
  });

  it("after a step the count starts again: the next step needs two more high periods", () => {
    const a = new AutoConverge(QEMU_DEFAULTS);
    expect(step(a)).toBe(true);
    expect(a.afterSync(100, 100, PERIOD)).toBe(false);
    expect(a.percentage).toBe(20);
    expect(a.afterSync(100, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBe(30);
  });
});

describe("auto-converge's steps (mig_throttle_guest_down)", () => {
  it("starts at the initial percentage, then adds the increment, up to the maximum", () => {
    const a = new AutoConverge({ ...QEMU_DEFAULTS, throttleInitial: 30, throttleMax: 55 });
    expect(a.canRise).toBe(true);
    expect(step(a)).toBe(true);
    expect(a.percentage).toBe(30);
    expect(step(a)).toBe(true);
    expect(a.percentage).toBe(40);
    expect(step(a)).toBe(true);
    expect(a.percentage).toBe(50);
    expect(a.canRise).toBe(true);
    // 50 + 10 capped at 55: it rose.
    expect(step(a)).toBe(true);
    expect(a.percentage).toBe(55);
    expect(a.canRise).toBe(false);
    // At the maximum a high period raises nothing, and says so.
    expect(step(a)).toBe(false);
    expect(a.percentage).toBe(55);
  });

  it("the first step is the initial percentage even above the maximum, as cpu_throttle_set is asked", () => {
    const a = new AutoConverge({ ...QEMU_DEFAULTS, throttleInitial: 40, throttleMax: 30 });
    expect(step(a)).toBe(true);
    expect(a.percentage).toBe(40);
    expect(a.canRise).toBe(false);
  });

  it("with tailslow, the first step is still the initial percentage", () => {
    // Dirtied 51 of 100 sent: the ideal step from 0 % would be tiny, but
    // QEMU starts the throttle at cpu-throttle-initial regardless.
    const a = new AutoConverge({ ...QEMU_DEFAULTS, throttleTailslow: true });
    a.afterSync(51, 100, PERIOD);
    expect(a.afterSync(51, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBe(20);
  });

  it("with tailslow, a step far over the threshold is the whole increment", () => {
    const a = new AutoConverge({ ...QEMU_DEFAULTS, throttleTailslow: true });
    step(a);
    // Dirtied 400 of 100 sent at 20 %: cpu now 80, ideal 80 x 50 / 400 = 10,
    // a step of 70, cut to the increment of 10.
    a.afterSync(400, 100, PERIOD);
    expect(a.afterSync(400, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBe(30);
  });

  it("with tailslow, the step is computed from the last period's bytes", () => {
    const a = new AutoConverge({ ...QEMU_DEFAULTS, throttleTailslow: true });
    step(a);
    // The first high period dirtied 400 of 100; the step follows the
    // second's 52 of 100: cpu now 80, ideal 80 x 50 / 52 = 76.92, a step of 3.08.
    a.afterSync(400, 100, PERIOD);
    expect(a.afterSync(52, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBeCloseTo(20 + (80 - (80 * 50) / 52), 10);
    // The next from 23.08 %: dirtied 60 of 100, cpu now 76.92, ideal 64.10, a step of 12.82, cut to 10.
    a.afterSync(60, 100, PERIOD);
    a.afterSync(60, 100, PERIOD);
    expect(a.percentage).toBeCloseTo(20 + (80 - (80 * 50) / 52) + 10, 10);
  });

  it("without tailslow, a step just over the threshold is the whole increment", () => {
    const a = new AutoConverge(QEMU_DEFAULTS);
    step(a);
    a.afterSync(51, 100, PERIOD);
    expect(a.afterSync(51, 100, PERIOD)).toBe(true);
    expect(a.percentage).toBe(30);
  });
});
