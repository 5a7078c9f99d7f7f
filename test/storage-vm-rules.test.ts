import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskAttachError } from "../src/storage/errors.js";
import { PassThroughLock } from "../src/storage/passthrough-lock.js";
import {
  type AttachedDisk,
  type DiskSlot,
  IDE_CONTROLLERS,
  IDE_LOCATIONS,
  MAX_SCSI_CONTROLLERS,
  SCSI_LOCATIONS,
  VirtualMachine,
} from "../src/storage/vm.js";
import { testTempDir } from "./support/temp.js";

// Hyper-V 2.0's storage topology rules, each on both sides of its limit:
// 2 IDE controllers of 2 locations, changed only with the VM off; 1 to 4
// synthetic SCSI controllers of 64 locations, added and removed with the VM
// off, their disks hot-pluggable except on Windows XP x86 and Windows 2000
// guests (Hyper-V 2.0's "Hot add and remove of storage" rules); a
// pass-through disk held by one VM until it is detached.

const vhd: AttachedDisk = { kind: "vhd", path: "a.vhd" };
const ide = (controller: number, location: number): DiskSlot => ({
  bus: "ide",
  controller,
  location,
});
const scsi = (controller: number, location: number): DiskSlot => ({
  bus: "scsi",
  controller,
  location,
});

describe("the VM's storage topology", () => {
  it("has the limits Hyper-V 2.0 documents", () => {
    expect([IDE_CONTROLLERS, IDE_LOCATIONS, MAX_SCSI_CONTROLLERS, SCSI_LOCATIONS]).toEqual([
      2, 2, 4, 64,
    ]);
  });

  it("starts off, with one SCSI controller and the default guest", () => {
    const vm = new VirtualMachine("vm");
    expect(vm.isRunning).toBe(false);
    expect(vm.scsiControllers).toBe(1);
    expect(vm.guestOs).toBe("windows-server-2008-r2");
    vm.start();
    expect(vm.isRunning).toBe(true);
    vm.stop();
    expect(vm.isRunning).toBe(false);
  });

  it("takes IDE 0:0 to 1:1 and refuses controller 2, location 2 and negatives", () => {
    const vm = new VirtualMachine("vm-ide");
    for (const [c, l] of [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ] as const)
      vm.attach(ide(c, l), vhd);
    expect(() => vm.attach(ide(2, 0), vhd)).toThrow(
      new DiskAttachError("VM 'vm-ide': IDE controller 2 does not exist (2)"),
    );
    expect(() => vm.attach(ide(-1, 0), vhd)).toThrow("IDE controller -1 does not exist (2)");
    expect(() => vm.attach(ide(0.5, 0), vhd)).toThrow("IDE controller 0.5 does not exist");
    expect(() => vm.attach(ide(0, 2), vhd)).toThrow(
      new DiskAttachError("VM 'vm-ide': location 2 is not 0 to 1"),
    );
    expect(() => vm.attach(ide(0, -1), vhd)).toThrow("location -1 is not 0 to 1");
    expect(() => vm.attach(ide(0, 0.5), vhd)).toThrow("location 0.5 is not 0 to 1");
  });

  it("takes SCSI locations 0 to 63 on each controller there is, and no controller more", () => {
    const vm = new VirtualMachine("vm-scsi");
    vm.attach(scsi(0, 0), vhd);
    vm.attach(scsi(0, 63), vhd);
    expect(() => vm.attach(scsi(0, 64), vhd)).toThrow(
      new DiskAttachError("VM 'vm-scsi': location 64 is not 0 to 63"),
    );
    expect(() => vm.attach(scsi(1, 0), vhd)).toThrow(
      new DiskAttachError("VM 'vm-scsi': SCSI controller 1 does not exist (1)"),
    );
    vm.addScsiController();
    vm.attach(scsi(1, 0), vhd);
    expect(vm.scsiControllers).toBe(2);
  });

  it("refuses a disk on an occupied slot, naming it, and frees it on detach", () => {
    const vm = new VirtualMachine("vm-slot");
    vm.attach(scsi(0, 5), vhd);
    expect(() => vm.attach(scsi(0, 5), { kind: "vhd", path: "b.vhd" })).toThrow(
      new DiskAttachError("VM 'vm-slot': SCSI 0:5 is occupied"),
    );
    expect(vm.detach(scsi(0, 5))).toBe(vhd);
    expect(() => vm.detach(scsi(0, 5))).toThrow(
      new DiskAttachError("VM 'vm-slot': SCSI 0:5 is empty"),
    );
    expect(() => vm.detach(ide(1, 1))).toThrow(
      new DiskAttachError("VM 'vm-slot': IDE 1:1 is empty"),
    );
    vm.attach(scsi(0, 5), { kind: "vhd", path: "b.vhd" });
    expect(vm.list()).toEqual([{ slot: scsi(0, 5), disk: { kind: "vhd", path: "b.vhd" } }]);
  });

  it("lists each disk with its bus, controller and location as numbers", () => {
    const vm = new VirtualMachine("vm-list");
    const b: AttachedDisk = { kind: "vhd", path: "b.vhd" };
    vm.attach(ide(1, 0), vhd);
    vm.addScsiController();
    vm.attach(scsi(1, 42), b);
    expect(vm.list()).toEqual([
      { slot: { bus: "ide", controller: 1, location: 0 }, disk: vhd },
      { slot: { bus: "scsi", controller: 1, location: 42 }, disk: b },
    ]);
  });

  it("changes IDE disks only while off, SCSI disks while running too", () => {
    const vm = new VirtualMachine("vm-run");
    vm.attach(ide(0, 0), vhd);
    vm.start();
    expect(() => vm.attach(ide(0, 1), vhd)).toThrow(
      new DiskAttachError("VM 'vm-run': IDE 0:1: IDE disks cannot be changed while the VM runs"),
    );
    expect(() => vm.detach(ide(0, 0))).toThrow(
      "IDE 0:0: IDE disks cannot be changed while the VM runs",
    );
    vm.attach(scsi(0, 1), vhd);
    expect(vm.detach(scsi(0, 1))).toBe(vhd);
    vm.stop();
    expect(vm.detach(ide(0, 0))).toBe(vhd);
  });

  it("refuses hot add on Windows 2000 and XP x86 guests but lets them hot remove", () => {
    for (const guest of ["windows-2000", "windows-xp-x86"]) {
      const vm = new VirtualMachine("vm-old", guest);
      vm.attach(scsi(0, 0), vhd);
      vm.start();
      expect(() => vm.attach(scsi(0, 1), vhd)).toThrow(
        new DiskAttachError(`VM 'vm-old': guest ${guest} does not support hot add`),
      );
      expect(vm.detach(scsi(0, 0))).toBe(vhd);
    }
    const xp64 = new VirtualMachine("vm-xp64", "windows-xp-x64");
    xp64.start();
    xp64.attach(scsi(0, 0), vhd);
    expect(xp64.list()).toHaveLength(1);
  });

  it("adds SCSI controllers up to 4 and removes them down to none, only while off", () => {
    const vm = new VirtualMachine("vm-ctl");
    vm.addScsiController();
    vm.addScsiController();
    vm.addScsiController();
    expect(vm.scsiControllers).toBe(4);
    expect(() => vm.addScsiController()).toThrow(
      new DiskAttachError("VM 'vm-ctl': already has the most SCSI controllers, 4"),
    );
    vm.start();
    expect(() => vm.addScsiController()).toThrow(
      new DiskAttachError("VM 'vm-ctl': controllers change only while the VM is off"),
    );
    expect(() => vm.removeScsiController()).toThrow(
      new DiskAttachError("VM 'vm-ctl': controllers change only while the VM is off"),
    );
    vm.stop();
    for (let left = 3; left >= 0; left--) {
      vm.removeScsiController();
      expect(vm.scsiControllers).toBe(left);
    }
    expect(() => vm.removeScsiController()).toThrow(
      new DiskAttachError("VM 'vm-ctl': has no SCSI controller"),
    );
    expect(() => vm.attach(scsi(0, 0), vhd)).toThrow("SCSI controller 0 does not exist (0)");
  });

  it("removes only an empty last controller: a disk on an earlier one does not hold it", () => {
    const vm = new VirtualMachine("vm-last");
    vm.addScsiController();
    vm.attach(scsi(0, 10), vhd);
    vm.attach(scsi(1, 63), vhd);
    expect(() => vm.removeScsiController()).toThrow(
      new DiskAttachError("VM 'vm-last': SCSI controller 1 still has disks"),
    );
    vm.detach(scsi(1, 63));
    vm.removeScsiController();
    expect(vm.scsiControllers).toBe(1);
    expect(() => vm.removeScsiController()).toThrow("SCSI controller 0 still has disks");
  });

  it("holds a pass-through disk until it is detached, a VHD not at all", () => {
    const disk = join(testTempDir("vm-rules"), "disk.raw");
    writeFileSync(disk, new Uint8Array(512));
    const a = new VirtualMachine("vm-a");
    a.attach(scsi(0, 0), { kind: "passthrough", path: disk });
    expect(() => PassThroughLock.acquire(disk, "vm-b")).toThrow("vm-a");
    a.attach(scsi(0, 1), { kind: "vhd", path: disk });
    a.detach(scsi(0, 1));
    expect(() => PassThroughLock.acquire(disk, "vm-b")).toThrow("vm-a");
    a.detach(scsi(0, 0));
    PassThroughLock.acquire(disk, "vm-b").release();
  });
});
