import { describe, expect, it } from "vitest";
import { crossoverSweep, publishedResults } from "../src/paging/studies.js";

const options = { accesses: 30_000, threads: 0, seed: 1 };

describe("published results (REFERENCE.md section 2), reproduced in direction", () => {
  it("agrees with Bhargava et al., VMware's EPT study and Agile Paging, and prints the figures", async () => {
    const results = await publishedResults(options);
    console.table(
      results.map((r) => ({
        source: r.source,
        claim: r.claim,
        published: r.published,
        measured: r.measured,
      })),
    );
    expect(results).toHaveLength(6);
    for (const r of results) expect(r.agrees, `${r.source}: ${r.claim} (${r.measured})`).toBe(true);
  });

  it("shows the crossover: shadow ahead with static tables, SLAT ahead under churn, large pages closing the gap", async () => {
    const { points, crossover } = await crossoverSweep(options, [0, 2_000_000]);
    const at = (rate: number, config: string) =>
      points.find((p) => p.churnPerSecond === rate && p.config === config)?.cyclesPerAccess ??
      Number.NaN;
    expect(at(0, "shadow")).toBeLessThan(at(0, "slat-4k"));
    expect(at(2_000_000, "slat-4k")).toBeLessThan(at(2_000_000, "shadow"));
    expect(crossover).toBe(2_000_000);
    expect(at(0, "slat-2m")).toBeLessThan(at(0, "slat-4k"));
    expect(at(0, "slat-large")).toBeLessThan(at(0, "slat-2m"));
  });
});
