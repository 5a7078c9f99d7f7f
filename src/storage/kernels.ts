import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { StorageKernel } from "../wasm/storage.js";
import type { ChecksumFn } from "./format.js";

/** Bytes of the scratch region structures are copied into to be checksummed. */
const SCRATCH_BYTES = 4096;

/**
 * The storage kernels of one thread over a shared memory, and the regions
 * the images opened on them borrow (sector bitmap caches, I/O buffers).
 * Regions cannot be freed from a layout, so released ones are kept and
 * handed out again: opening many images does not grow memory without bound.
 */
export class StorageKernels {
  readonly kernel: StorageKernel;
  private readonly scratch: Region;
  private readonly free: Region[] = [];
  private count = 0;

  constructor(readonly layout: MemoryLayout = new MemoryLayout()) {
    this.kernel = StorageKernel.on(layout.memory);
    this.scratch = layout.allocate("storage scratch", SCRATCH_BYTES);
  }

  /** The shared memory. */
  get memory(): WebAssembly.Memory {
    return this.layout.memory;
  }

  /** The VHD checksum of a structure (footer or dynamic header), computed by the kernel. */
  readonly checksum: ChecksumFn = (bytes, skipAt) => {
    if (bytes.length > SCRATCH_BYTES) {
      throw new RangeError(
        `a checksummed structure of ${bytes.length} bytes is larger than ${SCRATCH_BYTES}`,
      );
    }
    this.scratch.bytes(this.memory).set(bytes);
    return this.kernel.vhdChecksum(this.scratch, 0, bytes.length, skipAt);
  };

  /** Borrows a region of at least `bytes` (its old contents left as they were), from those released or a new one. */
  borrow(bytes: number): Region {
    const i = this.free.findIndex((r) => r.byteLength >= bytes && r.byteLength <= bytes * 2);
    if (i >= 0) {
      const [region] = this.free.splice(i, 1);
      if (region) return region;
    }
    return this.layout.allocate(`storage buffer ${this.count++}`, bytes, 4096);
  }

  /** Returns a borrowed region. */
  release(region: Region): void {
    this.free.push(region);
  }
}

let threadKernels: StorageKernels | undefined;

/** This thread's storage kernels on a memory of their own (the CLI's and the tests' default). */
export function defaultKernels(): StorageKernels {
  threadKernels ??= new StorageKernels();
  return threadKernels;
}
