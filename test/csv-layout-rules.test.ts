import { describe, expect, it } from "vitest";
import { VolumeFormatError } from "../src/csv/errors.js";
import { computeLayout, type LayoutParameters, metadataRegionOf } from "../src/csv/layout.js";

// The volume's layout (docs/csv.md): where each region lies, derived from
// four numbers, each bounded on both sides; the refusals name the
// parameter and where it was read.

const MiB = 1 << 20;
const BASE: LayoutParameters = {
  volumeBytes: 16 * MiB,
  clusterBytes: 4096,
  fileSlots: 256,
  journalSectors: 64,
};

/** The message of the VolumeFormatError computing `p`'s layout throws. */
function refusal(p: Partial<LayoutParameters>, at = {}): string {
  try {
    computeLayout({ ...BASE, ...p }, at);
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return (error as Error).message;
  }
  throw new Error(`${JSON.stringify(p)} was laid out`);
}

describe("the volume layout", () => {
  it("puts each region after the last: 4 KiB of superblock, the journal, 32 epoch-log sectors, the lease, the file table, the bitmap, the data on a cluster", () => {
    const l = computeLayout(BASE);
    const journalOffset = 4096;
    const epochLogOffset = journalOffset + 64 * 512;
    const fileTableOffset = epochLogOffset + 33 * 512;
    const bitmapOffset = fileTableOffset + 256 * 512;
    // 4,096 clusters need 512 bitmap bytes: one sector; the data area starts
    // on the next cluster boundary (bitmap end 185,344 -> 46 clusters).
    const dataOffset = 46 * 4096;
    expect(bitmapOffset + 512).toBe(185_344);
    expect(l).toEqual({
      ...BASE,
      journalOffset,
      epochLogOffset,
      fileTableOffset,
      bitmapOffset,
      bitmapSectors: 1,
      dataOffset,
      dataClusters: (16 * MiB - dataOffset) / 4096,
    });
  });

  it("sizes the bitmap in whole sectors for every cluster of the volume", () => {
    // 4,097 clusters: 513 bytes, two sectors.
    const two = computeLayout({ ...BASE, volumeBytes: 4097 * 4096 });
    expect(two.bitmapSectors).toBe(2);
    // 4,096 * 8 clusters: exactly 4,096 bytes, eight sectors.
    expect(computeLayout({ ...BASE, volumeBytes: 32_768 * 4096 }).bitmapSectors).toBe(8);
    expect(computeLayout({ ...BASE, volumeBytes: 32_769 * 4096 }).bitmapSectors).toBe(9);
    expect(two.dataOffset % 4096).toBe(0);
    expect(two.dataOffset).toBeGreaterThanOrEqual(two.bitmapOffset + 2 * 512);
    expect(two.dataOffset - (two.bitmapOffset + 2 * 512)).toBeLessThan(4096);
  });

  it("takes clusters that are powers of two from 4 KiB to 1 MiB; refuses 2 KiB, 2 MiB, 12 KiB and 4096.5", () => {
    for (let c = 4096; c <= MiB; c *= 2)
      expect(computeLayout({ ...BASE, volumeBytes: 64 * MiB, clusterBytes: c }).clusterBytes).toBe(
        c,
      );
    for (const c of [2048, 2 * MiB, 12_288, 4096.5, 0])
      expect(refusal({ volumeBytes: 64 * MiB, clusterBytes: c }), String(c)).toBe(
        `volume clusterBytes at offset -1 (0x-1): must be a power of two from 4096 to 1048576, not ${c}`,
      );
  });

  it("takes 1 to 65,536 file slots; refuses 0, 65,537 and 1.5", () => {
    expect(computeLayout({ ...BASE, fileSlots: 1 }).fileSlots).toBe(1);
    expect(computeLayout({ ...BASE, volumeBytes: 64 * MiB, fileSlots: 65_536 }).fileSlots).toBe(
      65_536,
    );
    for (const n of [0, 65_537, 1.5])
      expect(refusal({ volumeBytes: 64 * MiB, fileSlots: n })).toBe(
        `volume fileSlots at offset -1 (0x-1): must be from 1 to 65536, not ${n}`,
      );
  });

  it("takes 64 to 4,096 journal sectors; refuses 63, 4,097 and 64.5", () => {
    expect(computeLayout({ ...BASE, journalSectors: 64 }).journalSectors).toBe(64);
    expect(computeLayout({ ...BASE, journalSectors: 4096 }).journalSectors).toBe(4096);
    for (const n of [63, 4097, 64.5])
      expect(refusal({ journalSectors: n })).toBe(
        `volume journalSectors at offset -1 (0x-1): must be from 64 to 4096, not ${n}`,
      );
  });

  it("refuses a volume that is not a positive whole number of clusters", () => {
    for (const v of [0, -4096, 16 * MiB + 512, 2 ** 53, 16 * MiB + 0.5])
      expect(refusal({ volumeBytes: v }), String(v)).toBe(
        `volume volumeBytes at offset -1 (0x-1): must be a positive multiple of the cluster (4096), not ${v}`,
      );
  });

  it("takes the smallest volume with one data cluster; refuses one that metadata fills", () => {
    // One slot: metadata ends at 4,096 + 64*512 + 33*512 + 512 + 512 = 54,784
    // bytes, on a cluster boundary at 57,344 (14 clusters).
    const smallest = computeLayout({ ...BASE, fileSlots: 1, volumeBytes: 15 * 4096 });
    expect(smallest.dataOffset).toBe(14 * 4096);
    expect(smallest.dataClusters).toBe(1);
    expect(refusal({ fileSlots: 1, volumeBytes: 14 * 4096 })).toBe(
      "volume volumeBytes at offset -1 (0x-1): 57344 bytes leave no data area after 57344 bytes of metadata",
    );
  });

  it("takes exactly 2^26 data clusters and refuses one more", () => {
    // With 4 KiB clusters and one slot, 2^26 + 2,062 clusters need 16,385
    // bitmap sectors, so the data area starts at cluster 2,062.
    const clusters = 2 ** 26 + 2062;
    const top = computeLayout({ ...BASE, fileSlots: 1, volumeBytes: clusters * 4096 });
    expect(top.bitmapSectors).toBe(16_385);
    expect(top.dataOffset).toBe(2062 * 4096);
    expect(top.dataClusters).toBe(2 ** 26);
    expect(refusal({ fileSlots: 1, volumeBytes: (clusters + 1) * 4096 })).toBe(
      "volume volumeBytes at offset -1 (0x-1): 67108865 data clusters is more than 67108864; use larger clusters",
    );
  });

  it("names the superblock offset a parameter was read from", () => {
    expect(refusal({ fileSlots: 0 }, { fileSlots: 20 })).toBe(
      "volume fileSlots at offset 20 (0x14): must be from 1 to 65536, not 0",
    );
    expect(refusal({ clusterBytes: 100 }, { clusterBytes: 16 })).toMatch(
      /^volume clusterBytes at offset 16 \(0x10\)/,
    );
  });
});

describe("the metadata regions a journal transaction may name", () => {
  it("are the epoch log, the file table and the bitmap, each to its last sector and not one past", () => {
    const l = computeLayout(BASE);
    const s = (byte: number) => byte / 512;
    expect(metadataRegionOf(l, s(l.epochLogOffset) - 1)).toBeUndefined(); // the journal's last
    expect(metadataRegionOf(l, s(l.epochLogOffset))).toBe("epoch log");
    expect(metadataRegionOf(l, s(l.epochLogOffset) + 31)).toBe("epoch log");
    expect(metadataRegionOf(l, s(l.epochLogOffset) + 32)).toBeUndefined(); // the lease
    expect(metadataRegionOf(l, s(l.fileTableOffset))).toBe("file table");
    expect(metadataRegionOf(l, s(l.fileTableOffset) + 255)).toBe("file table");
    expect(metadataRegionOf(l, s(l.bitmapOffset))).toBe("bitmap");
    expect(metadataRegionOf(l, s(l.bitmapOffset) + l.bitmapSectors - 1)).toBe("bitmap");
    expect(metadataRegionOf(l, s(l.bitmapOffset) + l.bitmapSectors)).toBeUndefined();
    expect(metadataRegionOf(l, 0)).toBeUndefined(); // the superblock
    expect(metadataRegionOf(l, s(l.dataOffset))).toBeUndefined();
  });
});
