/** Cylinders, heads and sectors per track, as the VHD footer stores them. */
export interface ChsGeometry {
  readonly cylinders: number;
  readonly heads: number;
  readonly sectorsPerTrack: number;
}

/** The largest geometry: 65535 cylinders, 16 heads, 255 sectors per track. */
export const MAX_CHS_SECTORS = 65535 * 16 * 255;

/**
 * The CHS geometry of a disk of `sectors` 512-byte sectors, by the algorithm
 * of the VHD specification's appendix ("CHS Calculation"), integer division
 * throughout. QEMU's block/vpc.c calculate_geometry follows the same steps.
 */
export function chsGeometry(sectors: number): ChsGeometry {
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw new RangeError(`sector count must be a whole number >= 0, not ${sectors}`);
  }
  const total = Math.min(sectors, MAX_CHS_SECTORS);
  let spt: number;
  let heads: number;
  let cth: number;
  if (total >= 65535 * 16 * 63) {
    spt = 255;
    heads = 16;
    cth = Math.floor(total / spt);
  } else {
    spt = 17;
    cth = Math.floor(total / spt);
    heads = Math.max(4, Math.floor((cth + 1023) / 1024));
    if (cth >= heads * 1024 || heads > 16) {
      spt = 31;
      heads = 16;
      cth = Math.floor(total / spt);
    }
    if (cth >= heads * 1024) {
      spt = 63;
      heads = 16;
      cth = Math.floor(total / spt);
    }
  }
  return { cylinders: Math.floor(cth / heads), heads, sectorsPerTrack: spt };
}

/** Bytes the geometry addresses: C x H x S x 512. */
export function chsBytes(g: ChsGeometry): number {
  return g.cylinders * g.heads * g.sectorsPerTrack * 512;
}
