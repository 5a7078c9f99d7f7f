/*
 * A disk removed during a guest I/O run and added again, under its name or
 * at its file's path: each attachment keeps its own figures, the removed
 * one's guarantees are checked on its own file before anything else may
 * make that file anew, and the run ends with the VM empty. A disk whose
 * name or file is attached already is refused, naming the holder, before
 * its file is touched.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type IoDisk, prepareDisk, runStorageIo } from "../src/storage/io-run.js";
import type { IoSpec } from "../src/storage/io-spec.js";
import { VirtualMachine } from "../src/storage/vm.js";
import { testTempDir } from "./support/temp.js";

const MiB = 1024 * 1024;

const writes: IoSpec = {
  rw: "write",
  rwmixread: 0,
  bs: 4096,
  iodepth: 2,
  runtimeMs: 300,
  seed: 21,
  verify: true,
};

function raw(dir: string, name: string): IoDisk {
  return { name, path: join(dir, `${name}.img`), create: { type: "raw", size: MiB } };
}

describe("a disk removed and added again", () => {
  it("under its own name: both attachments are reported, and the first's writes read back from its own file", async () => {
    const dir = testTempDir("io-reattach");
    const first = raw(dir, "a");
    // Made anew at the same path, as another type: the removed disk's file
    // must be checked before this add replaces it.
    const again: IoDisk = { ...first, create: { type: "dynamic", size: MiB } };
    const vm = new VirtualMachine("vm-reattach");
    const report = await runStorageIo([first], writes, {
      vm,
      events: [
        { kind: "remove", atMs: 80, disk: first },
        { kind: "add", atMs: 120, disk: again },
      ],
    });
    expect(report.disks.map((d) => [d.disk, d.slot, d.format])).toEqual([
      ["a", "SCSI 0:0", "raw"],
      ["a", "SCSI 0:1", "dynamic"],
    ]);
    const [one, two] = report.disks;
    expect(one?.writes).toBeGreaterThan(0);
    expect(two?.writes).toBeGreaterThan(0);
    expect(two?.startMs).toBeGreaterThan(one?.startMs ?? Number.POSITIVE_INFINITY);
    for (const d of report.disks) expect(d.verifyErrors).toBe(0);
    expect(report.events.map((e) => [e.kind, e.disk, e.slot])).toEqual([
      ["remove", "a", "SCSI 0:0"],
      ["add", "a", "SCSI 0:1"],
    ]);
    const removal = report.events[0];
    // Sequential writes from block 0: every block written is acknowledged.
    expect(removal?.acknowledgedBlocks).toBe(Math.min(one?.writes ?? 0, MiB / writes.bs));
    expect(removal?.acknowledgedBlocks).toBeGreaterThan(0);
    expect(removal?.acknowledgedIntact).toBe(removal?.acknowledgedBlocks);
    expect(removal?.unchangedAfterRemoval).toBe(true);
    expect(removal?.completedAfterRemoval).toBe(0);
    expect(vm.list()).toEqual([]);
  }, 30_000);

  it("under another name at its path: the run ends with both reported and the VM empty", async () => {
    const dir = testTempDir("io-reattach");
    const a = raw(dir, "a");
    const b: IoDisk = { name: "b", path: a.path };
    const vm = new VirtualMachine("vm-repath");
    const report = await runStorageIo([a], writes, {
      vm,
      events: [
        { kind: "remove", atMs: 60, disk: a },
        { kind: "add", atMs: 100, disk: b },
      ],
    });
    expect(report.disks.map((d) => [d.disk, d.slot, d.format])).toEqual([
      ["a", "SCSI 0:0", "raw"],
      ["b", "SCSI 0:1", "existing"],
    ]);
    const removal = report.events.find((e) => e.kind === "remove");
    expect(removal?.acknowledgedBlocks).toBeGreaterThan(0);
    expect(removal?.acknowledgedIntact).toBe(removal?.acknowledgedBlocks);
    // Checked when b was added, before b wrote to the file.
    expect(removal?.unchangedAfterRemoval).toBe(true);
    expect(vm.list()).toEqual([]);
  }, 30_000);
});

describe("a disk that is attached already", () => {
  it("is refused under its name, naming its slot, and the VM is left empty", async () => {
    const dir = testTempDir("io-reattach");
    const a = raw(dir, "a");
    const other: IoDisk = { name: "a", path: join(dir, "other.img") };
    prepareDisk({ ...other, create: { type: "raw", size: MiB } });
    const vm = new VirtualMachine("vm-twice");
    const run = runStorageIo([a], writes, {
      vm,
      events: [{ kind: "add", atMs: 20, disk: other }],
    });
    await expect(run).rejects.toThrow(
      new RangeError("hot add of disk 'a', which is already attached at SCSI 0:0"),
    );
    expect(vm.list()).toEqual([]);
    expect(vm.isRunning).toBe(false);
  }, 30_000);

  it("is refused at its path under another name, before its file is made anew", async () => {
    const dir = testTempDir("io-reattach");
    const a = raw(dir, "a");
    const b: IoDisk = { name: "b", path: a.path, create: { type: "dynamic", size: MiB } };
    const vm = new VirtualMachine("vm-shared");
    const run = runStorageIo(
      [a],
      { ...writes, rw: "read" },
      {
        vm,
        events: [{ kind: "add", atMs: 20, disk: b }],
      },
    );
    await expect(run).rejects.toThrow(
      new RangeError(`hot add of disk 'b': ${a.path} is disk 'a', attached at SCSI 0:0`),
    );
    // Still a's raw file of zeros: a read-only run never wrote it, and the
    // refused add did not make it a VHD.
    const bytes = readFileSync(a.path);
    expect(bytes.length).toBe(MiB);
    expect(bytes.every((x) => x === 0)).toBe(true);
    expect(vm.list()).toEqual([]);
  }, 30_000);
});
