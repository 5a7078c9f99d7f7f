import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiskAttachError, DiskBusyError } from "../src/storage/errors.js";
import { runStorageIo } from "../src/storage/io-run.js";
import { VirtualMachine } from "../src/storage/vm.js";
import { hvlab } from "./support/cli.js";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-storage-io-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a VM's disks and Hyper-V 2.0's rules for changing them", () => {
  it("hot-plugs SCSI disks while running, refuses IDE and controller changes", () => {
    const vm = new VirtualMachine("vm-rules");
    const vhd = { kind: "vhd" as const, path: "/dev/null" };
    vm.attach({ bus: "ide", controller: 1, location: 1 }, vhd);
    vm.addScsiController();
    vm.addScsiController();
    vm.addScsiController();
    expect(() => vm.addScsiController()).toThrow(/most SCSI controllers, 4/);
    vm.start();
    vm.attach({ bus: "scsi", controller: 3, location: 63 }, vhd);
    expect(() => vm.attach({ bus: "scsi", controller: 3, location: 64 }, vhd)).toThrow(
      /not 0 to 63/,
    );
    expect(() => vm.attach({ bus: "scsi", controller: 3, location: 63 }, vhd)).toThrow(/occupied/);
    expect(() => vm.attach({ bus: "ide", controller: 0, location: 0 }, vhd)).toThrow(
      DiskAttachError,
    );
    expect(() => vm.detach({ bus: "ide", controller: 1, location: 1 })).toThrow(
      /IDE disks cannot be changed while the VM runs/,
    );
    expect(() => vm.removeScsiController()).toThrow(/only while the VM is off/);
    expect(vm.detach({ bus: "scsi", controller: 3, location: 63 })).toEqual(vhd);
    vm.stop();
    vm.removeScsiController();
    expect(vm.scsiControllers).toBe(3);
  });

  it("refuses hot add to Windows XP x86 and Windows 2000 guests, but not with the VM off", () => {
    for (const guest of ["windows-xp-x86", "windows-2000"]) {
      const vm = new VirtualMachine(`vm-${guest}`, guest);
      vm.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "vhd", path: "a" });
      vm.start();
      expect(() =>
        vm.attach({ bus: "scsi", controller: 0, location: 1 }, { kind: "vhd", path: "b" }),
      ).toThrow(`guest ${guest} does not support hot add`);
    }
  });

  it("gives a pass-through disk to one VM, and refuses a second hvlab process", async () => {
    const disk = join(dir, "passthrough.img");
    writeFileSync(disk, new Uint8Array(1 << 20));
    const a = new VirtualMachine("vm-a");
    const b = new VirtualMachine("vm-b");
    a.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "passthrough", path: disk });
    expect(() =>
      b.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "passthrough", path: disk }),
    ).toThrow("pass-through disk already attached to VM 'vm-a'");
    // Another process holding it: a child that takes the lock and waits.
    a.detach({ bus: "scsi", controller: 0, location: 0 });
    const script = `
      import { VirtualMachine } from ${JSON.stringify(join(import.meta.dirname, "..", "dist", "src", "storage", "vm.js"))};
      const vm = new VirtualMachine("vm-other");
      vm.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "passthrough", path: ${JSON.stringify(disk)} });
      console.log("held");
      process.stdin.once("data", () => { vm.detach({ bus: "scsi", controller: 0, location: 0 }); process.exit(0); });
    `;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["pipe", "pipe", "inherit"],
    });
    const [line] = (await once(child.stdout, "data")) as [Buffer];
    expect(line.toString()).toContain("held");
    expect(() =>
      b.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "passthrough", path: disk }),
    ).toThrow(DiskBusyError);
    child.stdin.write("go\n");
    await once(child, "exit");
    b.attach({ bus: "scsi", controller: 0, location: 0 }, { kind: "passthrough", path: disk });
    b.detach({ bus: "scsi", controller: 0, location: 0 });
  });
});

describe("guest I/O with hot add and hot remove", () => {
  it("verifies every read, fails I/O in flight at removal, and keeps acknowledged writes intact", async () => {
    const mk = (name: string, type: "dynamic" | "raw" | "differencing") => ({
      name,
      path: join(dir, `${name}.img`),
      create: { type, size: 16 * 1024 * 1024 },
    });
    const report = await runStorageIo(
      [mk("dyn", "dynamic"), mk("raw", "raw")],
      { rw: "randrw", rwmixread: 50, bs: 4096, iodepth: 8, runtimeMs: 1200, seed: 7, verify: true },
      {
        threads: 3,
        events: [
          { kind: "add", atMs: 200, disk: mk("diff", "differencing") },
          { kind: "remove", atMs: 500, disk: mk("dyn", "dynamic") },
        ],
      },
    );
    expect(report.disks.map((d) => d.disk).sort()).toEqual(["diff", "dyn", "raw"]);
    for (const d of report.disks) {
      expect(d.verifyErrors, d.disk).toBe(0);
      expect(d.reads + d.writes, d.disk).toBeGreaterThan(0);
      expect(d.p99Us).toBeGreaterThanOrEqual(d.p50Us);
    }
    const removal = report.events.find((e) => e.kind === "remove");
    expect(removal).toMatchObject({
      disk: "dyn",
      completedAfterRemoval: 0,
      unchangedAfterRemoval: true,
    });
    expect(removal?.failedInFlight).toBeGreaterThan(0);
    expect(removal?.acknowledgedBlocks).toBeGreaterThan(0);
    expect(removal?.acknowledgedIntact).toBe(removal?.acknowledgedBlocks);
    const dyn = report.disks.find((d) => d.disk === "dyn");
    expect(dyn?.failed).toBe(removal?.failedInFlight);
    expect(report.events.find((e) => e.kind === "add")?.tookMs).toBeGreaterThan(0);
  }, 60_000);

  it("hvlab storage io --json reports IOPS and latency percentiles per disk", () => {
    const run = hvlab([
      "storage",
      "io",
      "--types",
      "fixed,raw",
      "--size",
      "8MiB",
      "--runtime",
      "300",
      "--verify",
      "--json",
      "--dir",
      dir,
    ]);
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as {
      disks: { disk: string; iops: number; p999Us: number; verifyErrors: number }[];
    };
    expect(report.disks.map((d) => d.disk)).toEqual(["fixed", "raw"]);
    for (const d of report.disks) {
      expect(d.iops).toBeGreaterThan(0);
      expect(d.p999Us).toBeGreaterThan(0);
      expect(d.verifyErrors).toBe(0);
    }
    const bad = hvlab(["storage", "io", "--rw", "sideways"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--rw must be one of/);
  }, 60_000);
});
