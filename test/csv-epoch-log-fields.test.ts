import { describe, expect, it } from "vitest";
import {
  EPOCH_LOG_RECORDS,
  type EpochRecord,
  encodeEpochRecord,
  epochSlotOffset,
  parseEpochLog,
} from "../src/csv/epoch-log.js";
import { VolumeFormatError } from "../src/csv/errors.js";

// The epoch log (docs/csv.md): one 32-byte record per coordinator term in
// slot epoch mod 512 of 32 sectors, little-endian; each refusal names the
// slot, the field and its offset on the LUN.

const LOG_BYTES = 32 * 512;
/** The log region's byte offset on the LUN in every case below. */
const BASE = 0x9000;

const record = (epoch: number, node = 2): EpochRecord => ({
  epoch,
  node,
  firstGeneration: epoch * 10,
  takenAtMs: 1_700_000_000_000 + epoch,
});

/** The message of the VolumeFormatError parsing `log` throws. */
function refusal(log: Uint8Array): string {
  try {
    parseEpochLog(log, BASE);
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return (error as Error).message;
  }
  throw new Error("parsed without a refusal");
}

const at = (offset: number) => `at offset ${BASE + offset} (0x${(BASE + offset).toString(16)})`;

describe("the epoch log", () => {
  it("holds 512 records, epoch e in slot e mod 512", () => {
    expect(EPOCH_LOG_RECORDS).toBe(512);
    expect([1, 511, 512, 513, 1025].map(epochSlotOffset)).toEqual([32, 511 * 32, 0, 32, 32]);
  });

  it("writes a record's fields at their offsets in its slot, little-endian, and nothing else", () => {
    const log = new Uint8Array(LOG_BYTES);
    encodeEpochRecord(log, { epoch: 515, node: 7, firstGeneration: 0x0102_0304_05, takenAtMs: 99 });
    const view = new DataView(log.buffer);
    const slot = 3 * 32;
    expect(view.getBigUint64(slot, true)).toBe(515n);
    expect(view.getUint32(slot + 8, true)).toBe(7);
    expect(view.getUint32(slot + 12, true)).toBe(0);
    expect(view.getBigUint64(slot + 16, true)).toBe(0x0102_0304_05n);
    expect(view.getBigUint64(slot + 24, true)).toBe(99n);
    expect(log.every((b, i) => b === 0 || (i >= slot && i < slot + 32))).toBe(true);
  });

  it("writes into a log region that does not start its ArrayBuffer", () => {
    const lun = new Uint8Array(512 + LOG_BYTES);
    const log = lun.subarray(512);
    encodeEpochRecord(log, record(4));
    expect(lun.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(parseEpochLog(log, BASE)).toEqual([record(4)]);
  });

  it("reads the records sorted by epoch, empty slots skipped, the first and last slot included", () => {
    const log = new Uint8Array(LOG_BYTES);
    for (const e of [600, 511, 3, 512]) encodeEpochRecord(log, record(e));
    expect(parseEpochLog(log, BASE)).toEqual([record(3), record(511), record(512), record(600)]);
    expect(parseEpochLog(new Uint8Array(LOG_BYTES), BASE)).toEqual([]);
  });

  it("a record with a nonzero byte anywhere is not empty", () => {
    // Only the last byte of slot 5 set: its epoch reads as 0, refused.
    const log = new Uint8Array(LOG_BYTES);
    log[5 * 32 + 31] = 1;
    expect(refusal(log)).toBe(`epoch record 5 ${at(5 * 32)}: epoch 0 does not belong in slot 5`);
  });

  it("refuses epoch 0 in slot 0, where 0 mod 512 would put it: epochs start at 1", () => {
    const log = new Uint8Array(LOG_BYTES);
    log[8] = 3; // node 3, epoch 0
    expect(refusal(log)).toBe(`epoch record 0 ${at(0)}: epoch 0 does not belong in slot 0`);
    encodeEpochRecord(log, record(512));
    expect(parseEpochLog(log, BASE)).toEqual([record(512)]);
  });

  it("refuses a record in another slot, naming slot and epoch", () => {
    const log = new Uint8Array(LOG_BYTES);
    encodeEpochRecord(log, record(9));
    new DataView(log.buffer).setBigUint64(9 * 32, 10n, true);
    expect(refusal(log)).toBe(`epoch record 9 ${at(9 * 32)}: epoch 10 does not belong in slot 9`);
  });

  it("refuses nonzero reserved bytes and u64 fields past 2^53 - 1, each at its offset", () => {
    const cases: [number, bigint | number, string][] = [
      [12, 1, `epoch record 4 reserved ${at(4 * 32 + 12)}: must be zero`],
      [0, 1n << 53n, `epoch record 4 epoch ${at(4 * 32)}: 9007199254740992 is beyond 2^53`],
      [
        16,
        1n << 53n,
        `epoch record 4 first generation ${at(4 * 32 + 16)}: 9007199254740992 is beyond 2^53`,
      ],
      [
        24,
        1n << 53n,
        `epoch record 4 taken at ${at(4 * 32 + 24)}: 9007199254740992 is beyond 2^53`,
      ],
    ];
    for (const [field, value, message] of cases) {
      const log = new Uint8Array(LOG_BYTES);
      encodeEpochRecord(log, record(4));
      const view = new DataView(log.buffer);
      if (typeof value === "bigint") view.setBigUint64(4 * 32 + field, value, true);
      else view.setUint32(4 * 32 + field, value, true);
      expect(refusal(log), message).toBe(message);
    }
    // 2^53 - 1 is taken in each u64 field (an epoch of 2^53 - 1 sits in slot 511).
    const top = Number.MAX_SAFE_INTEGER;
    const log = new Uint8Array(LOG_BYTES);
    encodeEpochRecord(log, { epoch: top, node: 1, firstGeneration: top, takenAtMs: top });
    expect(parseEpochLog(log, BASE)).toEqual([
      { epoch: top, node: 1, firstGeneration: top, takenAtMs: top },
    ]);
    expect(epochSlotOffset(top)).toBe(511 * 32);
  });

  it("refuses a region of another length", () => {
    expect(() => parseEpochLog(new Uint8Array(LOG_BYTES - 1), BASE)).toThrow(
      new RangeError(`the epoch log is 16384 bytes, not ${LOG_BYTES - 1}`),
    );
  });
});
