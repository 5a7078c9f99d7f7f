import { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { ChecksumKernel } from "../wasm/checksum.js";

/*
 * Frames built or rewritten outside the shared memory (a frame spec turned
 * into bytes, a coalesced super-frame's header) still get their checksums
 * from the checksum kernel: the bytes are copied into a private scratch
 * region, summed there, and the kernel's sum is returned. Production code
 * thus never computes with the TypeScript oracle that tests judge it by.
 */

/** Scratch bytes held at first; a longer input lays out a larger region once. */
const INITIAL_SCRATCH = 64 * 1024;

interface Scratch {
  readonly layout: MemoryLayout;
  readonly kernel: ChecksumKernel;
  region: Region;
  grown: number;
}

let scratch: Scratch | undefined;

function scratchFor(length: number): Scratch {
  if (!scratch) {
    const layout = new MemoryLayout();
    scratch = {
      layout,
      kernel: ChecksumKernel.on(layout.memory),
      region: layout.allocate("net.checksum.scratch", INITIAL_SCRATCH),
      grown: 0,
    };
  }
  if (length > scratch.region.byteLength) {
    // Regions never move or shrink: lay out one twice the size asked for.
    scratch.grown++;
    scratch.region = scratch.layout.allocate(
      `net.checksum.scratch${scratch.grown}`,
      Math.max(length, 2 * scratch.region.byteLength),
    );
  }
  return scratch;
}

/** Adds two 16-bit one's-complement values with end-around carry (RFC 1071 section 1). */
export function onesComplementAdd(a: number, b: number): number {
  const s = (a & 0xffff) + (b & 0xffff);
  return (s & 0xffff) + (s >>> 16);
}

/**
 * RFC 1071 partial sum (network order, not complemented) of
 * `bytes[start, start + length)` plus `seed`, computed by the checksum kernel.
 *
 * @throws RangeError when the range lies outside `bytes`.
 */
export function onesSum(bytes: Uint8Array, start: number, length: number, seed = 0): number {
  if (
    !Number.isSafeInteger(start) ||
    !Number.isSafeInteger(length) ||
    start < 0 ||
    length < 0 ||
    start + length > bytes.length
  ) {
    throw new RangeError(
      `checksum range [${start}, ${start + length}) is outside its ${bytes.length} bytes`,
    );
  }
  if (length === 0) return seed & 0xffff;
  const s = scratchFor(length);
  s.region.bytes(s.layout.memory).set(bytes.subarray(start, start + length));
  return s.kernel.sum(s.region, 0, length, seed);
}
