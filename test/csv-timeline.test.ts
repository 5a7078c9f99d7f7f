import { describe, expect, it } from "vitest";
import { type CounterSample, metadataResumedAt, timelineOf } from "../src/csv/timeline.js";

const s = (node: number, ms: number, writes: number, metadataOps: number): CounterSample => ({
  node,
  ms,
  writes,
  metadataOps,
});

describe("the failover timeline", () => {
  it("counts what each node's counters rose by in each interval, and leaves out intervals after a node's last sample", () => {
    const samples = [
      s(1, 10, 2, 1),
      s(1, 95, 5, 1),
      s(1, 150, 9, 2),
      s(1, 260, 9, 2),
      s(2, 30, 1, 0),
      s(2, 120, 4, 1), // node 2 killed after this sample
    ];
    expect(timelineOf(samples, 100, 300)).toEqual([
      { node: 1, ms: 0, writes: 5, metadataOps: 1, redirectedWrites: 0, ios: 6 },
      { node: 1, ms: 100, writes: 4, metadataOps: 1, redirectedWrites: 0, ios: 5 },
      { node: 1, ms: 200, writes: 0, metadataOps: 0, redirectedWrites: 0, ios: 0 },
      { node: 2, ms: 0, writes: 1, metadataOps: 0, redirectedWrites: 0, ios: 1 },
      { node: 2, ms: 100, writes: 3, metadataOps: 1, redirectedWrites: 0, ios: 4 },
    ]);
    // An interval with no sample in it adds nothing (the counters are cumulative).
    expect(timelineOf([s(1, 5, 1, 0), s(1, 250, 4, 0)], 100, 300).map((p) => p.ios)).toEqual([
      1, 0, 3,
    ]);
    expect(() => timelineOf(samples, 0, 300)).toThrow(RangeError);
  });

  it("counts the writes a node sent through the coordinator while its path was cut", () => {
    const r = (ms: number, writes: number, redirectedWrites: number): CounterSample => ({
      node: 4,
      ms,
      writes,
      metadataOps: 0,
      redirectedWrites,
    });
    const points = timelineOf(
      [r(50, 10, 0), r(150, 14, 3), r(250, 20, 3), r(350, 21, 3)],
      100,
      400,
    );
    expect(points.map((p) => p.redirectedWrites)).toEqual([0, 3, 0, 0]);
    expect(points.map((p) => p.writes)).toEqual([10, 4, 6, 1]);
  });

  it("finds when a survivor's metadata resumed after the kill, from its first sample after it", () => {
    const samples = [
      s(2, 90, 10, 4),
      s(2, 110, 11, 5), // first sample after the kill at 100: the base
      s(2, 300, 12, 5), // writes went on, metadata did not
      s(2, 620, 12, 6), // resumed
      s(3, 105, 3, 2),
      s(3, 700, 3, 3),
      s(1, 640, 0, 99), // the killed node is not asked about
    ];
    expect(metadataResumedAt(samples, [2, 3], 100)).toBe(620);
    expect(metadataResumedAt(samples, [3], 100)).toBe(700);
    expect(metadataResumedAt(samples.slice(0, 3), [2], 100)).toBeUndefined();
  });
});
