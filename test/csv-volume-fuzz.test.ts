import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { crc32c } from "../src/csv/checksum.js";
import { parseEpochLog } from "../src/csv/epoch-log.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import { parseFileEntry } from "../src/csv/file-entry.js";
import { parseJournal } from "../src/csv/journal.js";
import { EPOCH_LOG_SECTORS, SECTOR } from "../src/csv/layout.js";
import { parseSuperblock } from "../src/csv/superblock.js";
import { Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";

// The volume parsers' contract on hostile bytes: a VolumeFormatError naming
// the field and its offset, or a value; never another exception, never a
// hang. 25,000 cases per parser plus whole volumes checked end to end.

const MiB = 1 << 20;

/** A volume with files, terms and a pending transaction in its journal. */
async function sample(): Promise<Uint8Array> {
  const { lun, file } = memoryLun(MiB);
  const v = await Volume.format(lun, { clusterBytes: 4096, fileSlots: 4, journalSectors: 64 });
  await v.takeOver(1);
  await v.create("a.vhd", 9000);
  await v.create("b.vhd", 100);
  await v.takeOver(2);
  await v.resize("a.vhd", 20_000);
  // Roll the superblock back one generation: the last transaction becomes pending.
  const sb = parseSuperblock(file.contents().subarray(0, SECTOR), MiB);
  const { encodeSuperblock } = await import("../src/csv/superblock.js");
  file.write(encodeSuperblock({ ...sb, generation: sb.generation - 1 }), 0);
  return file.contents().slice();
}

const image = await sample();
const layout = parseSuperblock(image.subarray(0, SECTOR), image.length).layout;

/** Byte edits: (offset within the structure, value). */
const edits = (length: number) =>
  fc.array(fc.tuple(fc.nat(length - 1), fc.integer({ min: 0, max: 255 })), {
    minLength: 1,
    maxLength: 6,
  });

/**
 * Applies edits to `bytes` in place, then (when `recrc`) rewrites the CRC at
 * `crcAt` so the parser reaches the fields behind it; runs `check` and puts
 * the bytes back (no copy per case keeps 25,000 cases fast).
 */
function withEdits(
  bytes: Uint8Array,
  changes: [number, number][],
  recrc: boolean,
  crcAt: number,
  check: (b: Uint8Array) => void,
): void {
  const saved = changes.map(([at]) => [at, bytes[at] ?? 0] as const);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const savedCrc = crcAt >= 0 ? view.getUint32(crcAt, true) : 0;
  for (const [at, value] of changes) bytes[at] = value;
  if (recrc && crcAt >= 0) view.setUint32(crcAt, crc32c(bytes.subarray(crcAt - 508, crcAt)), true);
  try {
    check(bytes);
  } finally {
    if (crcAt >= 0) view.setUint32(crcAt, savedCrc, true);
    for (const [at, value] of saved.reverse()) bytes[at] = value;
  }
}

function expectTyped(run: () => unknown): void {
  try {
    run();
  } catch (error) {
    if (!(error instanceof VolumeFormatError)) throw error;
    expect(error.message).toMatch(/ at offset \d+ \(0x[0-9a-f]+\): /);
  }
}

const RUNS = 25_000;

describe("csv volume parsers on hostile bytes", () => {
  it("superblock", () => {
    const sb = image.slice(0, SECTOR);
    fc.assert(
      fc.property(edits(SECTOR), fc.boolean(), fc.nat(4 * MiB), (changes, recrc, lunBytes) => {
        withEdits(sb, changes, recrc, 508, (b) => expectTyped(() => parseSuperblock(b, lunBytes)));
      }),
      { numRuns: RUNS, seed: 12 },
    );
  });

  it("file-table entry", () => {
    const entry = image.slice(layout.fileTableOffset, layout.fileTableOffset + SECTOR);
    expect(parseFileEntry(entry, layout.fileTableOffset, layout.dataClusters, 4096)?.name).toBe(
      "a.vhd",
    );
    fc.assert(
      fc.property(edits(SECTOR), fc.boolean(), (changes, recrc) => {
        withEdits(entry, changes, recrc, 508, (b) =>
          expectTyped(() => parseFileEntry(b, layout.fileTableOffset, layout.dataClusters, 4096)),
        );
      }),
      { numRuns: RUNS, seed: 13 },
    );
  });

  it("journal", () => {
    const n = new DataView(image.buffer).getUint32(layout.journalOffset + 28, true);
    const journal = image.slice(layout.journalOffset, layout.journalOffset + (n + 2) * SECTOR);
    expect(parseJournal(journal, layout)?.sequence).toBe(5);
    // Edits land anywhere in the transaction; the header's CRC is fixed up
    // in half the cases so that the checks behind it are reached.
    fc.assert(
      fc.property(edits(SECTOR * (n + 2)), fc.constantFrom(-1, 508), (changes, crcAt) => {
        withEdits(journal, changes, crcAt > 0, crcAt, (b) =>
          expectTyped(() => {
            const txn = parseJournal(b, layout);
            if (txn) for (const i of txn.images) expect(i.bytes.length).toBe(SECTOR);
          }),
        );
      }),
      { numRuns: RUNS, seed: 14 },
    );
  });

  it("epoch log", () => {
    const log = image.slice(
      layout.epochLogOffset,
      layout.epochLogOffset + EPOCH_LOG_SECTORS * SECTOR,
    );
    expect(parseEpochLog(log, layout.epochLogOffset).map((r) => r.epoch)).toEqual([1, 2]);
    fc.assert(
      fc.property(edits(3 * 32), (changes) => {
        withEdits(log, changes, false, -1, (b) =>
          expectTyped(() => parseEpochLog(b, layout.epochLogOffset)),
        );
      }),
      { numRuns: RUNS, seed: 15 },
    );
  });

  it("whole volumes: check reports problems as records and never throws", async () => {
    const metadataEnd = layout.dataOffset;
    await fc.assert(
      fc.asyncProperty(edits(metadataEnd), fc.boolean(), async (changes, shorten) => {
        const bytes = image.slice();
        for (const [at, value] of changes) bytes[at] = value;
        const { lun } = memoryLun(shorten ? bytes.subarray(0, changes[0]?.[0] ?? 0) : bytes);
        const report = await checkVolume(lun);
        expect(report.ok).toBe(report.problems.length === 0);
        for (const p of report.problems) expect(p.message.length).toBeGreaterThan(0);
      }),
      { numRuns: 1000, seed: 16 },
    );
  });
});
