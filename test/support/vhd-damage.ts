import { vhdChecksumOracle } from "../../src/oracle/storage.js";
import { MemoryFile } from "../../src/storage/block-file.js";
import type { CheckReport } from "../../src/storage/check.js";
import { checkVhd } from "../../src/storage/check.js";
import { type ParentSource, VhdImage } from "../../src/storage/vhd.js";

// Small VHDs in memory, damaged on purpose, for the tests of `storage check`.

/** Where a dynamic VHD made by {@link vhdImage} holds its dynamic header. */
export const HEADER_AT = 512;
/** Where a dynamic VHD made by {@link vhdImage} holds its BAT. */
export const TABLE_AT = 1536;

/** The bytes of a new VHD of `size` bytes in 4 KiB blocks, a 512-byte write of ones at each of `writes`. */
export function vhdImage(
  type: "fixed" | "dynamic",
  size: number,
  writes: number[] = [],
): Uint8Array {
  const file = new MemoryFile(`/c/${type}.vhd`);
  const disk = VhdImage.create(file, { type, size, blockSize: 4096, now: 0 });
  for (const at of writes) disk.write(at, new Uint8Array(512).fill(1));
  disk.close();
  return file.contents().slice();
}

/** A DataView over exactly `bytes`. */
export const viewOf = (bytes: Uint8Array) =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.length);

/** Writes the right checksum (the oracle's) into the structure of `length` bytes at `at`, its checksum at `field`. */
export function resum(bytes: Uint8Array, at: number, length: number, field: number): void {
  viewOf(bytes).setUint32(at + field, vhdChecksumOracle(bytes.subarray(at, at + length), field));
}

/** `storage check` of `bytes` as the file /c/disk.vhd. */
export const checkBytes = (bytes: Uint8Array, parents?: ParentSource): CheckReport =>
  checkVhd(new MemoryFile("/c/disk.vhd", bytes), parents ? { parents } : {});
