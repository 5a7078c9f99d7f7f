import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { sweepHeatMaps, UNFINISHED_FILL } from "../src/migration/report.js";
import type { SweepResult } from "../src/migration/sweep.js";
import { renderChartSvg } from "../src/report/chart.js";

describe("sweep heat maps", () => {
  it("paint a point that did not converge grey with its own legend, never the colour of the best downtime", async () => {
    const base = {
      guestBytes: 64 * 1024 ** 2,
      content: false,
      workload: { kind: "uniform" as const },
      maxBandwidth: 100e6,
      downtimeLimitMs: 300,
    };
    // One point converges; one (dirtying faster than the link) gives up
    // with no downtime at all, which a plain colour scale would paint as
    // the best downtime of the map.
    const done = await runMigration({ ...base, writesPerSecond: 1000 });
    const stuck = await runMigration({ ...base, writesPerSecond: 400_000 });
    expect(done.summary.status).toBe("completed");
    expect(stuck.summary.status).toBe("not-converged");
    expect(stuck.summary.downtime).toBeLessThan(done.summary.downtime);
    const sweep: SweepResult = {
      workers: 1,
      wallMs: 1,
      points: [
        {
          bandwidth: 100e6,
          writesPerSecond: 1000,
          downtimeLimitMs: 300,
          policy: "qemu",
          summary: done.summary,
        },
        {
          bandwidth: 100e6,
          writesPerSecond: 400_000,
          downtimeLimitMs: 300,
          policy: "qemu",
          summary: stuck.summary,
        },
      ],
    };
    for (const chart of sweepHeatMaps(sweep)) {
      const svg = await renderChartSvg(chart);
      const fills = [...svg.matchAll(/fill="(#[0-9a-f]{6})"/gi)].map((m) =>
        (m[1] ?? "").toLowerCase(),
      );
      // The stuck cell (and its legend entry) in grey; the completed one not.
      expect(
        fills.filter((f) => f === UNFINISHED_FILL["not-converged"]).length,
      ).toBeGreaterThanOrEqual(2);
      expect(svg).toContain("did not complete");
      expect(svg).toContain("not-converged");
    }
  });
});
