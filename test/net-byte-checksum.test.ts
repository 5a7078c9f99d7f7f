import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { onesComplementAdd, onesSum } from "../src/net/byte-checksum.js";
import { onesSumOracle } from "../src/oracle/checksum.js";

/*
 * The checksum of bytes outside the shared memory (src/net/byte-checksum.ts):
 * RFC 1071's one's-complement sum, by the checksum kernel over a scratch
 * region that grows for a long input.
 */
describe("RFC 1071 sums of bytes outside the shared memory", () => {
  it("adds with end-around carry (RFC 1071 section 1)", () => {
    expect(onesComplementAdd(0xffff, 1)).toBe(1);
    expect(onesComplementAdd(0x8000, 0x8000)).toBe(1);
    expect(onesComplementAdd(0x1234, 0x4321)).toBe(0x5555);
    // Only the low 16 bits of each operand count.
    expect(onesComplementAdd(0x1_0001, 0x2_0002)).toBe(3);
    expect(onesComplementAdd(0xffff, 0xffff)).toBe(0xffff);
  });

  it("gives RFC 1071 section 3's worked example, at any offset and with a seed", () => {
    const example = Uint8Array.of(0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7);
    expect(onesSum(example, 0, 8)).toBe(0xddf2);
    const shifted = Uint8Array.of(0xaa, ...example, 0xbb);
    expect(onesSum(shifted, 1, 8)).toBe(0xddf2);
    expect(onesSum(example, 0, 8, 0x220d)).toBe(0xffff);
    // An odd length pads the last byte with a zero on the right.
    expect(onesSum(Uint8Array.of(0x12, 0x34, 0x56), 0, 3)).toBe(0x6834);
  });

  it("returns the seed for an empty range, folded to 16 bits", () => {
    expect(onesSum(new Uint8Array(4), 2, 0, 0x1234)).toBe(0x1234);
    expect(onesSum(new Uint8Array(0), 0, 0, 0x1_5678)).toBe(0x5678);
    expect(onesSum(new Uint8Array(0), 0, 0)).toBe(0);
  });

  it("refuses a range outside its bytes, naming it, and takes one that ends at the last byte", () => {
    const bytes = new Uint8Array(10).fill(1);
    expect(onesSum(bytes, 4, 6)).toBe(0x0303);
    expect(onesSum(bytes, 10, 0)).toBe(0);
    for (const [start, length] of [
      [5, 6],
      [-1, 2],
      [0, -1],
      [11, 0],
      [0.5, 2],
      [0, 2.5],
    ] as const) {
      expect(() => onesSum(bytes, start, length)).toThrow(
        `checksum range [${start}, ${start + length}) is outside its 10 bytes`,
      );
    }
  });

  it("sums inputs longer than its first scratch region (64 KiB), then shorter ones again", () => {
    for (const length of [65_536, 65_537, 300_001, 140_000, 5]) {
      const bytes = Uint8Array.from({ length: length + 3 }, (_, i) => (i * 131 + 7) & 0xff);
      expect(onesSum(bytes, 3, length, 0x0101), `${length} bytes`).toBe(
        onesSumOracle(bytes, 3, length, 0x0101),
      );
    }
  });

  it("equals the oracle on random bytes, offsets, lengths and seeds (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 600 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (bytes, a, b, seed) => {
          const start = a % (bytes.length + 1);
          const length = b % (bytes.length - start + 1);
          expect(onesSum(bytes, start, length, seed)).toBe(
            onesSumOracle(bytes, start, length, seed),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
