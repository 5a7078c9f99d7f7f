/**
 * A structure on the volume is not what docs/csv.md allows. The message
 * names the structure's field and its byte offset on the LUN, so that a hex
 * dump shows the culprit at once.
 */
export class VolumeFormatError extends Error {
  override name = "VolumeFormatError";

  /**
   * @param field - the field, e.g. "superblock cluster bytes"
   * @param offset - byte offset of the field on the LUN
   * @param detail - what is wrong with it
   */
  constructor(
    readonly field: string,
    readonly offset: number,
    detail: string,
  ) {
    super(`${field} at offset ${offset} (0x${offset.toString(16)}): ${detail}`);
  }
}

/** A metadata operation the volume cannot do: no free slot, no free cluster, too many extents. */
export class VolumeFullError extends Error {
  override name = "VolumeFullError";
}

/** A metadata operation names a file that is missing, or one that already exists. */
export class VolumeFileError extends Error {
  override name = "VolumeFileError";
}

/** A read or write outside a file's size, or a request to the LUN past its end. */
export class VolumeRangeError extends RangeError {
  override name = "VolumeRangeError";
}
