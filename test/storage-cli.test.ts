import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hvlab } from "./support/cli.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-storage-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hvlab storage", () => {
  it("has --help for every subcommand, each with --json", () => {
    for (const sub of [
      "create",
      "info",
      "map",
      "convert",
      "merge",
      "compact",
      "check",
      "io",
      "hotplug",
      "bench",
    ]) {
      const run = hvlab(["storage", sub, "--help"]);
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(`Usage: hvlab storage ${sub}`);
      expect(run.stdout).toContain("--json");
    }
  });

  it("refuses bad usage with one line and exit code 2", () => {
    const cases: [string[], RegExp][] = [
      [
        ["storage", "create", join(dir, "a.vhd"), "10MiB", "--type", "sparse"],
        /--type must be fixed or dynamic/,
      ],
      [["storage", "create", join(dir, "b.vhd")], /give the SIZE/],
      [["storage", "create", join(dir, "c.vhd"), "1000"], /multiple of 512/],
      [["storage", "create", join(dir, "e.vhd"), "1MiB", "--block-size", "3MiB"], /power of two/],
      [["storage", "convert", "x", "y", "--to", "vhdx"], /--to must be raw, fixed or dynamic/],
    ];
    for (const [args, message] of cases) {
      const run = hvlab(args);
      expect(run.status, args.join(" ")).toBe(2);
      expect(run.stderr.trim().split("\n")[0]).toMatch(message);
    }
    // Values commander's own parsers refuse are usage errors too: exit code 2.
    const big = hvlab(["storage", "create", join(dir, "d.vhd"), "3000GiB"]);
    expect(big.status).toBe(2);
    expect(big.stderr).toMatch(/must be from 512B to 2040GiB/);
  });

  it("check names the field and offset of a corrupted footer, and exits 1", () => {
    const file = join(dir, "bad.vhd");
    expect(hvlab(["storage", "create", file, "4MiB", "--type", "fixed"]).status).toBe(0);
    expect(JSON.parse(hvlab(["storage", "check", file, "--json"]).stdout)).toMatchObject({
      ok: true,
    });
    const bytes = readFileSync(file);
    // The current size field of the footer (offset 48 of the footer, at the end of a fixed disk).
    const at = bytes.length - 512 + 48;
    bytes[at + 3] = (bytes[at + 3] ?? 0) ^ 1;
    writeFileSync(file, bytes);
    const run = hvlab(["storage", "check", file, "--json"]);
    expect(run.status).toBe(1);
    const report = JSON.parse(run.stdout) as {
      ok: boolean;
      problems: { offset: number; message: string }[];
    };
    expect(report.ok).toBe(false);
    expect(report.problems[0]?.offset).toBe(bytes.length - 512 + 64);
    expect(report.problems[0]?.message).toMatch(
      /^footer checksum at offset \d+ \(0x[0-9a-f]+\): is 0x/,
    );
  });

  it("check of a dynamic disk whose end footer is damaged uses the copy at offset 0, with a warning", () => {
    const file = join(dir, "copy.vhd");
    expect(hvlab(["storage", "create", file, "4MiB"]).status).toBe(0);
    const bytes = readFileSync(file);
    bytes.fill(0, bytes.length - 512);
    writeFileSync(file, bytes);
    const run = hvlab(["storage", "check", file, "--json"]);
    expect(run.status).toBe(0);
    const report = JSON.parse(run.stdout) as {
      ok: boolean;
      problems: { severity: string; message: string }[];
    };
    expect(report.ok).toBe(true);
    expect(report.problems[0]).toMatchObject({ severity: "warning" });
    expect(report.problems[0]?.message).toMatch(/copy at offset 0 is valid and used/);
  });

  it("info and map describe a dynamic disk in qemu-img's keys", () => {
    const file = join(dir, "info.vhd");
    expect(hvlab(["storage", "create", file, "5MiB", "--block-size", "1MiB"]).status).toBe(0);
    const info = JSON.parse(hvlab(["storage", "info", file, "--json"]).stdout) as Record<
      string,
      unknown
    > & {
      vhd: { type: string; totalBlocks: number; allocatedBlocks: number; creator: string };
    };
    expect(info).toMatchObject({
      format: "vpc",
      "virtual-size": 5 * 2 ** 20,
      "cluster-size": 2 ** 20,
    });
    expect(info.vhd).toMatchObject({
      type: "dynamic",
      totalBlocks: 5,
      allocatedBlocks: 0,
      creator: "win ",
    });
    const map = JSON.parse(hvlab(["storage", "map", file, "--json"]).stdout);
    expect(map).toEqual([
      { start: 0, length: 5 * 2 ** 20, depth: 0, present: true, zero: true, data: false },
    ]);
  });
});
