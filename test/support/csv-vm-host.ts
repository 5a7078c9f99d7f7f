import { join } from "node:path";
import { formatLunFile } from "../../src/csv/format-lun.js";
import { FileLun } from "../../src/csv/lun.js";
import {
  type NodeVms,
  parseVmStart,
  type VmHost,
  type VmStarted,
  type VmStopped,
} from "../../src/csv/vm.js";
import { type FileMap, Volume } from "../../src/csv/volume.js";
import { FdFile } from "../../src/storage/block-file.js";

/** A metadata operation a VM asks of its node's coordinator. */
export type VmMetadataRequest = Parameters<VmHost["metadata"]>[0];

/** Where a read or write of a file's data fell. */
export interface FileRange {
  readonly name: string;
  readonly offset: number;
  readonly length: number;
}

/**
 * A node that coordinates its own volume, on the test's thread: the
 * metadata operations a VM asks for are done on the volume as a coordinator
 * does them (src/csv/node.ts, `runMetadata`: create, open by lookup,
 * resize), file data goes through the file's map on the LUN, and FLUSH is
 * the LUN's. Every metadata request and every FLUSH is logged, in order, and
 * so is where each read and write of file data fell, so a test can hold a VM
 * to what it asked of its node.
 */
export class VolumeVmHost implements VmHost {
  /** Each metadata request and FLUSH, in the order the VM asked for them. */
  readonly asked: (VmMetadataRequest | { readonly op: "flush" })[] = [];
  /** Each read of file data the VM asked: its file, byte offset and length, in order. */
  readonly reads: FileRange[] = [];
  /** Each write of file data the VM asked, in order. */
  readonly writes: FileRange[] = [];

  constructor(readonly volume: Volume) {}

  async metadata(request: VmMetadataRequest): Promise<FileMap | undefined> {
    this.asked.push(request);
    switch (request.op) {
      case "create":
        return await this.volume.create(request.name, request.size ?? 0);
      case "open":
        return this.volume.lookup(request.name);
      case "resize":
        return await this.volume.resize(request.name, request.size ?? 0);
    }
  }

  readFile(file: FileMap, offset: number, length: number): Promise<Uint8Array> {
    this.reads.push({ name: file.name, offset, length });
    return this.volume.read(file, offset, length);
  }

  writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void> {
    this.writes.push({ name: file.name, offset, length: data.length });
    return this.volume.write(file, offset, data);
  }

  async flushData(): Promise<void> {
    this.asked.push({ op: "flush" });
    await this.volume.lun.flush();
  }
}

/** A volume on a LUN file, its coordinator's term open, and how to let go of the file. */
export interface LunFileVolume {
  /** The LUN file's path. */
  readonly path: string;
  readonly volume: Volume;
  /** Closes the LUN file (the volume is unusable after). */
  close(): void;
}

/**
 * Formats a volume on a new LUN file `cluster.lun` in `dir` (64 KiB
 * clusters, as `hvlab csv vms` formats its LUN, so that a VHD lies in few
 * extents) and opens node 1's coordinator term on it, so that files can be
 * created, written and later copied off the LUN by path.
 */
export async function lunFileVolume(dir: string, bytes: number): Promise<LunFileVolume> {
  const path = join(dir, "cluster.lun");
  await formatLunFile(path, bytes, { clusterBytes: 65536, fileSlots: 64 });
  const file = new FdFile(path, "r+");
  try {
    const volume = await Volume.open(new FileLun(file, false));
    await volume.takeOver(1);
    return { path, volume, close: () => file.close() };
  } catch (error) {
    file.close();
    throw error;
  }
}

/** What {@link runVm} saw: the VM's start and its stop. */
export interface VmRunReport {
  readonly started: VmStarted;
  readonly stopped: VmStopped;
}

/**
 * Starts a VM on `vms` with `vm-start` arguments `args` (checked as the
 * control socket checks them), lets its workload run for `ms`, then stops
 * it, saving its state to `state` when given, as `vm-stop` does.
 */
export async function runVm(
  vms: NodeVms,
  args: Record<string, unknown>,
  ms: number,
  state?: string,
): Promise<VmRunReport> {
  const started = await vms.start(parseVmStart(args));
  await new Promise((resolve) => setTimeout(resolve, ms));
  const stopped = await vms.stop({ vm: started.vm, ...(state !== undefined ? { state } : {}) });
  return { started, stopped };
}
