/*
 * The checks a guest I/O run makes of a removed disk, and the run's own
 * set-up: a removed disk's file is hashed and read back at the end of the
 * run unless a disk is added at its path first, so a byte that reaches it
 * after the removal is found, and so is a damaged acknowledged block; a
 * disk hot added gets a worker of its own; a run needs no options; and a
 * disk whose file cannot be made leaves no slot taken.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type IoDisk, runStorageIo } from "../src/storage/io-run.js";
import type { IoSpec } from "../src/storage/io-spec.js";
import { VirtualMachine } from "../src/storage/vm.js";
import { testTempDir } from "./support/temp.js";

const MiB = 1024 * 1024;

const sequentialWrites: IoSpec = {
  rw: "write",
  rwmixread: 0,
  bs: 4096,
  iodepth: 2,
  runtimeMs: 400,
  seed: 33,
  verify: true,
};

function raw(dir: string, name: string): IoDisk {
  return { name, path: join(dir, `${name}.img`), create: { type: "raw", size: MiB } };
}

/** Writes one byte into a file, as something outside the VM would. */
function poke(path: string, offset: number, value: number): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, Buffer.from([value]), 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

describe("a removed disk's checks", () => {
  it("are made at the end when no disk comes to its path: a byte written after another disk's add is found", async () => {
    const dir = testTempDir("io-checks");
    const a = raw(dir, "a");
    const b = raw(dir, "b");
    let poked = false;
    const report = await runStorageIo([a], sequentialWrites, {
      events: [
        { kind: "remove", atMs: 40, disk: a },
        { kind: "add", atMs: 80, disk: b },
      ],
      // Progress ticks every 200 ms: the first comes after both changes.
      onProgress: () => {
        if (poked) return;
        poked = true;
        poke(a.path, MiB - 1, 0x5a);
      },
    });
    expect(poked).toBe(true);
    const removal = report.events.find((e) => e.kind === "remove");
    // Checked when b came (at another path) it would have been unchanged.
    expect(removal?.unchangedAfterRemoval).toBe(false);
  }, 30_000);

  it("read back every acknowledged block and count one damaged after the removal", async () => {
    const dir = testTempDir("io-checks");
    const a = raw(dir, "a");
    const keep = raw(dir, "keep");
    let poked = false;
    const report = await runStorageIo([a, keep], sequentialWrites, {
      events: [{ kind: "remove", atMs: 40, disk: a }],
      onProgress: () => {
        if (poked) return;
        poked = true;
        // Inside block 0, the first a wrote: its header's pattern no longer holds.
        poke(a.path, 100, 0xff);
      },
    });
    expect(poked).toBe(true);
    const removal = report.events[0];
    const blocks = removal?.acknowledgedBlocks ?? 0;
    expect(blocks).toBeGreaterThan(0);
    expect(removal?.acknowledgedIntact).toBe(blocks - 1);
    expect(removal?.unchangedAfterRemoval).toBe(false);
  }, 30_000);
});

describe("a run's set-up", () => {
  it("gives a hot-added disk a worker of its own, not one after the first disk's run", async () => {
    const dir = testTempDir("io-checks");
    const a = raw(dir, "a");
    const b = raw(dir, "b");
    const report = await runStorageIo([a], sequentialWrites, {
      events: [{ kind: "add", atMs: 40, disk: b }],
    });
    const added = report.disks.find((d) => d.disk === "b");
    // On a worker shared with a it would start only after a's 400 ms.
    expect(added?.startMs).toBeLessThan(sequentialWrites.runtimeMs - 100);
    expect(added?.writes).toBeGreaterThan(0);
  }, 30_000);

  it("runs with no options: one disk on the default VM, no changes", async () => {
    const dir = testTempDir("io-checks");
    const report = await runStorageIo([raw(dir, "only")], { ...sequentialWrites, runtimeMs: 100 });
    expect(report.events).toEqual([]);
    expect(report.intervalMs).toBe(100);
    expect(report.disks.map((d) => [d.disk, d.slot, d.format])).toEqual([
      ["only", "SCSI 0:0", "raw"],
    ]);
    expect(report.disks[0]?.writes).toBeGreaterThan(0);
  }, 30_000);

  it("leaves no slot taken by a disk whose file cannot be made", async () => {
    const dir = testTempDir("io-checks");
    const a = raw(dir, "a");
    const lost: IoDisk = {
      name: "lost",
      path: join(dir, "no-such-folder", "lost.img"),
      create: { type: "raw", size: MiB },
    };
    const vm = new VirtualMachine("vm-lost");
    const run = runStorageIo([a], sequentialWrites, {
      vm,
      events: [{ kind: "add", atMs: 20, disk: lost }],
    });
    await expect(run).rejects.toThrow(/ENOENT.*no-such-folder/);
    expect(vm.list()).toEqual([]);
  }, 30_000);
});
