/*
 * The rules of a guest I/O run that hold on the caller's thread: a made
 * disk leaves no file open, the report's per-disk figures agree with each
 * other (timeline, IOPS, MB/s, latency plot), hot-plug changes happen in
 * time order at the times asked and on the slots the VM gives, a removal's
 * record tells the truth about the file afterwards, the pool has a worker
 * for every disk unless told otherwise, the VM is left empty and the
 * progress ticker stops with the run, and bad plans are refused by name.
 */
import { closeSync, openSync, readdirSync, writeSync } from "node:fs";
import { join } from "node:path";
import * as hdr from "hdr-histogram-js";
import { describe, expect, it } from "vitest";
import { type IoDiskReport, ioFigures, prepareDisk, runStorageIo } from "../src/storage/io-run.js";
import type { IoSpec } from "../src/storage/io-spec.js";
import { VirtualMachine } from "../src/storage/vm.js";
import { testTempDir } from "./support/temp.js";

const MiB = 1024 * 1024;
const PLOT = [1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100];

function openFds(): number {
  return readdirSync("/proc/self/fd").length;
}

function disk(report: { disks: readonly IoDiskReport[] }, name: string): IoDiskReport {
  const d = report.disks.find((x) => x.disk === name);
  if (!d) throw new Error(`no report for disk ${name}`);
  return d;
}

/** The figures a disk's report must agree on, whatever the run's timing. */
function expectConsistent(
  d: IoDiskReport,
  bs: number,
  intervalMs: number,
  minSeconds: number,
): void {
  const ios = d.reads + d.writes;
  // Each timeline bucket is a count of I/Os scaled to a second.
  const perIo = 1000 / intervalMs;
  let counted = 0;
  for (const v of d.timeline) {
    expect(Number.isInteger(v / perIo), `${d.disk} bucket ${v}`).toBe(true);
    counted += v / perIo;
  }
  expect(counted).toBe(ios);
  // A disk not removed runs at least its run time.
  if (minSeconds > 0) expect(d.iops).toBeLessThanOrEqual(ios / minSeconds + 1e-9);
  if (ios > 0) {
    expect(d.iops).toBeGreaterThan(ios / 60);
    expect(Math.abs(d.mbps - (d.iops * bs) / 1e6) / d.mbps).toBeLessThan(1e-9);
    expect(d.histogram.map(([p]) => p)).toEqual(PLOT);
    const values = d.histogram.map(([, v]) => v);
    for (const [i, v] of values.entries()) {
      expect(v).toBeGreaterThan(0);
      expect(v).toBeGreaterThanOrEqual(values[i - 1] ?? 0);
    }
    expect(values[PLOT.indexOf(50)]).toBe(d.p50Us);
    expect(values[PLOT.indexOf(99)]).toBe(d.p99Us);
    expect(values[PLOT.indexOf(99.9)]).toBe(d.p999Us);
  } else {
    expect(d.histogram).toEqual([]);
    expect([d.iops, d.mbps, d.p50Us]).toEqual([0, 0, 0]);
  }
}

describe("the disks a run makes", () => {
  it("a differencing disk's making leaves neither it nor its parent open", () => {
    const path = join(testTempDir("io-rules"), "child.vhd");
    const before = openFds();
    prepareDisk({ name: "child", path, create: { type: "differencing", size: MiB } });
    expect(openFds()).toBe(before);
  });

  it("a disk that did no I/O has no rate, no latency and an empty plot", () => {
    const latency = hdr.build({ numberOfSignificantValueDigits: 3 });
    const figures = ioFigures({ reads: 0, writes: 0, bytes: 0 }, 2, latency);
    expect(figures).toEqual({
      reads: 0,
      writes: 0,
      iops: 0,
      mbps: 0,
      p50Us: 0,
      p99Us: 0,
      p999Us: 0,
    });
    latency.destroy();
  });
});

describe("a guest I/O run", () => {
  it("on one worker runs disks in turn; a disk removed before it starts does no I/O; the VM is left empty and progress stops", async () => {
    const dir = testTempDir("io-rules");
    const existing = join(dir, "b.img");
    prepareDisk({ name: "b", path: existing, create: { type: "raw", size: MiB } });
    const a = { name: "a", path: join(dir, "a.img"), create: { type: "raw" as const, size: MiB } };
    const b = { name: "b", path: existing };
    const spec: IoSpec = {
      rw: "randrw",
      rwmixread: 50,
      bs: 4096,
      iodepth: 4,
      runtimeMs: 250,
      seed: 11,
      verify: true,
    };
    const vm = new VirtualMachine("vm-rules");
    const progress: [number, number][] = [];
    const attached: ReturnType<VirtualMachine["list"]>[] = [];
    const fds = openFds();
    const report = await runStorageIo([a, b], spec, {
      threads: 1,
      intervalMs: 50,
      vm,
      events: [{ kind: "remove", atMs: 0, disk: b }],
      onProgress: (elapsedMs, completed) => {
        progress.push([elapsedMs, completed]);
        attached.push(vm.list());
      },
    });
    const calls = progress.length;

    expect(report.spec).toBe(spec);
    expect(report.intervalMs).toBe(50);
    expect(report.pageCache).toBe(true);
    expect(report.disks.map((d) => [d.disk, d.format])).toEqual([
      ["a", "raw"],
      ["b", "existing"],
    ]);
    const ra = disk(report, "a");
    const rb = disk(report, "b");
    expect(ra.reads).toBeGreaterThan(0);
    expect(ra.writes).toBeGreaterThan(0);
    expect(ra.verifyErrors).toBe(0);
    expectConsistent(ra, spec.bs, 50, spec.runtimeMs / 1000);
    expectConsistent(rb, spec.bs, 50, 0);
    // b waited for a's whole run on the one worker, then saw its removal at once.
    expect(ra.startMs).toBeGreaterThan(-50);
    expect(ra.startMs).toBeLessThan(60_000);
    expect(rb.startMs).toBeGreaterThanOrEqual(ra.startMs + spec.runtimeMs - 0.01);
    expect([rb.reads, rb.writes, rb.failed]).toEqual([0, 0, spec.iodepth]);
    expect(rb.timeline).toEqual([]);

    expect(report.events).toHaveLength(1);
    const removal = report.events[0];
    expect(removal).toMatchObject({
      kind: "remove",
      disk: "b",
      slot: "SCSI 0:1",
      failedInFlight: spec.iodepth,
      completedAfterRemoval: 0,
      unchangedAfterRemoval: true,
      acknowledgedBlocks: 0,
      acknowledgedIntact: 0,
    });
    expect(removal?.atMs).toBeGreaterThanOrEqual(0);
    expect(removal?.atMs).toBeLessThan(60_000);
    expect(removal?.tookMs).toBeGreaterThanOrEqual(0);
    expect(removal?.tookMs).toBeLessThan(60_000);

    // Progress: ticks while the run lasts, counting completed I/Os.
    expect(calls).toBeGreaterThan(0);
    let last = 0;
    for (const [elapsedMs, completed] of progress) {
      expect(elapsedMs).toBeGreaterThanOrEqual(last);
      expect(elapsedMs).toBeLessThan(60_000);
      last = elapsedMs;
      expect(completed).toBeGreaterThanOrEqual(0);
      expect(completed).toBeLessThanOrEqual(ra.reads + ra.writes);
    }
    expect(Math.max(...progress.map(([, c]) => c))).toBeGreaterThan(0);
    expect(attached[0]).toContainEqual({
      slot: { bus: "scsi", controller: 0, location: 0 },
      disk: { kind: "vhd", path: a.path },
    });

    // Afterwards: the VM is off and empty, no file is left open, no tick comes.
    expect(vm.isRunning).toBe(false);
    expect(vm.list()).toEqual([]);
    expect(openFds()).toBe(fds);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(progress).toHaveLength(calls);
  }, 30_000);

  it("applies hot-plug changes in time order, at the times asked, each disk on a worker of its own", async () => {
    const dir = testTempDir("io-rules");
    const a = { name: "a", path: join(dir, "a.img"), create: { type: "raw" as const, size: MiB } };
    const b = {
      name: "b",
      path: join(dir, "b.vhd"),
      create: { type: "fixed" as const, size: MiB },
    };
    const spec: IoSpec = {
      rw: "write",
      rwmixread: 50,
      bs: 4096,
      iodepth: 4,
      runtimeMs: 400,
      seed: 5,
      verify: false,
    };
    // Planned out of order on purpose.
    const report = await runStorageIo([a], spec, {
      events: [
        { kind: "remove", atMs: 120, disk: a },
        { kind: "add", atMs: 40, disk: b },
      ],
    });
    expect(report.intervalMs).toBe(100);
    expect(report.disks.map((d) => [d.disk, d.format])).toEqual([
      ["a", "raw"],
      ["b", "fixed"],
    ]);
    const ra = disk(report, "a");
    const rb = disk(report, "b");
    for (const d of [ra, rb]) {
      expect(d.reads).toBe(0);
      expect(d.writes).toBeGreaterThan(0);
      expectConsistent(d, spec.bs, 100, d === rb ? spec.runtimeMs / 1000 : 0);
    }
    expect(report.events.map((e) => e.kind)).toEqual(["add", "remove"]);
    const [add, removal] = report.events;
    // Timers keep whole milliseconds: one may fire a little early.
    expect(add?.atMs).toBeGreaterThanOrEqual(35);
    expect(add?.atMs).toBeLessThan(60_000);
    expect(add?.tookMs).toBeGreaterThanOrEqual(0);
    expect(add?.tookMs).toBeLessThan(60_000);
    expect(Object.keys(add ?? {}).sort()).toEqual(["atMs", "disk", "kind", "slot", "tookMs"]);
    expect(add).toMatchObject({ kind: "add", disk: "b", slot: "SCSI 0:1" });
    expect(rb.startMs).toBeGreaterThanOrEqual(30);
    expect(rb.startMs).toBeLessThan(60_000);

    expect(removal?.atMs).toBeGreaterThanOrEqual(115);
    expect(removal?.atMs).toBeLessThan(60_000);
    expect(removal?.tookMs).toBeGreaterThanOrEqual(0);
    expect(removal?.tookMs).toBeLessThan(60_000);
    expect(removal).toMatchObject({
      kind: "remove",
      disk: "a",
      slot: "SCSI 0:0",
      completedAfterRemoval: 0,
      unchangedAfterRemoval: true,
      failedInFlight: ra.failed,
    });
    // a was still running when removed (b had a worker of its own).
    expect(ra.failed).toBeGreaterThanOrEqual(1);
    // Sequential writes from block 0: every block written is one acknowledged.
    expect(removal?.acknowledgedBlocks).toBe(Math.min(ra.writes, MiB / spec.bs));
    expect(removal?.acknowledgedIntact).toBe(removal?.acknowledgedBlocks);
  }, 30_000);

  it("a read-only mix writes nothing; a removed disk's file is checked before a disk is made anew at its path", async () => {
    const dir = testTempDir("io-rules");
    const path = join(dir, "a.img");
    const first = { name: "a", path, create: { type: "raw" as const, size: MiB } };
    const again = { name: "a", path, create: { type: "dynamic" as const, size: MiB } };
    const spec: IoSpec = {
      rw: "read",
      rwmixread: 0,
      bs: 4096,
      iodepth: 2,
      runtimeMs: 200,
      seed: 9,
      verify: true,
      direct: true,
    };
    const report = await runStorageIo([first], spec, {
      events: [
        { kind: "remove", atMs: 0, disk: first },
        { kind: "add", atMs: 30, disk: again },
      ],
    });
    expect(report.pageCache).toBe(false);
    for (const d of report.disks) {
      expect(d.writes).toBe(0);
      expect(d.verifyErrors).toBe(0);
    }
    expect(report.disks.map((d) => [d.disk, d.slot, d.format])).toEqual([
      ["a", "SCSI 0:0", "raw"],
      ["a", "SCSI 0:1", "dynamic"],
    ]);
    expect(report.events.map((e) => [e.kind, e.disk, e.slot])).toEqual([
      ["remove", "a", "SCSI 0:0"],
      ["add", "a", "SCSI 0:1"],
    ]);
    // Checked before the add made the file anew as a VHD: nothing the removed
    // disk did reached it.
    expect(report.events[0]?.unchangedAfterRemoval).toBe(true);
  }, 30_000);

  it("reports a removed disk's file changed when a byte reaches it after the removal", async () => {
    const dir = testTempDir("io-rules");
    const a = { name: "a", path: join(dir, "a.img"), create: { type: "raw" as const, size: MiB } };
    const spec: IoSpec = {
      rw: "randwrite",
      rwmixread: 0,
      bs: 4096,
      iodepth: 2,
      runtimeMs: 300,
      seed: 4,
      verify: true,
    };
    // b keeps the run going past the progress tick that touches a's file.
    const b = { name: "b", path: join(dir, "b.img"), create: { type: "raw" as const, size: MiB } };
    let touched = false;
    const report = await runStorageIo([a, b], spec, {
      events: [{ kind: "remove", atMs: 0, disk: a }],
      // Progress ticks every 200 ms; the first comes long after the removal.
      onProgress: () => {
        if (touched) return;
        touched = true;
        const fd = openSync(a.path, "r+");
        try {
          writeSync(fd, Buffer.from([0xa5]), 0, 1, MiB - 1);
        } finally {
          closeSync(fd);
        }
      },
    });
    expect(touched).toBe(true);
    expect(report.events).toHaveLength(1);
    expect(report.events[0]).toMatchObject({ kind: "remove", unchangedAfterRemoval: false });
  }, 30_000);

  it("refuses a bad workload or a removal of a disk that is not attached, by name", async () => {
    const spec: IoSpec = {
      rw: "randread",
      rwmixread: 100,
      bs: 4096,
      iodepth: 1,
      runtimeMs: 100,
      seed: 1,
      verify: false,
    };
    await expect(runStorageIo([], { ...spec, bs: 1000 })).rejects.toThrow(
      "bs must be a multiple of 512 from 512 to 1048576 bytes, not 1000",
    );
    const ghost = { name: "ghost", path: join(testTempDir("io-rules"), "ghost.img") };
    const run = runStorageIo([], spec, { events: [{ kind: "remove", atMs: 0, disk: ghost }] });
    await expect(run).rejects.toThrow(RangeError);
    await expect(run).rejects.toThrow("hot remove of disk 'ghost', which is not attached");
  }, 30_000);
});
