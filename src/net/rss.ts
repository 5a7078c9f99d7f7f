import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import { MAX_HASH_INPUT, RssKernel, TOEPLITZ_TABLE_BYTES } from "../wasm/rss.js";

/** Microsoft's default RSS key (Microsoft, "Verifying the RSS Hash Calculation"; docs/references.md), 40 bytes. */
export const MICROSOFT_RSS_KEY = Uint8Array.from(
  Buffer.from(
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa",
    "hex",
  ),
);

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
  private readonly k: RssKernel;

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
    this.k = RssKernel.on(layout.memory);
    const bytes = this.input.bytes(layout.memory);
    bytes.set(key);
    this.k.buildTable(this.input, 0, key.length, this.table);
  }

  /** Hashes one input (at most 36 bytes). */
  hash(input: Uint8Array): number {
    if (input.length > MAX_HASH_INPUT) {
      throw new RangeError(
        `an RSS hash input is at most ${MAX_HASH_INPUT} bytes, not ${input.length}`,
      );
    }
    this.input.bytes(this.layout.memory).set(input);
    return this.k.hash(this.table, this.input, 0, input.length);
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
    return this.k.hashBatch(this.table, region, start, stride, length, count, out, outStart);
  }
}
