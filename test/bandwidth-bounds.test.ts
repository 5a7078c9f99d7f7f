import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { readSweepOracle } from "../src/oracle/bandwidth.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";

/*
 * The bandwidth bounds are the peers every benchmark measures against, so
 * they must do the whole job: a sweep that skipped bytes, or a copy or fill
 * one byte short, would make every kernel look slower than it is.
 */

const layout = new MemoryLayout();
const kernel = BandwidthKernel.on(layout.memory);
const AREA = 4096;
const area = layout.allocate("area", AREA, 4096);
const other = layout.allocate("other", AREA, 4096);
const bytesOf = () => area.bytes(layout.memory);
const otherBytes = () => other.bytes(layout.memory);

describe("read sweep", () => {
  it("equals the oracle for every length 0..300 at every offset 0..16", () => {
    const data = new Uint8Array(AREA).map((_, i) => (i * 131 + 7) & 0xff);
    bytesOf().set(data);
    for (let offset = 0; offset <= 16; offset++) {
      for (let length = 0; length <= 300; length++) {
        const expected = readSweepOracle(data.subarray(offset, offset + length));
        expect(kernel.read(area, offset, length)).toBe(expected);
      }
    }
  });

  it("sees every single byte: one non-zero byte anywhere makes the fold non-zero", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 63 }),
        fc.integer({ min: 1, max: 1024 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (offset, length, where, value) => {
          const bytes = bytesOf();
          bytes.fill(0);
          const at = offset + (where % length);
          bytes[at] = value;
          const folded = kernel.read(area, offset, length);
          expect(folded).toBe(readSweepOracle(bytes.subarray(offset, offset + length)));
          // A byte value lands in the fold unchanged (the words' halves do not overlap one byte).
          expect(folded).not.toBe(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("an all-zero range folds to zero", () => {
    bytesOf().fill(0);
    expect(kernel.read(area, 3, 1000)).toBe(0);
  });
});

describe("copy and fill", () => {
  it("copy moves exactly `length` bytes, at any offsets, and nothing around them", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 1500 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 100 }),
        (data, from, to) => {
          bytesOf().fill(0x11);
          otherBytes().fill(0x22);
          bytesOf().set(data, from);
          kernel.copy(other, to, area, from, data.length);
          const target = otherBytes();
          expect(target.subarray(to, to + data.length)).toEqual(data);
          expect(target.subarray(0, to).every((b) => b === 0x22)).toBe(true);
          expect(target.subarray(to + data.length).every((b) => b === 0x22)).toBe(true);
          // The source is left as it was.
          expect(bytesOf().subarray(from, from + data.length)).toEqual(data);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("fill writes the byte value to exactly `length` bytes", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 1500 }),
        (value, start, length) => {
          const background = value ^ 0xff;
          bytesOf().fill(background);
          kernel.fill(area, value, start, length);
          const bytes = bytesOf();
          expect(bytes.subarray(start, start + length).every((b) => b === value)).toBe(true);
          expect(bytes.subarray(0, start).every((b) => b === background)).toBe(true);
          expect(bytes.subarray(start + length).every((b) => b === background)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
