import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseBandwidth } from "../src/cli/commands/migrate.js";
import { runMigration } from "../src/migration/engine.js";
import { runSweep } from "../src/migration/sweep.js";
import { testTempDir } from "./support/temp.js";

// The command runs the compiled CLI: `npm test` builds first.
function hvlab(...args: string[]) {
  const run = spawnSync(process.execPath, ["bin/hvlab.js", ...args], { encoding: "utf8" });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

const SMALL = ["--guest", "16MiB", "--dirty-rate", "20000", "--bandwidth", "100Mbit"];

describe("hvlab migrate", () => {
  it("prints one JSON object with rounds and summary in query-migrate's layout", () => {
    const run = hvlab("migrate", ...SMALL, "--json", "--xbzrle");
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(Array.isArray(result.rounds)).toBe(true);
    expect(result.summary.status).toBe("completed");
    expect(result.summary.hvlab.verified).toBe(true);
    for (const key of [
      "ram.transferred",
      "ram.remaining",
      "ram.total",
      "ram.duplicate",
      "ram.normal",
      "ram.normal-bytes",
      "ram.dirty-pages-rate",
      "ram.mbps",
      "ram.pages-per-second",
      "ram.dirty-sync-count",
      "ram.page-size",
      "ram.multifd-bytes",
      "ram.precopy-bytes",
      "ram.downtime-bytes",
      "ram.postcopy-bytes",
      "expected-downtime",
      "downtime",
      "setup-time",
      "total-time",
      "cpu-throttle-percentage",
      "xbzrle-cache",
    ]) {
      expect(result.summary).toHaveProperty(key.split("."));
    }
    // Each round as query-migrate said it when the round ended.
    expect(result.rounds[0]).toMatchObject({
      status: "active",
      hvlab: { round: 1, phase: "precopy" },
    });
    expect(result.rounds[0].ram).toHaveProperty("transferred");
  });

  it("prints the rounds as CSV with a header row", () => {
    const run = hvlab("migrate", ...SMALL, "--csv");
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split("\r\n");
    expect(lines[0]).toMatch(
      /^status,total-time,expected-downtime,cpu-throttle-percentage,ram\.transferred,.*,hvlab\.round,hvlab\.phase,hvlab\.start-ms,hvlab\.duration-ms,hvlab\.pages-sent/,
    );
    expect(lines.length).toBeGreaterThan(2);
  });

  it("writes an HTML report with the convergence chart", () => {
    const dir = testTempDir("migrate");
    const file = join(dir, "m.html");
    const run = hvlab("migrate", ...SMALL, "--report", file);
    expect(run.code).toBe(0);
    const html = readFileSync(file, "utf8");
    expect(html).toContain("Dirty rate against bandwidth");
    expect(html).toContain("<svg");
  });

  it("lists every option with its default in --help", () => {
    const run = hvlab("migrate", "--help");
    expect(run.code).toBe(0);
    // Commander wraps descriptions: join each option's lines.
    const options = run.stdout
      .split("Options:")[1]
      ?.split("Commands:")[0]
      ?.split(/\n(?=\s{2}-)/)
      .map((text) => text.replace(/\s+/g, " ").trim())
      .filter((text) => text.startsWith("-") && !text.startsWith("-h, --help"));
    expect(options?.length).toBeGreaterThan(30);
    for (const option of options ?? []) expect(option).toMatch(/default/);
  });

  it.each([
    [["--bandwidth", "0"], /bandwidth must be more than 0/],
    [["--bandwidth", "-5Gbit"], /bandwidth must be more than 0/],
    [["--guest", "1000000"], /not a whole number of 4.0 KiB pages/],
    [["--policy", "vmware"], /unknown policy 'vmware'/],
    [["--downtime-limit", "-1"], /downtime-limit must be more than 0/],
    [["--guest", "8GiB"], /too large for content mode/],
    [["--json", "--csv"], /choose one of --json and --csv/],
  ])("refuses %j with one error line, a non-zero exit and nothing written", (args, message) => {
    const dir = testTempDir("migrate-bad");
    const file = join(dir, "r.html");
    const run = hvlab("migrate", "--guest", "16MiB", ...args, "--report", file);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe("");
    const lines = run.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^hvlab: /);
    expect(lines[0]).toMatch(message);
    expect(existsSync(file)).toBe(false);
  });

  it("exits non-zero when the migration does not converge", () => {
    const run = hvlab(
      "migrate",
      "--guest",
      "64MiB",
      "--mode",
      "metadata",
      "--workload",
      "uniform",
      "--dirty-rate",
      "1000000",
      "--bandwidth",
      "10Mbit",
      "--json",
    );
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout).summary.status).toBe("not-converged");
    expect(run.stderr.trim()).toMatch(/^hvlab: migration not-converged: dirty rate/);
  });
});

describe("bandwidth parsing", () => {
  it("knows bit rates, byte rates and unlimited", () => {
    expect(parseBandwidth("10Gbit")).toBe(1.25e9);
    expect(parseBandwidth("100Mbps")).toBe(12.5e6);
    expect(parseBandwidth("128MiB")).toBe(128 * 1024 ** 2);
    expect(parseBandwidth("unlimited")).toBe(Number.POSITIVE_INFINITY);
  });

  it("returns a positive rate or throws a TypeError for any text (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.stringMatching(/^-?\d{1,4}(\.\d)?\s?[A-Za-z]{0,4}$/)),
        (text) => {
          try {
            expect(parseBandwidth(text)).toBeGreaterThan(0);
          } catch (error) {
            expect(error).toBeInstanceOf(TypeError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("hvlab migrate sweep", () => {
  it("runs every grid point on the pool, each equal to the same migration run alone", async () => {
    const base = {
      guestBytes: 1024 ** 3,
      content: false,
      workload: { kind: "hotset" as const },
    };
    const sweep = await runSweep(
      base,
      {
        bandwidths: [50e6, 500e6],
        writeRates: [10_000, 100_000],
        downtimeLimitsMs: [300],
        policies: ["qemu", "xen"],
      },
      { workers: 2 },
    );
    expect(sweep.points).toHaveLength(8);
    const point = sweep.points[5];
    if (!point) throw new Error("no point");
    const alone = await runMigration({
      ...base,
      maxBandwidth: point.bandwidth,
      writesPerSecond: point.writesPerSecond,
      downtimeLimitMs: point.downtimeLimitMs,
      policy: point.policy,
    });
    expect(point.summary).toEqual(alone.summary);
  });

  it("prints a table and writes heat maps from the command", () => {
    const dir = testTempDir("sweep");
    const file = join(dir, "s.html");
    const run = hvlab(
      "migrate",
      "sweep",
      "--guest",
      "256MiB",
      "--mode",
      "metadata",
      "--bandwidths",
      "100Mbit,1Gbit",
      "--dirty-rates",
      "1000,50000",
      "--downtime-limits",
      "300",
      "--policies",
      "qemu,hyperv",
      "--report",
      file,
      "--csv",
    );
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split("\r\n")).toHaveLength(9);
    expect(readFileSync(file, "utf8")).toContain("downtime (ms)");
  });

  it("refuses an unknown policy in the grid with one line", () => {
    const run = hvlab("migrate", "sweep", "--policies", "qemu,vmware");
    expect(run.code).not.toBe(0);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/unknown policy 'vmware'/);
  });
});
