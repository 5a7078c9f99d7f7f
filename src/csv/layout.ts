import { VolumeFormatError } from "./errors.js";

/*
 * The on-LUN layout of a cluster shared volume (drawn in docs/csv.md).
 * Byte offsets, little-endian, 512-byte sectors; every region starts on a
 * sector, the data area on a cluster:
 *
 *   0        4 KiB         +J*512       +1 sector  +F*512      +B*512    (cluster aligned)
 *   +--------+-------------+------------+----------+-----------+---------+------------------+
 *   | super- | journal     | epoch log  | coordi-  | file      | alloc.  | data area:       |
 *   | block  | J sectors   | 32 sectors | nator's  | table     | bitmap  | C clusters       |
 *   | sect 0 | one txn     | 16 terms   | lease    | F entries | 1 bit   | of 4 KiB..1 MiB  |
 *   |        | at a time   | per sector | 1 sector | of 512 B  | /cluster|                  |
 *   +--------+-------------+------------+----------+-----------+---------+------------------+
 *
 * Everything after the superblock follows from four numbers stored in it
 * (volume bytes, cluster bytes, file slots, journal sectors): the parser
 * recomputes the layout from them and refuses a superblock whose stored
 * offsets disagree, so no offset read from the LUN is trusted on its own.
 */

/** Bytes of a sector: the unit of every metadata write (one sector is written whole or not at all). */
export const SECTOR = 512;
/** Bytes reserved for the superblock (only its first sector is used). */
export const SUPERBLOCK_REGION = 4096;
/** Sectors of the epoch log: 16 terms per sector. */
export const EPOCH_LOG_SECTORS = 32;
/** Smallest and largest cluster (allocation unit of the data area). */
export const MIN_CLUSTER_BYTES = 4096;
export const MAX_CLUSTER_BYTES = 1 << 20;
/** The default cluster: 64 KiB, as NTFS volumes holding VHDs are commonly formatted. */
export const DEFAULT_CLUSTER_BYTES = 65536;
/** File-table bounds: one 512-byte entry per file. */
export const MIN_FILE_SLOTS = 1;
export const MAX_FILE_SLOTS = 65536;
export const DEFAULT_FILE_SLOTS = 256;
/** Journal bounds in sectors: a transaction is a header, up to 58 sector images and a commit. */
export const MIN_JOURNAL_SECTORS = 64;
export const MAX_JOURNAL_SECTORS = 4096;
export const DEFAULT_JOURNAL_SECTORS = 64;
/** At most 2^26 data clusters: the bitmap (8 MiB) is held in memory whole. */
export const MAX_DATA_CLUSTERS = 1 << 26;
/** Largest volume: 2^26 clusters of 1 MiB. */
export const MAX_VOLUME_BYTES = MAX_DATA_CLUSTERS * MAX_CLUSTER_BYTES;

/** Where each region of a volume lies, in bytes on the LUN. */
export interface VolumeLayout {
  readonly volumeBytes: number;
  readonly clusterBytes: number;
  readonly fileSlots: number;
  readonly journalOffset: number;
  readonly journalSectors: number;
  readonly epochLogOffset: number;
  readonly fileTableOffset: number;
  readonly bitmapOffset: number;
  readonly bitmapSectors: number;
  readonly dataOffset: number;
  readonly dataClusters: number;
}

/** The numbers a layout is derived from. */
export interface LayoutParameters {
  readonly volumeBytes: number;
  readonly clusterBytes: number;
  readonly fileSlots: number;
  readonly journalSectors: number;
}

function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}

/**
 * Lays out a volume, or throws a {@link VolumeFormatError} naming the
 * parameter that does not fit (`at` is the superblock offset it was read from;
 * -1 when it came from the caller).
 */
export function computeLayout(
  p: LayoutParameters,
  at: Partial<Record<keyof LayoutParameters, number>> = {},
): VolumeLayout {
  const where = (k: keyof LayoutParameters): number => at[k] ?? -1;
  const fail = (k: keyof LayoutParameters, detail: string): never => {
    throw new VolumeFormatError(`volume ${k}`, where(k), detail);
  };
  const { volumeBytes, clusterBytes, fileSlots, journalSectors } = p;
  if (
    !Number.isInteger(clusterBytes) ||
    clusterBytes < MIN_CLUSTER_BYTES ||
    clusterBytes > MAX_CLUSTER_BYTES ||
    (clusterBytes & (clusterBytes - 1)) !== 0
  )
    fail(
      "clusterBytes",
      `must be a power of two from ${MIN_CLUSTER_BYTES} to ${MAX_CLUSTER_BYTES}, not ${clusterBytes}`,
    );
  if (!Number.isInteger(fileSlots) || fileSlots < MIN_FILE_SLOTS || fileSlots > MAX_FILE_SLOTS)
    fail("fileSlots", `must be from ${MIN_FILE_SLOTS} to ${MAX_FILE_SLOTS}, not ${fileSlots}`);
  if (
    !Number.isInteger(journalSectors) ||
    journalSectors < MIN_JOURNAL_SECTORS ||
    journalSectors > MAX_JOURNAL_SECTORS
  )
    fail(
      "journalSectors",
      `must be from ${MIN_JOURNAL_SECTORS} to ${MAX_JOURNAL_SECTORS}, not ${journalSectors}`,
    );
  if (!Number.isSafeInteger(volumeBytes) || volumeBytes <= 0 || volumeBytes % clusterBytes !== 0)
    fail(
      "volumeBytes",
      `must be a positive multiple of the cluster (${clusterBytes}), not ${volumeBytes}`,
    );
  const journalOffset = SUPERBLOCK_REGION;
  const epochLogOffset = journalOffset + journalSectors * SECTOR;
  // One sector between the epoch log and the file table holds the
  // coordinator's lease (src/csv/lease.ts), which is not journaled.
  const fileTableOffset = epochLogOffset + (EPOCH_LOG_SECTORS + 1) * SECTOR;
  const bitmapOffset = fileTableOffset + fileSlots * SECTOR;
  // The bitmap must cover the data area, whose size depends on the bitmap:
  // size it for every cluster of the volume (an upper bound) and accept the
  // few spare bits; they must stay zero.
  const maxClusters = Math.floor(volumeBytes / clusterBytes);
  const bitmapSectors = Math.max(1, Math.ceil(Math.ceil(maxClusters / 8) / SECTOR));
  const dataOffset = roundUp(bitmapOffset + bitmapSectors * SECTOR, clusterBytes);
  if (dataOffset >= volumeBytes)
    fail(
      "volumeBytes",
      `${volumeBytes} bytes leave no data area after ${dataOffset} bytes of metadata`,
    );
  const dataClusters = (volumeBytes - dataOffset) / clusterBytes;
  if (dataClusters > MAX_DATA_CLUSTERS)
    fail(
      "volumeBytes",
      `${dataClusters} data clusters is more than ${MAX_DATA_CLUSTERS}; use larger clusters`,
    );
  return {
    volumeBytes,
    clusterBytes,
    fileSlots,
    journalOffset,
    journalSectors,
    epochLogOffset,
    fileTableOffset,
    bitmapOffset,
    bitmapSectors,
    dataOffset,
    dataClusters,
  };
}

/** Which metadata region a sector belongs to: the only sectors a journal transaction may name. */
export function metadataRegionOf(
  layout: VolumeLayout,
  sector: number,
): "epoch log" | "file table" | "bitmap" | undefined {
  const byte = sector * SECTOR;
  if (byte >= layout.epochLogOffset && byte < layout.epochLogOffset + EPOCH_LOG_SECTORS * SECTOR)
    return "epoch log";
  if (byte >= layout.fileTableOffset && byte < layout.fileTableOffset + layout.fileSlots * SECTOR)
    return "file table";
  if (byte >= layout.bitmapOffset && byte < layout.bitmapOffset + layout.bitmapSectors * SECTOR)
    return "bitmap";
  return undefined;
}
