import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hvlab } from "./support/cli.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hvlab csv", () => {
  it("has --help for every subcommand, each with --json", () => {
    for (const sub of ["create", "check", "target"]) {
      const run = hvlab(["csv", sub, "--help"]);
      expect(run.status).toBe(0);
      expect(run.stdout).toContain(`Usage: hvlab csv ${sub}`);
      expect(run.stdout).toContain("--json");
    }
  });

  it("creates a volume on a new LUN file and checks it clean", () => {
    const lun = join(dir, "a.lun");
    const created = hvlab([
      "csv",
      "create",
      lun,
      "16MiB",
      "--cluster-size",
      "4KiB",
      "--files",
      "32",
      "--label",
      "Volume1",
      "--json",
    ]);
    expect(created.stderr).toBe("");
    expect(created.status).toBe(0);
    const record = JSON.parse(created.stdout);
    expect(record).toMatchObject({
      lun,
      label: "Volume1",
      volumeBytes: 16 << 20,
      clusterBytes: 4096,
      fileSlots: 32,
    });
    const checked = hvlab(["csv", "check", lun, "--json"]);
    expect(checked.status).toBe(0);
    expect(JSON.parse(checked.stdout)).toMatchObject({
      ok: true,
      problems: [],
      generation: 0,
      epoch: 0,
      files: 0,
    });
    const again = hvlab(["csv", "create", lun]);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already holds a cluster shared volume; --force/);
  });

  it("check names the damaged field and its offset, exit code 1", () => {
    const lun = join(dir, "b.lun");
    expect(hvlab(["csv", "create", lun, "4MiB"]).status).toBe(0);
    const bytes = readFileSync(lun);
    bytes[16] = 3; // cluster bytes: the superblock's CRC no longer matches
    writeFileSync(lun, bytes);
    const run = hvlab(["csv", "check", lun]);
    expect(run.status).toBe(1);
    expect(run.stdout).toMatch(/superblock checksum at offset 508 \(0x1fc\)/);
  });

  it("refuses bad usage with one line and exit code 2", () => {
    const cases: [string[], RegExp][] = [
      [["csv", "create", join(dir, "c.lun")], /give the SIZE of a new LUN file/],
      [["csv", "create", join(dir, "d.lun"), "16MiB", "--cluster-size", "12KiB"], /power of two/],
      [
        ["csv", "create", join(dir, "e.lun"), "16MiB", "--cluster-size", "2MiB"],
        /must be from 4KiB to 1MiB/,
      ],
      [["csv", "create", join(dir, "f.lun"), "16MiB", "--files", "0"], /must be from 1 to 65536/],
      [
        ["csv", "create", join(dir, "g.lun"), "1MiB", "--cluster-size", "1MiB"],
        /leave no data area/,
      ],
      [["csv", "check", join(dir, "missing.lun")], /no LUN at/],
      [
        ["csv", "node", "--id", "1", "--port", "7001", "--target-port", "7000", "--lun-direct"],
        /--lun-direct needs --lun PATH/,
      ],
    ];
    // A LUN file made for a volume that cannot be laid out is not left behind.
    for (const [args, message] of cases) {
      const run = hvlab(args);
      expect(run.status, args.join(" ")).toBe(2);
      expect(run.stderr).toMatch(message);
      // One line of error (commander adds its "run with --help" hint below its own).
      expect(run.stderr.split("\n")[0]).toMatch(message);
    }
    expect(existsSync(join(dir, "g.lun"))).toBe(false);
  });
});
