import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hvlab } from "./support/cli.js";
import { testTempDir } from "./support/temp.js";

function oneErrorLine(stderr: string): string {
  const lines = stderr
    .trim()
    .split("\n")
    .filter((line) => !line.startsWith("(run with --help"));
  expect(lines).toHaveLength(1);
  expect(stderr).not.toMatch(/\n\s+at /);
  return lines[0] ?? "";
}

describe("the hvlab command", () => {
  it("prints its version", () => {
    const run = hvlab(["--version"]);
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe(
      JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8")).version,
    );
  });

  it("shows sizes in help as they are typed, never as raw bytes", () => {
    const run = hvlab(["dirty", "--help"]);
    expect(run.stdout).toContain("(default: 64GiB)");
    expect(run.stdout).toContain("(1MiB to 16TiB)");
    expect(run.stdout).not.toContain(String(64 * 1024 ** 3));
  });

  it("lists its commands", () => {
    const run = hvlab(["--help"]);
    expect(run.status).toBe(0);
    for (const command of ["tour", "bench", "dirty"]) expect(run.stdout).toContain(command);
  });

  it("says which suites run bench's file I/O unbuffered by default, and which buffered", () => {
    const run = hvlab(["bench", "--help"]);
    expect(run.status).toBe(0);
    const help = run.stdout.replace(/\s+/g, " ");
    expect(help).toMatch(/--direct direct I\/O \(O_DIRECT\).*\(default: on for csv\b/);
    expect(help).toMatch(/--no-direct buffered I\/O .*\(default: on for storage\)/);
  });

  it.each(["tour", "bench", "dirty"])("explains %s with --help, with every default", (command) => {
    const run = hvlab([command, "--help"]);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`Usage: hvlab ${command}`);
  });

  it.each([
    [["dirty", "--guest", "1XB"], "'1XB' is invalid"],
    [["dirty", "--guest", "0"], "must be from"],
    [["dirty", "--periods", "-3"], "must be from 1"],
    [["dirty", "--periods", "2.5"], "not a whole number"],
    [["dirty", "--workload", "bursty"], "unknown workload 'bursty'"],
    [["dirty", "--page-size", "8KiB"], "4KiB or 2MiB"],
    [["dirty", "--json", "--csv"], "one of --json and --csv"],
    [["dirty", "--content", "--guest", "8GiB"], "cannot be held in content mode"],
    [["dirty", "--guest", "1048577"], "not a whole number of 4.0 KiB pages"],
    [["bench", "nosuch"], "unknown bench suite 'nosuch'"],
    [["tour", "--only", "nosuch"], "unknown tour section 'nosuch'"],
    [["nosuch"], "unknown command"],
    [["dirty", "--seed", "99999999999999999999"], "must be from 0 to 4294967295"],
    [["dirty", "--guest", "32TiB"], "must be from 1MiB to 16TiB"],
    [["paging", "compare", "--cpu", "nosuch"], "unknown CPU preset 'nosuch'"],
    [["paging", "compare", "--l2", "abc"], "--l2: write a geometry as entries/ways"],
  ])("refuses %j with one clear line and exit code 2", (args, message) => {
    const run = hvlab(args);
    // Every usage error exits 2, whoever finds it: commander, an option parser, a command.
    expect(run.status).toBe(2);
    const line = oneErrorLine(run.stderr);
    expect(line.startsWith("hvlab: ")).toBe(true);
    expect(line).toContain(message);
    expect(run.stdout).toBe("");
  });

  it("prints a dirty-rate profile as JSON and as CSV", () => {
    const args = [
      "dirty",
      "--guest",
      "1GiB",
      "--periods",
      "3",
      "--workload",
      "uniform",
      "--seed",
      "4",
    ];
    const json = hvlab([...args, "--json"]);
    expect(json.status).toBe(0);
    const profile = JSON.parse(json.stdout) as {
      periods: { period: number; dirtyPages: number }[];
      summary: { guestPages: number; mode: string };
    };
    expect(profile.periods.map((p) => p.period)).toEqual([1, 2, 3]);
    expect(profile.summary).toMatchObject({ guestPages: 262_144, mode: "metadata" });
    const csv = hvlab([...args, "--csv"]);
    const lines = csv.stdout.trimEnd().split("\r\n");
    expect(lines[0]?.split(",")).toContain("dirtyPages");
    expect(lines).toHaveLength(4);
    const dirtyColumn = lines[0]?.split(",").indexOf("dirtyPages") ?? -1;
    expect(lines.slice(1).map((line) => Number(line.split(",")[dirtyColumn]))).toEqual(
      profile.periods.map((p) => p.dirtyPages),
    );
  });

  it("prints bench results in exactly the JSON form of ARCHITECTURE.md", () => {
    const run = hvlab(["bench", "dirty", "--json", "--quick", "--time", "10"], 300_000);
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as {
      suite: string;
      machine: Record<string, unknown>;
      results: Record<string, unknown>[];
    };
    expect(Object.keys(result).sort()).toEqual(["machine", "results", "suite"]);
    expect(result.suite).toBe("dirty");
    expect(result.machine).toHaveProperty("cpu");
    const cases = new Map<string, string[]>();
    for (const row of result.results) {
      expect(Object.keys(row).sort()).toEqual(
        [
          "bytesPerSecond",
          "case",
          "hz",
          "impl",
          "madNs",
          "meanNs",
          "medianNs",
          "p99Ns",
          "rme",
          "samples",
        ].sort(),
      );
      expect(row.hz).toBeGreaterThan(0);
      cases.set(row.case as string, [...(cases.get(row.case as string) ?? []), row.impl as string]);
    }
    expect(cases.size).toBeGreaterThanOrEqual(8);
    for (const impls of cases.values()) {
      expect(impls.some((impl) => impl.startsWith("hvlab"))).toBe(true);
      expect(impls.length).toBeGreaterThanOrEqual(2);
    }
    // Saved results print again, as Markdown, without re-running.
    const saved = join(testTempDir("bench"), "dirty.json");
    writeFileSync(saved, run.stdout);
    const markdown = hvlab(["bench", "--from", saved, "--markdown"]);
    expect(markdown.status).toBe(0);
    expect(markdown.stdout).toContain("| case | impl | ops/s |");
    expect(
      markdown.stdout.split("\n").filter((line) => line.startsWith("| harvest+iterate")).length,
    ).toBe(result.results.filter((r) => String(r.case).startsWith("harvest+iterate")).length);
  });

  it("refuses saved bench results that are not hvlab's, in one line", () => {
    const dir = testTempDir("bench");
    const cases: [string, string][] = [
      ["not json {", "cannot read bench results"],
      [JSON.stringify({ suite: "x", results: [] }), "is not hvlab bench --json output"],
      [JSON.stringify([{ suite: 1 }]), "is not hvlab bench --json output"],
    ];
    for (const [index, [content, message]] of cases.entries()) {
      const file = join(dir, `bad${index}.json`);
      writeFileSync(file, content);
      const run = hvlab(["bench", "--from", file]);
      expect(run.status).not.toBe(0);
      expect(oneErrorLine(run.stderr)).toContain(message);
    }
    expect(oneErrorLine(hvlab(["bench", "--from", join(dir, "missing.json")]).stderr)).toContain(
      "cannot read bench results",
    );
  });

  it("runs the tour and writes the HTML and JSON report", () => {
    const out = testTempDir("tour");
    const run = hvlab(["tour", "--quick", "--only", "dirty", "--out", out], 300_000);
    expect(run.status).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "tour.json"), "utf8")) as {
      sections: { id: string; tables: unknown[] }[];
    };
    expect(report.sections.map((s) => s.id)).toEqual(["dirty"]);
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toContain("<svg");
    expect(html).toContain("Dirty-page tracking");
    // The terminal gets the headline and where the report is; the tables only with --verbose.
    const lines = run.stdout.trim().split("\n");
    expect(lines.length).toBeLessThanOrEqual(6);
    expect(run.stdout).toMatch(/Dirty-page tracking .*distinct pages/);
    expect(lines.at(-1)).toBe(
      `report: ${join(out, "tour.html")} (open it in a browser; records in tour.json)`,
    );
    expect(run.stdout).not.toContain("Dirty-rate profile summary");
    const verbose = hvlab(
      ["tour", "--quick", "--only", "dirty", "--out", out, "--verbose"],
      300_000,
    );
    expect(verbose.status).toBe(0);
    expect(verbose.stdout).toContain("Dirty-rate profile summary");
    expect(verbose.stdout).toContain("mean dirty-pages-rate (pages/s)");
  }, 600_000);
});
