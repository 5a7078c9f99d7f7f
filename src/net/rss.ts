import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "../wasm/loader.js";
import type { RssExports } from "./kernels.js";

/** Microsoft's default RSS key (REFERENCE.md section 3), 40 bytes. */
export const MICROSOFT_RSS_KEY = Uint8Array.from(
  Buffer.from(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa",
    "hex",
  ),
);

/** Longest hash input: IPv6 source and destination plus two ports. */
export const MAX_HASH_INPUT = 36;
/** Bytes of the byte tables (assembly/rss.ts TABLE_BYTES). */
export const TOEPLITZ_TABLE_BYTES = MAX_HASH_INPUT * 256 * 4;

/**
 * The RSS hash input, in the order the specification hashes it: source
 * address, destination address, then (with ports) source and destination port.
 */
export function hashInput(
  src: Uint8Array,
  dst: Uint8Array,
  ports?: { readonly src: number; readonly dst: number },
): Uint8Array {
  const out = new Uint8Array(src.length + dst.length + (ports ? 4 : 0));
  out.set(src, 0);
  out.set(dst, src.length);
  if (ports) {
    const at = src.length + dst.length;
    out[at] = ports.src >>> 8;
    out[at + 1] = ports.src & 0xff;
    out[at + 2] = ports.dst >>> 8;
    out[at + 3] = ports.dst & 0xff;
  }
  return out;
}

/**
 * The Toeplitz hash over shared memory: byte tables for one key in a region,
 * built once, then one load and XOR per input byte.
 */
export class ToeplitzHasher {
  readonly table: Region;
  readonly input: Region;
  private readonly k: RssExports;

  constructor(
    readonly layout: MemoryLayout,
    key: Uint8Array = MICROSOFT_RSS_KEY,
    name = "net.rss",
  ) {
    if (key.length < 4 || key.length > 40) {
      throw new RangeError(`an RSS key is 4 to 40 bytes, not ${key.length}`);
    }
    this.table = layout.allocate(`${name}.table`, TOEPLITZ_TABLE_BYTES);
    this.input = layout.allocate(`${name}.input`, 64);
    this.k = instantiateKernel<RssExports>(compileKernel("rss"), layout.memory);
    const bytes = this.input.bytes(layout.memory);
    bytes.set(key);
    this.k.buildTable(this.input.offset, key.length, this.table.offset);
  }

  /** The raw kernel, for callers that batch inputs already in shared memory. */
  get kernel(): RssExports {
    return this.k;
  }

  /** Hashes one input (at most 36 bytes). */
  hash(input: Uint8Array): number {
    if (input.length > MAX_HASH_INPUT) {
      throw new RangeError(
        `an RSS hash input is at most ${MAX_HASH_INPUT} bytes, not ${input.length}`,
      );
    }
    this.input.bytes(this.layout.memory).set(input);
    return this.k.hash(this.table.offset, this.input.offset, input.length) >>> 0;
  }

  /**
   * Hashes `count` inputs of `length` bytes, `stride` apart, starting at
   * `start` in `region`, writing u32 hashes to `out` at `outStart`.
   * Returns the XOR of all hashes.
   */
  hashBatch(
    region: Region,
    start: number,
    stride: number,
    length: number,
    count: number,
    out: Region,
    outStart: number,
  ): number {
    if (length > MAX_HASH_INPUT || stride < length) {
      throw new RangeError(`bad batch: input of ${length} bytes every ${stride} bytes`);
    }
    const span = count === 0 ? 0 : (count - 1) * stride + length;
    return (
      this.k.hashBatch(
        this.table.offset,
        region.check(start, span, "hash inputs"),
        stride,
        length,
        count,
        out.check(outStart, count * 4, "hash outputs"),
      ) >>> 0
    );
  }
}
