import { describe, expect, it } from "vitest";
import { hvlabAsync } from "./support/cli.js";
import { haveRedis } from "./support/redis.js";

describe.skipIf(!haveRedis())("bench distributed", () => {
  it("verifies the sweep through Redis against the local pool, then times both and the empty job", async () => {
    const run = await hvlabAsync(["bench", "distributed", "--quick", "--time", "10", "--json"]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as {
      suite: string;
      conditions: Record<string, number | string>;
      results: { case: string; impl: string; hz: number; medianNs: number; p99Ns: number }[];
    };
    expect(result.suite).toBe("distributed");
    expect(result.results.map((r) => [r.case.split(",")[0], r.impl.split(" (")[0]])).toEqual([
      ["40-point metadata-mode migrate sweep", "hvlab distributed"],
      ["40-point metadata-mode migrate sweep", "local pool of 2 workers"],
      ["empty job", "hvlab worker"],
    ]);
    for (const r of result.results) {
      expect(r.hz).toBeGreaterThan(0);
      expect(r.p99Ns).toBeGreaterThanOrEqual(r.medianNs);
    }
    // 40 points in guided batches: 5, 5, 4, 4, 3, 3, 2, 2, 2, 2, then 8 single points.
    expect(result.conditions.sweepJobs).toBe(18);
    // CPU time of every process taking part, each side, from /proc.
    expect(result.conditions.cpuSecondsPerSweepDistributed).toBeGreaterThan(0);
    expect(result.conditions.cpuSecondsPerSweepLocal).toBeGreaterThan(0);
    expect(result.conditions.cpuRatioLocalOverDistributed).toBeCloseTo(
      Number(result.conditions.cpuSecondsPerSweepLocal) /
        Number(result.conditions.cpuSecondsPerSweepDistributed),
      1,
    );
    // Peers name the library and its version.
    expect(result.results[0]?.impl).toMatch(/bullmq \d+\.\d+\.\d+/);
  }, 300_000);
});
