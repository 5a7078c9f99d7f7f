import { MemoryLayout } from "../memory/layout.js";
import { Region } from "../memory/region.js";
import { StorageKernel } from "../wasm/storage.js";
import type { ChecksumFn } from "./format.js";

/** Bytes of the scratch region structures are copied into to be checksummed. */
const SCRATCH_BYTES = 4096;
/** Bytes of the arena a thread's own kernels lay out (bitmap caches, copy buffers). */
const DEFAULT_ARENA_BYTES = 64 * 1024 * 1024;
const ALIGN = 4096;

/**
 * The storage kernels of one thread over a shared memory, and an arena the
 * images opened on them borrow regions from (sector bitmap caches, copy
 * buffers). The arena is a region the memory's layout handed out, so a pool
 * worker, which cannot lay out memory, uses the one its task names. Released
 * regions are handed out again: opening many images does not exhaust it.
 */
export class StorageKernels {
  private readonly scratch: Region;
  private readonly free: Region[] = [];
  private next: number;

  /**
   * @param memory - the shared memory
   * @param kernel - the storage kernels instantiated on it
   * @param arena - the region to borrow from (its first 4 KiB are scratch)
   */
  constructor(
    readonly memory: WebAssembly.Memory,
    readonly kernel: StorageKernel,
    private readonly arena: Region,
  ) {
    this.scratch = new Region({
      name: `${arena.name} scratch`,
      offset: arena.offset,
      byteLength: SCRATCH_BYTES,
    });
    this.next = SCRATCH_BYTES;
  }

  /** Kernels on a memory of their own, with an arena of `arenaBytes`. */
  static standalone(arenaBytes = DEFAULT_ARENA_BYTES): StorageKernels {
    const layout = new MemoryLayout();
    const arena = layout.allocate("storage arena", arenaBytes, ALIGN);
    return new StorageKernels(layout.memory, StorageKernel.on(layout.memory), arena);
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

  /**
   * Borrows a region of at least `bytes` (its old contents left as they
   * were), from those released or from the arena.
   *
   * @throws RangeError naming the arena when it has no room left.
   */
  borrow(bytes: number): Region {
    const i = this.free.findIndex((r) => r.byteLength >= bytes && r.byteLength <= bytes * 2);
    if (i >= 0) {
      const [region] = this.free.splice(i, 1);
      if (region) return region;
    }
    const length = Math.ceil(bytes / ALIGN) * ALIGN;
    if (this.next + length > this.arena.byteLength) {
      throw new RangeError(
        `region '${this.arena.name}': no room for ${bytes} more bytes (${this.arena.byteLength - this.next} of ${this.arena.byteLength} left)`,
      );
    }
    const region = new Region({
      name: `${this.arena.name} +${this.next}`,
      offset: this.arena.offset + this.next,
      byteLength: length,
    });
    this.next += length;
    return region;
  }

  /** Returns a borrowed region. */
  release(region: Region): void {
    this.free.push(region);
  }
}

let threadKernels: StorageKernels | undefined;

/** This thread's storage kernels on a memory of their own (the CLI's and the tests' default). */
export function defaultKernels(): StorageKernels {
  threadKernels ??= StorageKernels.standalone();
  return threadKernels;
}
