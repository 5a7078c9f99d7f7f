import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import {
  encodeTransaction,
  MAX_TXN_SECTORS,
  parseJournal,
  type Transaction,
  TxnOperation,
  transactionBytes,
  transactionSectors,
} from "../src/csv/journal.js";
import { computeLayout } from "../src/csv/layout.js";

// The metadata journal (docs/csv.md): a header sector, the sector images,
// a commit sector. A transaction whose commit is not whole is no
// transaction (a crash in step 1); a whole one that names a sector outside
// the metadata regions is corruption, named with its field and offset.

const LAYOUT = computeLayout({
  volumeBytes: 16 << 20,
  clusterBytes: 4096,
  fileSlots: 256,
  journalSectors: 64,
});
const S = (byte: number) => byte / 512;
const image = (sector: number, fill: number) => ({
  sector,
  bytes: new Uint8Array(512).fill(fill),
});
const FIRST = image(S(LAYOUT.fileTableOffset) + 2, 0xaa);
const TXN: Transaction = {
  sequence: 0x0102_0304_05,
  epoch: 6,
  node: 3,
  operation: TxnOperation.extend,
  images: [FIRST, image(S(LAYOUT.bitmapOffset), 0x55)],
};

/** A journal region holding `bytes` at its start. */
function journal(bytes: Uint8Array): Uint8Array {
  const region = new Uint8Array(LAYOUT.journalSectors * 512);
  region.set(bytes);
  return region;
}

/** Rewrites the header's CRC (bytes 0 to 507) after a field was changed on purpose. */
function resealHeader(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer).setUint32(508, crc32c(bytes.subarray(0, 508)), true);
  return bytes;
}

/** The message of the VolumeFormatError parsing `bytes` throws. */
function refusal(bytes: Uint8Array): string {
  try {
    parseJournal(journal(bytes), LAYOUT);
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return (error as Error).message;
  }
  throw new Error("parsed without a refusal");
}

const at = (offset: number) => {
  const byte = LAYOUT.journalOffset + offset;
  return `at offset ${byte} (0x${byte.toString(16)})`;
};

describe("a journal transaction's bytes", () => {
  it("writes the header, the images in order and the commit, each field at its offset", () => {
    const bytes = encodeTransaction(TXN);
    const v = new DataView(bytes.buffer);
    expect(bytes.length).toBe(transactionBytes(2));
    expect(transactionBytes(2)).toBe(4 * 512);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("HVCSVTXN");
    expect(v.getBigUint64(8, true)).toBe(0x0102_0304_05n);
    expect(v.getBigUint64(16, true)).toBe(6n);
    expect(v.getUint32(24, true)).toBe(3);
    expect(v.getUint32(28, true)).toBe(2);
    expect(v.getUint32(32, true)).toBe(3);
    expect(v.getUint32(36, true)).toBe(0);
    expect(v.getBigUint64(40, true)).toBe(BigInt(S(LAYOUT.fileTableOffset) + 2));
    expect(v.getBigUint64(48, true)).toBe(BigInt(S(LAYOUT.bitmapOffset)));
    expect(bytes.subarray(56, 508).every((b) => b === 0)).toBe(true);
    expect(v.getUint32(508, true)).toBe(crc32c(bytes.subarray(0, 508)));
    expect(bytes.subarray(512, 1024).every((b) => b === 0xaa)).toBe(true);
    expect(bytes.subarray(1024, 1536).every((b) => b === 0x55)).toBe(true);
    const commit = 1536;
    expect(new TextDecoder().decode(bytes.subarray(commit, commit + 8))).toBe("HVCSVCMT");
    expect(v.getBigUint64(commit + 8, true)).toBe(0x0102_0304_05n);
    expect(v.getUint32(commit + 16, true)).toBe(crc32c(bytes.subarray(512, commit)));
    expect(bytes.subarray(commit + 20, commit + 508).every((b) => b === 0)).toBe(true);
    expect(v.getUint32(commit + 508, true)).toBe(crc32c(bytes.subarray(commit, commit + 508)));
    expect(parseJournal(journal(bytes), LAYOUT)).toEqual(TXN);
  });

  it("holds 1 to 58 sectors; refuses 0 and 59, and an image that is not one sector", () => {
    expect(MAX_TXN_SECTORS).toBe(58);
    const fileTable = S(LAYOUT.fileTableOffset);
    const most = Array.from({ length: 58 }, (_, i) => image(fileTable + i, i));
    const txn = { ...TXN, images: most };
    expect(transactionSectors(encodeTransaction(txn))).toBe(60);
    expect(parseJournal(journal(encodeTransaction(txn)), LAYOUT)).toEqual(txn);
    expect(transactionSectors(encodeTransaction({ ...TXN, images: [FIRST] }))).toBe(3);
    expect(() => encodeTransaction({ ...TXN, images: [] })).toThrow(
      new RangeError("a transaction holds 1 to 58 sectors, not 0"),
    );
    expect(() =>
      encodeTransaction({ ...TXN, images: [...most, image(fileTable + 58, 0)] }),
    ).toThrow(new RangeError("a transaction holds 1 to 58 sectors, not 59"));
    expect(() =>
      encodeTransaction({
        ...TXN,
        images: [FIRST, { sector: 1, bytes: new Uint8Array(511) }],
      }),
    ).toThrow(new RangeError("sector image 1 is 511 bytes, not 512"));
  });
});

describe("the span a header states", () => {
  it("is n + 2 sectors for a whole header, else 0", () => {
    const bytes = encodeTransaction(TXN);
    expect(transactionSectors(bytes)).toBe(4);
    expect(transactionSectors(bytes.subarray(0, 512))).toBe(4);
    expect(transactionSectors(bytes.subarray(0, 511))).toBe(0);
    const magic = bytes.slice();
    magic[7] = 0x59;
    expect(transactionSectors(resealHeader(magic))).toBe(0);
    const crc = bytes.slice();
    crc[60] = 1;
    expect(transactionSectors(crc)).toBe(0);
    const spans: [number, number][] = [
      [0, 0],
      [1, 3],
      [58, 60],
      [59, 0],
    ];
    for (const [n, sectors] of spans) {
      const header = bytes.slice(0, 512);
      new DataView(header.buffer).setUint32(28, n, true);
      expect(transactionSectors(resealHeader(header)), `n ${n}`).toBe(sectors);
    }
  });

  it("reads a header inside a longer buffer at its own offset", () => {
    const lun = new Uint8Array(512 + 4 * 512);
    lun.set(encodeTransaction(TXN), 512);
    expect(transactionSectors(lun.subarray(512))).toBe(4);
    expect(parseJournal(lun.subarray(512), LAYOUT)).toEqual(TXN);
  });
});

describe("a journal with no whole transaction", () => {
  it("is empty, or its commit, its commit's sequence, or its images' CRC does not match", () => {
    expect(parseJournal(journal(new Uint8Array(0)), LAYOUT)).toBeUndefined();
    const commit = 3 * 512;
    const spoil = (edit: (b: Uint8Array, v: DataView) => void, resealCommit: boolean) => {
      const bytes = encodeTransaction(TXN);
      const v = new DataView(bytes.buffer);
      edit(bytes, v);
      if (resealCommit)
        v.setUint32(commit + 508, crc32c(bytes.subarray(commit, commit + 508)), true);
      return parseJournal(journal(bytes), LAYOUT);
    };
    expect(spoil((b) => b.set([0x58], commit + 7), true)).toBeUndefined(); // commit magic
    expect(spoil((b) => b.set([1], commit + 100), false)).toBeUndefined(); // commit CRC
    expect(
      spoil((_b, v) => v.setBigUint64(commit + 8, 0x0102_0304_06n, true), true),
    ).toBeUndefined();
    expect(spoil((b) => b.set([0xab], 600), false)).toBeUndefined(); // an image changed
    // Nothing changed: the transaction is whole.
    expect(spoil(() => {}, true)).toEqual(TXN);
  });

  it("states more sectors than the journal holds, or than the bytes given", () => {
    const bytes = encodeTransaction(TXN);
    expect(parseJournal(bytes, LAYOUT)).toEqual(TXN);
    expect(parseJournal(bytes.subarray(0, 4 * 512 - 1), LAYOUT)).toBeUndefined();
    const fileTable = S(LAYOUT.fileTableOffset);
    const big = encodeTransaction({
      ...TXN,
      images: Array.from({ length: 58 }, (_, i) => image(fileTable + i, 1)),
    });
    // 60 sectors: past a journal of 59, inside one of 60.
    expect(parseJournal(big, { ...LAYOUT, journalSectors: 59 })).toBeUndefined();
    expect(parseJournal(big, { ...LAYOUT, journalSectors: 60 })?.images).toHaveLength(58);
  });
});

describe("a whole transaction that is corrupt", () => {
  /** TXN's bytes with a header edit, both CRCs over what changed rewritten. */
  const edited = (edit: (v: DataView) => void) => {
    const bytes = encodeTransaction(TXN);
    edit(new DataView(bytes.buffer));
    return resealHeader(bytes);
  };

  it("names a target outside the metadata regions, or twice, at its offset in the header", () => {
    const outside = [
      0,
      S(LAYOUT.epochLogOffset) - 1,
      S(LAYOUT.epochLogOffset) + 32,
      S(LAYOUT.dataOffset),
    ];
    for (const sector of outside)
      expect(refusal(edited((v) => v.setBigUint64(48, BigInt(sector), true))), String(sector)).toBe(
        `journal target 1 ${at(48)}: sector ${sector} is outside the epoch log, file table and bitmap`,
      );
    const twice = S(LAYOUT.fileTableOffset) + 2;
    expect(refusal(edited((v) => v.setBigUint64(48, BigInt(twice), true)))).toBe(
      `journal target 1 ${at(48)}: sector ${twice} is named twice`,
    );
    const epochLog = S(LAYOUT.epochLogOffset);
    expect(
      parseJournal(journal(edited((v) => v.setBigUint64(48, BigInt(epochLog), true))), LAYOUT)
        ?.images[1]?.sector,
    ).toBe(epochLog);
  });

  it("refuses a nonzero reserved word, and u64 fields past 2^53 - 1, each at its offset", () => {
    expect(refusal(edited((v) => v.setUint32(36, 1, true)))).toBe(
      `journal header reserved ${at(36)}: must be zero`,
    );
    expect(refusal(edited((v) => v.setBigUint64(16, 1n << 53n, true)))).toBe(
      `journal epoch ${at(16)}: 9007199254740992 is beyond 2^53`,
    );
    expect(refusal(edited((v) => v.setBigUint64(40, 1n << 53n, true)))).toBe(
      `journal target 0 ${at(40)}: 9007199254740992 is beyond 2^53`,
    );
    const sequence = encodeTransaction(TXN);
    const v = new DataView(sequence.buffer);
    v.setBigUint64(8, 1n << 53n, true);
    v.setBigUint64(3 * 512 + 8, 1n << 53n, true);
    v.setUint32(3 * 512 + 508, crc32c(sequence.subarray(3 * 512, 3 * 512 + 508)), true);
    expect(refusal(resealHeader(sequence))).toBe(
      `journal sequence ${at(8)}: 9007199254740992 is beyond 2^53`,
    );
  });

  it("gives each image its own copy of the bytes", () => {
    const region = journal(encodeTransaction(TXN));
    const txn = parseJournal(region, LAYOUT);
    region.fill(0, 512, 1024);
    expect(txn?.images[0]?.bytes.every((b) => b === 0xaa)).toBe(true);
  });
});
