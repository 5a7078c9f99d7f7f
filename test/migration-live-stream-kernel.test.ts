import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { gatherOracle, scatterOracle, xxh64Oracle } from "../src/oracle/stream.js";
import { StreamKernel } from "../src/wasm/stream.js";

const layout = new MemoryLayout();
const scratch = layout.allocate("scratch", 64);
const kernel = StreamKernel.on(layout.memory, scratch);
const area = layout.allocate("area", 64 * 1024, 4096);
const bytesOf = () => area.bytes(layout.memory);
const text = (s: string) => new TextEncoder().encode(s);

function hashOf(data: Uint8Array, offset: number): bigint {
  bytesOf().set(data, offset);
  return kernel.hash(area, offset, data.length);
}

describe("XXH64 known answers", () => {
  // Vectors from the xxHash reference (xxhash.h self-test, seed 0) and the
  // python-xxhash README ("Nobody inspects..." exercises the 32-byte lanes).
  const vectors: [string, bigint][] = [
    ["", 0xef46db3751d8e999n],
    ["a", 0xd24ec4f1a98c6e5bn],
    ["abc", 0x44bc2cf5ad770999n],
    ["Nobody inspects the spammish repetition", 0xfbcea83c8a378bf1n],
  ];
  for (const [input, expected] of vectors) {
    it(`"${input}"`, () => {
      expect(hashOf(text(input), 0)).toBe(expected);
      expect(hashOf(text(input), 13)).toBe(expected);
      expect(xxh64Oracle(text(input))).toBe(expected);
    });
  }
});

describe("stream kernels against the oracle", () => {
  it("xxh64 equals the oracle for every length 0..300 and odd offsets", () => {
    const data = new Uint8Array(300).map((_, i) => (i * 131 + 7) & 0xff);
    for (let length = 0; length <= 300; length++) {
      const offset = length % 7;
      expect(hashOf(data.subarray(0, length), offset)).toBe(xxh64Oracle(data.subarray(0, length)));
    }
  });

  it("xxh64 equals the oracle on random input at unaligned offsets", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.integer({ min: 0, max: 63 }),
        (data, offset) => hashOf(data, offset) === xxh64Oracle(data),
      ),
      { numRuns: 300 },
    );
  });

  it("hashPages gives each page's digest", () => {
    const pageShift = 8;
    const ram = layout.allocate("hp-ram", 16 * 256, 4096);
    const out = layout.allocate("hp-out", 16 * 8);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16 * 256, maxLength: 16 * 256 }),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 0, max: 16 }),
        (data, first, wanted) => {
          const count = Math.min(wanted, 16 - first);
          ram.bytes(layout.memory).set(data);
          kernel.hashPages({ region: ram, pageShift }, first, count, out);
          const view = new DataView(layout.memory.buffer, out.offset, 16 * 8);
          for (let i = 0; i < count; i++) {
            const page = data.subarray((first + i) * 256, (first + i + 1) * 256);
            if (view.getBigUint64(i * 8, true) !== xxh64Oracle(page)) return false;
          }
          return true;
        },
      ),
      { numRuns: 100 },
    );
  });

  it("gather and scatter move the listed pages as the oracle does", () => {
    const pageShift = 6;
    const pageBytes = 64;
    const pages = 32;
    const ram = layout.allocate("gs-ram", pages * pageBytes);
    const list = layout.allocate("gs-list", pages * 4 + 4);
    const staged = layout.allocate("gs-staged", pages * pageBytes + 3);
    const dest = layout.allocate("gs-dest", pages * pageBytes);
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: pages * pageBytes, maxLength: pages * pageBytes }),
        fc.array(fc.integer({ min: 0, max: pages - 1 }), { maxLength: pages }),
        fc.integer({ min: 0, max: 1 }),
        fc.integer({ min: 0, max: 3 }),
        (data, numbers, listShift, stagedShift) => {
          ram.bytes(layout.memory).set(data);
          const listView = new DataView(layout.memory.buffer, list.offset, list.byteLength);
          for (const [i, page] of numbers.entries()) {
            listView.setUint32(listShift * 4 + i * 4, page, true);
          }
          const r = { region: ram, pageShift };
          kernel.gather(r, list, listShift * 4, numbers.length, staged, stagedShift);
          const got = staged
            .bytes(layout.memory)
            .slice(stagedShift, stagedShift + numbers.length * pageBytes);
          const want = gatherOracle(data, pageBytes, numbers);
          if (!got.every((b, i) => b === want[i])) return false;
          const destBytes = dest.bytes(layout.memory);
          destBytes.fill(0);
          const oracleDest = new Uint8Array(pages * pageBytes);
          kernel.scatter(staged, stagedShift, list, listShift * 4, numbers.length, {
            region: dest,
            pageShift,
          });
          scatterOracle(want, numbers, oracleDest, pageBytes);
          return destBytes.every((b, i) => b === oracleDest[i]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses a page number past the RAM before any byte moves", () => {
    const ram = layout.allocate("bad-ram", 4 * 4096, 4096);
    const list = layout.allocate("bad-list", 8);
    const src = layout.allocate("bad-src", 2 * 4096);
    new Uint32Array(layout.memory.buffer, list.offset, 2).set([1, 4]);
    src.bytes(layout.memory).fill(0xab);
    expect(() => kernel.scatter(src, 0, list, 0, 2, { region: ram, pageShift: 12 })).toThrowError(
      RegionBoundsError,
    );
    expect(ram.bytes(layout.memory).every((b) => b === 0)).toBe(true);
    expect(() => kernel.hash(area, 60 * 1024, 8 * 1024)).toThrowError(RegionBoundsError);
  });
});
