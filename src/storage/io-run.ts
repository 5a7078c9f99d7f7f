import { readFileSync } from "node:fs";
import type * as Hdr from "hdr-histogram-js";
import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { StorageKernel } from "../wasm/storage.js";
import { FdFile } from "./block-file.js";
import { DirectFile } from "./direct-file.js";
import type { VhdType } from "./format.js";
import { checkIoSpec, type IoSpec } from "./io-spec.js";
import { StorageKernels } from "./kernels.js";
import { openImage } from "./open.js";
import { IO_CONTROL_SLOTS, IoControl, type IoResult, IoState } from "./task-types.js";
import { VhdImage } from "./vhd.js";
import { type DiskSlot, slotName, VirtualMachine } from "./vm.js";

/** node:crypto's createHash, loaded with the run (see {@link runStorageIo}). */
type CreateHash = typeof import("node:crypto").createHash;

/** A disk the workload runs on: a new image of a type, or an existing raw file or VHD. */
export interface IoDisk {
  readonly name: string;
  readonly path: string;
  /** Create it first: a raw file or a VHD of this type and size (a differencing disk on a new dynamic parent). */
  readonly create?: { readonly type: VhdType | "raw"; readonly size: number };
}

/** A hot-plug change during the run, at `atMs` after the start. */
export interface HotplugEvent {
  readonly kind: "add" | "remove";
  readonly atMs: number;
  readonly disk: IoDisk;
}

/** What happened at one hot-plug change. */
export interface HotplugRecord {
  readonly kind: "add" | "remove";
  readonly disk: string;
  readonly slot: string;
  /** When it was asked, in ms after the start. */
  readonly atMs: number;
  /** Asked to done: for an add, until the disk's first request is due; for a remove, until the file is closed. */
  readonly tookMs: number;
  /** I/Os queued when the disk went, failed with DiskRemovedError. */
  readonly failedInFlight?: number;
  /** I/Os reported complete after the removal point (must be 0). */
  readonly completedAfterRemoval?: number;
  /** The file's SHA-256 at removal and at the end of the run are the same. */
  readonly unchangedAfterRemoval?: boolean;
  /** Blocks written and acknowledged before removal, read back intact on reopening / all of them. */
  readonly acknowledgedIntact?: number;
  readonly acknowledgedBlocks?: number;
}

/**
 * One disk's figures. A disk removed and added again under its name has a
 * report for each time it was attached, told apart by slot and start.
 */
export interface IoDiskReport {
  readonly disk: string;
  /** Where it was attached, as "SCSI 0:1". */
  readonly slot: string;
  readonly format: string;
  readonly reads: number;
  readonly writes: number;
  readonly iops: number;
  readonly mbps: number;
  /** Completion latency percentiles in microseconds (fio's clat). */
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly failed: number;
  readonly verifyErrors: number;
  /** Latency distribution from the histogram: [percentile, latency in µs]. */
  readonly histogram: readonly (readonly [number, number])[];
  /** IOPS per timeline interval, from the run's start. */
  readonly timeline: readonly number[];
  /** When the disk's I/O started, in ms after the run's start. */
  readonly startMs: number;
}

/** A whole run. */
export interface StorageIoReport {
  readonly spec: IoSpec;
  readonly intervalMs: number;
  /**
   * Page cache in play (buffered I/O): the figures are the host's cache as
   * much as the disk's. False with direct I/O (O_DIRECT).
   */
  readonly pageCache: boolean;
  readonly disks: readonly IoDiskReport[];
  readonly events: readonly HotplugRecord[];
}

/** Options for {@link runStorageIo}. */
export interface StorageIoOptions {
  readonly threads?: number;
  readonly intervalMs?: number;
  readonly events?: readonly HotplugEvent[];
  readonly vm?: VirtualMachine;
  readonly onProgress?: (elapsedMs: number, completed: number) => void;
}

const ARENA_BYTES = 2 * 1024 * 1024;

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

function sha256(createHash: CreateHash, path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Creates a disk's image when asked to. */
export function prepareDisk(disk: IoDisk): void {
  const c = disk.create;
  if (!c) return;
  const file = new FdFile(disk.path, "w+");
  if (c.type === "raw") {
    file.truncate(c.size);
    file.close();
    return;
  }
  if (c.type === "differencing") {
    const parentPath = `${disk.path}.parent.vhd`;
    VhdImage.create(new FdFile(parentPath, "w+"), { type: "dynamic", size: c.size }).close();
    const parent = openImage(parentPath) as VhdImage;
    try {
      const mtimeMs = new FdFile(parentPath, "r");
      const m = mtimeMs.mtimeMs();
      mtimeMs.close();
      VhdImage.create(file, {
        type: "differencing",
        parent: { image: parent, path: parentPath, mtimeMs: m },
        path: disk.path,
      }).close();
    } finally {
      parent.close();
    }
    return;
  }
  VhdImage.create(file, { type: c.type, size: c.size }).close();
}

/** One attachment of a disk, from its add to the end of the run. */
interface Running {
  readonly disk: IoDisk;
  readonly slot: DiskSlot;
  readonly control: Int32Array;
  readonly gens: Region;
  done: boolean;
  readonly result: Promise<IoResult>;
  /** Set when it is removed: its record's index and the file's SHA-256 then. */
  removal?: { readonly record: number; readonly sha256: string; checked: boolean };
}

/**
 * Runs a guest I/O workload on every disk at once, one pool worker per
 * disk, adding and removing disks at the planned times, and checks the
 * hot-remove guarantees on each removed disk.
 */
export async function runStorageIo(
  disks: readonly IoDisk[],
  spec: IoSpec,
  options: StorageIoOptions = {},
): Promise<StorageIoReport> {
  checkIoSpec(spec);
  // The pool, the histogram library and node:crypto are loaded when a run
  // starts, not with this module: the storage commands that run no I/O
  // (convert, info, map, check) import it too, and a command's start-up is
  // part of its time.
  const [{ KernelPool }, hdr, { createHash }] = await Promise.all([
    import("../pool/pool.js"),
    import("hdr-histogram-js"),
    import("node:crypto"),
  ]);
  const events = [...(options.events ?? [])].sort((a, b) => a.atMs - b.atMs);
  const intervalMs = options.intervalMs ?? 100;
  const vm = options.vm ?? new VirtualMachine("vm1");
  const layout = new MemoryLayout();
  const kernel = StorageKernel.on(layout.memory);
  const total = disks.length + events.filter((e) => e.kind === "add").length;
  const pool = new KernelPool(layout, {
    threads: options.threads ?? Math.min(16, Math.max(1, total)),
    domains: ["storage"],
  });
  // Every attachment in the order made, and those attached now by name: a
  // disk removed and added again is two attachments, each with its figures.
  const runs: Running[] = [];
  const attached = new Map<string, Running>();
  const records: HotplugRecord[] = [];
  let location = 0;
  // Every worker loaded and its kernels instantiated before the clock starts.
  await Promise.all(
    Array.from({ length: pool.threads }, () => pool.run({ type: "storage.ready" })),
  );
  const t0 = nowMs();
  let verifier: { storage: StorageKernels; check: Region } | undefined;
  // A removed disk's guarantees, checked once its worker is done and before
  // anything else may touch its file: at the end of the run, or when a disk
  // is added at its path (which may make the file anew).
  const checkRemoval = (r: Running): void => {
    const removal = r.removal;
    if (!removal || removal.checked) return;
    removal.checked = true;
    verifier ??= {
      storage: new StorageKernels(
        layout.memory,
        kernel,
        layout.allocate("verify arena", ARENA_BYTES * 2, 4096),
      ),
      check: layout.allocate("verify buffer", 1 << 20, 4096),
    };
    const { storage, check } = verifier;
    const unchanged = sha256(createHash, r.disk.path) === removal.sha256;
    const image = openImage(r.disk.path, { kernels: storage });
    let blocks = 0;
    let intact = 0;
    try {
      const table = new Uint32Array(
        layout.memory.buffer,
        r.gens.offset,
        Math.floor(image.size / spec.bs),
      );
      const view = check.bytes(layout.memory).subarray(0, spec.bs);
      for (let b = 0; b < table.length; b++) {
        if ((table[b] ?? 0) === 0) continue;
        blocks++;
        image.read(b * spec.bs, view);
        if (
          kernel.patternVerify(
            check,
            0,
            spec.bs,
            spec.bs,
            b * spec.bs,
            r.gens,
            0,
            BigInt(spec.seed),
          ) === -1
        )
          intact++;
      }
    } finally {
      image.close();
    }
    const rec = records[removal.record];
    if (rec)
      records[removal.record] = {
        ...rec,
        unchangedAfterRemoval: unchanged,
        acknowledgedIntact: intact,
        acknowledgedBlocks: blocks,
      };
  };
  const start = (disk: IoDisk): Running => {
    const holder = attached.get(disk.name);
    if (holder)
      throw new RangeError(
        `hot add of disk '${disk.name}', which is already attached at ${slotName(holder.slot)}`,
      );
    // Two workers on one file would each find the other's blocks.
    const sharer = [...attached.values()].find((r) => r.disk.path === disk.path);
    if (sharer)
      throw new RangeError(
        `hot add of disk '${disk.name}': ${disk.path} is disk '${sharer.disk.name}', attached at ${slotName(sharer.slot)}`,
      );
    for (const r of runs) if (r.disk.path === disk.path) checkRemoval(r);
    const slot: DiskSlot = { bus: "scsi", controller: 0, location: location++ };
    vm.attach(slot, { kind: "vhd", path: disk.path });
    let size: number;
    try {
      prepareDisk(disk);
      // Refused here, in one line naming the file, rather than in a worker.
      if (spec.direct) DirectFile.open(disk.path, "r").close();
      const image = openImage(disk.path);
      try {
        size = image.size;
      } finally {
        image.close();
      }
    } catch (e) {
      vm.detach(slot);
      throw e;
    }
    const n = runs.length;
    const buffer = layout.allocate(`${disk.name} buffer ${n}`, spec.bs, 4096);
    const gens = layout.allocate(
      `${disk.name} generations ${n}`,
      Math.max(4, Math.floor(size / spec.bs) * 4),
    );
    const controlRegion = layout.allocate(`${disk.name} control ${n}`, IO_CONTROL_SLOTS * 4);
    const arena = layout.allocate(`${disk.name} arena ${n}`, ARENA_BYTES, 4096);
    const control = new Int32Array(layout.memory.buffer, controlRegion.offset, IO_CONTROL_SLOTS);
    const entry: Running = {
      disk,
      slot,
      control,
      gens,
      done: false,
      result: pool.run({
        type: "storage.io",
        disk: disk.name,
        path: disk.path,
        spec,
        buffer: buffer.toDescriptor(),
        gens: gens.toDescriptor(),
        control: controlRegion.toDescriptor(),
        arena: arena.toDescriptor(),
        intervalMs,
      }),
    };
    void entry.result.then(
      () => {
        entry.done = true;
      },
      () => {
        entry.done = true;
      },
    );
    runs.push(entry);
    attached.set(disk.name, entry);
    return entry;
  };
  const waitSlot = async (r: Running, slot: number, value: number) => {
    while (Atomics.load(r.control, slot) !== value && !r.done) {
      const w = Atomics.waitAsync(r.control, slot, Atomics.load(r.control, slot), 20);
      if (w.async) await w.value;
    }
  };
  try {
    vm.start();
    for (const d of disks) start(d);
    const ticker = setInterval(() => {
      let completed = 0;
      for (const r of runs) completed += Atomics.load(r.control, IoControl.completed);
      options.onProgress?.(nowMs() - t0, completed);
    }, 200);
    try {
      for (const e of events) {
        const wait = t0 + e.atMs - nowMs();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const asked = nowMs();
        if (e.kind === "add") {
          const r = start(e.disk);
          await waitSlot(r, IoControl.started, 1);
          records.push({
            kind: "add",
            disk: e.disk.name,
            slot: slotName(r.slot),
            atMs: asked - t0,
            tookMs: nowMs() - asked,
          });
        } else {
          const r = attached.get(e.disk.name);
          if (!r)
            throw new RangeError(`hot remove of disk '${e.disk.name}', which is not attached`);
          Atomics.store(r.control, IoControl.state, IoState.removeAsked);
          Atomics.notify(r.control, IoControl.state);
          await waitSlot(r, IoControl.state, IoState.removed);
          const tookMs = nowMs() - asked;
          const result = await r.result;
          attached.delete(e.disk.name);
          vm.detach(r.slot);
          r.removal = {
            record: records.length,
            sha256: sha256(createHash, r.disk.path),
            checked: false,
          };
          records.push({
            kind: "remove",
            disk: e.disk.name,
            slot: slotName(r.slot),
            atMs: asked - t0,
            tookMs,
            failedInFlight: result.failed,
            completedAfterRemoval:
              result.removedAtMs !== undefined && result.lastCompletionAtMs > result.removedAtMs
                ? 1
                : 0,
          });
        }
      }
      const results = await Promise.all(runs.map((r) => r.result));
      for (const r of runs) checkRemoval(r);
      const reports = results.map((res, i): IoDiskReport => {
        const h = hdr.decodeFromCompressedBase64(res.histogram);
        const seconds = Math.max(1e-9, res.elapsedMs / 1000);
        const entry = runs[i];
        return {
          disk: res.disk,
          slot: entry ? slotName(entry.slot) : "",
          format: entry?.disk.create?.type ?? "existing",
          ...ioFigures(res, seconds, h),
          failed: res.failed,
          verifyErrors: res.verifyErrors,
          histogram: latencyBuckets(h),
          timeline: res.timeline.map((n) => (n * 1000) / intervalMs),
          startMs: res.startedAtMs - t0,
        };
      });
      return { spec, intervalMs, pageCache: !spec.direct, disks: reports, events: records };
    } finally {
      clearInterval(ticker);
    }
  } finally {
    vm.stop();
    for (const r of attached.values()) vm.detach(r.slot);
    await pool.close();
  }
}

/** Percentiles of the latency plot (HdrHistogram's percentile distribution, thinned). */
const PLOT_PERCENTILES = [1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100];

/** The latency distribution: [percentile, latency in µs]. */
function latencyBuckets(h: Hdr.Histogram): [number, number][] {
  if (h.totalCount === 0) return [];
  return PLOT_PERCENTILES.map((p) => [p, h.getValueAtPercentile(p) / 1000]);
}

/** A disk's I/O figures over a run: operations, rates and latency percentiles. */
export interface IoFigures {
  reads: number;
  writes: number;
  /** Reads and writes per second. */
  iops: number;
  /** Bytes moved per second, in 10^6. */
  mbps: number;
  p50Us: number;
  p99Us: number;
  p999Us: number;
}

/**
 * The figures fio prints for a disk, from a run's counts, its length in
 * seconds and its latency histogram (recorded in ns).
 */
export function ioFigures(
  counts: { reads: number; writes: number; bytes: number },
  seconds: number,
  latency: Hdr.Histogram,
): IoFigures {
  return {
    reads: counts.reads,
    writes: counts.writes,
    iops: (counts.reads + counts.writes) / seconds,
    mbps: counts.bytes / seconds / 1e6,
    p50Us: latency.getValueAtPercentile(50) / 1000,
    p99Us: latency.getValueAtPercentile(99) / 1000,
    p999Us: latency.getValueAtPercentile(99.9) / 1000,
  };
}
