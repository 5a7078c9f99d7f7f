/*
 * The check `hvlab csv vms` ends with (src/csv/vm-verify.ts; docs/csv.md,
 * "Live and quick migration, measured"), on real files: a VHD copied off a
 * volume on a LUN file, and a VM's state file as `vm-stop` writes it. The
 * rules: a file is copied off the volume byte for byte, in pieces, reading
 * the LUN only (a pending journal transaction is applied in memory, never
 * on the LUN: docs/csv.md, "Metadata journal"); the VHD's structure is the
 * storage engine's own check (`hvlab storage check`: the footer, dynamic
 * header and BAT of the Virtual Hard Disk Image Format Specification), and
 * a VHD that fails it is not read; otherwise every block the state calls
 * acknowledged must hold the workload's pattern of its last generation, a
 * block that does not is named by its byte offset (the first eight), and a
 * block never acknowledged that holds data is counted apart (a write in
 * flight when its node died is allowed to land).
 *
 * The VHDs and state files come from the project's own writers: a VM run
 * on this thread by NodeVms over a volume on a LUN file (src/csv/vm.ts
 * writes the VHD through the storage engine and the state file on stop),
 * damaged afterwards through the storage engine's VHD code. The expected
 * counts are worked out from the state file, whose table says which blocks
 * were acknowledged.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { VolumeFileError } from "../src/csv/errors.js";
import { FileLun } from "../src/csv/lun.js";
import { decodeVmState, NodeVms, VmArgumentError } from "../src/csv/vm.js";
import { copyFileOffVolume, verifyVmDisk } from "../src/csv/vm-verify.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { checkVhdFile } from "../src/storage/check.js";
import { Header } from "../src/storage/format.js";
import { openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";
import { expectSameBytes } from "./support/bytes.js";
import { DyingLun } from "./support/csv.js";
import { lunFileVolume, runVm, VolumeVmHost } from "./support/csv-vm-host.js";
import { descriptorsOn } from "./support/descriptors.js";
import { fileTempDir, testTempDir } from "./support/temp.js";
import { HEADER_AT } from "./support/vhd-damage.js";
import { xorshiftBytes } from "./support/xorshift.js";

const MiB = 1 << 20;
const BS = 4096;
/** The VMs' disks: 1 MiB, 256 blocks of the workload's 4 KiB. */
const DISK = MiB;
const BLOCKS = DISK / BS;

const fixture = fileTempDir("csv-vm-verify");
/** The VHD a VM wrote at random for a while, copied off the volume, and its state. */
const WRITTEN = { vhd: join(fixture, "written.vhd"), state: join(fixture, "written.state") };
/** The VHD a VM only read (so never written), copied off the volume, and its state. */
const READ = { vhd: join(fixture, "read.vhd"), state: join(fixture, "read.state") };
/** The written VM's generation per block, from its state file. */
let generations: Uint32Array;
/** Indices of the blocks the written VM's state calls acknowledged, ascending. */
let acknowledged: number[];

beforeAll(async () => {
  const lun = await lunFileVolume(fixture, 16 * MiB);
  const vms = new NodeVms(new VolumeVmHost(lun.volume));
  const disk = { type: "dynamic", size: DISK, bs: BS, seed: 7 };
  try {
    await runVm(
      vms,
      { vm: "written", vhd: "written.vhd", rw: "randwrite", ...disk },
      300,
      WRITTEN.state,
    );
    await runVm(vms, { vm: "read", vhd: "read.vhd", rw: "randread", ...disk }, 100, READ.state);
  } finally {
    await vms.close();
    lun.close();
  }
  await copyFileOffVolume(lun.path, "written.vhd", WRITTEN.vhd);
  await copyFileOffVolume(lun.path, "read.vhd", READ.vhd);
  generations = decodeVmState(WRITTEN.state, readFileSync(WRITTEN.state)).table;
  acknowledged = [...generations.keys()].filter((b) => generations[b] !== 0);
}, 60_000);

/** A copy of `vhd` in a folder of the calling test's own, to damage. */
function copyToDamage(vhd: string): string {
  const copy = join(testTempDir("csv-vm-verify-damage"), "disk.vhd");
  copyFileSync(vhd, copy);
  return copy;
}

/** Rewrites the disk's block `b` (of the workload's size) through the storage engine, with `change` applied to its bytes. */
function rewriteBlock(vhd: string, b: number, change: (block: Uint8Array) => void): void {
  const image = openImage(vhd, { writable: true });
  try {
    const block = new Uint8Array(BS);
    image.read(b * BS, block);
    change(block);
    image.write(b * BS, block);
  } finally {
    image.close();
  }
}

describe("verifyVmDisk: acknowledged blocks against the VM's state", () => {
  it("the runs the tests rely on: a VM that wrote more than eight blocks, one that wrote none", () => {
    expect(generations.length).toBe(BLOCKS);
    expect(acknowledged.length, "blocks the written VM acknowledged").toBeGreaterThan(8);
    expect(decodeVmState(READ.state, readFileSync(READ.state)).table).toEqual(
      new Uint32Array(BLOCKS),
    );
  });

  // The VHD is opened for the check and closed after it: no descriptor stays open on it.
  it("finds every acknowledged block intact on the VHD its VM wrote, and nothing else", () => {
    const check = verifyVmDisk(WRITTEN.vhd, WRITTEN.state);
    expect(descriptorsOn(WRITTEN.vhd)).toBe(0);
    expect(check).toEqual({
      vhd: WRITTEN.vhd,
      structure: checkVhdFile(WRITTEN.vhd),
      acknowledgedBlocks: acknowledged.length,
      intactBlocks: acknowledged.length,
      badOffsets: [],
      unacknowledgedData: 0,
    });
    expect(check.structure.ok).toBe(true);
  });

  it("finds nothing acknowledged and no data on a disk its VM only read", () => {
    expect(verifyVmDisk(READ.vhd, READ.state)).toEqual({
      vhd: READ.vhd,
      structure: checkVhdFile(READ.vhd),
      acknowledgedBlocks: 0,
      intactBlocks: 0,
      badOffsets: [],
      unacknowledgedData: 0,
    });
  });

  // One byte of an acknowledged block changed after it was written: the
  // block is named by its byte offset and no longer counts as intact.
  it("names an acknowledged block whose bytes differ from what was acknowledged", () => {
    const b = acknowledged[2] ?? -1;
    const vhd = copyToDamage(WRITTEN.vhd);
    rewriteBlock(vhd, b, (block) => {
      block[100] = (block[100] ?? 0) ^ 0xff;
    });
    const check = verifyVmDisk(vhd, WRITTEN.state);
    expect(check.structure.ok).toBe(true);
    expect(check.acknowledgedBlocks).toBe(acknowledged.length);
    expect(check.intactBlocks).toBe(acknowledged.length - 1);
    expect(check.badOffsets).toEqual([b * BS]);
    expect(check.unacknowledgedData).toBe(0);
  });

  // A write acknowledged and then lost: the block reads as zeros, which is
  // the pattern of generation 0 only.
  it("names an acknowledged block that reads as never written", () => {
    const first = acknowledged[0] ?? -1;
    const last = acknowledged.at(-1) ?? -1;
    const vhd = copyToDamage(WRITTEN.vhd);
    for (const b of [first, last]) rewriteBlock(vhd, b, (block) => block.fill(0));
    const check = verifyVmDisk(vhd, WRITTEN.state);
    expect(check.intactBlocks).toBe(acknowledged.length - 2);
    expect(check.badOffsets).toEqual([first * BS, last * BS]);
    expect(check.unacknowledgedData).toBe(0);
  });

  // Every acknowledged block lost (the state of one disk against a disk
  // never written): all of them are bad, the first eight are named in
  // order, and none is counted as stray data.
  it("names only the first eight bad blocks, in disk order", () => {
    const check = verifyVmDisk(READ.vhd, WRITTEN.state);
    expect(check.acknowledgedBlocks).toBe(acknowledged.length);
    expect(check.intactBlocks).toBe(0);
    expect(check.badOffsets).toEqual(acknowledged.slice(0, 8).map((b) => b * BS));
    expect(check.unacknowledgedData).toBe(0);
  });

  // A state that acknowledges nothing against a disk that was written:
  // every written block holds data nobody acknowledged.
  it("counts blocks that hold data the state never acknowledged, apart from the bad ones", () => {
    const check = verifyVmDisk(WRITTEN.vhd, READ.state);
    expect(check.acknowledgedBlocks).toBe(0);
    expect(check.intactBlocks).toBe(0);
    expect(check.badOffsets).toEqual([]);
    expect(check.unacknowledgedData).toBe(acknowledged.length);
  });

  // The disk's blocks are whole blocks of the workload: a disk 2 KiB longer
  // than 256 blocks still has 256.
  it("takes the disk's whole blocks of the workload's size, and refuses a state of another disk", () => {
    const dir = testTempDir("csv-vm-verify-size");
    const vhd = (name: string, size: number) => {
      const path = join(dir, name);
      VhdImage.create(new FdFile(path, "wx+"), { type: "dynamic", size }).close();
      return path;
    };
    const longer = vhd("longer.vhd", DISK + 2048);
    expect(verifyVmDisk(longer, READ.state)).toEqual({
      vhd: longer,
      structure: checkVhdFile(longer),
      acknowledgedBlocks: 0,
      intactBlocks: 0,
      badOffsets: [],
      unacknowledgedData: 0,
    });
    const twice = vhd("twice.vhd", 2 * DISK);
    expect(() => verifyVmDisk(twice, WRITTEN.state)).toThrow(
      new RangeError(`${twice}: 512 blocks of 4096 bytes, but the state has 256`),
    );
  });

  // A VHD the storage check refuses is not read: its acknowledged blocks
  // are counted from the state, none is called intact or bad.
  it("does not read a VHD whose structure the storage check refuses", () => {
    const vhd = copyToDamage(WRITTEN.vhd);
    const bytes = readFileSync(vhd);
    bytes[HEADER_AT + 300] = (bytes[HEADER_AT + 300] ?? 0) ^ 1;
    writeFileSync(vhd, bytes);
    const structure = checkVhdFile(vhd);
    expect(structure.ok).toBe(false);
    expect(structure.problems.map((p) => [p.severity, p.offset])).toEqual([
      ["error", HEADER_AT + Header.checksum],
    ]);
    const broken = (acknowledgedBlocks: number) => ({
      vhd,
      structure,
      acknowledgedBlocks,
      intactBlocks: 0,
      badOffsets: [],
      unacknowledgedData: 0,
    });
    expect(verifyVmDisk(vhd, WRITTEN.state)).toEqual(broken(acknowledged.length));
    expect(verifyVmDisk(vhd, READ.state)).toEqual(broken(0));
  });

  it("refuses a state file that is not one, by its magic", () => {
    expect(() => verifyVmDisk(WRITTEN.vhd, READ.vhd)).toThrow(
      new VmArgumentError(`state ${READ.vhd}: not a VM state file (magic at byte 0)`),
    );
  });
});

describe("copyFileOffVolume: a file off the volume, reading the LUN only", () => {
  // Copied in 1 MiB pieces: less than a piece, two whole pieces, and two
  // with a short third; each byte lands where it was on the volume, and
  // neither the LUN nor the copy is left open.
  it.each([
    ["less than a piece", 512],
    ["two whole pieces", 2 * MiB],
    ["a short last piece", 2 * MiB + 1000],
  ])("copies a file of %s byte for byte, and returns its size", async (_, size) => {
    const dir = testTempDir("csv-vm-copy");
    const lun = await lunFileVolume(dir, 8 * MiB);
    const data = xorshiftBytes(size, size);
    try {
      await lun.volume.write(await lun.volume.create("disk.vhd", size), 0, data);
    } finally {
      lun.close();
    }
    const dest = join(dir, "disk.vhd");
    // A longer file there before is replaced, not written over.
    writeFileSync(dest, new Uint8Array(size + 4096).fill(0xee));
    expect(await copyFileOffVolume(lun.path, "disk.vhd", dest)).toBe(size);
    expect([descriptorsOn(lun.path), descriptorsOn(dest)]).toEqual([0, 0]);
    expectSameBytes(readFileSync(dest), data, "the copy");
  });

  // docs/csv.md: a pending transaction is replayed by the next
  // coordinator; a copy applies it in memory and leaves the LUN as it was.
  it("sees a file a pending journal transaction creates, and writes nothing to the LUN", async () => {
    const dir = testTempDir("csv-vm-copy-pending");
    const lun = await lunFileVolume(dir, 8 * MiB);
    const data = xorshiftBytes(9, 70_000);
    try {
      await lun.volume.write(await lun.volume.create("done.vhd", data.length), 0, data);
      // The coordinator dies right after its journal write.
      const dying = await Volume.open(new DyingLun(lun.volume.lun, 1));
      await expect(dying.create("pending.vhd", 3 * 65536)).rejects.toThrow("killed");
    } finally {
      lun.close();
    }
    const look = new FdFile(lun.path, "r");
    try {
      expect((await Volume.open(new FileLun(look, false), { replay: false })).journal.state).toBe(
        "pending",
      );
    } finally {
      look.close();
    }
    const before = readFileSync(lun.path);
    expect(await copyFileOffVolume(lun.path, "pending.vhd", join(dir, "pending.vhd"))).toBe(
      3 * 65536,
    );
    expect(await copyFileOffVolume(lun.path, "done.vhd", join(dir, "done.vhd"))).toBe(data.length);
    expectSameBytes(readFileSync(join(dir, "done.vhd")), data, "the copy");
    expectSameBytes(readFileSync(lun.path), before, "the LUN after the copies");
  });

  it("refuses a file that is not on the volume, by name", async () => {
    const dir = testTempDir("csv-vm-copy-missing");
    const lun = await lunFileVolume(dir, 8 * MiB);
    lun.close();
    await expect(copyFileOffVolume(lun.path, "vm9.vhd", join(dir, "vm9.vhd"))).rejects.toThrow(
      new VolumeFileError('no file "vm9.vhd" on the volume'),
    );
  });
});
