import { crc32c } from "./checksum.js";
import { VolumeFormatError } from "./errors.js";
import { metadataRegionOf, SECTOR, type VolumeLayout } from "./layout.js";

/*
 * The metadata journal: a redo log holding the last transaction, written
 * from the journal's first sector. Only the coordinator writes it.
 *
 *   journal + 0          + 512                        + (1 + n) * 512
 *   +--------------------+----------------------------+------------------+
 *   | header sector      | n sector images, in the    | commit sector    |
 *   |                    | order of the header's list |                  |
 *   +--------------------+----------------------------+------------------+
 *
 *   header: 0 magic "HVCSVTXN" | 8 sequence u64 | 16 epoch u64 | 24 node u32
 *           | 28 n u32 (1..58) | 32 operation u32 | 36 reserved u32 = 0
 *           | 40 n x target sector u64 | zeros | 508 crc32c of 0..508
 *   commit: 0 magic "HVCSVCMT" | 8 sequence u64 | 16 crc32c of the n images
 *           | 20 zeros | 508 crc32c of 0..508
 *
 * A metadata change is: (1) write header + images + commit, flush;
 * (2) write the images in place, flush; (3) write the superblock with
 * generation = sequence, flush. A transaction is pending when its sequence
 * is the superblock's generation + 1 and its commit is whole: replaying it
 * repeats step 2 and 3, which is idempotent, so a coordinator killed
 * anywhere leaves a volume the next one makes consistent (jbd2, which
 * OCFS2 journals through, commits the same way: descriptor, blocks, commit
 * block with a checksum). A transaction whose epoch is older than the
 * superblock's was written by a fenced coordinator and is never replayed.
 */

/** "HVCSVTXN" opens a transaction. */
export const TXN_MAGIC = "HVCSVTXN";
/** "HVCSVCMT" closes it. */
export const COMMIT_MAGIC = "HVCSVCMT";
/** Most sector images in one transaction (what the header's list holds). */
export const MAX_TXN_SECTORS = Math.floor((508 - 40) / 8);

/** What a transaction did, for the journal's readers (replay does not look). */
export const TxnOperation = {
  create: 1,
  delete: 2,
  extend: 3,
  takeover: 4,
  truncate: 5,
} as const;

/** A transaction's operation code. */
export type TxnOperationCode = (typeof TxnOperation)[keyof typeof TxnOperation];

/** One sector's new contents. */
export interface SectorImage {
  /** Sector number on the LUN. */
  readonly sector: number;
  readonly bytes: Uint8Array;
}

/** A metadata transaction. */
export interface Transaction {
  readonly sequence: number;
  readonly epoch: number;
  readonly node: number;
  readonly operation: number;
  readonly images: readonly SectorImage[];
}

const latin1 = new TextDecoder("latin1");

/** Bytes the transaction takes in the journal. */
export function transactionBytes(images: number): number {
  return (images + 2) * SECTOR;
}

/** Encodes a transaction as the bytes to write at the journal's start. */
export function encodeTransaction(txn: Transaction): Uint8Array {
  const n = txn.images.length;
  if (n < 1 || n > MAX_TXN_SECTORS)
    throw new RangeError(`a transaction holds 1 to ${MAX_TXN_SECTORS} sectors, not ${n}`);
  const out = new Uint8Array(transactionBytes(n));
  const head = new DataView(out.buffer, 0, SECTOR);
  out.set(new TextEncoder().encode(TXN_MAGIC), 0);
  head.setBigUint64(8, BigInt(txn.sequence), true);
  head.setBigUint64(16, BigInt(txn.epoch), true);
  head.setUint32(24, txn.node, true);
  head.setUint32(28, n, true);
  head.setUint32(32, txn.operation, true);
  txn.images.forEach((image, i) => {
    if (image.bytes.length !== SECTOR)
      throw new RangeError(`sector image ${i} is ${image.bytes.length} bytes, not ${SECTOR}`);
    head.setBigUint64(40 + i * 8, BigInt(image.sector), true);
    out.set(image.bytes, SECTOR * (1 + i));
  });
  head.setUint32(508, crc32c(out.subarray(0, 508)), true);
  const commitAt = SECTOR * (1 + n);
  const commit = new DataView(out.buffer, commitAt, SECTOR);
  out.set(new TextEncoder().encode(COMMIT_MAGIC), commitAt);
  commit.setBigUint64(8, BigInt(txn.sequence), true);
  commit.setUint32(16, crc32c(out.subarray(SECTOR, commitAt)), true);
  commit.setUint32(508, crc32c(out.subarray(commitAt, commitAt + 508)), true);
  return out;
}

/** How many sectors the transaction at the journal's start says it spans, or 0 if its header is not whole. */
export function transactionSectors(header: Uint8Array): number {
  if (header.length < SECTOR || latin1.decode(header.subarray(0, 8)) !== TXN_MAGIC) return 0;
  const view = new DataView(header.buffer, header.byteOffset, SECTOR);
  if (view.getUint32(508, true) !== crc32c(header.subarray(0, 508))) return 0;
  const n = view.getUint32(28, true);
  return n >= 1 && n <= MAX_TXN_SECTORS ? n + 2 : 0;
}

/**
 * Parses the journal's bytes (`layout.journalOffset` on the LUN). Returns
 * `undefined` when the journal holds no whole transaction: an empty
 * journal, or one whose commit never landed (a coordinator killed in step 1,
 * whose change is then lost, as it was never acknowledged). Throws a
 * {@link VolumeFormatError} when a whole, checksummed transaction names a
 * sector outside the metadata regions: that is corruption, not a crash.
 */
export function parseJournal(journal: Uint8Array, layout: VolumeLayout): Transaction | undefined {
  const sectors = transactionSectors(journal);
  if (sectors === 0 || sectors > layout.journalSectors || journal.length < sectors * SECTOR)
    return undefined;
  const n = sectors - 2;
  const base = layout.journalOffset;
  const view = new DataView(journal.buffer, journal.byteOffset, sectors * SECTOR);
  const commitAt = SECTOR * (1 + n);
  if (latin1.decode(journal.subarray(commitAt, commitAt + 8)) !== COMMIT_MAGIC) return undefined;
  if (view.getUint32(commitAt + 508, true) !== crc32c(journal.subarray(commitAt, commitAt + 508)))
    return undefined;
  const big = (offset: number, field: string): number => {
    const v = view.getBigUint64(offset, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      throw new VolumeFormatError(`journal ${field}`, base + offset, `${v} is beyond 2^53`);
    return Number(v);
  };
  const sequence = big(8, "sequence");
  if (big(commitAt + 8, "commit sequence") !== sequence) return undefined;
  if (view.getUint32(commitAt + 16, true) !== crc32c(journal.subarray(SECTOR, commitAt)))
    return undefined;
  if (view.getUint32(36, true) !== 0)
    throw new VolumeFormatError("journal header reserved", base + 36, "must be zero");
  const images: SectorImage[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const sector = big(40 + i * 8, `target ${i}`);
    if (metadataRegionOf(layout, sector) === undefined)
      throw new VolumeFormatError(
        `journal target ${i}`,
        base + 40 + i * 8,
        `sector ${sector} is outside the epoch log, file table and bitmap`,
      );
    if (seen.has(sector))
      throw new VolumeFormatError(
        `journal target ${i}`,
        base + 40 + i * 8,
        `sector ${sector} is named twice`,
      );
    seen.add(sector);
    images.push({ sector, bytes: journal.slice(SECTOR * (1 + i), SECTOR * (2 + i)) });
  }
  return {
    sequence,
    epoch: big(16, "epoch"),
    node: view.getUint32(24, true),
    operation: view.getUint32(32, true),
    images,
  };
}
