import { formatBytes } from "../util/units.js";

/** A region could not be laid out: bad size, duplicate name, or past the 4 GiB wasm32 limit. */
export class RegionAllocationError extends RangeError {
  override name = "RegionAllocationError";
}

/** An offset or length fell outside the region it was checked against. */
export class RegionBoundsError extends RangeError {
  override name = "RegionBoundsError";

  /**
   * @param region - the region's name
   * @param what - what was being accessed, e.g. "page 300"
   * @param detail - why it does not fit
   */
  constructor(
    readonly region: string,
    what: string,
    detail: string,
  ) {
    super(`region '${region}': ${what} ${detail}`);
  }
}

/** Describes an allocation that does not fit, with how much was asked and how much is left. */
export function tooLarge(name: string, asked: number, left: number): RegionAllocationError {
  return new RegionAllocationError(
    `cannot allocate region '${name}' of ${formatBytes(asked)} (${asked} bytes): only ${formatBytes(left)} (${left} bytes) left below the 4 GiB wasm32 limit`,
  );
}
