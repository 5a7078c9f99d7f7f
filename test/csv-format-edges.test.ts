import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import { encodeFileEntry, type FileEntry, parseFileEntry } from "../src/csv/file-entry.js";
import { encodeTransaction, parseJournal, TxnOperation } from "../src/csv/journal.js";
import { computeLayout } from "../src/csv/layout.js";

// Edges of the csv volume's formats (docs/csv.md): u64 fields taken at
// 2^53 - 1, the commit's own sequence checked as a u64 like the header's,
// and an extent past the data area named at its own offset.

const MAX = Number.MAX_SAFE_INTEGER;
const LAYOUT = computeLayout({
  volumeBytes: 16 << 20,
  clusterBytes: 4096,
  fileSlots: 256,
  journalSectors: 64,
});
const fileTableSector = LAYOUT.fileTableOffset / 512;

describe("the csv formats at their edges", () => {
  it("a journal transaction of sequence and epoch 2^53 - 1 reads back", () => {
    const txn = {
      sequence: MAX,
      epoch: MAX,
      node: 1,
      operation: TxnOperation.create,
      images: [{ sector: fileTableSector, bytes: new Uint8Array(512).fill(7) }],
    };
    expect(parseJournal(encodeTransaction(txn), LAYOUT)).toEqual(txn);
  });

  it("a commit sequence past 2^53 - 1 is refused, naming the commit's field and offset", () => {
    const bytes = encodeTransaction({
      sequence: 5,
      epoch: 1,
      node: 1,
      operation: TxnOperation.create,
      images: [{ sector: fileTableSector, bytes: new Uint8Array(512) }],
    });
    const commit = 2 * 512;
    const view = new DataView(bytes.buffer);
    view.setBigUint64(commit + 8, 1n << 53n, true);
    view.setUint32(commit + 508, crc32c(bytes.subarray(commit, commit + 508)), true);
    const at = LAYOUT.journalOffset + commit + 8;
    expect(() => parseJournal(bytes, LAYOUT)).toThrow(
      `journal commit sequence at offset ${at} (0x${at.toString(16)}): 9007199254740992 is beyond 2^53`,
    );
  });

  it("a file entry's u64 fields at 2^53 - 1 read back", () => {
    const entry: FileEntry = {
      name: "big",
      size: 0,
      extents: [],
      createdGeneration: MAX,
      writtenEpoch: MAX,
    };
    expect(parseFileEntry(encodeFileEntry(entry), 0, 10, 4096)).toEqual(entry);
  });

  it("an extent past the data area is named at its own offset, the second one at 168", () => {
    const entry: FileEntry = {
      name: "vm.vhd",
      size: 3 * 4096,
      extents: [
        { first: 0, count: 2 },
        { first: 9, count: 1 },
      ],
      createdGeneration: 1,
      writtenEpoch: 1,
    };
    expect(parseFileEntry(encodeFileEntry(entry), 0, 10, 4096)).toEqual(entry);
    expect(() => parseFileEntry(encodeFileEntry(entry), 1024, 9, 4096)).toThrow(
      "file entry extent 1 at offset 1192 (0x4a8): clusters 9..9 pass the data area's 9 clusters",
    );
  });
});
