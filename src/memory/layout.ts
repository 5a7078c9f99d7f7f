import { formatBytes } from "../util/units.js";
import {
  AddressSpaceError,
  checkAddressSpace,
  SHARED_MEMORY_RESERVATION_BYTES,
} from "./address-space.js";
import { RegionAllocationError, tooLarge } from "./errors.js";
import { Region } from "./region.js";

/** A wasm page: the unit in which a WebAssembly.Memory grows. */
export const WASM_PAGE_BYTES = 64 * 1024;
/** wasm32 addresses at most 65,536 pages: 4 GiB. */
export const MAX_WASM_PAGES = 65_536;
/** The 4 GiB wasm32 limit in bytes. */
export const MAX_MEMORY_BYTES = MAX_WASM_PAGES * WASM_PAGE_BYTES;
/**
 * Static area at the start of memory: one 64 KiB slot per kernel module for
 * its static data (scripts/build-wasm.mjs places module i at i * 64 KiB and
 * checks it stays there). Regions are laid out after it.
 */
export const STATIC_SLOT_BYTES = 64 * 1024;
/** How many kernel modules the static area has room for. */
export const STATIC_SLOTS = 16;
/** Size of the static area. */
export const STATIC_AREA_BYTES = STATIC_SLOT_BYTES * STATIC_SLOTS;
/** Default region alignment: a cache line, so regions never share one. */
export const DEFAULT_ALIGNMENT = 64;

/*
 * The shared memory, as laid out:
 *
 *   0          64 KiB     ...        1 MiB                                  <= 4 GiB
 *   +----------+----------+----------+--------+---------+-----+-----------+
 *   | slot 0   | slot 1   |  ...     | region | region  | ... | (grows on |
 *   | module 0 | module 1 |          |   A    |   B     |     |  demand)  |
 *   | statics  | statics  |          |        |         |     |           |
 *   +----------+----------+----------+--------+---------+-----+-----------+
 *   \______ static area (16 slots) __/\___ regions, each aligned, never
 *                                         overlapping, bump-allocated ___/
 */

/** Options for a {@link MemoryLayout}. */
export interface MemoryLayoutOptions {
  /** Adopt an existing shared memory (a worker's view of the engine's memory). */
  readonly memory?: WebAssembly.Memory;
}

/**
 * The one place that lays out a shared WebAssembly.Memory: named, aligned
 * regions that never overlap and never pass the 4 GiB wasm32 limit. One
 * layout per engine instance.
 */
export class MemoryLayout {
  /** The shared memory every kernel instance of this engine imports. */
  readonly memory: WebAssembly.Memory;
  private readonly regions = new Map<string, Region>();
  private next = STATIC_AREA_BYTES;

  constructor(options: MemoryLayoutOptions = {}) {
    this.memory = options.memory ?? reserveSharedMemory();
  }

  /** Bytes still free for regions below the 4 GiB limit. */
  get bytesLeft(): number {
    return MAX_MEMORY_BYTES - this.next;
  }

  /** Every region laid out so far, in address order. */
  list(): readonly Region[] {
    return [...this.regions.values()];
  }

  /** The region with this name. @throws RegionAllocationError if there is none. */
  get(name: string): Region {
    const region = this.regions.get(name);
    if (!region) throw new RegionAllocationError(`no region named '${name}'`);
    return region;
  }

  /**
   * Lays out a new region of `byteLength` bytes aligned to `alignment`, growing
   * the memory as needed. New regions are zero-filled (memory only grows).
   *
   * @throws RegionAllocationError for a bad size, a bad alignment, a name
   *   already used, or a region that would pass 4 GiB (saying how much is left).
   */
  allocate(name: string, byteLength: number, alignment = DEFAULT_ALIGNMENT): Region {
    if (name.length === 0) throw new RegionAllocationError("a region needs a name");
    if (this.regions.has(name)) {
      throw new RegionAllocationError(`region '${name}' is already laid out`);
    }
    if (!Number.isSafeInteger(byteLength) || byteLength <= 0) {
      throw new RegionAllocationError(
        `region '${name}': size must be a positive whole number of bytes, not ${byteLength}`,
      );
    }
    if (!Number.isSafeInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
      throw new RegionAllocationError(
        `region '${name}': alignment must be a power of two, not ${alignment}`,
      );
    }
    const offset = Math.ceil(this.next / alignment) * alignment;
    if (offset + byteLength > MAX_MEMORY_BYTES) {
      throw tooLarge(name, byteLength, Math.max(0, MAX_MEMORY_BYTES - offset));
    }
    this.ensure(offset + byteLength, name);
    const region = new Region({ name, offset, byteLength });
    this.regions.set(name, region);
    this.next = offset + byteLength;
    return region;
  }

  /**
   * Grows the last region laid out to `byteLength` bytes in place (memory
   * never shrinks, so a buffer reused for inputs of growing sizes costs only
   * its largest size, never the sum of them).
   *
   * @throws RegionAllocationError if `name` is not the last region, the size
   *   is smaller than it is, or the memory cannot grow that far.
   */
  extendLast(name: string, byteLength: number): Region {
    const region = this.get(name);
    if (region.offset + region.byteLength !== this.next) {
      throw new RegionAllocationError(`region '${name}' is not the last one laid out`);
    }
    if (!Number.isSafeInteger(byteLength) || byteLength < region.byteLength) {
      throw new RegionAllocationError(
        `region '${name}': cannot shrink or resize to ${byteLength} bytes from ${region.byteLength}`,
      );
    }
    if (region.offset + byteLength > MAX_MEMORY_BYTES) {
      throw tooLarge(name, byteLength, MAX_MEMORY_BYTES - region.offset);
    }
    this.ensure(region.offset + byteLength, name);
    const grown = new Region({ name, offset: region.offset, byteLength });
    this.regions.set(name, grown);
    this.next = region.offset + byteLength;
    return grown;
  }

  /** Grows the memory so that `end` bytes exist. */
  private ensure(end: number, name: string): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / WASM_PAGE_BYTES);
    try {
      this.memory.grow(pages);
    } catch (cause) {
      throw new RegionAllocationError(
        `region '${name}': the host refused to grow shared memory to ${end} bytes (${String(cause)})`,
      );
    }
  }
}

/** What the reservation is, in the words of the error a user sees. */
const SHARED_MEMORY_WHAT =
  "a shared wasm32 memory (its 4 GiB and guard regions, reserved up front)";

/**
 * Creates an engine's shared memory, its whole 4 GiB reserved at once (a
 * shared memory never moves), checking first that the address space is there.
 *
 * @throws AddressSpaceError saying how much is needed when it is not.
 */
function reserveSharedMemory(): WebAssembly.Memory {
  checkAddressSpace(SHARED_MEMORY_RESERVATION_BYTES, SHARED_MEMORY_WHAT);
  try {
    return new WebAssembly.Memory({
      initial: STATIC_AREA_BYTES / WASM_PAGE_BYTES,
      maximum: MAX_WASM_PAGES,
      shared: true,
    });
  } catch (cause) {
    throw new AddressSpaceError(
      `${SHARED_MEMORY_WHAT} needs about ${formatBytes(SHARED_MEMORY_RESERVATION_BYTES)} of address space and the host refused it (${String(cause)}); check ulimit -v`,
    );
  }
}
