import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import {
  bitmapCountOracle,
  bitmapScanOracle,
  bitmapSetOracle,
  isZeroOracle,
  patternBlockOracle,
  patternVerifyOracle,
  vhdChecksumOracle,
} from "../src/oracle/storage.js";
import { StorageKernel } from "../src/wasm/storage.js";

let layout: MemoryLayout;
let kernel: StorageKernel;
let buf: Region;
let gens: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = StorageKernel.on(layout.memory);
  buf = layout.allocate("storage test buffer", 1 << 20);
  gens = layout.allocate("generation table", 64 * 1024);
});

const view = () => buf.bytes(layout.memory);

describe("sector bitmap kernels", () => {
  it("set, count and scan equal the oracle on random bitmaps, ranges and offsets", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 600 }),
        fc.nat(63),
        fc.nat(4800),
        fc.nat(4800),
        fc.constantFrom<0 | 1>(0, 1),
        (bytes, at, a, b, value) => {
          const sectors = bytes.length * 8;
          const first = a % (sectors + 1);
          const count = b % (sectors - first + 1);
          view().set(bytes, at);
          const copy = Uint8Array.from(bytes);
          expect(kernel.bitmapCount(buf, at, first, count)).toBe(
            bitmapCountOracle(copy, first, count),
          );
          expect(kernel.bitmapScan(buf, at, first, first + count, value)).toBe(
            bitmapScanOracle(copy, first, first + count, value),
          );
          expect(kernel.bitmapSet(buf, at, first, count)).toBe(bitmapSetOracle(copy, first, count));
          expect(view().slice(at, at + bytes.length)).toEqual(copy);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("is MSB first: sector 0 is 0x80 of byte 0, sector 15 is 0x01 of byte 1", () => {
    view().fill(0, 0, 8);
    kernel.bitmapSet(buf, 0, 0, 1);
    kernel.bitmapSet(buf, 0, 15, 1);
    expect([...view().slice(0, 2)]).toEqual([0x80, 0x01]);
    expect(kernel.bitmapScan(buf, 0, 1, 64, 1)).toBe(15);
  });

  it("finds runs on both sides of every word boundary", () => {
    for (let s = 0; s < 200; s++) {
      view().fill(0, 0, 32);
      kernel.bitmapSet(buf, 0, s, 256 - s);
      expect(kernel.bitmapScan(buf, 0, 0, 256, 1)).toBe(s);
      expect(kernel.bitmapScan(buf, 0, s, 256, 0)).toBe(256);
      view().fill(0xff, 0, 32);
      view()[s >> 3] = (view()[s >> 3] ?? 0) & ~(0x80 >> (s & 7));
      expect(kernel.bitmapScan(buf, 0, 0, 256, 0)).toBe(s);
    }
  });

  it("refuses a bitmap span past its region, naming it", () => {
    expect(() => kernel.bitmapSet(buf, buf.byteLength - 1, 0, 9)).toThrow(/storage test buffer/);
    expect(() => kernel.bitmapScan(buf, 0, 10, 5, 1)).toThrow(RangeError);
  });
});

describe("zero-block detection", () => {
  it("equals the oracle for every length 0..300 at every alignment, one byte set anywhere", () => {
    view().fill(0, 0, 512);
    for (let align = 0; align < 16; align++) {
      for (let n = 0; n <= 300; n += 1 + (n >> 5)) {
        expect(kernel.isZero(buf, align, n)).toBe(true);
        for (const at of [0, n >> 1, n - 1]) {
          if (at < 0 || at >= n) continue;
          view()[align + at] = 1;
          expect(kernel.isZero(buf, align, n)).toBe(isZeroOracle(view().slice(align, align + n)));
          expect(kernel.isZero(buf, align, n)).toBe(false);
          view()[align + at] = 0;
        }
      }
    }
  });
});

describe("VHD checksum", () => {
  it("equals the oracle on random structures and field offsets", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4, maxLength: 1024 }),
        fc.nat(31),
        fc.nat(),
        (bytes, at, k) => {
          const skip = k % (bytes.length - 3);
          view().set(bytes, at);
          expect(kernel.vhdChecksum(buf, at, bytes.length, skip)).toBe(
            vhdChecksumOracle(bytes, skip),
          );
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("gives ~0 for 512 zero bytes and ignores the checksum field itself", () => {
    // All bytes zero: the sum is 0, its one's complement 0xffffffff.
    view().fill(0, 0, 512);
    expect(kernel.vhdChecksum(buf, 0, 512, 64)).toBe(0xffffffff);
    view().fill(0xff, 64, 68);
    expect(kernel.vhdChecksum(buf, 0, 512, 64)).toBe(0xffffffff);
  });
});

describe("I/O data pattern", () => {
  it("fill equals the oracle and verify accepts exactly what fill wrote", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(512, 1024, 4096),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(1000),
        fc.integer({ min: 1, max: 2 ** 32 - 1 }),
        fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        fc.nat(7),
        (bs, blocks, firstBlock, gen, seed, at) => {
          const len = bs * blocks;
          const disk = firstBlock * bs;
          kernel.patternFill(buf, at, len, bs, disk, gen, seed);
          for (let i = 0; i < blocks; i++) {
            expect(view().slice(at + i * bs, at + (i + 1) * bs)).toEqual(
              patternBlockOracle(bs, disk + i * bs, gen, seed),
            );
          }
          const table = new Uint32Array(layout.memory.buffer, gens.offset, gens.byteLength / 4);
          table.fill(gen, firstBlock, firstBlock + blocks);
          expect(kernel.patternVerify(buf, at, len, bs, disk, gens, 0, seed)).toBe(-1);
          const copy = view().slice(at, at + len);
          expect(patternVerifyOracle(copy, bs, disk, table.slice(), seed)).toBe(-1);
        },
      ),
      { numRuns: 80 },
    );
  });

  it("names the first bad block for any flipped byte, a wrong generation or a moved block", () => {
    const bs = 1024;
    const table = new Uint32Array(layout.memory.buffer, gens.offset, 64);
    table.fill(0);
    table.fill(7, 0, 4);
    kernel.patternFill(buf, 0, 4 * bs, bs, 0, 7, 99n);
    for (const byte of [0, 8, 12, 16, 1023, 2048 + 600]) {
      view()[byte] = (view()[byte] ?? 0) ^ 0x10;
      expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(Math.floor(byte / bs));
      view()[byte] = (view()[byte] ?? 0) ^ 0x10;
    }
    table[2] = 8;
    expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(2);
    table[2] = 7;
    // Block 1's bytes read back where block 3 should be: the header's offset differs.
    view().copyWithin(3 * bs, bs, 2 * bs);
    expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(3);
    // Generation 0: never written, must be zeros.
    table[3] = 0;
    view().fill(0, 3 * bs, 4 * bs);
    expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(-1);
    // ... so one byte that is not zero in it names it,
    view()[3 * bs + 700] = 1;
    expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(3);
    view()[3 * bs + 700] = 0;
    // and so does a whole written block the table says was never written.
    table[1] = 0;
    expect(kernel.patternVerify(buf, 0, 4 * bs, bs, 0, gens, 0, 99n)).toBe(1);
  });
});
