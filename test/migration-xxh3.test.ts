import { xxh3 } from "@node-rs/xxhash";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { XXH3_LONG_MIN, XXH3_SECRET, xxh3Long } from "../src/oracle/xxh3.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";
import { xorshiftBytes } from "./support/xorshift.js";

// The page hash is XXH3-64 (seed 0, default secret) on inputs over 240
// bytes. The reference is the xxHash library itself, through its Node.js
// binding @node-rs/xxhash: the kernel and the BigInt oracle must both equal
// it, bit for bit.

let layout: MemoryLayout;
let kernel: PageKernel;
let buf: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = PageKernel.on(layout.memory, layout.allocate("page-kernel-scratch", PAGE_SCRATCH_BYTES));
  buf = layout.allocate("xxh3-input", 3 * 1024 * 1024);
});

function reference(bytes: Uint8Array): bigint {
  return xxh3.xxh64(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

describe("XXH3-64 page hash", () => {
  it("uses the specification's 192-byte default secret", () => {
    expect(XXH3_SECRET.length).toBe(192);
    // The library's XXH3 with the secret passed explicitly agrees with its default.
    const input = xorshiftBytes(9, 4096);
    expect(xxh3.xxh64WithSecret(Buffer.from(input), Buffer.from(XXH3_SECRET))).toBe(
      reference(input),
    );
  });

  it("equals the library on the lengths where the long path's blocks and stripes change", () => {
    // 241: the first long input; 1024/1025: one whole block of 16 stripes and
    // past it; 4096: a page; 2 MiB: a large page.
    const lengths = [241, 255, 256, 257, 1023, 1024, 1025, 1088, 2048, 4095, 4096, 4097, 2 ** 21];
    const view = buf.bytes(layout.memory);
    for (const length of lengths) {
      const input = xorshiftBytes(length, length);
      view.set(input, 3);
      expect(kernel.hash3(buf, 3, length)).toBe(reference(input));
      if (length <= 8192) expect(xxh3Long(input)).toBe(reference(input));
    }
  });

  it("kernel and oracle equal the library on random input, lengths and unaligned offsets (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: XXH3_LONG_MIN, maxLength: 6000 }),
        fc.nat(63),
        (input, offset) => {
          buf.bytes(layout.memory).set(input, offset);
          const want = reference(input);
          expect(kernel.hash3(buf, offset, input.length)).toBe(want);
          expect(xxh3Long(input)).toBe(want);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("tells apart pages that differ in one bit anywhere", () => {
    const page = xorshiftBytes(77, 4096);
    const view = buf.bytes(layout.memory);
    view.set(page, 0);
    const base = kernel.hash3(buf, 0, 4096);
    for (const bit of [0, 7, 8 * 63, 8 * 64, 8 * 1023, 8 * 1024, 8 * 4032, 8 * 4095 + 7]) {
      view.set(page, 0);
      view[bit >>> 3] = (view[bit >>> 3] ?? 0) ^ (1 << (bit & 7));
      expect(kernel.hash3(buf, 0, 4096)).not.toBe(base);
    }
  });

  it("refuses inputs of 240 bytes or fewer and ranges outside the region", () => {
    expect(() => kernel.hash3(buf, 0, 240)).toThrow(/over 240 bytes/);
    expect(() => xxh3Long(new Uint8Array(240))).toThrow(RangeError);
    expect(() => kernel.hash3(buf, buf.byteLength - 100, 4096)).toThrow(/xxh3-input/);
  });
});
