import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import * as hdr from "hdr-histogram-js";
import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import type { KernelPool } from "../pool/pool.js";
import { MemoryFile } from "../storage/block-file.js";
import { CHANNEL_HEADER_BYTES, type ChannelServer, serveChannel } from "../storage/channel-file.js";
import { ioFigures } from "../storage/io-run.js";
import { checkIoSpec, IO_MODES, type IoMode, type IoSpec } from "../storage/io-spec.js";
import { IO_CONTROL_SLOTS, IoControl, type IoResult, IoState } from "../storage/task-types.js";
import { VhdImage } from "../storage/vhd.js";
import type { FileMap } from "./volume.js";

/** The metadata operations a VM asks of the coordinator. */
interface MetadataRequest {
  readonly op: "create" | "open" | "resize";
  readonly name: string;
  readonly size?: number;
}

/*
 * Virtual machines on a Cluster Shared Volume: the storage engine's guest
 * I/O workload, run by a node against a VHD that is a file on the volume.
 * The VHD engine is synchronous over a block file; the node's path to the
 * file is asynchronous (direct I/O to the target at the file's extents, or
 * redirected through the coordinator). The workload and the VHD engine run
 * on a pool worker over a ChannelFile; the node's event loop serves the
 * worker's requests through its own file I/O (serveChannel), so a VM's
 * disk I/O takes the node's direct or redirected path, is fenced as the
 * node is, and metadata (create, extend) goes to the coordinator.
 */

/** What a VM needs of its node. */
export interface VmHost {
  /** A metadata operation through the coordinator (or done here by the coordinator). */
  metadata(request: MetadataRequest): Promise<FileMap | undefined>;
  readFile(file: FileMap, offset: number, length: number): Promise<Uint8Array>;
  writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void>;
  /** Makes this node's acknowledged writes durable at the target (FLUSH). */
  flushData(): Promise<void>;
}

/** VMs one node runs at once. */
export const MAX_VMS_PER_NODE = 4;
/** Largest VM disk (the generation table is held in memory, and a new fixed VHD is written whole). */
export const MAX_VM_DISK_BYTES = 256 * 1024 * 1024;
const ARENA_BYTES = 2 * 1024 * 1024;
/** The mailbox carries up to 1 MiB per request: the workload's largest block. */
const MAILBOX_BYTES = CHANNEL_HEADER_BYTES + (1 << 20);
const MAX_BLOCK = 1 << 20;
const WRITE_CHUNK = 1 << 20;

/** `vm-start` arguments, checked by {@link parseVmStart}. */
export interface VmStart {
  /** The VM's name (one per node). */
  readonly vm: string;
  /** The VHD's file name on the volume. */
  readonly vhd: string;
  /** Create the VHD on the volume first (else open it). */
  readonly create?: { readonly type: "fixed" | "dynamic"; readonly size: number };
  /** The workload. */
  readonly spec: IoSpec;
  /** A state file written by `vm-stop` on the source node: the verify table moves with the VM. */
  readonly state?: string;
}

/** `vm-stop` arguments. */
export interface VmStop {
  readonly vm: string;
  /** Where to save the VM's state (its verify table) for the node that takes it next. */
  readonly state?: string;
}

/** What `vm-start` reports. */
export interface VmStarted {
  readonly vm: string;
  readonly vhd: string;
  readonly bytes: number;
  /** The VHD opened (or created) through the coordinator, ms. */
  readonly openMs: number;
  /** Asked to the first request due, ms. */
  readonly startMs: number;
  /** Blocks the state file says were written (acknowledged) before. */
  readonly acknowledgedBlocks: number;
}

/** What `vm-stop` reports: the VM's figures on this node. */
export interface VmStopped {
  readonly vm: string;
  readonly vhd: string;
  readonly reads: number;
  readonly writes: number;
  readonly iops: number;
  readonly mbps: number;
  readonly p50Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly verifyErrors: number;
  readonly verifyErrorOffsets: readonly number[];
  readonly failed: number;
  readonly elapsedMs: number;
  /** Removal asked to the VHD closed on the worker, ms. */
  readonly closeMs: number;
  /** The FLUSH at the target after close, ms. */
  readonly flushMs: number;
  /** Blocks written and acknowledged so far (all nodes' runs of this VM). */
  readonly acknowledgedBlocks: number;
}

/** A bad `vm-start` / `vm-stop` argument, named. */
export class VmArgumentError extends RangeError {
  override name = "VmArgumentError";
}

function field(args: Record<string, unknown>, name: string, type: "string" | "number"): unknown {
  const value = args[name];
  if (value !== undefined && typeof value !== type)
    throw new VmArgumentError(`${name} must be a ${type}, not ${JSON.stringify(value)}`);
  return value;
}

function checkName(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length === 0 || Buffer.byteLength(value) > 128)
    throw new VmArgumentError(`${what} must be a name of 1 to 128 bytes`);
  return value;
}

function checkPath(value: unknown, what: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !value.startsWith("/") || Buffer.byteLength(value) > 1024)
    throw new VmArgumentError(`${what} must be an absolute path of at most 1024 bytes`);
  return value;
}

/** Checks `vm-start` arguments field by field. @throws VmArgumentError naming the field. */
export function parseVmStart(args: unknown): VmStart {
  if (typeof args !== "object" || args === null || Array.isArray(args))
    throw new VmArgumentError("vm-start needs arguments {vm, vhd, ...}");
  const a = args as Record<string, unknown>;
  const vm = checkName(a.vm, "vm");
  const vhd = checkName(a.vhd, "vhd");
  const type = field(a, "type", "string");
  const size = field(a, "size", "number") as number | undefined;
  if (type !== undefined && type !== "fixed" && type !== "dynamic")
    throw new VmArgumentError(`type must be fixed or dynamic, not ${JSON.stringify(type)}`);
  if ((type === undefined) !== (size === undefined))
    throw new VmArgumentError("type and size go together (they create the VHD)");
  if (
    size !== undefined &&
    (!Number.isSafeInteger(size) || size < 1 << 20 || size > MAX_VM_DISK_BYTES || size % 512 !== 0)
  )
    throw new VmArgumentError(
      `size must be a multiple of 512 from 1 MiB to ${MAX_VM_DISK_BYTES} bytes, not ${size}`,
    );
  const rw = (field(a, "rw", "string") as string | undefined) ?? "randrw";
  if (!IO_MODES.includes(rw as IoMode))
    throw new VmArgumentError(`rw must be one of ${IO_MODES.join(", ")}, not ${rw}`);
  const num = (name: string, fallback: number) =>
    (field(a, name, "number") as number | undefined) ?? fallback;
  const spec: IoSpec = {
    rw: rw as IoMode,
    rwmixread: num("rwmixread", 50),
    bs: num("bs", 4096),
    iodepth: num("iodepth", 1),
    runtimeMs: num("runtimeMs", 3_600_000),
    seed: num("seed", 1),
    verify: true,
  };
  if (!Number.isSafeInteger(spec.seed) || spec.seed < 0 || spec.seed > 0xffffffff)
    throw new VmArgumentError(`seed must be a whole number from 0 to 2^32-1, not ${spec.seed}`);
  try {
    checkIoSpec(spec);
  } catch (error) {
    throw new VmArgumentError((error as Error).message);
  }
  const state = checkPath(a.state, "state");
  return {
    vm,
    vhd,
    ...(type !== undefined && size !== undefined
      ? { create: { type: type as "fixed" | "dynamic", size } }
      : {}),
    spec,
    ...(state !== undefined ? { state } : {}),
  };
}

/** Checks `vm-stop` arguments. @throws VmArgumentError naming the field. */
export function parseVmStop(args: unknown): VmStop {
  if (typeof args !== "object" || args === null || Array.isArray(args))
    throw new VmArgumentError("vm-stop needs arguments {vm}");
  const a = args as Record<string, unknown>;
  const state = checkPath(a.state, "state");
  return { vm: checkName(a.vm, "vm"), ...(state !== undefined ? { state } : {}) };
}

/**
 * A VM's state file: magic "HCVM" (u32), block size, block count and the
 * workload's seed (u32 each, little-endian), then the u32 generation of each
 * block: what the guest last wrote and was acknowledged, which moves with the
 * VM as its memory would.
 */
const STATE_MAGIC = 0x4d564348;
const STATE_HEADER = 16;

function encodeState(spec: IoSpec, table: Uint32Array): Uint8Array {
  const out = new Uint8Array(STATE_HEADER + table.length * 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, STATE_MAGIC, true);
  view.setUint32(4, spec.bs, true);
  view.setUint32(8, table.length, true);
  view.setUint32(12, spec.seed, true);
  out.set(new Uint8Array(table.buffer, table.byteOffset, table.byteLength), STATE_HEADER);
  return out;
}

/** A decoded VM state file. */
export interface VmState {
  readonly bs: number;
  readonly seed: number;
  readonly table: Uint32Array;
}

/** Parses a VM state file. @throws VmArgumentError naming the field and its byte. */
export function decodeVmState(path: string, bytes: Uint8Array): VmState {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < STATE_HEADER || view.getUint32(0, true) !== STATE_MAGIC)
    throw new VmArgumentError(`state ${path}: not a VM state file (magic at byte 0)`);
  const bs = view.getUint32(4, true);
  const blocks = view.getUint32(8, true);
  if (bs < 512 || bs > MAX_BLOCK || bs % 512 !== 0)
    throw new VmArgumentError(`state ${path}: block size ${bs} at byte 4`);
  if (bytes.length !== STATE_HEADER + blocks * 4)
    throw new VmArgumentError(
      `state ${path}: ${blocks} blocks at byte 8, but the file holds ${bytes.length} bytes`,
    );
  return {
    bs,
    seed: view.getUint32(12, true),
    // Copied: a Buffer from readFileSync may be a view into a shared pool.
    table: new Uint32Array(Uint8Array.from(bytes.subarray(STATE_HEADER)).buffer),
  };
}

/** Largest state file: the header and a generation per 512-byte block of the largest disk. */
const MAX_STATE_BYTES = STATE_HEADER + (MAX_VM_DISK_BYTES / 512) * 4;

/** Reads a state file, its size bounded before it is read. */
function readState(path: string): Uint8Array {
  const bytes = statSync(path).size;
  if (bytes > MAX_STATE_BYTES)
    throw new VmArgumentError(
      `state ${path}: ${bytes} bytes, more than a VM state file holds (${MAX_STATE_BYTES})`,
    );
  return readFileSync(path);
}

function stateFor(path: string, bytes: Uint8Array, spec: IoSpec, blocks: number): Uint32Array {
  const state = decodeVmState(path, bytes);
  if (state.bs !== spec.bs || state.seed !== spec.seed)
    throw new VmArgumentError(
      `state ${path}: block size ${state.bs} and seed ${state.seed}, but the workload's are ${spec.bs} and ${spec.seed}`,
    );
  if (state.table.length !== blocks)
    throw new VmArgumentError(
      `state ${path}: ${state.table.length} blocks, but the disk has ${blocks}`,
    );
  return state.table;
}

interface Slot {
  readonly buffer: Region;
  readonly gens: Region;
  readonly control: Region;
  readonly arena: Region;
  readonly mailbox: Region;
}

interface RunningVm {
  readonly vm: string;
  readonly vhd: string;
  readonly spec: IoSpec;
  readonly slot: Slot;
  readonly blocks: number;
  readonly result: Promise<IoResult>;
  readonly stopServing: () => Promise<void>;
}

/** The VMs one node runs, each on a pool worker over its own mailbox. */
export class NodeVms {
  private readonly layout = new MemoryLayout();
  private pool: KernelPool | undefined;
  private readonly free: Slot[] = [];
  private slots = 0;
  private readonly running = new Map<string, RunningVm>();
  /** VM names whose start is under way. */
  private readonly starting = new Set<string>();

  constructor(private readonly host: VmHost) {}

  /** Starts the workers and loads their kernels (before a migration's blackout, as Hyper-V creates the destination VM first). */
  async prepare(): Promise<void> {
    if (this.pool) return;
    const { KernelPool } = await import("../pool/pool.js");
    const pool = new KernelPool(this.layout, { threads: MAX_VMS_PER_NODE, domains: ["storage"] });
    this.pool = pool;
    await Promise.all(
      Array.from({ length: pool.threads }, () => pool.run({ type: "storage.ready" })),
    );
  }

  private slot(): Slot {
    const reuse = this.free.pop();
    if (reuse) return reuse;
    if (this.slots >= MAX_VMS_PER_NODE)
      throw new VmArgumentError(`this node already runs ${MAX_VMS_PER_NODE} VMs`);
    const n = this.slots++;
    return {
      buffer: this.layout.allocate(`vm ${n} buffer`, MAX_BLOCK, 4096),
      gens: this.layout.allocate(`vm ${n} generations`, (MAX_VM_DISK_BYTES / 512) * 4),
      control: this.layout.allocate(`vm ${n} control`, IO_CONTROL_SLOTS * 4),
      arena: this.layout.allocate(`vm ${n} arena`, ARENA_BYTES, 4096),
      mailbox: this.layout.allocate(`vm ${n} mailbox`, MAILBOX_BYTES, 4096),
    };
  }

  /** The VM names running here. */
  list(): string[] {
    return [...this.running.keys()];
  }

  /**
   * Creates or opens the VM's VHD through the coordinator and starts its
   * workload. A name is taken from the moment its start is asked: a second
   * start of it (from another control connection) is refused while the
   * first is still under way, not only once it runs.
   */
  async start(request: VmStart): Promise<VmStarted> {
    if (this.running.has(request.vm))
      throw new VmArgumentError(`VM ${request.vm} already runs on this node`);
    if (this.starting.has(request.vm))
      throw new VmArgumentError(`VM ${request.vm} is already starting on this node`);
    this.starting.add(request.vm);
    try {
      return await this.begin(request);
    } finally {
      this.starting.delete(request.vm);
    }
  }

  private async begin(request: VmStart): Promise<VmStarted> {
    const asked = performance.now();
    const { spec } = request;
    const state = request.state !== undefined ? readState(request.state) : undefined;
    await this.prepare();
    const pool = this.pool as KernelPool;
    let file = request.create
      ? await this.createVhd(request.vhd, request.create)
      : await this.host.metadata({ op: "open", name: request.vhd });
    if (!file) throw new Error(`open ${request.vhd}: the coordinator returned no file`);
    const opened = performance.now();
    if (file.size > MAX_VM_DISK_BYTES + (1 << 22))
      throw new VmArgumentError(`${request.vhd} is ${file.size} bytes, over the VM disk limit`);
    const slot = this.slot();
    // Set once the slot's mailbox is served: a start that fails from then on
    // must stop serving it before the slot goes back, or the next VM given
    // the slot would be answered by this one's server, from this one's file.
    let server: ChannelServer | undefined;
    try {
      const memory = this.layout.memory;
      const host = this.host;
      // The file's length as the VHD engine sees it may run ahead of its
      // clusters: the engine extends ahead on each block allocation (a cheap
      // hole on a host file system), and the volume allocates only what is
      // written, as a sparse file would. Bytes past the clusters read as zeros.
      let length = file.size;
      const resize = async (size: number) => {
        file = await host.metadata({ op: "resize", name: request.vhd, size });
        if (!file) throw new Error(`resize ${request.vhd}: the coordinator returned no file`);
      };
      const served = serveChannel(memory, slot.mailbox, {
        read: async (position, want) => {
          const f = file as FileMap;
          const n = Math.max(0, Math.min(want, length - position));
          const out = new Uint8Array(n);
          const held = Math.max(0, Math.min(n, f.size - position));
          if (held > 0) out.set(await host.readFile(f, position, held));
          return out;
        },
        write: async (position, data) => {
          const was = (file as FileMap).size;
          const end = position + data.length;
          if (end > was) {
            await resize(end);
            // New clusters hold whatever was there: the gap before the data is zeroed.
            const zeros = new Uint8Array(Math.min(WRITE_CHUNK, Math.max(0, position - was)));
            for (let at = was; at < position; at += zeros.length)
              await host.writeFile(
                file as FileMap,
                at,
                zeros.subarray(0, Math.min(zeros.length, position - at)),
              );
          }
          await host.writeFile(file as FileMap, position, data);
          length = Math.max(length, end);
        },
        size: async () => length,
        truncate: async (size) => {
          if (size < (file as FileMap).size) await resize(size);
          length = size;
        },
        sync: () => host.flushData(),
      });
      server = served;
      const diskBytes = await (async () => {
        // The disk's size, from the VHD's footer at the file's end or, when
        // the end was being rewritten as its node died, from the copy at
        // offset 0 (the worker's VHD engine opens it the same way).
        const f = file as FileMap;
        for (const at of [f.size - 512, 0]) {
          // A file of less than 512 bytes holds no footer: none is read.
          if (at < 0 || at + 512 > f.size) continue;
          const footer = await host.readFile(f, at, 512);
          if (new TextDecoder("latin1").decode(footer.subarray(0, 8)) !== "conectix") continue;
          return Number(new DataView(footer.buffer, footer.byteOffset).getBigUint64(48, false));
        }
        return 0;
      })();
      const blocks = Math.floor(diskBytes / spec.bs);
      if (!(blocks >= 1 && diskBytes <= MAX_VM_DISK_BYTES)) {
        throw new VmArgumentError(
          `${request.vhd}: no VHD footer at byte ${f0(file)} or 0, or a disk of ${diskBytes} bytes, which does not fit the workload`,
        );
      }
      const table = new Uint32Array(memory.buffer, slot.gens.offset, blocks);
      table.fill(0);
      let acknowledged = 0;
      if (state && request.state !== undefined) {
        table.set(stateFor(request.state, state, spec, blocks));
        for (const g of table) if (g !== 0) acknowledged++;
      }
      const control = new Int32Array(memory.buffer, slot.control.offset, IO_CONTROL_SLOTS);
      control.fill(0);
      const result = pool.run({
        type: "storage.io",
        disk: request.vhd,
        path: request.vhd,
        spec,
        buffer: slot.buffer.toDescriptor(),
        gens: slot.gens.toDescriptor(),
        control: slot.control.toDescriptor(),
        arena: slot.arena.toDescriptor(),
        intervalMs: 100,
        channel: slot.mailbox.toDescriptor(),
      });
      const vm: RunningVm = {
        vm: request.vm,
        vhd: request.vhd,
        spec,
        slot,
        blocks,
        result,
        stopServing: () => served.stop(),
      };
      this.running.set(request.vm, vm);
      let settled = false;
      result.then(
        () => (settled = true),
        () => (settled = true),
      );
      while (Atomics.load(control, IoControl.started) !== 1 && !settled) {
        const w = Atomics.waitAsync(control, IoControl.started, 0, 20);
        if (w.async) await w.value;
      }
      if (Atomics.load(control, IoControl.started) !== 1) {
        this.running.delete(request.vm);
        await result; // throws the worker's reason
        throw new Error(`VM ${request.vm} ended before its first I/O`);
      }
      return {
        vm: request.vm,
        vhd: request.vhd,
        bytes: diskBytes,
        openMs: opened - asked,
        startMs: performance.now() - asked,
        acknowledgedBlocks: acknowledged,
      };
    } catch (error) {
      if (!this.running.has(request.vm)) {
        await server?.stop();
        if (!this.free.includes(slot)) this.free.push(slot);
      }
      throw error;
    }
  }

  /** Creates the VHD as a file on the volume (metadata through the coordinator) and writes its image. */
  private async createVhd(
    name: string,
    create: { readonly type: "fixed" | "dynamic"; readonly size: number },
  ): Promise<FileMap | undefined> {
    const image = new MemoryFile(name, new Uint8Array(0), MAX_VM_DISK_BYTES + (1 << 22));
    VhdImage.create(image, { type: create.type, size: create.size }).close();
    const bytes = image.contents();
    const file = await this.host.metadata({ op: "create", name, size: bytes.length });
    if (!file) throw new Error(`create ${name}: the coordinator returned no file`);
    // Written whole: a fixed VHD's data area must read as zeros, and new clusters are not.
    for (let at = 0; at < bytes.length; at += WRITE_CHUNK)
      await this.host.writeFile(
        file,
        at,
        bytes.subarray(at, Math.min(bytes.length, at + WRITE_CHUNK)),
      );
    await this.host.flushData();
    return file;
  }

  /** Stops the VM's workload, closes its VHD, makes its writes durable and saves its state. */
  async stop(request: VmStop): Promise<VmStopped> {
    const vm = this.running.get(request.vm);
    if (!vm) throw new VmArgumentError(`no VM ${request.vm} runs on this node`);
    const asked = performance.now();
    const memory = this.layout.memory;
    const control = new Int32Array(memory.buffer, vm.slot.control.offset, IO_CONTROL_SLOTS);
    Atomics.store(control, IoControl.state, IoState.removeAsked);
    Atomics.notify(control, IoControl.state);
    let result: IoResult;
    try {
      result = await vm.result;
    } finally {
      this.running.delete(request.vm);
      await vm.stopServing();
      this.free.push(vm.slot);
    }
    const closed = performance.now();
    await this.host.flushData();
    const flushed = performance.now();
    const table = new Uint32Array(memory.buffer, vm.slot.gens.offset, vm.blocks);
    let acknowledged = 0;
    for (const g of table) if (g !== 0) acknowledged++;
    if (request.state !== undefined) {
      const tmp = `${request.state}.tmp`;
      writeFileSync(tmp, encodeState(vm.spec, table));
      renameSync(tmp, request.state);
    }
    const h = hdr.decodeFromCompressedBase64(result.histogram);
    const seconds = Math.max(1e-9, result.elapsedMs / 1000);
    return {
      vm: vm.vm,
      vhd: vm.vhd,
      ...ioFigures(result, seconds, h),
      verifyErrors: result.verifyErrors,
      verifyErrorOffsets: result.verifyErrorOffsets,
      failed: result.failed,
      elapsedMs: result.elapsedMs,
      closeMs: closed - asked,
      flushMs: flushed - closed,
      acknowledgedBlocks: acknowledged,
    };
  }

  /** Stops every VM (without saving state) and the workers. */
  async close(): Promise<void> {
    for (const name of [...this.running.keys()]) await this.stop({ vm: name }).catch(() => {});
    await this.pool?.close();
    this.pool = undefined;
  }
}

function f0(file: FileMap | undefined): number {
  return Math.max(0, (file?.size ?? 512) - 512);
}
