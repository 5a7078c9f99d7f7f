import { describe, expect, it } from "vitest";
import { parseEpochLog } from "../src/csv/epoch-log.js";
import { VolumeFileError, VolumeFullError, VolumeRangeError } from "../src/csv/errors.js";
import { encodeFileEntry } from "../src/csv/file-entry.js";
import { encodeTransaction, parseJournal, TxnOperation } from "../src/csv/journal.js";
import { computeLayout, SECTOR } from "../src/csv/layout.js";
import type { Lun } from "../src/csv/lun.js";
import { parseSuperblock } from "../src/csv/superblock.js";
import { type FileMap, mapFileRange, StaleEpochError, Volume } from "../src/csv/volume.js";
import type { MemoryFile } from "../src/storage/block-file.js";
import { expectSameBytes } from "./support/bytes.js";
import { DyingLun, memoryLun } from "./support/csv.js";
import { LoggedLun } from "./support/csv-logged-lun.js";
import { rejection } from "./support/refusal.js";

/*
 * The volume (docs/csv.md, "The volume on the LUN"): how a format lays it
 * down, how opening reads the journal, how each metadata operation is staged
 * into one journal transaction, how clusters are allocated, and how file
 * bytes map to the LUN. Each rule is checked against numbers worked out here
 * from the format's description, not read back from the code under test.
 */

const MiB = 1 << 20;
const CLUSTER = 4096;
const small = { clusterBytes: CLUSTER, fileSlots: 8, journalSectors: 64 };

/** `n` bytes that differ from byte to byte and from seed to seed, never zero. */
function pattern(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => ((i * 7 + (i >>> 8) * 13 + seed * 29) % 255) + 1);
}

/** A 1 MiB volume of 4 KiB clusters, 8 slots, with node 1 as its coordinator. */
async function coordinated(
  options: { fileSlots?: number } = {},
): Promise<{ lun: Lun; file: MemoryFile; volume: Volume }> {
  const { lun, file } = memoryLun(MiB);
  const volume = await Volume.format(lun, { ...small, ...options });
  await volume.takeOver(1);
  return { lun, file, volume };
}

/** The transaction the journal holds now. */
async function journaled(lun: Lun, volume: Volume) {
  const l = volume.layout;
  return parseJournal(await lun.read(l.journalOffset, l.journalSectors * SECTOR), l);
}

describe("mapping a file range to the LUN", () => {
  // A file's bytes are its extents' clusters in order (docs/csv.md, "File
  // table"); a range is cut where one extent ends and the next begins.
  const layout = computeLayout({ volumeBytes: MiB, ...small });
  const D = layout.dataOffset;
  const file: FileMap = {
    name: "vm.vhd",
    size: 6 * CLUSTER - 100,
    extents: [
      { first: 5, count: 2 },
      { first: 1, count: 1 },
      { first: 9, count: 3 },
    ],
  };

  it("cuts a range that crosses two extent boundaries into three pieces", () => {
    // File bytes 8000..13000: 192 bytes at the end of the first extent, all
    // of the second (cluster 1), and 712 bytes from the start of the third.
    expect(mapFileRange(layout, file, 8000, 5000)).toEqual([
      { lunOffset: D + 5 * CLUSTER + 8000, length: 192, bufferOffset: 0 },
      { lunOffset: D + 1 * CLUSTER, length: CLUSTER, bufferOffset: 192 },
      { lunOffset: D + 9 * CLUSTER, length: 712, bufferOffset: 192 + CLUSTER },
    ]);
  });

  it("starts a range at an extent's first byte without an empty piece before it", () => {
    expect(mapFileRange(layout, file, 2 * CLUSTER, CLUSTER)).toEqual([
      { lunOffset: D + CLUSTER, length: CLUSTER, bufferOffset: 0 },
    ]);
    expect(mapFileRange(layout, file, 3 * CLUSTER, 10)).toEqual([
      { lunOffset: D + 9 * CLUSTER, length: 10, bufferOffset: 0 },
    ]);
  });

  it("maps the whole file, its last byte, and an empty range at its end", () => {
    expect(mapFileRange(layout, file, 0, file.size)).toEqual([
      { lunOffset: D + 5 * CLUSTER, length: 2 * CLUSTER, bufferOffset: 0 },
      { lunOffset: D + CLUSTER, length: CLUSTER, bufferOffset: 2 * CLUSTER },
      { lunOffset: D + 9 * CLUSTER, length: 3 * CLUSTER - 100, bufferOffset: 3 * CLUSTER },
    ]);
    expect(mapFileRange(layout, file, file.size - 1, 1)).toEqual([
      { lunOffset: D + 12 * CLUSTER - 101, length: 1, bufferOffset: 0 },
    ]);
    expect(mapFileRange(layout, file, file.size, 0)).toEqual([]);
  });

  // A range must lie inside the file: the message names the file, the range and its size.
  it.each([
    [file.size - 1, 2, "bytes 24475..24477"],
    [file.size + 1, 0, "bytes 24477..24477"],
    [-1, 1, "bytes -1..0"],
    [5, -1, "bytes 5..4"],
    [0.5, 1, "bytes 0.5..1.5"],
    [0, 1.5, "bytes 0..1.5"],
    [Number.NaN, 1, "bytes NaN..NaN"],
    [2 ** 53, 0, `bytes ${2 ** 53}..${2 ** 53}`],
  ])("refuses offset %s length %s", (offset, length, range) => {
    expect(() => mapFileRange(layout, file, offset, length)).toThrow(VolumeRangeError);
    expect(() => mapFileRange(layout, file, offset, length)).toThrow(
      `vm.vhd: ${range} are outside its 24476 bytes`,
    );
  });
});

describe("formatting a volume", () => {
  // docs/csv.md: cluster 64 KiB, 256 file slots, 64 journal sectors by
  // default; the volume is the whole LUN rounded down to a cluster.
  it("uses the documented defaults and the LUN rounded down to a cluster", async () => {
    const { lun } = memoryLun(5 * MiB + 1000);
    const v = await Volume.format(lun);
    expect(v.layout).toEqual(
      computeLayout({
        volumeBytes: 5 * MiB,
        clusterBytes: 65536,
        fileSlots: 256,
        journalSectors: 64,
      }),
    );
    expect(v.label).toBe("");
    expect([v.generation, v.epoch, v.coordinator]).toEqual([0, 0, 0]);
    expect(v.journal).toEqual({ state: "empty" });
    expect(v.free).toBe(v.layout.dataClusters);
    expect(v.list()).toEqual([]);
    expect(v.epochs()).toEqual([]);
    expect(v.uuid).toMatch(/^[0-9a-f]{32}$/);
    // The default UUID is random: two volumes do not share it.
    const other = await Volume.format(memoryLun(5 * MiB).lun);
    expect(other.uuid).not.toBe(v.uuid);
  });

  it("takes a volume of exactly the LUN's size and refuses one a cluster larger, naming the LUN", async () => {
    const exact = await Volume.format(memoryLun(MiB).lun, { ...small, volumeBytes: MiB });
    expect(exact.layout.volumeBytes).toBe(MiB);
    const bytes = new Uint8Array(MiB).fill(0xa5);
    const { lun, file } = memoryLun(bytes, "/dev/lun7");
    const error = await rejection(Volume.format(lun, { ...small, volumeBytes: MiB + CLUSTER }));
    expect(error).toBeInstanceOf(VolumeRangeError);
    expect(error.message).toBe(
      `/dev/lun7: a volume of ${MiB + CLUSTER} bytes does not fit its ${MiB} bytes`,
    );
    // Refused before anything is written.
    expect(file.contents().every((b) => b === 0xa5)).toBe(true);
  });

  // The superblock's UUID field is 16 bytes, given as exactly 32 lower-case hex digits.
  it.each([
    ["0123456789ABCDEF0123456789abcdef"],
    ["0123456789abcdef0123456789abcde"],
    ["0123456789abcdef0123456789abcdef0"],
    ["x0123456789abcdef0123456789abcdef"],
    ["0123456789abcdef0123456789abcdefx"],
    ["0123456789abcdef0123456789abcdeg"],
    [""],
  ])("refuses the UUID %j and writes nothing", async (uuid) => {
    const { lun, file } = memoryLun(new Uint8Array(MiB).fill(0xa5));
    const error = await rejection(Volume.format(lun, { ...small, uuid }));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toBe(`volume uuid must be 32 hex digits, not ${JSON.stringify(uuid)}`);
    expect(file.contents().every((b) => b === 0xa5)).toBe(true);
  });

  // "zeroed journal, epoch log, file table and bitmap": every metadata byte
  // after the superblock is zero, also past the first MiB, and the data
  // area is left as it was (file contents are undefined until written).
  it("zeroes every metadata byte up to the data area and leaves the data area alone", async () => {
    const { lun, file } = memoryLun(new Uint8Array(4 * MiB).fill(0xa5));
    const v = await Volume.format(lun, { ...small, fileSlots: 3000, label: "L" });
    const d = v.layout.dataOffset;
    expect(d).toBeGreaterThan(MiB);
    expect(d).toBeLessThan(2 * MiB);
    const bytes = file.contents();
    expect(bytes.subarray(SECTOR, d).every((b) => b === 0)).toBe(true);
    expect(bytes.subarray(d).every((b) => b === 0xa5)).toBe(true);
    const sb = parseSuperblock(bytes.subarray(0, SECTOR), bytes.length);
    expect([sb.generation, sb.epoch, sb.coordinator, sb.label]).toEqual([0, 0, 0, "L"]);
  });
});

describe("opening a volume: what the journal holds", () => {
  // docs/csv.md, "Metadata journal": after a whole commit the journal's
  // transaction has the superblock's generation as its sequence: applied.
  it("reports a committed transaction as applied, with its sequence", async () => {
    const { lun, volume } = await coordinated();
    await volume.create("a", 100);
    const again = await Volume.open(lun);
    expect(again.journal).toEqual({ state: "applied", sequence: 2 });
    expect(again.generation).toBe(2);
    expect(again.free).toBe(volume.layout.dataClusters - 1);
  });

  // A transaction is pending when its sequence is the superblock's
  // generation + 1 and its commit is whole. Without replay (a read-only
  // check) it is applied to the copy in memory only.
  it("applies a pending create in memory without replay, and on the LUN with it", async () => {
    const { lun, file, volume } = await coordinated();
    const dying = await Volume.open(new DyingLun(lun, 1));
    await expect(dying.create("vm1.vhd", 3 * CLUSTER)).rejects.toThrow("killed");
    const before = file.contents().slice();
    const look = await Volume.open(lun, { replay: false });
    expect(look.journal).toEqual({ state: "pending", sequence: 2, epoch: 1, node: 1 });
    expect(look.generation).toBe(2);
    expect(look.lookup("vm1.vhd")).toEqual({
      name: "vm1.vhd",
      size: 3 * CLUSTER,
      extents: [{ first: 0, count: 3 }],
    });
    expect(look.free).toBe(volume.layout.dataClusters - 3);
    expectSameBytes(file.contents(), before, "LUN after a read-only open");
    const replayed = await Volume.open(lun);
    expect(replayed.journal.state).toBe("pending");
    expect(replayed.list()).toEqual(look.list());
    const after = await Volume.open(lun);
    expect(after.journal).toEqual({ state: "applied", sequence: 2 });
    expect(after.lookup("vm1.vhd").extents).toEqual([{ first: 0, count: 3 }]);
    expect(after.bit(2)).toBe(1);
    expect(after.bit(3)).toBe(0);
  });

  // A pending takeover moves the superblock's term to its epoch and node.
  it("moves the term to a pending takeover's epoch and node", async () => {
    const { lun } = await coordinated();
    const dying = await Volume.open(new DyingLun(lun, 1));
    await expect(dying.takeOver(7, 5000)).rejects.toThrow("killed");
    const look = await Volume.open(lun, { replay: false });
    expect(look.journal).toEqual({ state: "pending", sequence: 2, epoch: 2, node: 7 });
    expect([look.epoch, look.coordinator, look.generation]).toEqual([2, 7, 2]);
    expect(look.epochs().at(-1)).toEqual({
      epoch: 2,
      node: 7,
      firstGeneration: 2,
      takenAtMs: 5000,
    });
  });

  // Only a newer epoch moves the term: a transaction of the current epoch
  // leaves the coordinator the superblock names.
  it("keeps the coordinator for a pending transaction of the current epoch", async () => {
    const { lun, volume } = await coordinated();
    const entry = encodeFileEntry({
      name: "x",
      size: 0,
      extents: [],
      createdGeneration: 2,
      writtenEpoch: 1,
    });
    await lun.write(
      volume.layout.journalOffset,
      encodeTransaction({
        sequence: 2,
        epoch: 1,
        node: 9,
        operation: TxnOperation.create,
        images: [{ sector: volume.layout.fileTableOffset / SECTOR, bytes: entry }],
      }),
    );
    const next = await Volume.open(lun);
    expect(next.journal).toEqual({ state: "pending", sequence: 2, epoch: 1, node: 9 });
    expect([next.epoch, next.coordinator, next.generation]).toEqual([1, 1, 2]);
    expect(next.list().map((f) => f.name)).toEqual(["x"]);
  });

  // A transaction neither applied nor next (a sequence beyond generation +
  // 1), or one of an older epoch (a fenced coordinator's), is stale: never replayed.
  it.each([
    { sequence: 4, epoch: 2, why: "a sequence past the next" },
    { sequence: 3, epoch: 1, why: "an older epoch" },
  ])("reports $why as stale and does not apply it", async ({ sequence, epoch }) => {
    const { lun, file } = memoryLun(MiB);
    const v = await Volume.format(lun, small);
    await v.takeOver(1);
    await v.takeOver(2);
    const entry = encodeFileEntry({
      name: "late",
      size: 0,
      extents: [],
      createdGeneration: sequence,
      writtenEpoch: epoch,
    });
    await lun.write(
      v.layout.journalOffset,
      encodeTransaction({
        sequence,
        epoch,
        node: 4,
        operation: TxnOperation.create,
        images: [{ sector: v.layout.fileTableOffset / SECTOR, bytes: entry }],
      }),
    );
    const before = file.contents().slice();
    const next = await Volume.open(lun);
    expect(next.journal).toEqual({ state: "stale", sequence, epoch, node: 4 });
    expect([next.generation, next.epoch, next.coordinator]).toEqual([2, 2, 2]);
    expect(next.list()).toEqual([]);
    expectSameBytes(file.contents(), before, "LUN after opening a stale journal");
  });
});

describe("metadata sectors as the volume holds them", () => {
  // Transaction targets are sectors of the epoch log, the file table and the
  // bitmap only (docs/csv.md, "Metadata journal"): not the superblock, the
  // journal, the lease sector nor the padding before the data area.
  it("serves each metadata region's first and last sector and refuses the ones around them", async () => {
    const { volume } = await coordinated();
    const l = volume.layout;
    const log = l.epochLogOffset / SECTOR;
    const table = l.fileTableOffset / SECTOR;
    const bitmap = l.bitmapOffset / SECTOR;
    for (const s of [
      log,
      log + 31,
      table,
      table + l.fileSlots - 1,
      bitmap,
      bitmap + l.bitmapSectors - 1,
    ])
      expect(volume.metadataSector(s).length).toBe(SECTOR);
    // The small layout pads the bitmap to a cluster: its next sector is no region's.
    expect(l.dataOffset).toBeGreaterThan(l.bitmapOffset + l.bitmapSectors * SECTOR);
    for (const s of [0, log - 1, log + 32, bitmap + l.bitmapSectors, l.dataOffset / SECTOR])
      expect(() => volume.metadataSector(s)).toThrow(`sector ${s} is not a metadata sector`);
  });

  it("holds a created file's entry in its slot's sector", async () => {
    const { volume } = await coordinated();
    await volume.create("a", 10);
    await volume.create("b", 10);
    const [a, b] = volume.list();
    const table = volume.layout.fileTableOffset / SECTOR;
    expectSameBytes(volume.metadataSector(table), encodeFileEntry(a ?? expect.fail("no a")));
    expectSameBytes(volume.metadataSector(table + 1), encodeFileEntry(b ?? expect.fail("no b")));
  });
});

describe("the allocation bitmap", () => {
  // docs/csv.md, "Allocation bitmap": one bit per data cluster, most
  // significant bit first, 1 = allocated; a delete clears them again.
  it("sets bits most significant first on the LUN and clears them on delete", async () => {
    const { file, volume } = await coordinated();
    const at = volume.layout.bitmapOffset;
    await volume.create("nine", 9 * CLUSTER);
    expect([...file.contents().subarray(at, at + 3)]).toEqual([0xff, 0x80, 0]);
    expect([8, 9].map((c) => volume.bit(c))).toEqual([1, 0]);
    await volume.resize("nine", 10 * CLUSTER);
    expect([...file.contents().subarray(at, at + 3)]).toEqual([0xff, 0xc0, 0]);
    // A cluster past the bitmap reads as free.
    expect(volume.bit(8 * volume.layout.bitmapSectors * SECTOR + 5)).toBe(0);
    await volume.delete("nine");
    expect(
      file
        .contents()
        .subarray(at, at + 3)
        .every((b) => b === 0),
    ).toBe(true);
    expect(volume.free).toBe(volume.layout.dataClusters);
  });
});

describe("taking over the coordinator role", () => {
  // docs/csv.md, "Epoch log": one 32-byte record per term in slot `epoch mod
  // 512` (16 per sector): epoch, node, reserved 0, the generation of the
  // transaction that opened the term, and the takeover's time.
  it("records the term at its slot of the epoch log in its own transaction", async () => {
    const { lun, file } = memoryLun(MiB);
    const v = await Volume.format(lun, small);
    await v.takeOver(1, 1000);
    await v.create("a", 1);
    expect(await v.takeOver(3, 1_234_567_890_123)).toBe(2);
    expect([v.epoch, v.coordinator, v.generation]).toEqual([2, 3, 3]);
    const at = v.layout.epochLogOffset + 2 * 32;
    const view = new DataView(file.contents().buffer, at, 32);
    expect(view.getBigUint64(0, true)).toBe(2n);
    expect(view.getUint32(8, true)).toBe(3);
    expect(view.getUint32(12, true)).toBe(0);
    expect(view.getBigUint64(16, true)).toBe(3n);
    expect(view.getBigUint64(24, true)).toBe(1_234_567_890_123n);
    const txn = await journaled(lun, v);
    expect(txn?.operation).toBe(TxnOperation.takeover);
    expect([txn?.sequence, txn?.epoch, txn?.node]).toEqual([3, 2, 3]);
    expect(txn?.images.map((i) => i.sector)).toEqual([v.layout.epochLogOffset / SECTOR]);
  });

  it("fills the epoch log across its sectors, each term after the last", async () => {
    const { lun } = memoryLun(MiB);
    const v = await Volume.format(lun, small);
    for (let e = 1; e <= 18; e++) expect(await v.takeOver(e * 3, e * 10)).toBe(e);
    const terms = (await Volume.open(lun)).epochs();
    expect(terms).toEqual(
      Array.from({ length: 18 }, (_, i) => ({
        epoch: i + 1,
        node: (i + 1) * 3,
        firstGeneration: i + 1,
        takenAtMs: (i + 1) * 10,
      })),
    );
    // Epochs 16 and 17 are in the log's second sector.
    const log = await lun.read(v.layout.epochLogOffset, 32 * SECTOR);
    expect(parseEpochLog(log, v.layout.epochLogOffset)).toEqual(terms);
    expect(new DataView(log.buffer, log.byteOffset + SECTOR + 32).getBigUint64(0, true)).toBe(17n);
  });
});

describe("a replaced coordinator does not write", () => {
  // docs/csv.md: before each transaction the coordinator reads the
  // superblock back and refuses if the epoch or generation on the LUN is not
  // the one it holds; the message says what it found and what it held.
  it("refuses an operation after a newer term, naming both epochs and the new holder", async () => {
    const { lun, file, volume } = await coordinated();
    const second = await Volume.open(lun);
    await second.takeOver(5);
    const before = file.contents().slice();
    for (const run of [volume.create("g", 1), volume.takeOver(1)]) {
      const error = await rejection(run);
      expect(error).toBeInstanceOf(StaleEpochError);
      expect(error.name).toBe("StaleEpochError");
      expect(error.message).toBe(
        "the volume is in epoch 2 (node 5); this coordinator holds epoch 1",
      );
    }
    expectSameBytes(file.contents(), before, "LUN after refused writes");
  });

  it("refuses an operation or a takeover from a copy that missed a transaction of its own term", async () => {
    const { lun, file, volume } = await coordinated();
    const lagging = await Volume.open(lun);
    await volume.create("a", 1);
    const before = file.contents().slice();
    for (const run of [lagging.create("b", 1), lagging.takeOver(2)]) {
      const error = await rejection(run);
      expect(error).toBeInstanceOf(StaleEpochError);
      expect(error.message).toBe("the volume is at generation 2; this coordinator expected 1");
    }
    expectSameBytes(file.contents(), before, "LUN after refused writes");
    // A copy that is up to date takes over from the current term.
    const fresh = await Volume.open(lun);
    expect(await fresh.takeOver(2)).toBe(2);
  });
});

describe("file operations", () => {
  // A file's entry records the generation that created it and the epoch that
  // last wrote it (docs/csv.md, "File table"); each operation is journaled
  // with its own operation code.
  it("creates, extends, truncates and deletes with their entries and operation codes", async () => {
    const { lun, volume } = await coordinated();
    await volume.create("a", 0);
    expect(volume.list()).toEqual([
      { name: "a", size: 0, extents: [], createdGeneration: 2, writtenEpoch: 1 },
    ]);
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.create);
    await volume.takeOver(2);
    await volume.resize("a", 1);
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.extend);
    // The same cluster count is still an extend, and rewrites the entry in the new epoch.
    await volume.resize("a", CLUSTER);
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.extend);
    expect(volume.list()).toEqual([
      {
        name: "a",
        size: CLUSTER,
        extents: [{ first: 0, count: 1 }],
        createdGeneration: 2,
        writtenEpoch: 2,
      },
    ]);
    await volume.resize("a", CLUSTER - 1);
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.extend);
    await volume.resize("a", 0);
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.truncate);
    expect(volume.lookup("a").extents).toEqual([]);
    await volume.delete("a");
    expect((await journaled(lun, volume))?.operation).toBe(TxnOperation.delete);
    expect(volume.list()).toEqual([]);
    expect(volume.generation).toBe(8);
  });

  it("refuses a size that is not a whole number of bytes, an existing name and a missing file", async () => {
    const { volume } = await coordinated();
    await volume.create("a", 1);
    for (const size of [-1, 1.5, Number.NaN, 2 ** 53]) {
      await expect(volume.create("b", size)).rejects.toThrow(
        `file size must be a whole number of bytes, not ${size}`,
      );
      await expect(volume.resize("a", size)).rejects.toThrow(
        `file size must be a whole number of bytes, not ${size}`,
      );
    }
    const exists = await rejection(volume.create("a", 1));
    expect(exists).toBeInstanceOf(VolumeFileError);
    expect(exists.message).toBe('"a" already exists on the volume');
    for (const run of [volume.resize("nope", 1), volume.delete("nope")]) {
      const error = await rejection(run);
      expect(error).toBeInstanceOf(VolumeFileError);
      expect(error.message).toBe('no file "nope" on the volume');
    }
    expect(() => volume.lookup("nope")).toThrow('no file "nope" on the volume');
    expect(volume.generation).toBe(2);
  });

  // A delete frees the slot (512 zero bytes) and the lowest free slot is
  // taken next; a full table is refused with its size.
  it("reuses the lowest free slot and refuses a full file table", async () => {
    const { file, volume } = await coordinated({ fileSlots: 3 });
    for (const name of ["a", "b", "c"]) await volume.create(name, 1);
    await volume.delete("a");
    const slot0 = volume.layout.fileTableOffset;
    expect(
      file
        .contents()
        .subarray(slot0, slot0 + SECTOR)
        .every((b) => b === 0),
    ).toBe(true);
    expect(volume.list().map((f) => f.name)).toEqual(["b", "c"]);
    await volume.create("d", 1);
    expect(volume.list().map((f) => f.name)).toEqual(["d", "b", "c"]);
    const error = await rejection(volume.create("e", 1));
    expect(error).toBeInstanceOf(VolumeFullError);
    expect(error.message).toBe("the file table's 3 slots are all used");
    expect((await Volume.open(memoryLun(file.contents()).lun)).list()).toEqual(volume.list());
  });

  // A shrink keeps the file's first clusters in order and frees the rest.
  it("shrinks across extents, keeping the first clusters and freeing the tail", async () => {
    const { lun, volume } = await coordinated();
    const total = volume.layout.dataClusters;
    await volume.create("a", 2 * CLUSTER);
    await volume.create("b", CLUSTER);
    expect((await volume.resize("a", 5 * CLUSTER)).extents).toEqual([
      { first: 0, count: 2 },
      { first: 3, count: 3 },
    ]);
    expect((await volume.resize("a", 3 * CLUSTER - 7)).extents).toEqual([
      { first: 0, count: 2 },
      { first: 3, count: 1 },
    ]);
    expect([3, 4, 5].map((c) => volume.bit(c))).toEqual([1, 0, 0]);
    expect(volume.free).toBe(total - 4);
    expect((await volume.resize("a", 2 * CLUSTER)).extents).toEqual([{ first: 0, count: 2 }]);
    expect(volume.free).toBe(total - 3);
    const reopened = await Volume.open(lun);
    expect(reopened.free).toBe(total - 3);
    expect(reopened.list()).toEqual(volume.list());
  });
});

describe("allocating clusters", () => {
  // docs/csv.md, "Allocation bitmap": first fit from a rotating hint, a
  // growing file's new clusters merged into its last extent when contiguous.
  it("merges contiguous growth into the last extent and goes on from the hint", async () => {
    const { volume } = await coordinated();
    await volume.create("a", 1);
    expect((await volume.resize("a", 3 * CLUSTER)).extents).toEqual([{ first: 0, count: 3 }]);
    await volume.create("b", 1);
    await volume.delete("a");
    // Clusters 0..2 are free again, but allocation goes on after b.
    expect((await volume.create("c", 1)).extents).toEqual([{ first: 4, count: 1 }]);
  });

  it("wraps from the end of the data area to its start", async () => {
    const { volume } = await coordinated();
    const total = volume.layout.dataClusters;
    await volume.create("big", (total - 1) * CLUSTER);
    await volume.delete("big");
    expect((await volume.create("x", 3 * CLUSTER)).extents).toEqual([
      { first: total - 1, count: 1 },
      { first: 0, count: 2 },
    ]);
    expect(volume.bit(total - 1)).toBe(1);
    expect(volume.free).toBe(total - 3);
  });

  // Every free cluster can be given out; one more is refused with what was
  // asked and what is free.
  it("fills the data area exactly and refuses one cluster more", async () => {
    const { volume } = await coordinated();
    const total = volume.layout.dataClusters;
    const over = await rejection(volume.create("over", (total + 1) * CLUSTER));
    expect(over).toBeInstanceOf(VolumeFullError);
    expect(over.message).toBe(`${total + 1} clusters asked, ${total} free of ${total}`);
    expect((await volume.create("all", total * CLUSTER)).extents).toEqual([
      { first: 0, count: total },
    ]);
    expect(volume.free).toBe(0);
    const more = await rejection(volume.create("one", 1));
    expect(more.message).toBe(`1 clusters asked, 0 free of ${total}`);
    expect((await volume.create("empty", 0)).extents).toEqual([]);
  });

  // "A file whose space would need more than 43 extents is refused as too fragmented."
  it("gives a file 43 scattered extents and refuses a 44th", async () => {
    const { volume } = await coordinated({ fileSlots: 96 });
    const total = volume.layout.dataClusters;
    for (let i = 0; i < 88; i++) await volume.create(`s${i}`, 1);
    await volume.create("rest", (total - 88) * CLUSTER);
    for (let i = 0; i < 88; i += 2) await volume.delete(`s${i}`);
    expect(volume.free).toBe(44);
    const error = await rejection(volume.create("frag", 44 * CLUSTER));
    expect(error).toBeInstanceOf(VolumeFullError);
    expect(error.message).toBe(
      "the free space is too fragmented: the file would need more than 43 extents",
    );
    expect(volume.free).toBe(44);
    const ok = await volume.create("frag", 43 * CLUSTER);
    expect(ok.extents).toEqual(Array.from({ length: 43 }, (_, i) => ({ first: 2 * i, count: 1 })));
    expect(volume.free).toBe(1);
  });
});

describe("committing a transaction", () => {
  // docs/csv.md: three flushed steps: (1) header, images and commit in one
  // write; (2) the images in place; (3) the superblock.
  it("writes the journal, then the images in place, then the superblock, each flushed", async () => {
    const lun = new LoggedLun(MiB);
    const v = await Volume.format(lun, small);
    await v.takeOver(1);
    const from = lun.steps.length;
    await v.create("a", CLUSTER);
    const l = v.layout;
    // The bitmap sector is staged before the file's slot.
    expect(lun.steps.slice(from)).toEqual([
      ["write", l.journalOffset, 4 * SECTOR],
      ["flush"],
      ["write", l.bitmapOffset, SECTOR],
      ["write", l.fileTableOffset, SECTOR],
      ["flush"],
      ["write", 0, SECTOR],
      ["flush"],
    ]);
  });

  // A transaction holds at most 58 sector images (docs/csv.md: n is 1..58);
  // an operation touching more is refused before anything is written.
  it("takes an operation of 58 sectors and refuses one of 59", async () => {
    const clusters = 240_000;
    const lun = new LoggedLun(clusters * CLUSTER);
    const v = await Volume.format(lun, { clusterBytes: CLUSTER, fileSlots: 1, journalSectors: 64 });
    await v.takeOver(1);
    const perSector = 8 * SECTOR;
    // 57 bitmap sectors and the file's slot.
    await v.create("a", 57 * perSector * CLUSTER);
    expect((await journaled(lun, v))?.images.length).toBe(58);
    await v.delete("a");
    const from = lun.steps.length;
    const error = await rejection(v.create("b", (57 * perSector + 1) * CLUSTER));
    expect(error).toBeInstanceOf(VolumeFullError);
    expect(error.message).toBe("one operation touches 59 metadata sectors; a transaction holds 58");
    expect(lun.steps.slice(from)).toEqual([]);
    expect(v.free).toBe(v.layout.dataClusters);
    expect(v.generation).toBe(3);
  });
});

describe("file data through the extents", () => {
  // Data is not journaled: a node writes a file's bytes straight to its
  // clusters (docs/csv.md, "Metadata journal").
  it("writes each piece at its cluster on the LUN and reads the same bytes back", async () => {
    const { file, volume } = await coordinated();
    await volume.create("a", 2 * CLUSTER);
    await volume.create("b", CLUSTER);
    const a = await volume.resize("a", 4 * CLUSTER);
    expect(a.extents).toEqual([
      { first: 0, count: 2 },
      { first: 3, count: 2 },
    ]);
    const data = pattern(2 * CLUSTER + 300, 3);
    await volume.write(a, CLUSTER + 100, data);
    const d = volume.layout.dataOffset;
    const lunBytes = file.contents();
    expectSameBytes(
      lunBytes.subarray(d + CLUSTER + 100, d + 2 * CLUSTER),
      data.subarray(0, CLUSTER - 100),
      "end of the first extent",
    );
    expectSameBytes(
      lunBytes.subarray(d + 3 * CLUSTER, d + 4 * CLUSTER + 400),
      data.subarray(CLUSTER - 100),
      "start of the second extent",
    );
    // b's cluster between the two extents is untouched.
    expect(lunBytes.subarray(d + 2 * CLUSTER, d + 3 * CLUSTER).every((x) => x === 0)).toBe(true);
    expectSameBytes(await volume.read(a, CLUSTER + 100, data.length), data, "read back");
    expectSameBytes(
      await volume.read(a, 2 * CLUSTER - 1, 2),
      data.subarray(CLUSTER - 101, CLUSTER - 99),
      "read across the extents",
    );
  });
});
