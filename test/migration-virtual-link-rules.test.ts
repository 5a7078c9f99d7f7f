import { describe, expect, it } from "vitest";
import type { Guest } from "../src/guest/guest.js";
import { type MigrationOptions, resolveMigrationOptions } from "../src/migration/options.js";
import { VirtualLink } from "../src/migration/virtual-link.js";
import { VirtualRunState } from "../src/migration/virtual-run-state.js";

// The link and clock of one virtual-time run (src/migration/virtual-link.ts):
// what bytes cost in link time, QEMU's 100 ms bandwidth window
// (migration_update_counters in migration/migration.c) and the guest's
// writes owed for the time that passed, each against a value worked out
// here from the options.

const MB = 1e6;

/** A link over a metadata guest whose writes are only counted. */
function linkWith(options: Partial<MigrationOptions>) {
  const o = resolveMigrationOptions({
    guestBytes: 1024 ** 2,
    content: false,
    workload: { kind: "uniform" },
    writesPerSecond: 0,
    ...options,
  });
  const s = new VirtualRunState(o);
  const writes: number[] = [];
  const guest = {
    write: async (n: number) => {
      writes.push(n);
      return n;
    },
  };
  return { s, writes, link: new VirtualLink(o, guest as unknown as Guest, s) };
}

const iteration = { hostRate: 50 * MB, completionRate: 200 * MB, startMs: 0, stopMs: 0 };

describe("link time under QEMU's iteration", () => {
  // A caller that does not say otherwise is the running guest's pass: the
  // host's own rate capped by max-bandwidth, not the paused completion's.
  it("runs at the host's rate unless told the guest is paused", () => {
    const { link } = linkWith({ maxBandwidth: 100 * MB, qemuIteration: iteration });
    expect(link.linkMs(MB)).toBeCloseTo(20, 9);
    expect(link.linkMs(MB, true)).toBeCloseTo(20, 9);
    expect(link.linkMs(MB, false)).toBeCloseTo(5, 9);
  });

  // With measured window rates, each closed 100 ms window moves the link on
  // to the next rate in turn.
  it("moves to the next measured window rate once a window closes", async () => {
    const { s, link } = linkWith({
      maxBandwidth: 200 * MB,
      qemuIteration: { ...iteration, hostRate: 45 * MB, windowRates: [30 * MB, 60 * MB, 90 * MB] },
    });
    expect(link.linkMs(3 * MB)).toBeCloseTo(100, 9);
    await link.link(3 * MB, true, Number.POSITIVE_INFINITY);
    expect(s.windowsClosed).toBe(1);
    expect(link.linkMs(6 * MB)).toBeCloseTo(100, 9);
  });
});

describe("the bandwidth the policy uses", () => {
  // Before any window closed, QEMU's estimate is the round's own rate.
  it("is the round's rate before a window closed, capped by max-bandwidth", () => {
    const { link } = linkWith({ maxBandwidth: 100 * MB });
    expect(link.bandwidthEstimate(2 * MB, 40)).toBeCloseTo(50 * MB, 3);
    expect(link.bandwidthEstimate(8 * MB, 40)).toBe(100 * MB);
  });

  // A round that took no time measured nothing: the link's max-bandwidth.
  it("is max-bandwidth for a round of no time", () => {
    const { link } = linkWith({ maxBandwidth: 100 * MB });
    expect(link.bandwidthEstimate(0, 0)).toBe(100 * MB);
  });

  // Once a full window closed, the last window's rate stands, whatever the
  // round measured.
  it("is the last full window's rate once one closed", async () => {
    const { s, link } = linkWith({ maxBandwidth: 100 * MB });
    await link.advance(100, true, 2 * MB);
    expect(s.lastWindowRate).toBeCloseTo(20 * MB, 3);
    expect(link.bandwidthEstimate(MB, 10)).toBeCloseTo(20 * MB, 3);
  });

  // The paused stop-and-copy is not a bandwidth window: QEMU updates its
  // counters in the iteration loop only.
  it("does not count time that passes with the guest paused", async () => {
    const { s, link } = linkWith({ maxBandwidth: 100 * MB });
    await link.advance(150, false, MB);
    expect(s.clockMs).toBe(150);
    expect(s.lastWindowRate).toBeNull();
    expect(s.windowsClosed).toBe(0);
    expect(link.bandwidthEstimate(3 * MB, 60)).toBeCloseTo(50 * MB, 3);
  });
});

describe("the guest's writes owed for the time that passed", () => {
  // 1000 writes/s owe 100 in a 100 ms window, executed when it is full.
  it("are executed when a full window has passed, not before", async () => {
    const { writes, link } = linkWith({ maxBandwidth: 100 * MB, writesPerSecond: 1000 });
    await link.advance(60);
    expect(writes).toEqual([]);
    await link.advance(40);
    expect(writes).toEqual([100]);
  });

  // 5 writes/s owe half a write per window: nothing is written, and the run
  // does not count the guest as having written, until a whole one is owed.
  it("wait for a whole write, and mark the guest as having written only then", async () => {
    const { s, writes, link } = linkWith({ maxBandwidth: 100 * MB, writesPerSecond: 5 });
    await link.advance(100);
    expect(writes).toEqual([]);
    expect(s.guestWrote).toBe(false);
    await link.advance(100);
    expect(writes).toEqual([1]);
    expect(s.guestWrote).toBe(true);
  });
});

describe("a time limit within one batch", () => {
  // 1 MB at 1 MB/s takes 1000 ms; with 100 ms left, a tenth gets out, the
  // clock stops at the limit, and the window closes at the link's rate.
  it("lets out the share that fits before the limit", async () => {
    const { s, link } = linkWith({ maxBandwidth: MB });
    const share = await link.link(MB, true, 100);
    expect(share).toBeCloseTo(0.1, 12);
    expect(s.clockMs).toBe(100);
    expect(s.lastWindowRate).toBeCloseTo(MB, 3);
  });

  // On an unthrottled link bytes take no time: all get out even with the
  // clock at the limit.
  it("lets every byte out on an unthrottled link with the clock at the limit", async () => {
    const { s, link } = linkWith({ maxBandwidth: Number.POSITIVE_INFINITY });
    s.clockMs = 500;
    expect(await link.link(MB, true, 500)).toBe(1);
    expect(s.clockMs).toBe(500);
  });

  // With the clock already past the limit nothing more gets out.
  it("lets nothing out once the clock is past the limit", async () => {
    const { s, link } = linkWith({ maxBandwidth: Number.POSITIVE_INFINITY });
    s.clockMs = 600;
    expect(await link.link(MB, true, 500)).toBe(0);
    expect(s.clockMs).toBe(600);
  });
});
