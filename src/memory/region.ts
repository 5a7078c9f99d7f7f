import { RegionBoundsError } from "./errors.js";

/** Where a region lies in the shared memory: what crosses threads in task messages. */
export interface RegionDescriptor {
  /** Name shown in every error about this region. */
  readonly name: string;
  /** Byte offset of the region's first byte in the shared memory. */
  readonly offset: number;
  /** Length in bytes. */
  readonly byteLength: number;
}

/**
 * A named, aligned span of the shared memory. Every kernel wrapper checks the
 * offsets and lengths it passes to wasm against the region they belong to.
 */
export class Region implements RegionDescriptor {
  readonly name: string;
  readonly offset: number;
  readonly byteLength: number;

  constructor(descriptor: RegionDescriptor) {
    this.name = descriptor.name;
    this.offset = descriptor.offset;
    this.byteLength = descriptor.byteLength;
  }

  /** One past the last byte. */
  get end(): number {
    return this.offset + this.byteLength;
  }

  /** The plain descriptor, for task messages. */
  toDescriptor(): RegionDescriptor {
    return { name: this.name, offset: this.offset, byteLength: this.byteLength };
  }

  /**
   * Checks that `[start, start + length)`, relative to the region, lies inside it.
   * Returns the absolute offset of `start` in the shared memory.
   *
   * @throws RegionBoundsError naming the region when it does not.
   */
  check(start: number, length: number, what = "access"): number {
    if (!Number.isSafeInteger(start) || start < 0) {
      throw new RegionBoundsError(this.name, what, `has a bad offset ${start}`);
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RegionBoundsError(this.name, what, `has a bad length ${length}`);
    }
    if (start + length > this.byteLength) {
      throw new RegionBoundsError(
        this.name,
        what,
        `at [${start}, ${start + length}) is past the end (${this.byteLength} bytes)`,
      );
    }
    return this.offset + start;
  }

  /** A byte view of the region over the given memory's current buffer. */
  bytes(memory: WebAssembly.Memory): Uint8Array {
    return new Uint8Array(memory.buffer, this.offset, this.byteLength);
  }
}
