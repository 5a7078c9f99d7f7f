import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testTempDir } from "./support/temp.js";

describe("tour: migration section", () => {
  it("runs in quick mode and reports the profile, the sweep heat maps and verification", () => {
    const out = testTempDir("tour-migration");
    const run = spawnSync(
      process.execPath,
      ["bin/hvlab.js", "tour", "--quick", "--only", "migration", "--out", out],
      { encoding: "utf8" },
    );
    expect(run.status).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "tour.json"), "utf8"));
    const section = report.sections.find((s: { id: string }) => s.id === "migration");
    expect(section.data.profile.summary.status).toBe("completed");
    expect(section.data.profile.summary.verified).toBe(true);
    // 3 bandwidths x 3 write rates x 3 policies: three values per axis, so that sorting shows.
    expect(section.data.sweep.points.length).toBe(27);
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toContain("Remaining bytes after each pre-copy round");
    expect(html).toContain("downtime (ms)");
    expect(html.match(/<svg/g)?.length ?? 0).toBeGreaterThanOrEqual(4);
  });
});
