import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { hvlab } from "./support/cli.js";

const folders: string[] = [];
afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

describe("hvlab tour --out", () => {
  it("onto an existing file fails with one line before any section runs", () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-tour-out-"));
    folders.push(dir);
    const file = join(dir, "taken");
    writeFileSync(file, "not a folder");
    const run = hvlab(["tour", "--quick", "--only", "dirty", "--out", file], 60_000);
    expect(run.status).toBe(2);
    expect(run.stderr).not.toContain("tour: ");
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toMatch(/--out .*taken: cannot write a report folder there \(EEXIST\)/);
  });
});
