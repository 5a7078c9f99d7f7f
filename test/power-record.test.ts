import { beforeEach, describe, expect, it, vi } from "vitest";

/*
 * Recording a machine's utilization from /proc/stat, on /proc/stat texts
 * given here: each sample is a processor's busy jiffies over its total
 * jiffies since the sample before (proc(5)), clamped to 0-1, and 0 when no
 * jiffy passed. The real file is read in power-config-and-figures.test.ts.
 */

const texts: string[] = [];
const read: string[] = [];
vi.mock("node:fs/promises", async (original) => ({
  ...(await original<typeof import("node:fs/promises")>()),
  readFile: async (path: string) => {
    read.push(path);
    const text = texts.shift();
    if (text === undefined) throw new Error("no more /proc/stat texts");
    return text;
  },
}));

const { recordUtilization } = await import("../src/power/record.js");

/** A /proc/stat text of per-processor lines, each [busy (user), idle]. */
const stat = (...cpus: [number, number][]) =>
  `cpu  0 0 0 0\n${cpus.map(([busy, idle], i) => `cpu${i} ${busy} 0 0 ${idle} 0 0 0 0 0 0`).join("\n")}\nintr 0\n`;

describe("recording utilization from /proc/stat", () => {
  beforeEach(() => {
    texts.length = 0;
    read.length = 0;
  });

  it("gives each processor's busy share of each interval, row by row", async () => {
    texts.push(
      stat([100, 900], [0, 1000], [50, 50]),
      stat([150, 950], [0, 1100], [50, 50]), // 50 %, 0 %, no jiffy passed
      stat([250, 950], [30, 1170], [60, 50]), // 100 %, 30 %, 100 %
    );
    const t0 = performance.now();
    const trace = await recordUtilization(2, 5);
    const elapsedS = (performance.now() - t0) / 1000;
    expect(read).toEqual(["/proc/stat", "/proc/stat", "/proc/stat"]);
    expect(trace.columns).toBe(3);
    expect([...trace.values]).toEqual([0.5, 0, 0, 1, 0.3, 1]);
    // Each sample's time: seconds since the first read, at least its interval's end.
    expect(trace.times[0]).toBeGreaterThanOrEqual(0.005 - 0.001);
    expect(trace.times[1]).toBeGreaterThanOrEqual(0.01 - 0.001);
    expect(trace.times[1]).toBeGreaterThan(trace.times[0] as number);
    expect(trace.times[1]).toBeLessThanOrEqual(elapsedS);
  });

  it("clamps a share to 0-1 when the counters disagree", async () => {
    // Busy rising faster than total (counters read apart), busy falling.
    texts.push(stat([100, 100], [100, 100]), stat([300, 0], [50, 200]));
    const trace = await recordUtilization(1, 1);
    expect([...trace.values]).toEqual([1, 0]);
  });

  it("reports each sample taken, and needs no one to report to", async () => {
    texts.push(stat([0, 0]), stat([1, 1]), stat([2, 2]));
    const seen: number[] = [];
    await recordUtilization(2, 1, (done) => seen.push(done));
    expect(seen).toEqual([1, 2]);
    texts.push(stat([0, 0]), stat([1, 3]));
    const trace = await recordUtilization(1, 1);
    expect([...trace.values]).toEqual([0.25]);
  });
});
