import { crc32c } from "./checksum.js";
import { VolumeFormatError } from "./errors.js";
import { SECTOR } from "./layout.js";
import { decodeExactUtf8 } from "./utf8.js";

/*
 * A file-table entry: one sector per file slot (little-endian). A free slot
 * is 512 zero bytes; a used one:
 *
 *   0       4        6         8           16           24            32
 *   +-------+--------+---------+-----------+------------+-------------+
 *   | state | name   | extent  | size u64  | created at | written in  |
 *   | u32=1 | length | count   | (bytes)   | generation | epoch u64   |
 *   |       | u16    | u16     |           | u64        |             |
 *   +-------+--------+---------+-----------+------------+-------------+
 *   32                 160                                    504      508   512
 *   +------------------+--------------------------------------+--------+-----+
 *   | name, 128 bytes  | extents: 43 x (first cluster u32,    | zeros  | crc |
 *   | UTF-8, zero pad  |            cluster count u32)        |        | 32c |
 *   +------------------+--------------------------------------+--------+-----+
 *
 * A file's bytes are the concatenation of its extents' clusters, in order;
 * its size must need exactly all of them (no cluster held past the end).
 */

/** Byte offsets of an entry's fields. */
export const FileEntryField = {
  state: 0,
  nameLength: 4,
  extentCount: 6,
  size: 8,
  createdGeneration: 16,
  writtenEpoch: 24,
  name: 32,
  extents: 160,
  zeros: 504,
  crc: 508,
} as const;

/** Longest name in UTF-8 bytes. */
export const MAX_NAME_BYTES = 128;
/** Most extents one file can have. */
export const MAX_EXTENTS = 43;
const STATE_USED = 1;

/** A run of data clusters. */
export interface Extent {
  /** First cluster, counted from the start of the data area. */
  readonly first: number;
  readonly count: number;
}

/** A used file-table entry. */
export interface FileEntry {
  readonly name: string;
  readonly size: number;
  readonly extents: readonly Extent[];
  readonly createdGeneration: number;
  readonly writtenEpoch: number;
}

const F = FileEntryField;

/** Clusters a file of `size` bytes holds. */
export function clustersFor(size: number, clusterBytes: number): number {
  return Math.ceil(size / clusterBytes);
}

/** Checks a name: 1 to 128 bytes of UTF-8, no NUL, no slash (the volume is flat). */
export function checkName(name: string): Uint8Array {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES)
    throw new RangeError(
      `file name must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8, not ${bytes.length}`,
    );
  if (/[\0/\\]/.test(name))
    throw new RangeError(`file name ${JSON.stringify(name)} holds NUL, / or \\`);
  return bytes;
}

/** Writes an entry into one sector. */
export function encodeFileEntry(entry: FileEntry): Uint8Array {
  const bytes = new Uint8Array(SECTOR);
  const view = new DataView(bytes.buffer);
  const name = checkName(entry.name);
  if (entry.extents.length > MAX_EXTENTS)
    throw new RangeError(`${entry.name}: ${entry.extents.length} extents; at most ${MAX_EXTENTS}`);
  view.setUint32(F.state, STATE_USED, true);
  view.setUint16(F.nameLength, name.length, true);
  view.setUint16(F.extentCount, entry.extents.length, true);
  view.setBigUint64(F.size, BigInt(entry.size), true);
  view.setBigUint64(F.createdGeneration, BigInt(entry.createdGeneration), true);
  view.setBigUint64(F.writtenEpoch, BigInt(entry.writtenEpoch), true);
  bytes.set(name, F.name);
  entry.extents.forEach((e, i) => {
    view.setUint32(F.extents + i * 8, e.first, true);
    view.setUint32(F.extents + i * 8 + 4, e.count, true);
  });
  view.setUint32(F.crc, crc32c(bytes.subarray(0, F.crc)), true);
  return bytes;
}

/**
 * Parses the entry in one sector: `undefined` for a free slot. `at` is the
 * sector's byte offset on the LUN (for messages); `dataClusters` bounds
 * every extent and `clusterBytes` ties the size to the extents.
 */
export function parseFileEntry(
  bytes: Uint8Array,
  at: number,
  dataClusters: number,
  clusterBytes: number,
): FileEntry | undefined {
  if (bytes.length !== SECTOR)
    throw new RangeError(`a file entry is ${SECTOR} bytes, not ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, SECTOR);
  const state = view.getUint32(F.state, true);
  if (state === 0) {
    for (let i = 0; i < SECTOR; i++)
      if (bytes[i] !== 0)
        throw new VolumeFormatError("free file entry", at + i, "a free slot must be all zeros");
    return undefined;
  }
  const fail = (field: string, offset: number, detail: string): never => {
    throw new VolumeFormatError(`file entry ${field}`, at + offset, detail);
  };
  const stored = view.getUint32(F.crc, true);
  const computed = crc32c(bytes.subarray(0, F.crc));
  if (stored !== computed)
    fail("checksum", F.crc, `stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
  if (state !== STATE_USED) fail("state", F.state, `${state} is neither 0 (free) nor 1 (used)`);
  const nameLength = view.getUint16(F.nameLength, true);
  if (nameLength === 0 || nameLength > MAX_NAME_BYTES)
    fail("name length", F.nameLength, `${nameLength} is not 1 to ${MAX_NAME_BYTES}`);
  const count = view.getUint16(F.extentCount, true);
  if (count > MAX_EXTENTS)
    fail("extent count", F.extentCount, `${count} is more than ${MAX_EXTENTS}`);
  const big = (offset: number, field: string): number => {
    const v = view.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(field, offset, `${v} is beyond 2^53`);
    return Number(v);
  };
  const size = big(F.size, "size");
  let name = "";
  try {
    name = decodeExactUtf8(bytes.subarray(F.name, F.name + nameLength));
  } catch {
    fail("name", F.name, "is not UTF-8");
  }
  if (/[\0/\\]/.test(name)) fail("name", F.name, `${JSON.stringify(name)} holds NUL, / or \\`);
  for (let i = F.name + nameLength; i < F.extents; i++)
    if (bytes[i] !== 0) fail("name padding", i, "must be zero");
  const extents: Extent[] = [];
  let clusters = 0;
  for (let i = 0; i < MAX_EXTENTS; i++) {
    const first = view.getUint32(F.extents + i * 8, true);
    const n = view.getUint32(F.extents + i * 8 + 4, true);
    if (i >= count) {
      if (first !== 0 || n !== 0)
        fail(`extent ${i}`, F.extents + i * 8, "past the extent count, must be zero");
      continue;
    }
    if (n === 0)
      fail(`extent ${i} count`, F.extents + i * 8 + 4, "an extent holds at least one cluster");
    if (first + n > dataClusters)
      fail(
        `extent ${i}`,
        F.extents + i * 8,
        `clusters ${first}..${first + n - 1} pass the data area's ${dataClusters} clusters`,
      );
    extents.push({ first, count: n });
    clusters += n;
  }
  for (let i = F.zeros; i < F.crc; i++) if (bytes[i] !== 0) fail("padding", i, "must be zero");
  if (clusters !== clustersFor(size, clusterBytes))
    fail(
      "size",
      F.size,
      `${size} bytes need ${clustersFor(size, clusterBytes)} clusters of ${clusterBytes}, but the extents hold ${clusters}`,
    );
  return {
    name,
    size,
    extents,
    createdGeneration: big(F.createdGeneration, "created generation"),
    writtenEpoch: big(F.writtenEpoch, "written epoch"),
  };
}
