import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { testTempDir } from "./support/temp.js";

const run = promisify(execFile);

describe("the tour's storage section", () => {
  it("writes the per-disk table, the latency plot and the hot-plug timeline", async () => {
    const out = testTempDir("tour");
    const hvlab = join(import.meta.dirname, "..", "bin", "hvlab.js");
    await run("node", [hvlab, "tour", "--quick", "--only", "storage", "--out", out], {
      maxBuffer: 2 ** 26,
    });
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toMatch(/Dynamic VM storage/);
    expect(html).toMatch(/Hot-plug timeline/);
    expect((html.match(/<svg/g) ?? []).length).toBeGreaterThanOrEqual(3);
    const json = JSON.parse(readFileSync(join(out, "tour.json"), "utf8")) as {
      sections?: {
        id: string;
        data: { events: { kind: string; completedAfterRemoval?: number }[] };
      }[];
    } & Record<string, unknown>;
    const text = JSON.stringify(json);
    expect(text).toMatch(/"completedAfterRemoval":0/);
    expect(text).toMatch(/"unchangedAfterRemoval":true/);
  }, 120_000);
});
