import { crc32c } from "../../src/csv/checksum.js";

/** What a test does to a sector's bytes on purpose. */
export type Spoil = (view: DataView, bytes: Uint8Array) => void;

/**
 * `encode(value)` with `spoil` applied and its CRC-32C (at `crcAt`, over the
 * bytes before it) rewritten, so that the field's own check, not the CRC's,
 * is what refuses it.
 */
export function spoiledSector<T>(
  encode: (value: T) => Uint8Array,
  value: T,
  crcAt: number,
  spoil: Spoil,
): Uint8Array {
  const bytes = encode(value);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  spoil(view, bytes);
  view.setUint32(crcAt, crc32c(bytes.subarray(0, crcAt)), true);
  return bytes;
}
