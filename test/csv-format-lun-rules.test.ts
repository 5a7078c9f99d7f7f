import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";
import { formatLunFile } from "../src/csv/format-lun.js";
import { FileLun } from "../src/csv/lun.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { testTempDir } from "./support/temp.js";

/*
 * The LUN of a scenario that owns it (`hvlab csv bench`, the VM scenario):
 * a new file of the size asked, formatted with the scenario's geometry,
 * never an existing file, and closed again whatever happens. It is scratch
 * (its target runs with `--no-sync`), so the format does not fdatasync.
 */

/** Every file opened while the tests run: its descriptor, path, and whether it was closed or synced. */
const opens = vi.hoisted(
  () => [] as { fd: number; path: string; closed: boolean; synced: boolean }[],
);

vi.mock("node:fs", async (original) => {
  const fs = await original<typeof import("node:fs")>();
  const open = (fd: number) => opens.findLast((o) => o.fd === fd && !o.closed);
  return {
    ...fs,
    openSync: (...args: Parameters<typeof fs.openSync>) => {
      const fd = fs.openSync(...args);
      opens.push({ fd, path: String(args[0]), closed: false, synced: false });
      return fd;
    },
    closeSync: (fd: number) => {
      fs.closeSync(fd);
      const o = open(fd);
      if (o) o.closed = true;
    },
    fdatasyncSync: (fd: number) => {
      fs.fdatasyncSync(fd);
      const o = open(fd);
      if (o) o.synced = true;
    },
  };
});

const MiB = 1 << 20;

/** The opens of `path`. */
function opensOf(path: string) {
  return opens.filter((o) => o.path === path);
}

describe("formatting a scenario's LUN file", () => {
  // A new file of exactly `bytes`, holding an empty volume of the geometry given.
  it("creates a file of the size asked holding an empty volume of the geometry given", async () => {
    const path = join(testTempDir("csv-format-lun"), "cluster.lun");
    await formatLunFile(path, 3 * MiB, { clusterBytes: 4096, fileSlots: 8, label: "bench" });
    expect(statSync(path).size).toBe(3 * MiB);
    const lun = new FileLun(new FdFile(path, "r"), false);
    try {
      const volume = await Volume.open(lun);
      expect(volume.layout.clusterBytes).toBe(4096);
      expect(volume.layout.fileSlots).toBe(8);
      expect(volume.label).toBe("bench");
      expect(volume.list()).toEqual([]);
      expect(volume.generation).toBe(0);
    } finally {
      lun.close();
    }
  });

  // "refusing one that exists": a path that holds a file is left as it was.
  it("refuses a file that exists and leaves it untouched", async () => {
    const path = join(testTempDir("csv-format-lun"), "cluster.lun");
    writeFileSync(path, "not a LUN");
    await expect(formatLunFile(path, MiB, { clusterBytes: 4096 })).rejects.toThrow(/EEXIST/);
    expect(readFileSync(path, "utf8")).toBe("not a LUN");
  });

  // The file is closed when the format ends, and also when it fails (here a
  // volume larger than the file).
  it("closes the file after formatting, and after a format that fails", async () => {
    const dir = testTempDir("csv-format-lun");
    const good = join(dir, "good.lun");
    await formatLunFile(good, MiB, { clusterBytes: 4096, fileSlots: 8 });
    const bad = join(dir, "bad.lun");
    await expect(
      formatLunFile(bad, MiB, { clusterBytes: 4096, volumeBytes: 2 * MiB }),
    ).rejects.toThrow(/does not fit/);
    for (const path of [good, bad]) expect(opensOf(path).map((o) => o.closed)).toEqual([true]);
  });

  // A scratch LUN (its target runs with --no-sync, docs/csv.md) is formatted
  // without waiting on fdatasync.
  it("formats without fdatasync", async () => {
    const path = join(testTempDir("csv-format-lun"), "cluster.lun");
    await formatLunFile(path, MiB, { clusterBytes: 4096, fileSlots: 8 });
    expect(opensOf(path).map((o) => o.synced)).toEqual([false]);
  });
});
