import { crc32c } from "./checksum.js";
import { VolumeFormatError } from "./errors.js";
import { computeLayout, SECTOR, type VolumeLayout } from "./layout.js";
import { decodeExactUtf8 } from "./utf8.js";

/*
 * The superblock, sector 0 of the LUN (little-endian):
 *
 *   0        8        12       16        20       24            32           40
 *   +--------+--------+--------+---------+--------+-------------+------------+
 *   | magic  | version| sector | cluster | file   | volume      | generation |
 *   |HVCSVOL1| u32=1  | u32=512| bytes   | slots  | bytes u64   | u64        |
 *   +--------+--------+--------+---------+--------+-------------+------------+
 *   40       48         52        56          64          72          80
 *   +--------+----------+---------+-----------+-----------+-----------+
 *   | epoch  | coordin- | journal | journal   | epoch log | file table|
 *   | u64    | ator u32 | sectors | offset u64| offset u64| offset u64|
 *   +--------+----------+---------+-----------+-----------+-----------+
 *   80          88          92         96          104       108     124     156      508   512
 *   +-----------+-----------+----------+-----------+---------+-------+-------+--------+-----+
 *   | bitmap    | bitmap    | reserved | data      | data    | uuid  | label | zeros  | crc |
 *   | offset u64| sectors   | u32 = 0  | offset u64| clusters| 16 B  | 32 B  |        | 32c |
 *   +-----------+-----------+----------+-----------+---------+-------+-------+--------+-----+
 *
 * generation: the sequence number of the last metadata transaction applied.
 * epoch: the current coordinator term; its holder is `coordinator`.
 */

/** "HVCSVOL1" as the first eight bytes of the LUN. */
export const SUPERBLOCK_MAGIC = "HVCSVOL1";
/** The format version this build reads and writes. */
export const FORMAT_VERSION = 1;
/** Bytes of the label. */
export const LABEL_BYTES = 32;

/** Byte offsets of the superblock's fields. */
export const SuperblockField = {
  magic: 0,
  version: 8,
  sectorBytes: 12,
  clusterBytes: 16,
  fileSlots: 20,
  volumeBytes: 24,
  generation: 32,
  epoch: 40,
  coordinator: 48,
  journalSectors: 52,
  journalOffset: 56,
  epochLogOffset: 64,
  fileTableOffset: 72,
  bitmapOffset: 80,
  bitmapSectors: 88,
  reserved: 92,
  dataOffset: 96,
  dataClusters: 104,
  uuid: 108,
  label: 124,
  zeros: 156,
  crc: 508,
} as const;

/** The superblock's contents. */
export interface Superblock {
  readonly layout: VolumeLayout;
  readonly generation: number;
  readonly epoch: number;
  /** Node id holding `epoch` (0 before any coordinator). */
  readonly coordinator: number;
  /** 32 hex digits. */
  readonly uuid: string;
  readonly label: string;
}

const F = SuperblockField;

/** Writes a superblock into one sector. */
export function encodeSuperblock(sb: Superblock): Uint8Array {
  const bytes = new Uint8Array(SECTOR);
  const view = new DataView(bytes.buffer);
  const l = sb.layout;
  bytes.set(new TextEncoder().encode(SUPERBLOCK_MAGIC), F.magic);
  view.setUint32(F.version, FORMAT_VERSION, true);
  view.setUint32(F.sectorBytes, SECTOR, true);
  view.setUint32(F.clusterBytes, l.clusterBytes, true);
  view.setUint32(F.fileSlots, l.fileSlots, true);
  view.setBigUint64(F.volumeBytes, BigInt(l.volumeBytes), true);
  view.setBigUint64(F.generation, BigInt(sb.generation), true);
  view.setBigUint64(F.epoch, BigInt(sb.epoch), true);
  view.setUint32(F.coordinator, sb.coordinator, true);
  view.setUint32(F.journalSectors, l.journalSectors, true);
  view.setBigUint64(F.journalOffset, BigInt(l.journalOffset), true);
  view.setBigUint64(F.epochLogOffset, BigInt(l.epochLogOffset), true);
  view.setBigUint64(F.fileTableOffset, BigInt(l.fileTableOffset), true);
  view.setBigUint64(F.bitmapOffset, BigInt(l.bitmapOffset), true);
  view.setUint32(F.bitmapSectors, l.bitmapSectors, true);
  view.setBigUint64(F.dataOffset, BigInt(l.dataOffset), true);
  view.setUint32(F.dataClusters, l.dataClusters, true);
  for (let i = 0; i < 16; i++)
    bytes[F.uuid + i] = Number.parseInt(sb.uuid.slice(i * 2, i * 2 + 2), 16);
  const label = new TextEncoder().encode(sb.label);
  if (label.length > LABEL_BYTES)
    throw new RangeError(`volume label is ${label.length} bytes; at most ${LABEL_BYTES}`);
  bytes.set(label, F.label);
  view.setUint32(F.crc, crc32c(bytes.subarray(0, F.crc)), true);
  return bytes;
}

/** A u64 field that must be a safe integer. */
function u64(view: DataView, offset: number, field: string): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER))
    throw new VolumeFormatError(`superblock ${field}`, offset, `${value} is beyond 2^53`);
  return Number(value);
}

/**
 * Parses sector 0. Checks the magic, version and checksum, then recomputes
 * the layout from the sizing fields and refuses any stored offset that
 * disagrees, and a volume larger than the LUN (`lunBytes`).
 */
export function parseSuperblock(bytes: Uint8Array, lunBytes: number): Superblock {
  if (bytes.length < SECTOR)
    throw new VolumeFormatError(
      "superblock",
      0,
      `LUN holds ${bytes.length} bytes; a volume needs at least one sector`,
    );
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR);
  const magic = new TextDecoder("latin1").decode(bytes.subarray(0, 8));
  if (magic !== SUPERBLOCK_MAGIC)
    throw new VolumeFormatError(
      "superblock magic",
      F.magic,
      `${JSON.stringify(magic)} is not ${JSON.stringify(SUPERBLOCK_MAGIC)}: not a cluster shared volume`,
    );
  const stored = view.getUint32(F.crc, true);
  const computed = crc32c(bytes.subarray(0, F.crc));
  if (stored !== computed)
    throw new VolumeFormatError(
      "superblock checksum",
      F.crc,
      `stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`,
    );
  const version = view.getUint32(F.version, true);
  if (version !== FORMAT_VERSION)
    throw new VolumeFormatError(
      "superblock version",
      F.version,
      `${version} is not ${FORMAT_VERSION}`,
    );
  const sectorBytes = view.getUint32(F.sectorBytes, true);
  if (sectorBytes !== SECTOR)
    throw new VolumeFormatError(
      "superblock sector bytes",
      F.sectorBytes,
      `${sectorBytes} is not ${SECTOR}`,
    );
  if (view.getUint32(F.reserved, true) !== 0)
    throw new VolumeFormatError("superblock reserved", F.reserved, "must be zero");
  for (let i = F.zeros; i < F.crc; i++)
    if (bytes[i] !== 0) throw new VolumeFormatError("superblock padding", i, "must be zero");
  const layout = computeLayout(
    {
      volumeBytes: u64(view, F.volumeBytes, "volume bytes"),
      clusterBytes: view.getUint32(F.clusterBytes, true),
      fileSlots: view.getUint32(F.fileSlots, true),
      journalSectors: view.getUint32(F.journalSectors, true),
    },
    {
      volumeBytes: F.volumeBytes,
      clusterBytes: F.clusterBytes,
      fileSlots: F.fileSlots,
      journalSectors: F.journalSectors,
    },
  );
  if (layout.volumeBytes > lunBytes)
    throw new VolumeFormatError(
      "superblock volume bytes",
      F.volumeBytes,
      `volume of ${layout.volumeBytes} bytes is larger than the LUN (${lunBytes} bytes)`,
    );
  const expect = (field: keyof typeof F & keyof VolumeLayout, value: number): void => {
    if (value !== layout[field])
      throw new VolumeFormatError(
        `superblock ${field}`,
        F[field],
        `${value} disagrees with the layout, which puts it at ${layout[field]}`,
      );
  };
  expect("journalOffset", u64(view, F.journalOffset, "journal offset"));
  expect("epochLogOffset", u64(view, F.epochLogOffset, "epoch log offset"));
  expect("fileTableOffset", u64(view, F.fileTableOffset, "file table offset"));
  expect("bitmapOffset", u64(view, F.bitmapOffset, "bitmap offset"));
  expect("bitmapSectors", view.getUint32(F.bitmapSectors, true));
  expect("dataOffset", u64(view, F.dataOffset, "data offset"));
  expect("dataClusters", view.getUint32(F.dataClusters, true));
  const epoch = u64(view, F.epoch, "epoch");
  const coordinator = view.getUint32(F.coordinator, true);
  if (epoch === 0 && coordinator !== 0)
    throw new VolumeFormatError(
      "superblock coordinator",
      F.coordinator,
      `node ${coordinator} holds no term: the epoch is 0`,
    );
  const labelBytes = bytes.subarray(F.label, F.label + LABEL_BYTES);
  const end = labelBytes.indexOf(0);
  const used = labelBytes.subarray(0, end < 0 ? LABEL_BYTES : end);
  for (let i = used.length; i < LABEL_BYTES; i++)
    if (labelBytes[i] !== 0)
      throw new VolumeFormatError(
        "superblock label",
        F.label + i,
        "bytes after the label's end must be zero",
      );
  let label: string;
  try {
    label = decodeExactUtf8(used);
  } catch {
    throw new VolumeFormatError("superblock label", F.label, "is not UTF-8");
  }
  return {
    layout,
    generation: u64(view, F.generation, "generation"),
    epoch,
    coordinator,
    uuid: Array.from(bytes.subarray(F.uuid, F.uuid + 16), (b) =>
      b.toString(16).padStart(2, "0"),
    ).join(""),
    label,
  };
}
