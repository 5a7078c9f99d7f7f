import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { StorageKernel } from "../src/wasm/storage.js";

/*
 * Rules of the sector bitmap kernels (assembly/storage.ts), on bitmaps
 * written by hand. The VHD format (Microsoft, Virtual Hard Disk Image Format
 * Specification 1.0, "Block Format") keeps one bit per sector of a block,
 * most significant bit first: sector s is bit 0x80 >> (s & 7) of byte s >> 3.
 *
 * - counting a whole 64-sector word counts all eight of its bytes;
 * - a scan returns the first matching sector, which in a byte is its most
 *   significant matching bit;
 * - a scan for a clear sector passes over all-set bytes only: an all-clear
 *   byte holds the sector it looks for.
 */

let layout: MemoryLayout;
let kernel: StorageKernel;
let bitmap: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = StorageKernel.on(layout.memory);
  bitmap = layout.allocate("sector bitmap", 512);
});

/** Writes `bytes` at the bitmap's start, the rest clear. */
function lay(bytes: readonly number[]): void {
  bitmap.bytes(layout.memory).fill(0).set(bytes);
}

describe("counting a whole 64-sector word", () => {
  it("counts sectors 32..63, the word's high four bytes", () => {
    lay([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    expect(kernel.bitmapCount(bitmap, 0, 0, 64)).toBe(32);
  });

  it("counts one sector in each byte of the word, and of two words", () => {
    // Sector 8k + 7 (bit 0x01 of byte k) set in each byte.
    lay(new Array<number>(16).fill(0x01));
    expect(kernel.bitmapCount(bitmap, 0, 0, 64)).toBe(8);
    expect(kernel.bitmapCount(bitmap, 0, 0, 128)).toBe(16);
    // Only sector 63 (bit 0x01 of byte 7).
    lay([0, 0, 0, 0, 0, 0, 0, 0x01]);
    expect(kernel.bitmapCount(bitmap, 0, 0, 64)).toBe(1);
  });

  it("counts a full 2 MiB block: 4096 sectors in 512 bytes", () => {
    bitmap.bytes(layout.memory).fill(0xff);
    expect(kernel.bitmapCount(bitmap, 0, 0, 4096)).toBe(4096);
    // From sector 4: the head 4..7, then whole words up to 4095.
    expect(kernel.bitmapCount(bitmap, 0, 4, 4092)).toBe(4092);
  });
});

describe("a scan finds the most significant matching bit of a byte first", () => {
  it("byte 0x06 holds sectors 5 and 6: the first set one is 5", () => {
    lay([0x06]);
    expect(kernel.bitmapScan(bitmap, 0, 0, 64, 1)).toBe(5);
  });

  it("byte 1 = 0xF9 (1111 1001) has sectors 13 and 14 clear: the first clear one is 13", () => {
    lay([0xff, 0xf9, ...new Array<number>(6).fill(0xff)]);
    expect(kernel.bitmapScan(bitmap, 0, 0, 64, 0)).toBe(13);
  });

  it("each single set sector is found where it is, in a 64-sector word", () => {
    for (let s = 0; s < 64; s++) {
      const bytes = new Array<number>(8).fill(0);
      bytes[s >> 3] = 0x80 >> (s & 7);
      lay(bytes);
      expect(kernel.bitmapScan(bitmap, 0, 0, 64, 1)).toBe(s);
    }
  });
});

describe("a scan for a clear sector skips only all-set bytes", () => {
  it("a new block's bitmap, all clear: the first clear sector is 0", () => {
    lay([]);
    expect(kernel.bitmapScan(bitmap, 0, 0, 64, 0)).toBe(0);
    expect(kernel.bitmapScan(bitmap, 0, 0, 4096, 0)).toBe(0);
  });

  it("after two all-set bytes, an all-clear byte: sector 16", () => {
    lay([0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(kernel.bitmapScan(bitmap, 0, 0, 64, 0)).toBe(16);
  });

  it("each single clear sector is found where it is, in an otherwise full word", () => {
    for (let s = 0; s < 64; s++) {
      const bytes = new Array<number>(8).fill(0xff);
      bytes[s >> 3] = 0xff ^ (0x80 >> (s & 7));
      lay(bytes);
      expect(kernel.bitmapScan(bitmap, 0, 0, 64, 0)).toBe(s);
    }
  });
});
