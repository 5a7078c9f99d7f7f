import { describe, expect, it } from "vitest";
import { VolumeFileError } from "../src/csv/errors.js";
import { encodeFileEntry } from "../src/csv/file-entry.js";
import { SECTOR } from "../src/csv/layout.js";
import { Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";
import { LoggedLun } from "./support/csv-logged-lun.js";

/*
 * The volume's free count, its file table checks and how a format zeroes
 * the metadata area (docs/csv.md, "The volume on the LUN"). Expected figures
 * are worked out here from the layout, not read back from the code.
 */

const MiB = 1 << 20;
const CLUSTER = 4096;
const small = { clusterBytes: CLUSTER, fileSlots: 8, journalSectors: 64 };

describe("the free count covers data clusters only", () => {
  // docs/csv.md, "Allocation bitmap": one bit per data cluster; the spare
  // bits past the data area name no cluster. A stray one there must not be
  // counted as a held cluster, neither when opening nor after a commit.
  it("ignores a set bit just past the data area, on open and after a create", async () => {
    const { lun } = memoryLun(MiB);
    const formatted = await Volume.format(lun, small);
    const l = formatted.layout;
    // The bitmap is sized for every cluster of the volume, so it has spare bits.
    expect(l.bitmapSectors * SECTOR * 8).toBeGreaterThan(l.dataClusters);
    const spare = l.dataClusters;
    await lun.write(l.bitmapOffset + (spare >>> 3), Uint8Array.of(0x80 >>> (spare & 7)));
    const volume = await Volume.open(lun);
    expect(volume.bit(spare)).toBe(1);
    expect(volume.free).toBe(l.dataClusters);
    await volume.takeOver(1);
    await volume.create("vm1.vhd", 3 * CLUSTER);
    expect(volume.free).toBe(l.dataClusters - 3);
  });
});

describe("the file table names a slot's offset on the LUN", () => {
  // docs/csv.md, "File table": one 512-byte entry per slot, slot n at the
  // file table's offset + n * 512. A name held by two slots is refused, and
  // the refusal names where the second slot is.
  it("refuses a name held twice, naming the second slot's LUN offset", async () => {
    const { lun } = memoryLun(MiB);
    const l = (await Volume.format(lun, small)).layout;
    const entry = encodeFileEntry({
      name: "twice.vhd",
      size: 0,
      extents: [],
      createdGeneration: 1,
      writtenEpoch: 0,
    });
    await lun.write(l.fileTableOffset, entry);
    await lun.write(l.fileTableOffset + 3 * SECTOR, entry);
    const refusal = await Volume.open(lun).then(
      () => expect.fail("expected a refusal"),
      (error: Error) => error,
    );
    expect(refusal).toBeInstanceOf(VolumeFileError);
    expect(refusal.message).toContain(`slot 3 at offset ${l.fileTableOffset + 3 * SECTOR}:`);
  });
});

describe("format zeroes the metadata area in bounded pieces", () => {
  // A format zeroes [0, data offset) before it writes the superblock, from a
  // zero buffer of at most 1 MiB (a file table of many slots makes the
  // metadata area far larger than that). The pieces tile the area in order,
  // none empty and none past the data area.
  /** The zeroing pieces (offset, length) a format of `fileSlots` slots writes, and its data offset. */
  async function zeroing(
    fileSlots: number,
  ): Promise<{ pieces: (number | undefined)[][]; dataOffset: number }> {
    const lun = new LoggedLun(16 * MiB);
    const volume = await Volume.format(lun, { ...small, fileSlots });
    const firstFlush = lun.steps.findIndex((s) => s[0] === "flush");
    // The writes before the first flush: the zeroing pieces, then the superblock.
    const writes = lun.steps.slice(0, firstFlush);
    expect(writes.at(-1)?.[1]).toBe(0);
    const pieces = writes.slice(0, -1).map((s) => [s[1], s[2]]);
    return { pieces, dataOffset: volume.layout.dataOffset };
  }

  it("writes contiguous non-empty pieces of at most 1 MiB up to the data offset", async () => {
    const { pieces, dataOffset } = await zeroing(4096);
    expect(dataOffset).toBeGreaterThan(2 * MiB);
    const expected: number[][] = [];
    for (let at = 0; at < dataOffset; at += MiB)
      expected.push([at, Math.min(MiB, dataOffset - at)]);
    expect(expected).toHaveLength(Math.ceil(dataOffset / MiB));
    expect(pieces).toEqual(expected);
  });

  // A metadata area under 1 MiB is zeroed by one write of exactly its size,
  // and nothing is written at the data offset.
  it("zeroes a small metadata area in one piece", async () => {
    const { pieces, dataOffset } = await zeroing(8);
    expect(dataOffset).toBeLessThan(MiB);
    expect(pieces).toEqual([[0, dataOffset]]);
  });
});
