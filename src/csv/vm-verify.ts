import { readFileSync } from "node:fs";
import { MemoryLayout } from "../memory/layout.js";
import { FdFile } from "../storage/block-file.js";
import { type CheckReport, checkVhdFile } from "../storage/check.js";
import { StorageKernels } from "../storage/kernels.js";
import { openImage } from "../storage/open.js";
import { StorageKernel } from "../wasm/storage.js";
import { FileLun } from "./lun.js";
import { decodeVmState } from "./vm.js";
import { Volume } from "./volume.js";

/** Bytes copied at a time when a file is taken off the volume. */
const COPY_CHUNK = 1 << 20;

/**
 * Copies file `name` off the volume on `lunPath` to the host file `dest`
 * (reading the LUN only: a pending journal transaction is not replayed), so
 * that the storage engine's own tools can look at a VHD that lives on the
 * volume.
 */
export async function copyFileOffVolume(
  lunPath: string,
  name: string,
  dest: string,
): Promise<number> {
  const lunFile = new FdFile(lunPath, "r");
  const out = new FdFile(dest, "w+");
  try {
    const volume = await Volume.open(new FileLun(lunFile, false), { replay: false });
    const file = volume.lookup(name);
    for (let at = 0; at < file.size; at += COPY_CHUNK) {
      const n = Math.min(COPY_CHUNK, file.size - at);
      out.write(await volume.read(file, at, n), at);
    }
    out.truncate(file.size);
    return file.size;
  } finally {
    out.close();
    lunFile.close();
  }
}

/** What {@link verifyVmDisk} found. */
export interface VmDiskCheck {
  readonly vhd: string;
  /** `hvlab storage check`'s verdict on the VHD. */
  readonly structure: CheckReport;
  /** Blocks the VM's last state says were written and acknowledged. */
  readonly acknowledgedBlocks: number;
  /** Of those, blocks that read back with the generation acknowledged last. */
  readonly intactBlocks: number;
  /** Byte offsets of the first acknowledged blocks that did not (at most 8). */
  readonly badOffsets: readonly number[];
  /**
   * Blocks the state says were never written that hold data: a write in
   * flight when its node died, never acknowledged (allowed), or blocks
   * written by a run whose state was lost with its node.
   */
  readonly unacknowledgedData: number;
}

/**
 * Checks a VM's VHD taken off the volume: its structure (the storage
 * engine's check), and every block the VM's state file says was
 * acknowledged, read back and compared with the pattern of its last
 * generation (blocks never written must read as zeros).
 */
export function verifyVmDisk(vhdPath: string, statePath: string): VmDiskCheck {
  const structure = checkVhdFile(vhdPath);
  const { bs, seed, table } = decodeVmState(statePath, readFileSync(statePath));
  const layout = new MemoryLayout();
  const kernel = StorageKernel.on(layout.memory);
  const kernels = new StorageKernels(
    layout.memory,
    kernel,
    layout.allocate("verify arena", 4 << 20, 4096),
  );
  const gens = layout.allocate("generations", Math.max(4, table.length * 4));
  new Uint32Array(layout.memory.buffer, gens.offset, table.length).set(table);
  const block = layout.allocate("block", bs, 4096);
  let acknowledged = 0;
  let intact = 0;
  let stray = 0;
  const bad: number[] = [];
  if (!structure.ok)
    return {
      vhd: vhdPath,
      structure,
      acknowledgedBlocks: table.filter((g) => g !== 0).length,
      intactBlocks: 0,
      badOffsets: [],
      unacknowledgedData: 0,
    };
  const image = openImage(vhdPath, { kernels });
  try {
    if (Math.floor(image.size / bs) !== table.length)
      throw new RangeError(
        `${vhdPath}: ${Math.floor(image.size / bs)} blocks of ${bs} bytes, but the state has ${table.length}`,
      );
    const view = block.bytes(layout.memory).subarray(0, bs);
    for (let b = 0; b < table.length; b++) {
      const acked = (table[b] ?? 0) !== 0;
      if (acked) acknowledged++;
      image.read(b * bs, view);
      const ok = kernel.patternVerify(block, 0, bs, bs, b * bs, gens, 0, BigInt(seed)) === -1;
      if (acked && ok) intact++;
      else if (acked && bad.length < 8) bad.push(b * bs);
      else if (!acked && !ok) stray++;
    }
  } finally {
    image.close();
  }
  return {
    vhd: vhdPath,
    structure,
    acknowledgedBlocks: acknowledged,
    intactBlocks: intact,
    badOffsets: bad,
    unacknowledgedData: stray,
  };
}
