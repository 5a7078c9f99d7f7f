import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import type { MigrationSummary } from "../src/migration/stats.js";
import { TOUR_SECTIONS } from "../src/tour/sections.js";

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;

it("hvlab tour --quick --only migration-live compares live and quick migration of one guest", async () => {
  expect(TOUR_SECTIONS.map((s) => s.id)).toContain("migration-live");
  const out = await mkdtemp(join(tmpdir(), "hvlab-tour-"));
  try {
    const child = spawn(
      process.execPath,
      [BIN, "tour", "--quick", "--only", "migration-live", "--out", out],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const [code] = (await once(child, "exit")) as [number];
    expect(code, stderr).toBe(0);
    const report = JSON.parse(await readFile(join(out, "tour.json"), "utf8")) as {
      sections: {
        id: string;
        data: { live: { summary: MigrationSummary }; quick: { summary: MigrationSummary } };
      }[];
    };
    const section = report.sections.find((s) => s.id === "migration-live");
    const live = section?.data.live.summary;
    const quick = section?.data.quick.summary;
    expect(live).toMatchObject({ status: "completed", mode: "live-tcp", verified: true });
    expect(quick).toMatchObject({ status: "completed", mode: "quick", verified: true });
    // Quick migration is down the whole time, and at least the 200 ms failover.
    expect(quick?.downtime).toBe(quick?.["total-time"]);
    expect(quick?.downtime ?? 0).toBeGreaterThanOrEqual(200);
    expect(live?.downtime ?? Number.POSITIVE_INFINITY).toBeLessThan(live?.["total-time"] ?? 0);
    const html = await readFile(join(out, "tour.html"), "utf8");
    expect(html).toContain("Live migration over TCP against quick migration");
  } finally {
    await rm(out, { recursive: true, force: true });
  }
});
