import { describe, expect, it } from "vitest";
import { type CounterSample, metadataResumedAt, timelineOf } from "../src/csv/timeline.js";

// The failover timeline (docs/csv.md, "The timeline"): each node's cumulative
// counters cut into intervals [start, start + interval) from 0 to the run's
// end, each holding what the counters rose by in it; and the moment the
// cluster's metadata path worked again after a kill.

const reading = (node: number, ms: number, writes: number, metadataOps = 0): CounterSample => ({
  node,
  ms,
  writes,
  metadataOps,
});

/** Each node's writes per interval, as "node@ms=writes", in the order the timeline gives them. */
const writesPerInterval = (samples: readonly CounterSample[], intervalMs: number, endMs: number) =>
  timelineOf(samples, intervalMs, endMs).map((p) => `${p.node}@${p.ms}=${p.writes}`);

describe("timelineOf", () => {
  // The samplers of several nodes report concurrently, so readings arrive
  // interleaved and not in time order; the timeline is still node by node,
  // ascending, and each node's intervals in time order.
  it("orders nodes and each node's readings itself, whatever order they arrive in", () => {
    const arrived = [
      reading(2, 120, 4, 1),
      reading(1, 250, 10, 2),
      reading(1, 10, 2, 1),
      reading(2, 30, 1, 0),
      reading(1, 150, 9, 2),
    ];
    // Node 1: 2 writes by 10 ms, 9 by 150, 10 by 250; node 2: 1 by 30, 4 by 120.
    expect(timelineOf(arrived, 100, 300)).toEqual([
      { node: 1, ms: 0, writes: 2, metadataOps: 1, redirectedWrites: 0, ios: 3 },
      { node: 1, ms: 100, writes: 7, metadataOps: 1, redirectedWrites: 0, ios: 8 },
      { node: 1, ms: 200, writes: 1, metadataOps: 0, redirectedWrites: 0, ios: 1 },
      { node: 2, ms: 0, writes: 1, metadataOps: 0, redirectedWrites: 0, ios: 1 },
      { node: 2, ms: 100, writes: 3, metadataOps: 1, redirectedWrites: 0, ios: 4 },
    ]);
  });

  // The counters start at 0 when the run starts: a node first sampled late
  // (it joined after the first interval) did nothing in the intervals before.
  it("draws zero for the intervals before a node's first reading", () => {
    expect(timelineOf([reading(3, 150, 9, 2), reading(3, 240, 12, 2)], 100, 300)).toEqual([
      { node: 3, ms: 0, writes: 0, metadataOps: 0, redirectedWrites: 0, ios: 0 },
      { node: 3, ms: 100, writes: 9, metadataOps: 2, redirectedWrites: 0, ios: 11 },
      { node: 3, ms: 200, writes: 3, metadataOps: 0, redirectedWrites: 0, ios: 3 },
    ]);
  });

  // An interval is half-open: a reading taken exactly at 100 ms belongs to
  // [100, 200), not to [0, 100); and a last reading exactly at an interval's
  // start still opens that interval (the node was alive then).
  it("puts a reading at an interval boundary in the interval it starts", () => {
    expect(writesPerInterval([reading(1, 100, 5), reading(1, 200, 8)], 100, 400)).toEqual([
      "1@0=0",
      "1@100=5",
      "1@200=3",
    ]);
  });

  // The timeline runs from 0 to the run's end: readings at or after it (a
  // sampler's last tick after the run stopped) open no interval.
  it("draws no interval at or after the end of the run", () => {
    const samples = [reading(1, 50, 1), reading(1, 150, 2), reading(1, 250, 3), reading(1, 350, 4)];
    expect(writesPerInterval(samples, 100, 200)).toEqual(["1@0=1", "1@100=1"]);
  });

  // A bad interval is refused with a message naming it.
  it("refuses an interval that is not above 0, and says which", () => {
    expect(() => timelineOf([], 0, 100)).toThrow("interval 0 ms is not above 0");
    expect(() => timelineOf([], -5, 100)).toThrow("interval -5 ms is not above 0");
    expect(() => timelineOf([], Number.NaN, 100)).toThrow("interval NaN ms is not above 0");
  });
});

describe("metadataResumedAt", () => {
  // The base is a node's first reading strictly after the kill, in time
  // order: readings arrive in any order, and one taken at the kill's very
  // millisecond is not after it.
  it("takes each node's base from its first reading after the kill, in time order", () => {
    const outOfOrder = [reading(2, 300, 12, 6), reading(2, 110, 11, 5), reading(2, 90, 10, 4)];
    expect(metadataResumedAt(outOfOrder, [2], 100)).toBe(300);
    // At 100 ms the count was 4, at 110 ms 5: the base is 5 and it never rose.
    const atTheKill = [reading(2, 100, 10, 4), reading(2, 110, 11, 5)];
    expect(metadataResumedAt(atTheKill, [2], 100)).toBeUndefined();
  });

  // A node asked about that has no reading after the kill (it was killed,
  // or its sampler had not reported yet) tells nothing; the others still do.
  it("skips a node with no reading after the kill", () => {
    const samples = [reading(1, 40, 5, 7), reading(2, 110, 3, 2), reading(2, 620, 3, 3)];
    expect(metadataResumedAt(samples, [1, 2], 100)).toBe(620);
    expect(metadataResumedAt(samples, [1], 100)).toBeUndefined();
  });

  // The metadata path works again as soon as any survivor completes an
  // operation: the earliest rise wins, in whatever order the nodes are named.
  it("gives the earliest rise among the nodes, whatever order they are named in", () => {
    const samples = [
      reading(3, 105, 3, 2),
      reading(3, 700, 3, 3),
      reading(2, 110, 11, 5),
      reading(2, 400, 11, 6),
    ];
    expect(metadataResumedAt(samples, [3, 2], 100)).toBe(400);
    expect(metadataResumedAt(samples, [2, 3], 100)).toBe(400);
  });
});
