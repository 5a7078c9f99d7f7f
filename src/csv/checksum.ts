import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/**
 * CRC-32C (Castagnoli), the checksum iSCSI puts on its headers and data
 * (RFC 7143 section 13.1) and ext4 and Btrfs put on their metadata: every
 * sector of metadata and every frame on the wire carries one.
 * Its check value, crc32c("123456789"), is 0xE3069283.
 */
export function crc32c(bytes: Uint8Array, seed = 0): number {
  return nativeCrc32c(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), seed) >>> 0;
}
