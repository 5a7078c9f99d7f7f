import { VolumeFormatError } from "./errors.js";
import { EPOCH_LOG_SECTORS, SECTOR } from "./layout.js";

/*
 * The epoch log: one 32-byte record per coordinator term, in slot
 * epoch mod 512 of 32 sectors (16 records per sector, little-endian):
 *
 *   0            8         12         16               24             32
 *   +------------+---------+----------+----------------+--------------+
 *   | epoch u64  | node    | reserved | first          | taken at     |
 *   | (>= 1)     | u32     | u32 = 0  | generation u64 | ms since 1970|
 *   +------------+---------+----------+----------------+--------------+
 *
 * An empty slot is 32 zero bytes. A term's record is written by the
 * journal transaction that opens the term, so "epochs never overlap" is a
 * property of the volume anyone can check: each term starts at a
 * generation no earlier than the term before it ended (its successor's
 * first generation), and no two records share an epoch.
 */

/** Bytes of a record. */
export const EPOCH_RECORD_BYTES = 32;
/** Records the log holds: the last 512 terms. */
export const EPOCH_LOG_RECORDS = (EPOCH_LOG_SECTORS * SECTOR) / EPOCH_RECORD_BYTES;

/** One coordinator term. */
export interface EpochRecord {
  readonly epoch: number;
  /** The node that held the term. */
  readonly node: number;
  /** The generation of the transaction that opened the term. */
  readonly firstGeneration: number;
  /** Wall-clock time of the takeover, ms since 1970. */
  readonly takenAtMs: number;
}

/** Byte offset of `epoch`'s record within the log. */
export function epochSlotOffset(epoch: number): number {
  return (epoch % EPOCH_LOG_RECORDS) * EPOCH_RECORD_BYTES;
}

/** Writes a record into its 32 bytes of `log` (the whole log region). */
export function encodeEpochRecord(log: Uint8Array, record: EpochRecord): void {
  const at = epochSlotOffset(record.epoch);
  const view = new DataView(log.buffer, log.byteOffset + at, EPOCH_RECORD_BYTES);
  view.setBigUint64(0, BigInt(record.epoch), true);
  view.setUint32(8, record.node, true);
  view.setUint32(12, 0, true);
  view.setBigUint64(16, BigInt(record.firstGeneration), true);
  view.setBigUint64(24, BigInt(record.takenAtMs), true);
}

/**
 * Parses the whole log region (`base` is its byte offset on the LUN):
 * records sorted by epoch. Refuses a record in the wrong slot, one that
 * names epoch 0, and nonzero reserved bytes.
 */
export function parseEpochLog(log: Uint8Array, base: number): EpochRecord[] {
  if (log.length !== EPOCH_LOG_SECTORS * SECTOR)
    throw new RangeError(`the epoch log is ${EPOCH_LOG_SECTORS * SECTOR} bytes, not ${log.length}`);
  const view = new DataView(log.buffer, log.byteOffset, log.length);
  const records: EpochRecord[] = [];
  for (let slot = 0; slot < EPOCH_LOG_RECORDS; slot++) {
    const at = slot * EPOCH_RECORD_BYTES;
    let empty = true;
    for (let i = 0; i < EPOCH_RECORD_BYTES; i++) if (log[at + i] !== 0) empty = false;
    if (empty) continue;
    const big = (offset: number, field: string): number => {
      const v = view.getBigUint64(at + offset, true);
      if (v > BigInt(Number.MAX_SAFE_INTEGER))
        throw new VolumeFormatError(
          `epoch record ${slot} ${field}`,
          base + at + offset,
          `${v} is beyond 2^53`,
        );
      return Number(v);
    };
    const epoch = big(0, "epoch");
    if (epoch === 0 || epoch % EPOCH_LOG_RECORDS !== slot)
      throw new VolumeFormatError(
        `epoch record ${slot}`,
        base + at,
        `epoch ${epoch} does not belong in slot ${slot}`,
      );
    if (view.getUint32(at + 12, true) !== 0)
      throw new VolumeFormatError(`epoch record ${slot} reserved`, base + at + 12, "must be zero");
    records.push({
      epoch,
      node: view.getUint32(at + 8, true),
      firstGeneration: big(16, "first generation"),
      takenAtMs: big(24, "taken at"),
    });
  }
  return records.sort((a, b) => a.epoch - b.epoch);
}
