import { describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { EPOCH_RECORD_BYTES, encodeEpochRecord } from "../src/csv/epoch-log.js";
import { encodeFileEntry } from "../src/csv/file-entry.js";
import { EPOCH_LOG_SECTORS, SECTOR, type VolumeLayout } from "../src/csv/layout.js";
import type { Lun } from "../src/csv/lun.js";
import { Volume } from "../src/csv/volume.js";
import type { MemoryFile } from "../src/storage/block-file.js";
import { DyingLun, memoryLun } from "./support/csv.js";

/*
 * `hvlab csv check` (docs/csv.md, "The volume on the LUN"): each rule the
 * check enforces is broken on purpose, one at a time, on a small in-memory
 * volume, and the report must name exactly that problem at the byte of the
 * LUN that holds it.
 */

const MiB = 1 << 20;
const CLUSTER = 4096;
const small = { clusterBytes: CLUSTER, fileSlots: 8, journalSectors: 64 };

async function formatted(): Promise<{ lun: Lun; file: MemoryFile; volume: Volume }> {
  const { lun, file } = memoryLun(2 * MiB);
  const volume = await Volume.format(lun, small);
  await volume.takeOver(1);
  return { lun, file, volume };
}

/** Sets or clears data cluster `c`'s bit in the allocation bitmap (most significant bit first). */
function setBit(file: MemoryFile, l: VolumeLayout, c: number, value: 0 | 1): void {
  const at = l.bitmapOffset + (c >>> 3);
  const byte = file.contents()[at] ?? 0;
  const mask = 0x80 >>> (c & 7);
  file.write(Uint8Array.of(value ? byte | mask : byte & ~mask), at);
}

/** Rewrites the epoch log region with `edit` applied to it. */
function editEpochLog(file: MemoryFile, l: VolumeLayout, edit: (log: Uint8Array) => void): void {
  const bytes = EPOCH_LOG_SECTORS * SECTOR;
  const log = file.contents().slice(l.epochLogOffset, l.epochLogOffset + bytes);
  edit(log);
  file.write(log, l.epochLogOffset);
}

/** `inner` with bytes `[from, to)` unreadable, as a disk with a medium error there. */
function withUnreadable(inner: Lun, from: number, to: number): Lun {
  return {
    name: inner.name,
    bytes: inner.bytes,
    read: (offset, length) =>
      offset < to && offset + length > from
        ? Promise.reject(new Error(`medium error at byte ${offset}`))
        : inner.read(offset, length),
    write: (offset, data) => inner.write(offset, data),
    flush: () => inner.flush(),
  };
}

describe("csv check: it never writes to the volume", () => {
  // docs/csv.md: a pending transaction is replayed by the next coordinator;
  // the check applies it to its copy in memory only and leaves the LUN as it was.
  it("reports a pending transaction as applied in memory and leaves every byte of the LUN", async () => {
    const { lun, file, volume } = await formatted();
    const sequence = volume.generation + 1;
    // The coordinator dies right after its journal write: header, image and commit are whole.
    const dying = await Volume.open(new DyingLun(lun, 1));
    await expect(dying.create("vm1.vhd", CLUSTER)).rejects.toThrow("killed");
    const before = file.contents().slice();
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([]);
    expect(report.journal).toEqual({ state: "pending", sequence, epoch: 1, node: 1 });
    expect(report.generation).toBe(sequence);
    expect(report.files).toBe(1);
    expect(Buffer.from(file.contents()).equals(Buffer.from(before))).toBe(true);
  });
});

describe("csv check: a volume that does not open", () => {
  // docs/csv.md, "File table": names are unique on the flat volume. Opening
  // refuses a second slot with the same name; that is no one field's fault,
  // so the problem is the volume's as a whole (offset -1).
  it("reports a name held by two slots at offset -1", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("vm1.vhd", CLUSTER);
    const l = volume.layout;
    file.write(
      file.contents().slice(l.fileTableOffset, l.fileTableOffset + SECTOR),
      l.fileTableOffset + SECTOR,
    );
    const report = await checkVolume(lun);
    expect(report).toEqual({
      lun: lun.name,
      ok: false,
      problems: [
        { offset: -1, message: expect.stringMatching(/"vm1\.vhd" is already in another slot/) },
      ],
    });
  });
});

describe("csv check: clusters and the allocation bitmap", () => {
  // docs/csv.md, "Allocation bitmap": the bitmap is the union of the files'
  // extents; usedClusters counts its set bits over the data area.
  it("counts the clusters the files hold", async () => {
    const { lun, volume } = await formatted();
    await volume.create("vm1.vhd", 10_000);
    await volume.create("vm2.vhd", CLUSTER);
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([]);
    expect(report.files).toBe(2);
    expect(report.usedClusters).toBe(Math.ceil(10_000 / CLUSTER) + 1);
    expect(report.dataClusters).toBe(volume.layout.dataClusters);
  });

  // No cluster is owned twice. The problem sits at the cluster's bytes in the
  // data area, and names the file that held it first, whichever slot that is.
  it("names both owners of a cluster claimed by the third file and the second", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("a", CLUSTER);
    const b = await volume.create("b", CLUSTER);
    await volume.create("c", CLUSTER);
    const l = volume.layout;
    const shared = b.extents[0]?.first ?? -1;
    expect(shared).toBe(1);
    const entryC = volume.list()[2];
    if (!entryC) throw new Error("c has no entry");
    const lost = entryC.extents[0]?.first ?? -1;
    file.write(
      encodeFileEntry({ ...entryC, extents: [{ first: shared, count: 1 }] }),
      l.fileTableOffset + 2 * SECTOR,
    );
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: l.dataOffset + shared * l.clusterBytes,
        message: `cluster ${shared} is owned by "b" and "c"`,
      },
      {
        offset: l.bitmapOffset + (lost >>> 3),
        message: `cluster ${lost} is marked allocated but no file holds it (leaked)`,
      },
    ]);
  });

  // A set bit no file's extent covers is a leak, reported at the bitmap byte holding it.
  it("reports a leaked cluster at its bitmap byte", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("a", CLUSTER);
    const l = volume.layout;
    const leaked = 20;
    setBit(file, l, leaked, 1);
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: l.bitmapOffset + Math.floor(leaked / 8),
        message: `cluster ${leaked} is marked allocated but no file holds it (leaked)`,
      },
    ]);
    expect(report.usedClusters).toBe(2);
  });

  // A cluster in a file's extents whose bit is clear could be handed to
  // another file: the problem names the file that holds it.
  it("names the file holding a cluster marked free", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("a", CLUSTER);
    const b = await volume.create("b", CLUSTER);
    const l = volume.layout;
    const c = b.extents[0]?.first ?? -1;
    expect(c).toBe(1);
    setBit(file, l, c, 0);
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: l.bitmapOffset + Math.floor(c / 8),
        message: `cluster ${c} is held by "b" but marked free`,
      },
    ]);
    expect(report.usedClusters).toBe(1);
  });

  // docs/csv.md, "Allocation bitmap": bits past the data area are zero. The
  // bitmap is sized for every cluster of the volume, so it has spare bits
  // from the first one past the data area to the end of its last sector.
  it("reports set bits past the data area, the first and the last of them, and counts neither", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("a", CLUSTER);
    const l = volume.layout;
    const last = l.bitmapSectors * SECTOR * 8 - 1;
    expect(l.dataClusters).toBeLessThan(last);
    for (const c of [l.dataClusters, last]) setBit(file, l, c, 1);
    const report = await checkVolume(lun);
    expect(report.problems).toEqual(
      [l.dataClusters, last].map((c) => ({
        offset: l.bitmapOffset + Math.floor(c / 8),
        message: `bit ${c} is past the ${l.dataClusters} data clusters and must be zero`,
      })),
    );
    expect(report.usedClusters).toBe(1);
  });
});

describe("csv check: the epoch log", () => {
  // docs/csv.md, "Epoch log": a record with nonzero reserved bytes does not
  // parse; the check reports it at that field, and then finds no last term.
  it("reports a record that does not parse at its field", async () => {
    const { lun, file, volume } = await formatted();
    const l = volume.layout;
    const reserved = l.epochLogOffset + 1 * EPOCH_RECORD_BYTES + 12;
    file.write(Uint8Array.of(1), reserved);
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      { offset: reserved, message: expect.stringMatching(/^epoch record 1 reserved at offset/) },
      { offset: 40, message: "the superblock's epoch 1 (node 1) is not the epoch log's last term" },
    ]);
    expect(report.terms).toBe(0);
  });

  // The superblock's epoch (at byte 40) is the log's last term; a volume in
  // epoch 1 whose log is empty has no last term to name.
  it("reports a coordinated volume whose log holds no term", async () => {
    const { lun, file, volume } = await formatted();
    editEpochLog(file, volume.layout, (log) => log.fill(0));
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      { offset: 40, message: "the superblock's epoch 1 (node 1) is not the epoch log's last term" },
    ]);
    expect(report.terms).toBe(0);
  });

  // The last term must be the superblock's epoch, even when the same node held both.
  it("reports a last term of an older epoch held by the same node", async () => {
    const { lun, file, volume } = await formatted();
    expect(await volume.takeOver(1)).toBe(2);
    editEpochLog(file, volume.layout, (log) =>
      log.fill(0, 2 * EPOCH_RECORD_BYTES, 3 * EPOCH_RECORD_BYTES),
    );
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: 40,
        message: "the superblock's epoch 2 (node 1) is not the epoch log's last term (1, node 1)",
      },
    ]);
  });

  // ... and it must be held by the superblock's coordinator.
  it("reports a last term of the same epoch held by another node", async () => {
    const { lun, file, volume } = await formatted();
    const [term] = volume.epochs();
    if (!term) throw new Error("no term");
    editEpochLog(file, volume.layout, (log) => encodeEpochRecord(log, { ...term, node: 4 }));
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: 40,
        message: "the superblock's epoch 1 (node 1) is not the epoch log's last term (1, node 4)",
      },
    ]);
  });

  // A term is opened by a transaction the superblock has applied, so the
  // last term cannot start after the volume's generation.
  it("reports a last term that starts after the volume's generation", async () => {
    const { lun, file, volume } = await formatted();
    await volume.create("a", CLUSTER);
    const [term] = volume.epochs();
    if (!term) throw new Error("no term");
    const start = volume.generation + 5;
    editEpochLog(file, volume.layout, (log) =>
      encodeEpochRecord(log, { ...term, firstGeneration: start }),
    );
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([
      {
        offset: volume.layout.epochLogOffset,
        message: `epoch 1 starts at generation ${start}, after the volume's ${volume.generation}`,
      },
    ]);
  });
});

describe("csv check: every file reads back", () => {
  // The check reads every file's clusters; one that cannot be read is the
  // file's problem (offset -1: the LUN refused the read, no field is wrong),
  // and the other files are still checked.
  it("names the file whose cluster the LUN cannot read, with the LUN's reason", async () => {
    const { lun, volume } = await formatted();
    const a = await volume.create("a", 3 * CLUSTER);
    await volume.create("b", CLUSTER);
    const l = volume.layout;
    const start = l.dataOffset + (a.extents[0]?.first ?? 0) * l.clusterBytes;
    const bad = start + l.clusterBytes;
    const report = await checkVolume(withUnreadable(lun, bad, bad + SECTOR));
    expect(report.problems).toEqual([
      { offset: -1, message: `"a" does not read back: medium error at byte ${start}` },
    ]);
    expect(report.ok).toBe(false);
  });
});
