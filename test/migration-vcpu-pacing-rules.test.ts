import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Guest } from "../src/guest/guest.js";
import { VcpuProgressTimeoutError, VcpuRunner } from "../src/migration/live/vcpu-runner.js";
import type { KernelPool } from "../src/pool/pool.js";

/*
 * The runner's pacing rules, on a clock the test moves: performance.now() is
 * the test's, and the runner's naps (node:timers/promises setTimeout) are
 * recorded and last one turn of the event loop, so no rule here depends on
 * how fast the machine is.
 */

const naps = vi.hoisted(() => [] as number[]);

vi.mock("node:timers/promises", async (importOriginal) => {
  const original = await importOriginal<typeof import("node:timers/promises")>();
  return {
    ...original,
    setTimeout: (ms: number) => {
      naps.push(ms);
      return new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
});

/** The wall clock the runner reads, in ms. */
let now = 0;

beforeEach(() => {
  now = 0;
  naps.length = 0;
  vi.spyOn(performance, "now").mockImplementation(() => now);
});

afterEach(() => {
  vi.restoreAllMocks();
});

/** A guest whose vCPUs record each batch handed to them; a batch takes `msPerBatch` of the clock. */
class RecordingGuest {
  readonly batches: number[] = [];
  readonly pools: (KernelPool | undefined)[] = [];
  inFlight = 0;
  mostInFlight = 0;
  /** When set, a batch waits for the test to let it finish. */
  hold: Promise<void> | undefined;

  constructor(
    private readonly msPerBatch: number,
    private readonly failWith?: Error,
  ) {}

  async write(writes: number, pool?: KernelPool): Promise<number> {
    const hold = this.hold;
    this.batches.push(writes);
    this.pools.push(pool);
    this.inFlight++;
    this.mostInFlight = Math.max(this.mostInFlight, this.inFlight);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      if (hold) await hold;
      now += this.msPerBatch;
      if (this.failWith) throw this.failWith;
      return writes;
    } finally {
      this.inFlight--;
    }
  }

  get asGuest(): Guest {
    return this as unknown as Guest;
  }
}

/** A gate the test opens by hand. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

const pool = { size: 2 } as unknown as KernelPool;

describe("vCPU runner: writes per second", () => {
  // The rate is a count of writes per second: 0 (idle vCPUs) or more, never
  // negative or not a number.
  it("refuses a negative or not-a-number rate and names it", () => {
    expect(() => new VcpuRunner(new RecordingGuest(1).asGuest, undefined, -1)).toThrow(
      new RangeError("writes per second must be 0 or more, not -1"),
    );
    expect(() => new VcpuRunner(new RecordingGuest(1).asGuest, undefined, Number.NaN)).toThrow(
      /writes per second must be 0 or more, not NaN/,
    );
    expect(new VcpuRunner(new RecordingGuest(1).asGuest, undefined, 0).writesPerSecond).toBe(0);
  });

  // Flat out, each batch is the most handed to the workers at once (65,536
  // writes), so a pause takes effect within one batch.
  it("flat out hands batches of 65,536 writes and counts every one", async () => {
    const guest = new RecordingGuest(1);
    const runner = new VcpuRunner(guest.asGuest, undefined, Number.POSITIVE_INFINITY);
    runner.resume();
    await runner.writesPass(3 * 65_536 - 1, 2_000);
    await runner.pause();
    expect(guest.batches.length).toBeGreaterThanOrEqual(3);
    expect(new Set(guest.batches)).toEqual(new Set([65_536]));
    expect(runner.writes).toBe(guest.batches.length * 65_536);
  });

  // After a stall the credit is capped at 50 ms of writes (a resumed guest
  // does not burst), at least one write; then each batch is what the elapsed
  // time earned, whole writes only, the fraction carried to the next.
  it("paces batches to the rate with a 50 ms credit cap and carries fractions", async () => {
    const guest = new RecordingGuest(2.5);
    const runner = new VcpuRunner(guest.asGuest, undefined, 1000);
    runner.resume();
    expect(guest.batches).toEqual([]);
    now = 1000; // a second of stall earns 1,000 writes, capped at 50
    await runner.writesPass(59, 2_000);
    await runner.pause();
    // 50, then 2.5 ms at 1,000/s: 2 (0.5 left), 3 (0 left), 2, 3 ...
    expect(guest.batches.slice(0, 5)).toEqual([50, 2, 3, 2, 3]);
    expect(runner.writes).toBe(guest.batches.reduce((sum, batch) => sum + batch, 0));
    // With no credit the runner naps one 2 ms tick.
    expect(naps).toContain(2);
  });

  // The credit cap is never below one write: a slow guest (10 writes/s, 0.5
  // writes per 50 ms) still makes progress, one write at a time.
  it("lets a slow guest write one at a time", async () => {
    const guest = new RecordingGuest(0);
    const runner = new VcpuRunner(guest.asGuest, undefined, 10);
    runner.resume();
    now = 10_000;
    await runner.writesPass(0, 2_000);
    await runner.pause();
    expect(guest.batches).toEqual([1]);
  });

  // Resuming starts from no credit: what was left over before the pause is
  // not spent after it.
  it("drops the leftover credit on resume", async () => {
    const guest = new RecordingGuest(0);
    const runner = new VcpuRunner(guest.asGuest, undefined, 1010);
    runner.resume();
    now = 1000; // capped at 50 ms of 1,010/s: 50.5, so 50 and half a write left over
    await runner.writesPass(49, 2_000);
    await runner.pause();
    runner.resume();
    now += 2.5; // 2.525 writes earned: 2 from nothing (3 had the half been kept)
    await runner.writesPass(50, 2_000);
    await runner.pause();
    expect(guest.batches).toEqual([50, 2]);
  });

  // The workers' pool is handed to the guest's writes; with no pool the
  // runner lets the event loop (the sender) run between batches.
  it("writes on the pool it was given, and yields between batches without one", async () => {
    const pooled = new RecordingGuest(1);
    const onPool = new VcpuRunner(pooled.asGuest, pool, Number.POSITIVE_INFINITY);
    onPool.resume();
    await onPool.writesPass(65_536, 2_000);
    await onPool.pause();
    expect(pooled.pools.every((p) => p === pool)).toBe(true);
    expect(naps).toEqual([]);

    const alone = new RecordingGuest(1);
    const onThread = new VcpuRunner(alone.asGuest, undefined, Number.POSITIVE_INFINITY);
    onThread.resume();
    await onThread.writesPass(65_536, 2_000);
    await onThread.pause();
    expect(alone.pools.every((p) => p === undefined)).toBe(true);
    expect(naps.length).toBeGreaterThanOrEqual(1);
    expect(new Set(naps)).toEqual(new Set([0]));
  });
});

describe("vCPU runner: auto-converge's throttle", () => {
  // At a set rate the throttle takes its share of the writes away
  // (cpu-throttle-percentage): 1,000/s at 60 % is 400/s, capped at 50 ms (20).
  it("scales a set rate by the share left to the guest", async () => {
    const guest = new RecordingGuest(5);
    const runner = new VcpuRunner(guest.asGuest, undefined, 1000);
    runner.throttle = { percentage: 60 };
    runner.resume();
    now = 1000;
    await runner.writesPass(23, 2_000);
    await runner.pause();
    // 20, then 5 ms at 400/s: 2 each; no duty-cycle nap at a set rate.
    expect(guest.batches.slice(0, 3)).toEqual([20, 2, 2]);
    expect(naps.every((ms) => ms === 2 || ms === 0)).toBe(true);
  });

  // Flat out, the throttle is a duty cycle as QEMU's (cpu-throttle.c,
  // cpu_throttle_thread): after a batch the vCPUs sleep pct / (1 - pct) of
  // the time it ran; the share is never taken below 1 % in that division.
  it("flat out sleeps pct / (1 - pct) of each batch's time", async () => {
    const guest = new RecordingGuest(10);
    const runner = new VcpuRunner(guest.asGuest, pool, Number.POSITIVE_INFINITY);
    runner.throttle = { percentage: 75 };
    runner.resume();
    await runner.writesPass(65_536, 2_000);
    await runner.pause();
    expect(naps.length).toBeGreaterThanOrEqual(2);
    expect(new Set(naps)).toEqual(new Set([30])); // 10 ms x 0.75 / 0.25

    naps.length = 0;
    runner.throttle = { percentage: 99.5 };
    runner.resume();
    await runner.writesPass(runner.writes, 2_000);
    await runner.pause();
    expect(naps[0]).toBeCloseTo((10 * 0.995) / 0.01, 6); // not / 0.005
    // Every batch is still a whole 65,536 writes.
    expect(new Set(guest.batches)).toEqual(new Set([65_536]));
  });

  // No throttle, or a throttle of 0 %: flat out with no nap at all.
  it("does not nap flat out when unthrottled", async () => {
    const guest = new RecordingGuest(10);
    const runner = new VcpuRunner(guest.asGuest, pool, Number.POSITIVE_INFINITY);
    runner.throttle = { percentage: 0 };
    runner.resume();
    await runner.writesPass(65_536, 2_000);
    await runner.pause();
    expect(naps).toEqual([]);
  });
});

describe("vCPU runner: resume and pause", () => {
  // Pausing waits for the batch in flight, as a VMM waits for its vCPUs to
  // leave guest mode before stop-and-copy, and no batch starts after.
  it("pauses after the batch in flight and starts no other", async () => {
    const guest = new RecordingGuest(1);
    const { opened, open } = gate();
    guest.hold = opened;
    const runner = new VcpuRunner(guest.asGuest, pool, Number.POSITIVE_INFINITY);
    expect(runner.running).toBe(false);
    runner.resume();
    expect(runner.running).toBe(true);
    let paused = false;
    const pausing = runner.pause().then(() => {
      paused = true;
    });
    expect(runner.running).toBe(false);
    await new Promise((resolve) => setImmediate(resolve));
    expect(paused).toBe(false);
    expect(runner.writes).toBe(0);
    open();
    await pausing;
    expect(runner.writes).toBe(65_536);
    expect(guest.batches).toEqual([65_536]);
    expect(runner.running).toBe(false);
  });

  // Resuming running (or pausing) vCPUs does nothing: one loop, one batch in
  // flight at a time.
  it("runs one loop however often it is resumed", async () => {
    const guest = new RecordingGuest(1);
    const runner = new VcpuRunner(guest.asGuest, undefined, Number.POSITIVE_INFINITY);
    runner.resume();
    runner.resume();
    await runner.writesPass(2 * 65_536, 2_000);
    const pausing = runner.pause();
    runner.resume();
    await pausing;
    expect(runner.running).toBe(false);
    expect(guest.mostInFlight).toBe(1);
  });

  // A failed batch stops the vCPUs; pause reports the failure and so does
  // every later resume.
  it("reports a failed batch on pause and on every resume after", async () => {
    const broken = new Error("workload worker died");
    const guest = new RecordingGuest(1, broken);
    const runner = new VcpuRunner(guest.asGuest, undefined, Number.POSITIVE_INFINITY);
    runner.resume();
    await expect(runner.pause()).rejects.toBe(broken);
    expect(guest.batches).toEqual([65_536]);
    expect(runner.writes).toBe(0);
    expect(() => runner.resume()).toThrow(broken);
    expect(runner.running).toBe(false);
    await expect(runner.pause()).rejects.toBe(broken);
  });

  // Pausing vCPUs that never ran returns at once.
  it("pauses a stopped runner at once", async () => {
    const runner = new VcpuRunner(new RecordingGuest(1).asGuest, undefined, 5);
    await runner.pause();
    expect(runner.running).toBe(false);
  });
});

describe("vCPU runner: waiting for progress", () => {
  // A waiter wakes only once the count is passed (more than `writes`), not
  // when it is reached; others keep waiting.
  it("wakes a waiter only when the count is passed", async () => {
    const guest = new RecordingGuest(1);
    let batch = gate();
    guest.hold = batch.opened;
    const runner = new VcpuRunner(guest.asGuest, pool, Number.POSITIVE_INFINITY);
    runner.resume();
    const woken: number[] = [];
    const first = runner.writesPass(65_535, 2_000).then(() => woken.push(65_535));
    const second = runner.writesPass(65_536, 2_000).then(() => woken.push(65_536));
    const held = batch;
    batch = gate();
    guest.hold = batch.opened;
    held.open();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    expect(runner.writes).toBe(65_536);
    expect(woken).toEqual([65_535]);
    batch.open();
    guest.hold = undefined;
    await second;
    expect(woken).toEqual([65_535, 65_536]);
    await runner.pause();
    // Already passed: at once, even paused.
    await runner.writesPass(runner.writes - 1, 1);
  });

  // The timeout names the count waited for, what was done and the time.
  it("times out with the count, the writes done and the time allowed", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const runner = new VcpuRunner(new RecordingGuest(1).asGuest, undefined, 0);
      runner.writes = 3;
      let settled = false;
      const caught = runner.writesPass(7, 40).catch((error: unknown) => {
        settled = true;
        return error;
      });
      await vi.advanceTimersByTimeAsync(39);
      expect(settled).toBe(false);
      runner.writes = 5;
      await vi.advanceTimersByTimeAsync(1);
      const error = await caught;
      expect(error).toBeInstanceOf(VcpuProgressTimeoutError);
      expect(error).toMatchObject({
        name: "VcpuProgressTimeoutError",
        writes: 7,
        done: 5,
        message: "the vCPUs did not pass 7 writes within 40 ms (they did 5)",
      });
    } finally {
      vi.useRealTimers();
    }
  });

  // A waiter that was woken leaves no timer behind.
  it("clears its timer once woken", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      const guest = new RecordingGuest(1);
      const runner = new VcpuRunner(guest.asGuest, pool, Number.POSITIVE_INFINITY);
      runner.resume();
      await runner.writesPass(0, 60_000);
      await runner.pause();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
