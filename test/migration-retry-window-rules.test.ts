/*
 * The live source's timing pieces, on clocks the test moves: the retry
 * backoff (src/migration/live/backoff.ts, "equal jitter", docs/migration-live.md
 * "Failures"), the bandwidth meter (src/migration/live/bandwidth-meter.ts,
 * QEMU's windows of at least 100 ms, BUFFER_DELAY in migration/migration.c)
 * and the deadline a pass must not run past (src/migration/live/deadline.ts).
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { RETRY_BASE_MS, RETRY_CAP_MS, retryDelayMs } from "../src/migration/live/backoff.js";
import { BANDWIDTH_WINDOW_MS, BandwidthMeter } from "../src/migration/live/bandwidth-meter.js";
import { Deadline } from "../src/migration/live/deadline.js";
import type { PrecopyClock } from "../src/migration/precopy/types.js";

afterEach(() => {
  vi.useRealTimers();
});

describe("retry backoff", () => {
  // 250 ms doubling to a 10 s cap (docs/migration-live.md).
  it("starts at 250 ms and is capped at 10 s", () => {
    expect(RETRY_BASE_MS).toBe(250);
    expect(RETRY_CAP_MS).toBe(10_000);
  });

  // The draw is clamped to [0, 1]: a random source out of range cannot make a wait shorter or longer than its bounds.
  it("clamps a draw outside [0, 1] to the wait's bounds", () => {
    expect(retryDelayMs(3, () => -5)).toBe(500);
    expect(retryDelayMs(3, () => 7)).toBe(1000);
    expect(retryDelayMs(3, () => 0.5)).toBe(750);
  });

  // Only whole retry numbers from 1 are taken, including huge ones (the cap holds).
  it("refuses a negative, infinite or unsafe retry number and caps a huge one", () => {
    expect(() => retryDelayMs(-1)).toThrow("retry must be a whole number from 1, not -1");
    expect(() => retryDelayMs(Number.POSITIVE_INFINITY)).toThrow(/not Infinity/);
    expect(() => retryDelayMs(Number.NaN)).toThrow(/not NaN/);
    expect(() => retryDelayMs(2 ** 53)).toThrow(/not 9007199254740992/);
    expect(retryDelayMs(Number.MAX_SAFE_INTEGER, () => 0)).toBe(RETRY_CAP_MS / 2);
  });
});

/** A clock the test sets. */
function manualClock(start = 0) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

describe("the bandwidth meter", () => {
  // Before a window closes, the estimate is the current window's rate; at zero elapsed time it is 0, not NaN.
  it("estimates from the current window until one closes, and 0 before any time passed", () => {
    const clock = manualClock(500);
    const meter = new BandwidthMeter(clock.now);
    expect(BANDWIDTH_WINDOW_MS).toBe(100);
    expect(meter.estimate()).toBe(0);
    meter.record(4000);
    expect(meter.estimate()).toBe(0);
    clock.t = 540;
    meter.record(400);
    // 4,400 bytes in 40 ms.
    expect(meter.estimate()).toBe(110_000);
    expect(meter.total).toBe(4400);
  });

  // A window closes at 100 ms exactly; the estimate then stays the last complete window's.
  it("closes a window at exactly 100 ms and keeps its rate while the next fills", () => {
    const clock = manualClock(0);
    const meter = new BandwidthMeter(clock.now);
    clock.t = 99;
    meter.record(990);
    // Not closed at 99 ms: the estimate follows the open window.
    clock.t = 99.5;
    expect(meter.estimate()).toBeCloseTo((990 / 99.5) * 1000, 6);
    clock.t = 100;
    meter.record(1010);
    // 2,000 bytes over 100 ms.
    expect(meter.estimate()).toBe(20_000);
    clock.t = 180;
    meter.record(300);
    expect(meter.estimate()).toBe(20_000);
    clock.t = 250;
    expect(meter.estimate()).toBe(20_000);
    // The second window (from 100 ms) closes at 250 ms with 300 bytes over 150 ms.
    meter.record(0);
    expect(meter.estimate()).toBe(2000);
    expect(meter.total).toBe(2300);
  });

  // The window's length is measured, not assumed: a late record divides by the time really elapsed.
  it("divides by the window's real length when it closes late", () => {
    const clock = manualClock(1000);
    const meter = new BandwidthMeter(clock.now);
    clock.t = 1400;
    meter.record(8000);
    expect(meter.estimate()).toBe(20_000);
  });

  // Without a clock of its own the meter reads performance.now().
  it("reads performance.now() by default", () => {
    vi.useFakeTimers({ toFake: ["performance"] });
    const meter = new BandwidthMeter();
    vi.advanceTimersByTime(200);
    meter.record(1000);
    expect(meter.estimate()).toBe(5000);
  });
});

/** A wall clock read from the (faked) Date, as the live source's pass clock. */
const wall: PrecopyClock = { kind: "wall", now: () => Date.now() };

/** What a race came to so far, read without waiting on it (a race that never ends reads "pending"). */
function track(race: Promise<boolean>): { outcome: boolean | Error | "pending" } {
  const seen: { outcome: boolean | Error | "pending" } = { outcome: "pending" };
  race.then(
    (won) => {
      seen.outcome = won;
    },
    (error: Error) => {
      seen.outcome = error;
    },
  );
  return seen;
}

/** Work that finishes after `ms` of the (faked) timers. */
function workFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("a pass's deadline", () => {
  // `passed` from the deadline's very millisecond on.
  it("has passed from its time on, not before", () => {
    const clock = manualClock(1000);
    const deadline = new Deadline({ kind: "virtual", now: clock.now }, 1100);
    clock.t = 1099;
    expect(deadline.passed).toBe(false);
    clock.t = 1100;
    expect(deadline.passed).toBe(true);
    clock.t = 5000;
    expect(deadline.passed).toBe(true);
    deadline.clear();
  });

  // Work that finishes first wins the race: true.
  it("lets work that finishes before the deadline win", async () => {
    vi.useFakeTimers({ now: 10_000 });
    const deadline = new Deadline(wall, 10_100);
    const race = track(deadline.race(workFor(60)));
    await vi.advanceTimersByTimeAsync(59);
    expect(race.outcome).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toBe(true);
    deadline.clear();
    expect(vi.getTimerCount()).toBe(0);
  });

  // The deadline comes first, counted from the clock's now to its time: false, without waiting for the work.
  it("resolves false at its time when the work is slower", async () => {
    vi.useFakeTimers({ now: 10_000 });
    const deadline = new Deadline(wall, 10_100);
    const race = track(deadline.race(workFor(300)));
    await vi.advanceTimersByTimeAsync(99);
    expect(race.outcome).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toBe(false);
    deadline.clear();
  });

  // A deadline already past at its making comes at once.
  it("resolves false at once when its time is already past", async () => {
    vi.useFakeTimers({ now: 10_000 });
    const deadline = new Deadline(wall, 9_000);
    expect(deadline.passed).toBe(true);
    const race = track(deadline.race(workFor(50)));
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toBe(false);
    deadline.clear();
  });

  // Work that fails before the deadline fails the race with its own error.
  it("passes on the error of work that fails first", async () => {
    vi.useFakeTimers({ now: 0 });
    const deadline = new Deadline(wall, 1000);
    const race = track(deadline.race(Promise.reject(new Error("connection reset"))));
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toEqual(new Error("connection reset"));
    deadline.clear();
  });

  // A send the deadline overtook may fail later: nobody waits on it, and its failure is not unhandled.
  it("ignores the later failure of work the deadline overtook", async () => {
    vi.useFakeTimers({ now: 0 });
    const deadline = new Deadline(wall, 100);
    let fail: (error: Error) => void = () => {};
    const work = new Promise<void>((_, reject) => {
      fail = reject;
    });
    const race = track(deadline.race(work));
    await vi.advanceTimersByTimeAsync(100);
    expect(race.outcome).toBe(false);
    fail(new Error("broken pipe"));
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toBe(false);
  });

  // `clear` cancels the deadline's timer.
  it("cancels its timer when cleared", () => {
    vi.useFakeTimers({ now: 0 });
    const deadline = new Deadline(wall, 5000);
    expect(vi.getTimerCount()).toBe(1);
    deadline.clear();
    expect(vi.getTimerCount()).toBe(0);
  });

  // No deadline (infinite): no timer, never passed, the race is the work's own.
  it("sets no timer without a deadline and waits for the work alone", async () => {
    vi.useFakeTimers({ now: 0 });
    const deadline = new Deadline(wall, Number.POSITIVE_INFINITY);
    expect(vi.getTimerCount()).toBe(0);
    expect(deadline.passed).toBe(false);
    const race = track(deadline.race(workFor(1_000_000)));
    await vi.advanceTimersByTimeAsync(999_999);
    expect(race.outcome).toBe("pending");
    await vi.advanceTimersByTimeAsync(1);
    expect(race.outcome).toBe(true);
    const failed = track(deadline.race(Promise.reject(new Error("closed"))));
    await vi.advanceTimersByTimeAsync(1);
    expect(failed.outcome).toEqual(new Error("closed"));
    deadline.clear();
  });
});
