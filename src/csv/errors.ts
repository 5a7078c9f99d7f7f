import { FieldFormatError } from "../util/field-error.js";

/**
 * A structure on the volume is not what docs/csv.md allows (the field and
 * its byte offset on the LUN).
 */
export class VolumeFormatError extends FieldFormatError {
  override name = "VolumeFormatError";
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
