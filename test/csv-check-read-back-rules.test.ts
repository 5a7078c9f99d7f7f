import { describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";

/*
 * `hvlab csv check` reads every file back through its map in 1 MiB pieces
 * (docs/csv.md, "The volume on the LUN"): a whole volume whose files are
 * larger than one piece, or exactly a whole number of pieces, reads back
 * with no problem, each piece within the file's size.
 */

const MiB = 1 << 20;

describe("csv check: files larger than one read piece", () => {
  it.each([
    ["a last piece shorter than the others", 1.5 * MiB],
    ["exactly two pieces", 2 * MiB],
  ])("reads back %s with no problem", async (_, size) => {
    const { lun } = memoryLun(8 * MiB);
    const volume = await Volume.format(lun, {
      clusterBytes: 4096,
      fileSlots: 8,
      journalSectors: 64,
    });
    await volume.takeOver(1);
    const map = await volume.create("vm1.vhd", size);
    await volume.write(map, 0, new Uint8Array(size).fill(0xa5));
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([]);
    expect(report.files).toBe(1);
  });
});
