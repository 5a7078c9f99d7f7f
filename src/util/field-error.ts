/**
 * A field of an on-disk structure is not what its format allows. The message
 * names the field and its byte offset (decimal and hex), so that a hex dump
 * shows the culprit at once. Each format names its own subclass.
 */
export class FieldFormatError extends Error {
  override name = "FieldFormatError";

  /**
   * @param field - the field, e.g. "dynamic header block size"
   * @param offset - byte offset of the field in its file or device
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
