import { describe, expect, it } from "vitest";
import { chsBytes, chsGeometry, MAX_CHS_SECTORS } from "../src/storage/geometry.js";

// The CHS geometry of the VHD specification's appendix ("CHS Calculation"),
// as QEMU's block/vpc.c calculate_geometry computes it too: each branch of
// the algorithm at the sector counts on both sides of where it switches.
// Each expected triple is worked by hand from the appendix's steps.

const chs = (sectors: number) => {
  const g = chsGeometry(sectors);
  return [g.cylinders, g.heads, g.sectorsPerTrack];
};

describe("CHS geometry", () => {
  it("gives an empty disk 0 cylinders of 4 heads and 17 sectors", () => {
    expect(chs(0)).toEqual([0, 4, 17]);
  });

  it("keeps 17 sectors a track and 4 heads up to 4096 cylinders-times-heads, then takes 31 and 16", () => {
    // 17 x 4095 sectors: cth 4095, heads max(4, (4095 + 1023) / 1024 = 4).
    expect(chs(17 * 4096 - 1)).toEqual([1023, 4, 17]);
    // cth 4096 >= 4 x 1024: 31 sectors, 16 heads, cth 69632 / 31 = 2246.
    expect(chs(17 * 4096)).toEqual([140, 16, 31]);
  });

  it("raises the heads with the cylinders while 17 sectors a track still fit", () => {
    // cth 4097: heads (4097 + 1023) / 1024 = 5, and 4097 < 5 x 1024.
    expect(chs(17 * 4097)).toEqual([819, 5, 17]);
    // 64 MiB: 131072 / 17 = 7710, heads (7710 + 1023) / 1024 = 8.
    expect(chs(131072)).toEqual([963, 8, 17]);
    // cth 16383 with 16 heads still fits 17 sectors a track.
    expect(chs(17 * 16383)).toEqual([1023, 16, 17]);
  });

  it("leaves 17 sectors a track when more than 16 heads would be needed", () => {
    // cth 16385: heads (16385 + 1023) / 1024 = 17 > 16, though 16385 < 17 x 1024.
    // Then 31 sectors: cth 278545 / 31 = 8985, 8985 / 16 = 561.
    expect(chs(17 * 16385)).toEqual([561, 16, 31]);
  });

  it("takes 63 sectors a track once 31 with 16 heads pass 16384 cylinders-times-heads", () => {
    expect(chs(31 * 16384 - 1)).toEqual([1023, 16, 31]);
    // cth 16384 >= 16 x 1024: 507904 / 63 = 8061, / 16 = 503.
    expect(chs(31 * 16384)).toEqual([503, 16, 63]);
  });

  it("takes 255 sectors and 16 heads from 65535 x 16 x 63 sectors on, and no more than the maximum", () => {
    const big = 65535 * 16 * 63;
    // One sector less: 63 sectors a track, 66059279 / 63 = 1048559, / 16 = 65534.
    expect(chs(big - 1)).toEqual([65534, 16, 63]);
    // 66059280 / 255 = 259056, / 16 = 16191.
    expect(chs(big)).toEqual([16191, 16, 255]);
    expect(chs(MAX_CHS_SECTORS)).toEqual([65535, 16, 255]);
    expect(chs(MAX_CHS_SECTORS + 1)).toEqual([65535, 16, 255]);
    expect(chs(2 * MAX_CHS_SECTORS)).toEqual([65535, 16, 255]);
  });

  it("refuses a negative, fractional or unsafe sector count, naming it", () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) {
      expect(() => chsGeometry(bad)).toThrow(
        new RangeError(`sector count must be a whole number >= 0, not ${bad}`),
      );
    }
  });

  it("addresses C x H x S x 512 bytes", () => {
    expect(chsBytes({ cylinders: 963, heads: 8, sectorsPerTrack: 17 })).toBe(963 * 8 * 17 * 512);
    expect(chsBytes(chsGeometry(131072))).toBe(67_055_616);
  });
});
