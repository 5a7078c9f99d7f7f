import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { testTempDir } from "./support/temp.js";

const run = promisify(execFile);

describe("the tour's paging section", () => {
  it("writes the comparison chart, the crossover sweep and the published results", async () => {
    const out = testTempDir("tour");
    const hvlab = join(import.meta.dirname, "..", "bin", "hvlab.js");
    await run("node", [hvlab, "tour", "--quick", "--only", "paging", "--out", out], {
      maxBuffer: 2 ** 26,
    });
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toMatch(/SLAT against shadow paging/);
    expect(html).toMatch(/Crossover/);
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(2);
    const json = JSON.parse(readFileSync(join(out, "tour.json"), "utf8")) as Record<
      string,
      unknown
    >;
    expect(JSON.stringify(json)).toMatch(/"published"/);
  });
});
