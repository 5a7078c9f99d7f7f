import { describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { VolumeFileError, VolumeFullError, VolumeRangeError } from "../src/csv/errors.js";
import { SECTOR } from "../src/csv/layout.js";
import { StaleEpochError, Volume } from "../src/csv/volume.js";
import { DyingLun, memoryLun } from "./support/csv.js";

const MiB = 1 << 20;
const small = { clusterBytes: 4096, fileSlots: 8, journalSectors: 64 };

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >>> 9)) & 0xff;
  return out;
}

describe("csv volume", () => {
  it("formats an empty volume that checks clean and reopens with the same layout", async () => {
    const { lun } = memoryLun(4 * MiB);
    const v = await Volume.format(lun, {
      ...small,
      label: "Volume1",
      uuid: "00112233445566778899aabbccddeeff",
    });
    expect(v.generation).toBe(0);
    expect(v.epoch).toBe(0);
    expect(v.label).toBe("Volume1");
    expect(v.layout.dataOffset % 4096).toBe(0);
    expect(v.free).toBe(v.layout.dataClusters);
    const again = await Volume.open(lun);
    expect(again.layout).toEqual(v.layout);
    expect(again.uuid).toBe("00112233445566778899aabbccddeeff");
    const report = await checkVolume(lun);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it("creates, writes through the extents, extends, truncates and deletes files", async () => {
    const { lun } = memoryLun(4 * MiB);
    const v = await Volume.format(lun, small);
    await v.takeOver(1);
    const a = await v.create("vm1.vhd", 10_000);
    expect(a.extents).toEqual([{ first: 0, count: 3 }]);
    const b = await v.create("vm2.vhd", 4096);
    const data = pattern(10_000, 1);
    await v.write(a, 0, data);
    expect(await v.read(a, 0, 10_000)).toEqual(data);
    // Growing a past b's cluster gives it a second extent.
    const a2 = await v.resize("vm1.vhd", 20_000);
    expect(a2.extents.length).toBe(2);
    expect(await v.read(a2, 0, 10_000)).toEqual(data);
    await v.write(a2, 9_000, pattern(11_000, 2));
    expect(await v.read(a2, 9_000, 11_000)).toEqual(pattern(11_000, 2));
    await expect(v.read(a2, 19_999, 2)).rejects.toThrow(VolumeRangeError);
    await expect(v.create("vm2.vhd", 1)).rejects.toThrow(VolumeFileError);
    const a3 = await v.resize("vm1.vhd", 5000);
    expect(a3.extents).toEqual([{ first: 0, count: 2 }]);
    await v.delete(b.name);
    expect(v.list().map((f) => f.name)).toEqual(["vm1.vhd"]);
    expect(v.free).toBe(v.layout.dataClusters - 2);
    const reopened = await Volume.open(lun);
    expect(reopened.list()).toEqual(v.list());
    expect(reopened.generation).toBe(v.generation);
    expect((await checkVolume(lun)).ok).toBe(true);
  });

  it("refuses a full file table and a full data area with what was asked and what is left", async () => {
    const { lun } = memoryLun(MiB);
    const v = await Volume.format(lun, { ...small, fileSlots: 2 });
    await v.takeOver(1);
    await expect(v.create("huge", v.layout.dataClusters * 4096 + 1)).rejects.toThrow(
      /clusters asked, \d+ free/,
    );
    await v.create("a", 1);
    await v.create("b", 1);
    await expect(v.create("c", 1)).rejects.toThrow(VolumeFullError);
    await expect(v.create("", 1)).rejects.toThrow(/1 to 128 bytes/);
    await expect(v.create("x/y", 1)).rejects.toThrow(/NUL, \/ or/);
  });

  it("records each coordinator term in the epoch log, and a replaced coordinator cannot commit", async () => {
    const { lun } = memoryLun(4 * MiB);
    await Volume.format(lun, small);
    const first = await Volume.open(lun);
    expect(await first.takeOver(3)).toBe(1);
    await first.create("f", 100);
    const second = await Volume.open(lun);
    expect(await second.takeOver(5)).toBe(2);
    expect(second.coordinator).toBe(5);
    // The first coordinator still believes it holds epoch 1: it must not write.
    await expect(first.create("g", 100)).rejects.toThrow(StaleEpochError);
    await expect(first.takeOver(3)).rejects.toThrow(StaleEpochError);
    const terms = second.epochs();
    expect(terms.map((t) => [t.epoch, t.node, t.firstGeneration])).toEqual([
      [1, 3, 1],
      [2, 5, 3],
    ]);
    const report = await checkVolume(lun);
    expect(report.ok).toBe(true);
    expect(report.terms).toBe(2);
  });

  it("a coordinator killed at any write leaves a volume the next one replays to before or after the operation", async () => {
    const { lun: base, file } = memoryLun(2 * MiB);
    const v = await Volume.format(base, small);
    await v.takeOver(1);
    await v.create("keep", 9000);
    const before = file.contents().slice();
    // Count the writes an extend does, then kill it after each of them.
    const counting = new DyingLun(base, 1000);
    await (await Volume.open(counting)).resize("keep", 30_000);
    const writes = counting.writes;
    expect(writes).toBeGreaterThanOrEqual(3);
    for (let k = 0; k <= writes; k++) {
      const { lun } = memoryLun(before.slice());
      const dying = new DyingLun(lun, k);
      const coordinator = await Volume.open(dying);
      const outcome = await coordinator.resize("keep", 30_000).then(
        () => "done",
        (e: Error) => e.message,
      );
      expect(outcome).toBe(k < writes ? "killed" : "done");
      const next = await Volume.open(lun);
      const size = next.lookup("keep").size;
      // The journal's commit is the third-to-last group of writes: once it is whole, the change survives.
      expect([9000, 30_000]).toContain(size);
      if (k >= 1) expect(size).toBe(30_000);
      if (k === 0) expect(size).toBe(9000);
      expect(next.journal.state === "pending" ? k >= 1 && k < writes : true).toBe(true);
      const report = await checkVolume(lun);
      expect(report.problems).toEqual([]);
    }
  });

  it("check finds a cluster owned twice, a leaked cluster and a term that overlaps", async () => {
    const { lun, file } = memoryLun(2 * MiB);
    const v = await Volume.format(lun, small);
    await v.takeOver(1);
    await v.create("a", 4096);
    await v.create("b", 4096);
    const clean = file.contents().slice();
    // b's entry pointed at a's cluster (re-checksummed so the entry parses).
    const { encodeFileEntry } = await import("../src/csv/file-entry.js");
    const slotB = v.layout.fileTableOffset + SECTOR;
    file.write(
      encodeFileEntry({
        name: "b",
        size: 4096,
        extents: [{ first: 0, count: 1 }],
        createdGeneration: 3,
        writtenEpoch: 1,
      }),
      slotB,
    );
    let report = await checkVolume(lun);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => p.message).join("\n")).toMatch(
      /cluster 0 is owned by "a" and "b"/,
    );
    expect(report.problems.map((p) => p.message).join("\n")).toMatch(
      /cluster 1 is marked allocated but no file holds it/,
    );
    // A term whose first generation is not after its predecessor's.
    file.write(clean, 0);
    const { encodeEpochRecord } = await import("../src/csv/epoch-log.js");
    const log = await lun.read(v.layout.epochLogOffset, 32 * SECTOR);
    encodeEpochRecord(log, { epoch: 2, node: 9, firstGeneration: 1, takenAtMs: 0 });
    file.write(log, v.layout.epochLogOffset);
    report = await checkVolume(lun);
    expect(report.problems.map((p) => p.message).join("\n")).toMatch(
      /epoch 2 \(node 9\) starts at generation 1.*terms overlap/,
    );
    expect(report.problems.map((p) => p.message).join("\n")).toMatch(
      /superblock's epoch 1 \(node 1\) is not the epoch log's last term/,
    );
  });

  it("a transaction written by a fenced coordinator is never replayed", async () => {
    const { lun } = memoryLun(2 * MiB);
    await Volume.format(lun, small);
    const old = await Volume.open(lun);
    await old.takeOver(1);
    const fresh = await Volume.open(lun);
    await fresh.takeOver(2);
    // The old coordinator's journal write lands (its later writes do not): a
    // transaction of epoch 1 with the next sequence number.
    const { encodeTransaction, TxnOperation } = await import("../src/csv/journal.js");
    const { encodeFileEntry } = await import("../src/csv/file-entry.js");
    const entry = encodeFileEntry({
      name: "late",
      size: 0,
      extents: [],
      createdGeneration: 3,
      writtenEpoch: 1,
    });
    await lun.write(
      fresh.layout.journalOffset,
      encodeTransaction({
        sequence: fresh.generation + 1,
        epoch: 1,
        node: 1,
        operation: TxnOperation.create,
        images: [{ sector: fresh.layout.fileTableOffset / SECTOR, bytes: entry }],
      }),
    );
    const next = await Volume.open(lun);
    expect(next.journal.state).toBe("stale");
    expect(next.list()).toEqual([]);
    const report = await checkVolume(lun);
    expect(report.problems.map((p) => p.message).join("\n")).toMatch(
      /transaction 3 of epoch 1 can never apply/,
    );
  });
});
