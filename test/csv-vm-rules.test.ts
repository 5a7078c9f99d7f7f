/*
 * VMs on a node (src/csv/vm.ts), on the test's own thread. The rules, as
 * docs/csv.md gives them ("A VHD as a file on the volume", "Control
 * commands and the VM's state"):
 *
 * - `vm-start` and `vm-stop` arguments, checked field by field, each
 *   refusal a VmArgumentError that names the field and what was wrong:
 *   names of 1 to 128 bytes, a VHD created only with both its type and its
 *   size (fixed or dynamic, 1 MiB to MAX_VM_DISK_BYTES in whole sectors),
 *   fio's modes and the storage engine's workload checks, a 32-bit seed,
 *   absolute state paths of at most 1024 bytes; verify mode always.
 * - The state file that moves with a VM: "HCVM", then the block size, the
 *   block count and the seed, then a generation per block, each a
 *   little-endian u32; read from a file `vm-stop` wrote, then spoiled one
 *   field at a time.
 * - NodeVms over a volume on a LUN file: a VHD created through the
 *   coordinator and written whole before use, in pieces of at most 1 MiB;
 *   grown through it, each resize a change of size, with the gap before
 *   each write zeroed in such pieces (the LUN's old data never shows
 *   through, and what a guest never wrote reads as zeros), and cut back
 *   through it when the VHD ends before the file; reads of the volume no
 *   larger than the guest's; its disk size read from the footer or, when
 *   the end is torn, from the footer copy at offset 0 (as the VHD
 *   specification keeps it for), bounded; the workers started once; at
 *   most MAX_VMS_PER_NODE VMs, a start refused (by the node or by the
 *   worker's VHD engine, with the engine's words) giving its slot back
 *   once; the table of acknowledged generations carried from `vm-stop` to
 *   the next `vm-start`, and refused when it belongs to another workload or
 *   disk; a stop that closes the VHD, FLUSHes once, then saves the state.
 *
 * The VMs' I/O runs on the pool's workers (built code); vm.ts itself runs here.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  decodeVmState,
  MAX_VM_DISK_BYTES,
  MAX_VMS_PER_NODE,
  NodeVms,
  parseVmStart,
  parseVmStop,
  VmArgumentError,
  type VmStart,
} from "../src/csv/vm.js";
import { copyFileOffVolume, verifyVmDisk } from "../src/csv/vm-verify.js";
import type { Volume } from "../src/csv/volume.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { VhdImage } from "../src/storage/vhd.js";
import {
  type LunFileVolume,
  lunFileVolume,
  runVm,
  type VmMetadataRequest,
  VolumeVmHost,
} from "./support/csv-vm-host.js";
import { fileTempDir, testTempDir } from "./support/temp.js";
import { HEADER_AT } from "./support/vhd-damage.js";

const MiB = 1 << 20;

/** The error `run` throws (fails when it returns). */
function thrown(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  return expect.fail("expected a refusal");
}

/** The error `run` rejects with (fails when it resolves). */
async function rejection(run: Promise<unknown>): Promise<Error> {
  return await run.then(
    () => expect.fail("expected a refusal"),
    (error: Error) => error,
  );
}

/** Fails unless `error` is a VmArgumentError saying exactly `message`. */
function expectVmArgumentError(error: Error, message: string): void {
  expect(error).toBeInstanceOf(VmArgumentError);
  expect(error.name).toBe("VmArgumentError");
  expect(error.message).toBe(message);
}

const start = { vm: "vm1", vhd: "vm1.vhd" };

describe("vm-start's arguments", () => {
  it("must be an object of fields", () => {
    for (const args of [undefined, null, [], "vm1", 7])
      expectVmArgumentError(
        thrown(() => parseVmStart(args)),
        "vm-start needs arguments {vm, vhd, ...}",
      );
  });

  // Unset, the workload is fio's randrw, half reads, 4 KiB blocks, one at
  // a time, for the longest run (an hour), seed 1; verify mode even when
  // asked otherwise, and no VHD created.
  it("takes the workload's defaults and always verifies", () => {
    expect(parseVmStart({ ...start, verify: false })).toStrictEqual({
      vm: "vm1",
      vhd: "vm1.vhd",
      spec: {
        rw: "randrw",
        rwmixread: 50,
        bs: 4096,
        iodepth: 1,
        runtimeMs: 3_600_000,
        seed: 1,
        verify: true,
      },
    });
  });

  it("takes every field it names", () => {
    expect(
      parseVmStart({
        ...start,
        type: "fixed",
        size: 8 * MiB,
        rw: "randwrite",
        rwmixread: 30,
        bs: 65536,
        iodepth: 8,
        runtimeMs: 2000,
        seed: 9,
        state: "/var/lib/hvlab/vm1.state",
      }),
    ).toStrictEqual({
      vm: "vm1",
      vhd: "vm1.vhd",
      create: { type: "fixed", size: 8 * MiB },
      spec: {
        rw: "randwrite",
        rwmixread: 30,
        bs: 65536,
        iodepth: 8,
        runtimeMs: 2000,
        seed: 9,
        verify: true,
      },
      state: "/var/lib/hvlab/vm1.state",
    });
  });

  // A name is counted in UTF-8 bytes: 64 two-byte letters are 128 bytes.
  it.each(["vm", "vhd"] as const)("needs %s as a name of 1 to 128 bytes", (field) => {
    const message = `${field} must be a name of 1 to 128 bytes`;
    for (const value of [undefined, "", 7, `${"é".repeat(64)}x`, "x".repeat(129)])
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, [field]: value })),
        message,
      );
    for (const value of ["x", "é".repeat(64), "x".repeat(128)])
      expect(parseVmStart({ ...start, [field]: value })[field]).toBe(value);
  });

  it("names a field of the wrong type, and its value", () => {
    for (const [field, value, message] of [
      ["type", 5, "type must be a string, not 5"],
      ["type", null, "type must be a string, not null"],
      ["size", "4MiB", 'size must be a number, not "4MiB"'],
      ["rw", 1, "rw must be a string, not 1"],
      ["rwmixread", "50", 'rwmixread must be a number, not "50"'],
      ["bs", "4096", 'bs must be a number, not "4096"'],
      ["iodepth", [1], "iodepth must be a number, not [1]"],
      ["runtimeMs", true, "runtimeMs must be a number, not true"],
      ["seed", "7", 'seed must be a number, not "7"'],
    ] as const)
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, type: "dynamic", size: MiB, [field]: value })),
        message,
      );
  });

  it("creates only a fixed or a dynamic VHD, and only with both its type and its size", () => {
    expectVmArgumentError(
      thrown(() => parseVmStart({ ...start, type: "differencing", size: MiB })),
      'type must be fixed or dynamic, not "differencing"',
    );
    for (const half of [{ type: "dynamic" }, { size: MiB }])
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, ...half })),
        "type and size go together (they create the VHD)",
      );
    expect(parseVmStart({ ...start, type: "dynamic", size: MiB }).create).toEqual({
      type: "dynamic",
      size: MiB,
    });
  });

  // From 1 MiB to MAX_VM_DISK_BYTES (256 MiB), in whole 512-byte sectors.
  it("creates a VHD of 1 MiB to MAX_VM_DISK_BYTES in whole sectors", () => {
    expect(MAX_VM_DISK_BYTES).toBe(256 * MiB);
    for (const size of [MiB, MiB + 512, MAX_VM_DISK_BYTES])
      expect(parseVmStart({ ...start, type: "fixed", size }).create?.size).toBe(size);
    for (const size of [MiB - 512, MAX_VM_DISK_BYTES + 512, MiB + 1, MiB + 0.5, Infinity])
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, type: "fixed", size })),
        `size must be a multiple of 512 from 1 MiB to 268435456 bytes, not ${size}`,
      );
  });

  it("runs one of fio's modes", () => {
    for (const rw of ["read", "write", "randread", "randwrite", "randrw", "rw"])
      expect(parseVmStart({ ...start, rw }).spec.rw).toBe(rw);
    expectVmArgumentError(
      thrown(() => parseVmStart({ ...start, rw: "sequential" })),
      "rw must be one of read, write, randread, randwrite, randrw, rw, not sequential",
    );
  });

  // The seed is a u32 of the state file: whole, 0 to 2^32 - 1.
  it("takes a seed of 0 to 2^32-1", () => {
    for (const seed of [0, 0xffffffff])
      expect(parseVmStart({ ...start, seed }).spec.seed).toBe(seed);
    for (const seed of [-1, 2 ** 32, 1.5, Number.NaN])
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, seed })),
        `seed must be a whole number from 0 to 2^32-1, not ${seed}`,
      );
  });

  // The storage engine's own checks of a workload (src/storage/io-spec.ts),
  // refused as the VM's arguments.
  it("refuses a workload the storage engine refuses, with its words", () => {
    for (const [field, value, message] of [
      ["bs", 1000, "bs must be a multiple of 512 from 512 to 1048576 bytes, not 1000"],
      ["iodepth", 0, "iodepth must be 1 to 1024, not 0"],
      ["rwmixread", 101, "rwmixread must be 0 to 100, not 101"],
      ["runtimeMs", 0, "runtime must be 1 ms to 1 hour, not 0 ms"],
    ] as const)
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, [field]: value })),
        message,
      );
  });

  // A state path is absolute, at most 1024 bytes in UTF-8.
  it("takes a state file by an absolute path of at most 1024 bytes", () => {
    const longest = `/${"a".repeat(1023)}`;
    expect(parseVmStart({ ...start, state: longest }).state).toBe(longest);
    for (const state of ["vm1.state", 7, `/${"a".repeat(1024)}`, `/${"é".repeat(512)}`])
      expectVmArgumentError(
        thrown(() => parseVmStart({ ...start, state })),
        "state must be an absolute path of at most 1024 bytes",
      );
  });
});

describe("vm-stop's arguments", () => {
  it("must be an object of fields", () => {
    for (const args of [undefined, null, ["vm1"], "vm1"])
      expectVmArgumentError(
        thrown(() => parseVmStop(args)),
        "vm-stop needs arguments {vm}",
      );
  });

  it("name the VM, and where its state goes if anywhere", () => {
    expect(parseVmStop({ vm: "vm1" })).toStrictEqual({ vm: "vm1" });
    expect(parseVmStop({ vm: "vm1", state: "/s/vm1.state" })).toStrictEqual({
      vm: "vm1",
      state: "/s/vm1.state",
    });
    for (const vm of [undefined, "", "x".repeat(129)])
      expectVmArgumentError(
        thrown(() => parseVmStop({ vm })),
        "vm must be a name of 1 to 128 bytes",
      );
    expectVmArgumentError(
      thrown(() => parseVmStop({ vm: "vm1", state: "vm1.state" })),
      "state must be an absolute path of at most 1024 bytes",
    );
  });
});

/** Fills every free cluster of the volume with old data, then frees them: a new file's clusters hold it until written. */
async function litter(volume: Volume): Promise<void> {
  const bytes = volume.free * volume.layout.clusterBytes;
  await volume.write(await volume.create("old", bytes), 0, Buffer.alloc(bytes, "JUNK"));
  await volume.delete("old");
}

/** Whether file `name` on the volume holds any of the old data {@link litter} left. */
async function showsOldData(volume: Volume, name: string): Promise<boolean> {
  const file = volume.lookup(name);
  const bytes = Buffer.from(await volume.read(file, 0, file.size));
  return bytes.includes("JUNKJUNKJUNKJUNK");
}

/**
 * Puts a new VHD made by the storage engine on the volume as file `name`,
 * `spoil` applied to its bytes (or its bytes replaced by what `spoil`
 * returns); returns the bytes put.
 */
async function putVhd(
  volume: Volume,
  name: string,
  options: { type: "fixed" | "dynamic"; size: number },
  spoil: (bytes: Uint8Array) => Uint8Array | undefined = () => undefined,
): Promise<Uint8Array> {
  const image = new MemoryFile(name);
  VhdImage.create(image, options).close();
  const made = image.contents().slice();
  const bytes = spoil(made) ?? made;
  await volume.write(await volume.create(name, bytes.length), 0, bytes);
  return bytes;
}

/** A volume on a LUN file of `bytes`, a node with its VMs over it; closed when the test ends. */
async function node(bytes = 32 * MiB): Promise<{
  dir: string;
  lun: LunFileVolume;
  host: VolumeVmHost;
  vms: NodeVms;
  close: () => Promise<void>;
}> {
  const dir = testTempDir("csv-vm");
  const lun = await lunFileVolume(dir, bytes);
  const host = new VolumeVmHost(lun.volume);
  const vms = new NodeVms(host);
  return {
    dir,
    lun,
    host,
    vms,
    close: async () => {
      await vms.close();
      lun.close();
    },
  };
}

/** The state file tests' folder, at file level: a describe's own hooks do not run when a filter skips all its tests. */
const stateDir = fileTempDir("csv-vm-state");

describe("the VM state file", () => {
  /** A state file `vm-stop` wrote, and what the run that wrote it reported. */
  const written = {
    state: join(stateDir, "vm1.state"),
    bytes: new Uint8Array(0),
    acknowledgedBlocks: 0,
  };

  beforeAll(async () => {
    const lun = await lunFileVolume(stateDir, 16 * MiB);
    const vms = new NodeVms(new VolumeVmHost(lun.volume));
    try {
      const { stopped } = await runVm(
        vms,
        { ...start, type: "dynamic", size: MiB, rw: "randwrite", bs: 4096, seed: 7 },
        200,
        written.state,
      );
      written.acknowledgedBlocks = stopped.acknowledgedBlocks;
    } finally {
      await vms.close();
      lun.close();
    }
    written.bytes = readFileSync(written.state);
  }, 60_000);

  /** The state `vm-stop` wrote, with `spoil` applied to a copy of its bytes. */
  const spoiled = (spoil: (view: DataView, bytes: Uint8Array) => void): Uint8Array => {
    const bytes = Uint8Array.from(written.bytes);
    spoil(new DataView(bytes.buffer), bytes);
    return bytes;
  };
  const refusal = (bytes: Uint8Array) => thrown(() => decodeVmState("/s/vm1.state", bytes));

  // 1 MiB in 4 KiB blocks: 256 generations after the 16-byte header.
  it("is written as its layout says: magic, block size, block count, seed, a generation per block", () => {
    const view = new DataView(written.bytes.buffer, written.bytes.byteOffset);
    expect(written.bytes.length).toBe(16 + 256 * 4);
    expect(Buffer.from(written.bytes.subarray(0, 4)).toString("latin1")).toBe("HCVM");
    expect([view.getUint32(4, true), view.getUint32(8, true), view.getUint32(12, true)]).toEqual([
      4096, 256, 7,
    ]);
    const table = Array.from({ length: 256 }, (_, b) => view.getUint32(16 + b * 4, true));
    expect(table.filter((g) => g !== 0)).toHaveLength(written.acknowledgedBlocks);
    expect(written.acknowledgedBlocks).toBeGreaterThan(0);
    const state = decodeVmState(written.state, written.bytes);
    expect(state.bs).toBe(4096);
    expect(state.seed).toBe(7);
    expect([...state.table]).toEqual(table);
  });

  // A Buffer from readFileSync may be a view into a shared pool: decoded
  // from where it starts, and the table copied out of it.
  it("decodes bytes that start inside a larger buffer, and keeps its own copy of the table", () => {
    const pool = new Uint8Array(5 + written.bytes.length);
    pool.set(written.bytes, 5);
    const bytes = pool.subarray(5);
    const state = decodeVmState(written.state, bytes);
    const table = [...state.table];
    expect(table).toEqual([...decodeVmState(written.state, written.bytes).table]);
    pool.fill(0xff);
    expect([...state.table]).toEqual(table);
  });

  it("starts with HCVM in a header of 16 bytes", () => {
    const message = "state /s/vm1.state: not a VM state file (magic at byte 0)";
    expectVmArgumentError(refusal(written.bytes.slice(0, 15)), message);
    expectVmArgumentError(refusal(new Uint8Array(0)), message);
    expectVmArgumentError(
      refusal(
        spoiled((_, bytes) => {
          bytes[3] = "N".charCodeAt(0);
        }),
      ),
      message,
    );
    // A header alone is a state of no blocks.
    const empty = decodeVmState(
      "/s/vm1.state",
      spoiled((view) => view.setUint32(8, 0, true)).slice(0, 16),
    );
    expect([empty.bs, empty.seed, empty.table.length]).toEqual([4096, 7, 0]);
  });

  // A block of the workload: 512 bytes to 1 MiB, in whole sectors.
  it("holds a block size of 512 bytes to 1 MiB in whole sectors, at byte 4", () => {
    for (const bs of [512, MiB])
      expect(
        decodeVmState(
          "/s/vm1.state",
          spoiled((view) => view.setUint32(4, bs, true)),
        ).bs,
      ).toBe(bs);
    for (const bs of [0, 511, 1000, MiB + 512, 0xffffffff])
      expectVmArgumentError(
        refusal(spoiled((view) => view.setUint32(4, bs, true))),
        `state /s/vm1.state: block size ${bs} at byte 4`,
      );
  });

  it("holds exactly the generations its block count at byte 8 says", () => {
    for (const blocks of [255, 257, 0])
      expectVmArgumentError(
        refusal(spoiled((view) => view.setUint32(8, blocks, true))),
        `state /s/vm1.state: ${blocks} blocks at byte 8, but the file holds 1040 bytes`,
      );
    for (const length of [1039, 1044]) {
      const bytes = new Uint8Array(length);
      bytes.set(written.bytes.subarray(0, length));
      expectVmArgumentError(
        refusal(bytes),
        `state /s/vm1.state: 256 blocks at byte 8, but the file holds ${length} bytes`,
      );
    }
  });

  it("holds the workload's seed at byte 12, unsigned", () => {
    expect(
      decodeVmState(
        "/s/vm1.state",
        spoiled((view) => view.setUint32(12, 0xffffffff, true)),
      ).seed,
    ).toBe(0xffffffff);
  });
});

describe("NodeVms: VMs on one node", () => {
  // A fixed VHD is its data then a 512-byte footer; written whole, its data
  // reads as zeros although the clusters under it held old data; the
  // guest's reads are checked against that.
  it("creates a VHD through the coordinator and writes it whole before the first I/O", async () => {
    const n = await node();
    try {
      await litter(n.lun.volume);
      const asked = performance.now();
      const started = await n.vms.start(
        parseVmStart({ ...start, type: "fixed", size: MiB, rw: "randread", seed: 3 }),
      );
      const took = performance.now() - asked;
      expect(n.host.asked).toEqual([
        { op: "create", name: "vm1.vhd", size: MiB + 512 },
        { op: "flush" },
      ]);
      // Written in pieces of at most 1 MiB: the data, then the footer.
      expect(n.host.writes).toEqual([
        { name: "vm1.vhd", offset: 0, length: MiB },
        { name: "vm1.vhd", offset: MiB, length: 512 },
      ]);
      expect(started).toEqual({
        vm: "vm1",
        vhd: "vm1.vhd",
        bytes: MiB,
        openMs: started.openMs,
        startMs: started.startMs,
        acknowledgedBlocks: 0,
      });
      expect(started.openMs).toBeGreaterThanOrEqual(0);
      expect(started.openMs).toBeLessThanOrEqual(started.startMs);
      expect(started.startMs).toBeLessThanOrEqual(took);
      expect(n.vms.list()).toEqual(["vm1"]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stopped = await n.vms.stop({ vm: "vm1" });
      expect(stopped.reads).toBeGreaterThan(0);
      expect([stopped.writes, stopped.verifyErrors, stopped.acknowledgedBlocks]).toEqual([0, 0, 0]);
      expect(stopped.verifyErrorOffsets).toEqual([]);
      // The node reads of the volume only what the guest's reads ask: its
      // largest read is one block of the workload (the footers are 512 bytes).
      expect(Math.max(...n.host.reads.map((r) => r.length))).toBe(4096);
      expect(await showsOldData(n.lun.volume, "vm1.vhd")).toBe(false);
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });

  // A dynamic VHD grows as its guest writes: each growth is a resize
  // through the coordinator, and the new clusters before the data written
  // are zeroed, so no old data of the LUN appears in the file.
  it("grows a dynamic VHD through the coordinator, zeroing what the LUN held", async () => {
    const n = await node();
    try {
      await litter(n.lun.volume);
      const state = join(n.dir, "vm1.state");
      const { stopped } = await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "randwrite", bs: 8192, seed: 5 },
        200,
        state,
      );
      const ops = n.host.asked.map((a) => a.op);
      expect(ops.slice(0, 2)).toEqual(["create", "flush"]);
      expect(ops).toContain("resize");
      for (const a of n.host.asked) if (a.op !== "flush") expect(a.name).toBe("vm1.vhd");
      expect(await showsOldData(n.lun.volume, "vm1.vhd")).toBe(false);
      expect(stopped.verifyErrors).toBe(0);
      // What stop reports: the acknowledged blocks of its state, the rates over the run's time.
      const table = decodeVmState(state, readFileSync(state)).table;
      expect(stopped.acknowledgedBlocks).toBe(table.filter((g) => g !== 0).length);
      const seconds = stopped.elapsedMs / 1000;
      expect(stopped.iops).toBe((stopped.reads + stopped.writes) / seconds);
      expect(stopped.mbps).toBeCloseTo((stopped.writes * 8192) / seconds / 1e6, 9);
      // Every acknowledged block reads back off the volume; nothing else holds data.
      const copy = join(n.dir, "vm1.vhd");
      await copyFileOffVolume(n.lun.path, "vm1.vhd", copy);
      const check = verifyVmDisk(copy, state);
      expect(check.structure.ok).toBe(true);
      expect(check.intactBlocks).toBe(stopped.acknowledgedBlocks);
      expect(check.unacknowledgedData).toBe(0);
    } finally {
      await n.close();
    }
  });

  // vm-stop closes the VHD on the worker, then FLUSHes the node's writes
  // at the target once, then saves the state (through a temporary file
  // renamed over it); its timings lie within the call.
  it("stops by closing the VHD, one FLUSH, then the state", async () => {
    const n = await node();
    try {
      await putVhd(n.lun.volume, "vm1.vhd", { type: "dynamic", size: MiB });
      await n.vms.start(parseVmStart({ ...start, rw: "randread" }));
      expect(n.host.asked).toEqual([{ op: "open", name: "vm1.vhd" }]);
      const state = join(n.dir, "vm1.state");
      const asked = performance.now();
      const stopped = await n.vms.stop({ vm: "vm1", state });
      const took = performance.now() - asked;
      expect(n.host.asked).toEqual([{ op: "open", name: "vm1.vhd" }, { op: "flush" }]);
      expect(stopped.closeMs).toBeGreaterThanOrEqual(0);
      expect(stopped.flushMs).toBeGreaterThanOrEqual(0);
      expect(stopped.closeMs + stopped.flushMs).toBeLessThanOrEqual(took);
      expect(stopped.vm).toBe("vm1");
      expect(stopped.vhd).toBe("vm1.vhd");
      expect(existsSync(`${state}.tmp`)).toBe(false);
      const saved = decodeVmState(state, readFileSync(state));
      expect([saved.bs, saved.seed]).toEqual([4096, 1]);
      expect(saved.table).toEqual(new Uint32Array(256));
    } finally {
      await n.close();
    }
  });

  // The table moves with the VM: the next node starts with the blocks
  // acknowledged before, and checks its reads against their generations
  // (a read of a block written before would fail if the table were lost).
  it("carries the acknowledged generations from vm-stop's state to the next vm-start", async () => {
    const n = await node();
    try {
      const first = join(n.dir, "first.state");
      const second = join(n.dir, "second.state");
      const workload = { bs: 4096, seed: 11 };
      const before = await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "randwrite", ...workload },
        150,
        first,
      );
      expect(before.stopped.acknowledgedBlocks).toBeGreaterThan(0);
      const after = await runVm(
        n.vms,
        { ...start, rw: "randread", ...workload, state: first },
        150,
        second,
      );
      expect(after.started.acknowledgedBlocks).toBe(before.stopped.acknowledgedBlocks);
      expect(after.stopped.reads).toBeGreaterThan(0);
      expect(after.stopped.writes).toBe(0);
      expect(after.stopped.verifyErrors).toBe(0);
      expect(after.stopped.acknowledgedBlocks).toBe(before.stopped.acknowledgedBlocks);
      expect(Buffer.from(readFileSync(second)).equals(readFileSync(first))).toBe(true);
    } finally {
      await n.close();
    }
  });

  it("refuses a second VM of a name, and a stop of a VM not running, before asking anything", async () => {
    const n = await node();
    try {
      await n.vms.start(parseVmStart({ ...start, type: "dynamic", size: MiB }));
      const asked = n.host.asked.length;
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ ...start, vhd: "other.vhd" }))),
        "VM vm1 already runs on this node",
      );
      expectVmArgumentError(
        await rejection(n.vms.stop({ vm: "vm9" })),
        "no VM vm9 runs on this node",
      );
      expect(n.host.asked).toHaveLength(asked);
      expect(n.vms.list()).toEqual(["vm1"]);
    } finally {
      await n.close();
    }
  });

  // Two control connections may ask for the same name at once: the second
  // start is refused while the first is under way, so one VM runs under the
  // name and the other start takes no slot and asks nothing.
  it("refuses a start of a name whose first start is still under way", async () => {
    const n = await node();
    try {
      const first = n.vms.start(parseVmStart({ ...start, type: "dynamic", size: MiB }));
      const second = n.vms.start(
        parseVmStart({ ...start, vhd: "other.vhd", type: "dynamic", size: MiB }),
      );
      expectVmArgumentError(await rejection(second), "VM vm1 is already starting on this node");
      await first;
      expect(n.vms.list()).toEqual(["vm1"]);
      expect(n.host.asked.flatMap((a) => (a.op === "create" ? [a.name] : []))).toEqual(["vm1.vhd"]);
      await n.vms.stop({ vm: "vm1" });
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });

  // A file shorter than a footer holds none: refused as a disk that does not
  // fit, not by a read past the file's end.
  it("refuses a VHD file of less than 512 bytes as holding no footer", async () => {
    const n = await node();
    try {
      await n.lun.volume.write(await n.lun.volume.create("tiny.vhd", 100), 0, new Uint8Array(100));
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ ...start, vhd: "tiny.vhd" }))),
        "tiny.vhd: no VHD footer at byte 0 or 0, or a disk of 0 bytes, which does not fit the workload",
      );
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });

  // Four VMs at once; a start refused after it took a slot gives the slot
  // back, and so does a stop.
  it("runs at most MAX_VMS_PER_NODE VMs, and reuses the slot of one refused or stopped", async () => {
    expect(MAX_VMS_PER_NODE).toBe(4);
    const n = await node(64 * MiB);
    const create = (vm: string): VmStart =>
      parseVmStart({ vm, vhd: `${vm}.vhd`, type: "dynamic", size: MiB, rw: "randread" });
    try {
      for (const vm of ["vm1", "vm2", "vm3"]) await n.vms.start(create(vm));
      await n.lun.volume.create("blank.vhd", MiB);
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ vm: "vm4", vhd: "blank.vhd" }))),
        "blank.vhd: no VHD footer at byte 1048064 or 0, or a disk of 0 bytes, which does not fit the workload",
      );
      await n.vms.start(create("vm4"));
      expectVmArgumentError(
        await rejection(n.vms.start(create("vm5"))),
        "this node already runs 4 VMs",
      );
      expect(n.vms.list()).toEqual(["vm1", "vm2", "vm3", "vm4"]);
      await n.vms.stop({ vm: "vm2" });
      // vm5's VHD was created before its start was refused: now it opens.
      await n.vms.start(parseVmStart({ vm: "vm5", vhd: "vm5.vhd", rw: "randread" }));
      expect(n.vms.list()).toEqual(["vm1", "vm3", "vm4", "vm5"]);
      // close stops them all; the node can start VMs again after.
      await n.vms.close();
      expect(n.vms.list()).toEqual([]);
      const again = await runVm(n.vms, { vm: "vm6", vhd: "vm1.vhd", rw: "randread" }, 50);
      expect(again.stopped.verifyErrors).toBe(0);
    } finally {
      await n.close();
    }
  });

  // The disk's size is read from the VHD's footer at the file's end or,
  // when the end was being rewritten as its node died, from its copy at
  // offset 0; it must hold a block of the workload and not pass
  // MAX_VM_DISK_BYTES, and the file may pass it by 4 MiB of metadata at most.
  it("reads the disk's size from the footer or its copy, and refuses a disk that does not fit", async () => {
    const limit = MAX_VM_DISK_BYTES + 4 * MiB;
    const n = await node(3 * limit);
    const refused = async (vhd: string, message: string, bs = 4096) =>
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ vm: "vm1", vhd, bs }))),
        message,
      );
    try {
      const tear = (bytes: Uint8Array) => bytes.fill(0, bytes.length - 512);
      await putVhd(n.lun.volume, "torn.vhd", { type: "dynamic", size: 2 * MiB }, tear);
      const torn = await runVm(n.vms, { vm: "vm1", vhd: "torn.vhd", rw: "randwrite" }, 50);
      expect(torn.started.bytes).toBe(2 * MiB);
      expect(torn.stopped.verifyErrors).toBe(0);
      await putVhd(n.lun.volume, "no-footer.vhd", { type: "dynamic", size: 2 * MiB }, (bytes) =>
        tear(bytes.fill(0, 0, 512)),
      );
      const size = n.lun.volume.lookup("no-footer.vhd").size;
      await refused(
        "no-footer.vhd",
        `no-footer.vhd: no VHD footer at byte ${size - 512} or 0, or a disk of 0 bytes, which does not fit the workload`,
      );
      await putVhd(n.lun.volume, "largest.vhd", { type: "dynamic", size: MAX_VM_DISK_BYTES });
      const largest = await runVm(n.vms, { vm: "vm1", vhd: "largest.vhd", rw: "randwrite" }, 50);
      expect(largest.started.bytes).toBe(MAX_VM_DISK_BYTES);
      await putVhd(n.lun.volume, "larger.vhd", { type: "dynamic", size: MAX_VM_DISK_BYTES + 512 });
      const larger = n.lun.volume.lookup("larger.vhd").size;
      await refused(
        "larger.vhd",
        `larger.vhd: no VHD footer at byte ${larger - 512} or 0, or a disk of 268435968 bytes, which does not fit the workload`,
      );
      await putVhd(n.lun.volume, "tiny.vhd", { type: "fixed", size: 4096 });
      await refused(
        "tiny.vhd",
        "tiny.vhd: no VHD footer at byte 4096 or 0, or a disk of 4096 bytes, which does not fit the workload",
        8192,
      );
      // The file itself may pass the disk limit by 4 MiB of metadata, no more.
      await n.lun.volume.create("at-limit.vhd", limit);
      await refused(
        "at-limit.vhd",
        `at-limit.vhd: no VHD footer at byte ${limit - 512} or 0, or a disk of 0 bytes, which does not fit the workload`,
      );
      await n.lun.volume.create("past-limit.vhd", limit + 1);
      await refused(
        "past-limit.vhd",
        `past-limit.vhd is ${limit + 1} bytes, over the VM disk limit`,
      );
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });

  it("fails a start whose coordinator returns no file", async () => {
    const n = await node();
    const nothing = async (request: VmMetadataRequest) => {
      n.host.asked.push(request);
      return undefined;
    };
    n.host.metadata = nothing;
    try {
      expect(
        (await rejection(n.vms.start(parseVmStart({ ...start, type: "fixed", size: MiB }))))
          .message,
      ).toBe("create vm1.vhd: the coordinator returned no file");
      expect((await rejection(n.vms.start(parseVmStart(start)))).message).toBe(
        "open vm1.vhd: the coordinator returned no file",
      );
      expect(n.host.asked.map((a) => a.op)).toEqual(["create", "open"]);
    } finally {
      await n.close();
    }
  });

  // A state file is bounded before it is read: the header and a generation
  // per 512-byte block of the largest disk, 16 + 524288 * 4 bytes.
  it("refuses a state file larger than the largest disk's before asking anything", async () => {
    const n = await node();
    try {
      const largest = 16 + (MAX_VM_DISK_BYTES / 512) * 4;
      const big = join(n.dir, "big.state");
      writeFileSync(big, new Uint8Array(largest + 1));
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ ...start, state: big }))),
        `state ${big}: ${largest + 1} bytes, more than a VM state file holds (2097168)`,
      );
      expect(n.host.asked).toEqual([]);
    } finally {
      await n.close();
    }
  });

  // A start refused after its slot's mailbox is served (here: a state of
  // another seed) stops serving it before the slot goes back. Were it left
  // serving, the next VM given the slot would be answered by two servers,
  // the old one writing to the refused VM's disk and reading from it.
  it("stops serving a refused start's mailbox before another VM takes the slot", async () => {
    const n = await node(64 * MiB);
    try {
      const state = join(n.dir, "vm1.state");
      const workload = { type: "dynamic", size: MiB, rw: "randwrite", bs: 4096 };
      await runVm(n.vms, { ...start, ...workload, seed: 7 }, 50, state);
      const vm1 = async () => {
        const file = n.lun.volume.lookup("vm1.vhd");
        return await n.lun.volume.read(file, 0, file.size);
      };
      const before = await vm1();
      expectVmArgumentError(
        await rejection(n.vms.start(parseVmStart({ ...start, state, seed: 8 }))),
        `state ${state}: block size 4096 and seed 7, but the workload's are 4096 and 8`,
      );
      const vm2State = join(n.dir, "vm2.state");
      const vm2 = await runVm(
        n.vms,
        { vm: "vm2", vhd: "vm2.vhd", ...workload, seed: 9 },
        300,
        vm2State,
      );
      expect(vm2.stopped.acknowledgedBlocks).toBeGreaterThan(0);
      expect(Buffer.from(await vm1()).equals(before)).toBe(true);
      const copy = join(n.dir, "vm2.vhd");
      await copyFileOffVolume(n.lun.path, "vm2.vhd", copy);
      const check = verifyVmDisk(copy, vm2State);
      expect(check.structure.ok).toBe(true);
      expect(check.intactBlocks).toBe(vm2.stopped.acknowledgedBlocks);
      expect(check.badOffsets).toEqual([]);
    } finally {
      await n.close();
    }
  });

  // The state is the workload's on this disk: the same block size and seed
  // (the pattern of each generation depends on both) and a generation per
  // block of the disk; a file of the largest size passes the bound and is
  // then read as a state file.
  it("refuses a state of another workload or another disk", async () => {
    const n = await node(64 * MiB);
    try {
      const state = join(n.dir, "vm1.state");
      await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "randwrite", bs: 4096, seed: 7 },
        50,
        state,
      );
      await putVhd(n.lun.volume, "vm2.vhd", { type: "dynamic", size: 2 * MiB });
      const refused = async (args: Record<string, unknown>, message: string) =>
        expectVmArgumentError(
          await rejection(n.vms.start(parseVmStart({ ...start, state, ...args }))),
          message,
        );
      await refused(
        { bs: 4096, seed: 8 },
        `state ${state}: block size 4096 and seed 7, but the workload's are 4096 and 8`,
      );
      await refused(
        { bs: 8192, seed: 7 },
        `state ${state}: block size 4096 and seed 7, but the workload's are 8192 and 7`,
      );
      await refused(
        { vhd: "vm2.vhd", bs: 4096, seed: 7 },
        `state ${state}: 256 blocks, but the disk has 512`,
      );
      const largest = join(n.dir, "largest.state");
      writeFileSync(largest, new Uint8Array(16 + (MAX_VM_DISK_BYTES / 512) * 4));
      await refused(
        { state: largest, seed: 7 },
        `state ${largest}: not a VM state file (magic at byte 0)`,
      );
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });
  // A guest that reads and writes at once: a dynamic VHD's block is
  // allocated by its first write to it, which grows the file to that
  // write's end and the engine's view of it far past (a hole, as on a host
  // file system). Reads land on written sectors, on sectors past the file's
  // end but inside the block, and in between: what was not written reads as
  // zeros, never as the LUN's old data, and each read checks against the
  // generation last acknowledged.
  it("serves a guest that reads and writes at once, the unwritten rest of a block as zeros", async () => {
    const n = await node();
    try {
      await litter(n.lun.volume);
      const state = join(n.dir, "vm1.state");
      const { stopped } = await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "randrw", bs: 4096, seed: 13 },
        300,
        state,
      );
      expect(stopped.reads).toBeGreaterThan(0);
      expect(stopped.writes).toBeGreaterThan(0);
      expect(stopped.verifyErrors).toBe(0);
      expect(await showsOldData(n.lun.volume, "vm1.vhd")).toBe(false);
      const copy = join(n.dir, "vm1.vhd");
      await copyFileOffVolume(n.lun.path, "vm1.vhd", copy);
      const check = verifyVmDisk(copy, state);
      expect(check.structure.ok).toBe(true);
      expect(check.intactBlocks).toBe(stopped.acknowledgedBlocks);
      expect(check.unacknowledgedData).toBe(0);
    } finally {
      await n.close();
    }
  });

  // One block of the workload, 768 KiB, on a 1 MiB disk (a disk that holds
  // one block is taken), written again and again from offset 0: the first
  // write allocates the VHD's 2 MiB block and grows the file to the data's
  // end, each rewrite ends at the file's end and grows nothing, and the
  // close writes the footer after the whole block, 1.25 MiB past the data,
  // the gap zeroed in pieces of at most 1 MiB. A resize is a journaled
  // metadata operation through the coordinator: each one asked changes the
  // file's size.
  it("resizes a file only to change its size, and zeroes a gap in pieces of at most 1 MiB", async () => {
    const n = await node();
    try {
      await litter(n.lun.volume);
      const state = join(n.dir, "vm1.state");
      const { started, stopped } = await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "write", bs: 768 * 1024, seed: 5 },
        300,
        state,
      );
      expect(started.bytes).toBe(MiB);
      expect(stopped.writes, "the allocating write and a rewrite").toBeGreaterThanOrEqual(2);
      expect(stopped.acknowledgedBlocks).toBe(1);
      const sizes = n.host.asked.flatMap((a) =>
        a.op === "create" || a.op === "resize" ? [a.size] : [],
      );
      expect(sizes.length, "the create, the allocation's growth, the footer's").toBeGreaterThan(2);
      expect(sizes.filter((size, i) => i > 0 && size === sizes[i - 1])).toEqual([]);
      expect(Math.max(...n.host.writes.map((w) => w.length))).toBe(MiB);
      expect(await showsOldData(n.lun.volume, "vm1.vhd")).toBe(false);
      const copy = join(n.dir, "vm1.vhd");
      await copyFileOffVolume(n.lun.path, "vm1.vhd", copy);
      const check = verifyVmDisk(copy, state);
      expect(check.structure.ok).toBe(true);
      expect(check.intactBlocks).toBe(1);
    } finally {
      await n.close();
    }
  });

  // An allocation whose node died before the footer was moved leaves data
  // past the footer's place and no footer at the end: the copy at offset 0
  // stands in, and the engine's writable open puts the footer back after
  // the last block and cuts the rest off (the VHD specification's footer is
  // the file's last 512 bytes), a shrink the node asks of the coordinator.
  it("cuts a file back through the coordinator when its VHD ends before it", async () => {
    const n = await node();
    try {
      const past = 65536;
      const bytes = await putVhd(n.lun.volume, "vm1.vhd", { type: "dynamic", size: MiB }, (b) => {
        const longer = new Uint8Array(b.length + past).fill(0x5a);
        longer.set(b);
        return longer;
      });
      // Where the engine places the footer: its end of data, after the BAT of a disk with no block yet.
      const cut = VhdImage.open(new MemoryFile("vm1.vhd", bytes)).endOfData + 512;
      const { stopped } = await runVm(n.vms, { ...start, rw: "randread" }, 50);
      expect(n.host.asked).toEqual([
        { op: "open", name: "vm1.vhd" },
        { op: "resize", name: "vm1.vhd", size: cut },
        { op: "flush" },
      ]);
      expect(n.lun.volume.lookup("vm1.vhd").size).toBe(cut);
      expect(stopped.verifyErrors).toBe(0);
    } finally {
      await n.close();
    }
  });

  // The coordinator answers a resize with the file's new map; without one
  // the guest's write fails on the worker with the node's reason (behind
  // the worker's name for the file, the VHD's), and the stop reports it
  // without a FLUSH.
  it("fails a VM whose coordinator returns no file for a resize, at its stop", async () => {
    const n = await node();
    const metadata = n.host.metadata.bind(n.host);
    let resizeAsked = () => {};
    const resized = new Promise<void>((resolve) => {
      resizeAsked = resolve;
    });
    n.host.metadata = async (request: VmMetadataRequest) => {
      if (request.op !== "resize") return await metadata(request);
      n.host.asked.push(request);
      resizeAsked();
      return undefined;
    };
    try {
      await n.vms.start(parseVmStart({ ...start, type: "dynamic", size: MiB, rw: "randwrite" }));
      // The first write allocates a block, which grows the file.
      await resized;
      expect((await rejection(n.vms.stop({ vm: "vm1" }))).message).toBe(
        "vm1.vhd: resize vm1.vhd: the coordinator returned no file",
      );
      expect(n.host.asked.map((a) => a.op)).toEqual(["create", "flush", "resize"]);
      expect(n.vms.list()).toEqual([]);
    } finally {
      await n.close();
    }
  });

  /** A dynamic 1 MiB VHD put on the volume as `name` with its header's checksum spoilt, and the storage engine's refusal of it. */
  async function refusedVhd(volume: Volume, name: string): Promise<string> {
    const bytes = await putVhd(volume, name, { type: "dynamic", size: MiB }, (b) => {
      b[HEADER_AT + 300] = (b[HEADER_AT + 300] ?? 0) ^ 1;
      return b;
    });
    return thrown(() => VhdImage.open(new MemoryFile(name, bytes))).message;
  }

  // vm.ts reads only the footer's cookie and disk size; the worker's VHD
  // engine checks the structure (the VHD specification's checksums) and
  // may refuse the disk before the first I/O: the start fails with the
  // engine's own words, the VM is not listed, and its slot serves the next.
  it("fails a start whose VHD the worker's engine refuses, with the engine's reason", async () => {
    const n = await node();
    try {
      const reason = await refusedVhd(n.lun.volume, "bad.vhd");
      expect(
        (await rejection(n.vms.start(parseVmStart({ ...start, vhd: "bad.vhd" })))).message,
      ).toBe(reason);
      expect(n.vms.list()).toEqual([]);
      const next = await runVm(
        n.vms,
        { ...start, type: "dynamic", size: MiB, rw: "randwrite" },
        50,
      );
      expect(next.stopped.verifyErrors).toBe(0);
    } finally {
      await n.close();
    }
  });

  // A stop may come (on another control connection) while its VM's start
  // still waits for the first I/O; when the worker then refuses the disk,
  // both fail with its reason and the slot goes back once: given back
  // twice, two VMs would share it (its mailbox, its table) and the node
  // would take a fifth VM.
  it("gives a slot back once when a stop meets a start the worker refuses", async () => {
    const n = await node(64 * MiB);
    try {
      const reason = await refusedVhd(n.lun.volume, "bad.vhd");
      const readFile = n.host.readFile.bind(n.host);
      let stopping: Promise<Error> | undefined;
      // The worker's first read of the disk: the VM is listed, its start not settled.
      n.host.readFile = (file, offset, length) => {
        if (stopping === undefined && n.vms.list().includes("vm1"))
          stopping = rejection(n.vms.stop({ vm: "vm1" }));
        return readFile(file, offset, length);
      };
      expect(
        (await rejection(n.vms.start(parseVmStart({ ...start, vhd: "bad.vhd" })))).message,
      ).toBe(reason);
      expect((await stopping)?.message).toBe(reason);
      n.host.readFile = readFile;
      const create = (vm: string): VmStart =>
        parseVmStart({ vm, vhd: `${vm}.vhd`, type: "dynamic", size: MiB, rw: "randread" });
      for (const vm of ["vm1", "vm2", "vm3", "vm4"]) await n.vms.start(create(vm));
      expectVmArgumentError(
        await rejection(n.vms.start(create("vm5"))),
        "this node already runs 4 VMs",
      );
    } finally {
      await n.close();
    }
  });

  // A new VHD is written whole in pieces of at most 1 MiB: a fixed disk of
  // 2 MiB less a sector is 2 MiB with its footer, two whole pieces and no
  // more; the largest disk, fixed, is MAX_VM_DISK_BYTES then its footer,
  // 256 whole pieces and one of 512 bytes.
  it("writes a new VHD in pieces of at most 1 MiB, up to the largest disk", async () => {
    const n = await node(MAX_VM_DISK_BYTES + 16 * MiB);
    const pieces = (name: string, whole: number, last: number) => [
      ...Array.from({ length: whole }, (_, i) => ({ name, offset: i * MiB, length: MiB })),
      ...(last > 0 ? [{ name, offset: whole * MiB, length: last }] : []),
    ];
    try {
      const two = await runVm(
        n.vms,
        { ...start, type: "fixed", size: 2 * MiB - 512, rw: "randread" },
        10,
      );
      expect(two.started.bytes).toBe(2 * MiB - 512);
      expect(n.host.writes).toEqual(pieces("vm1.vhd", 2, 0));
      n.host.writes.length = 0;
      const largest = await runVm(
        n.vms,
        { vm: "vm2", vhd: "largest.vhd", type: "fixed", size: MAX_VM_DISK_BYTES, rw: "randread" },
        10,
      );
      expect(largest.started.bytes).toBe(MAX_VM_DISK_BYTES);
      expect(n.host.asked).toContainEqual({
        op: "create",
        name: "largest.vhd",
        size: MAX_VM_DISK_BYTES + 512,
      });
      expect(n.host.writes).toEqual(pieces("largest.vhd", 256, 512));
    } finally {
      await n.close();
    }
  });

  // The node's workers start once, MAX_VMS_PER_NODE threads for as many
  // VMs (every start asks for them, only the first starts them), and end
  // with the node. proc(5): /proc/self/task holds one entry per thread.
  it("starts its workers once and ends them with the node", async () => {
    const threads = () => readdirSync("/proc/self/task").length;
    const n = await node();
    try {
      const before = threads();
      await n.vms.prepare();
      expect(threads()).toBe(before + MAX_VMS_PER_NODE);
      await runVm(n.vms, { ...start, type: "dynamic", size: MiB, rw: "randread" }, 50);
      expect(threads()).toBe(before + MAX_VMS_PER_NODE);
      await n.vms.close();
      // A worker's thread leaves the process's list just after its exit is
      // reported: waited for, with a deadline only against a hang.
      const until = performance.now() + 10_000;
      while (threads() > before && performance.now() < until)
        await new Promise((resolve) => setTimeout(resolve, 10));
      expect(threads()).toBe(before);
    } finally {
      await n.close();
    }
  });
});
