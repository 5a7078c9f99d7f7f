import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { DiskRequestError } from "../src/storage/errors.js";
import { VHD_EPOCH_SECONDS } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";

// What a VHD reports of its extents and sectors, from the specification's
// layout (Virtual Hard Disk Image Format Specification 1.0, "Block Allocation
// Table and Data Blocks": a block is its sector bitmap, then its data; a bit
// set means the sector is in this image, clear means the parent's): a
// dynamic disk's allocated blocks whole (as QEMU's vpc_co_block_status
// reports them, block/vpc.c), a differencing disk's runs of its bitmaps with
// the parent's extents below, one depth deeper; neighbours of the same kind
// that continue each other merged.

const kernels = defaultKernels();
const BLOCK = 4096;
const SIZE = 64 * 1024;
const PARENT_MTIME = (VHD_EPOCH_SECONDS + 800_000_000) * 1000;

/** Where block `b`'s data starts in the image's file: after its sector bitmap. */
function dataAt(image: VhdImage, b: number): number {
  return (image.blockTable[b] ?? 0) * 512 + image.bitmapBytes;
}

function dynamic(size: number, writes: [number, number][]): { file: MemoryFile; image: VhdImage } {
  const file = new MemoryFile("/map/parent.vhd");
  const image = VhdImage.create(file, { type: "dynamic", size, blockSize: BLOCK, kernels, now: 0 });
  for (const [at, n] of writes) image.write(at, new Uint8Array(n).fill(0x5a));
  return { file, image };
}

describe("a VHD's map", () => {
  it("is one stored extent for a fixed disk", () => {
    const image = VhdImage.create(new MemoryFile("f.vhd"), {
      type: "fixed",
      size: 8192,
      kernels,
      now: 0,
    });
    expect(image.map()).toEqual([
      { start: 0, length: 8192, depth: 0, data: true, zero: false, offset: 0 },
    ]);
    image.close();
  });

  it("gives a dynamic disk's allocated blocks whole and its holes as zeros, merged", () => {
    // Blocks 1 and 2 allocated one after the other, block 5 later.
    const { image } = dynamic(SIZE, [
      [BLOCK + 512, 512],
      [2 * BLOCK, BLOCK],
      [5 * BLOCK + 3072, 1024],
    ]);
    const hole = (start: number, length: number) => ({
      start,
      length,
      depth: 0,
      data: false,
      zero: true,
    });
    const stored = (b: number) => ({
      start: b * BLOCK,
      length: BLOCK,
      depth: 0,
      data: true,
      zero: false,
      offset: dataAt(image, b),
    });
    // Each block's bitmap lies between two blocks' data: no two blocks continue each other.
    expect(dataAt(image, 2)).toBeGreaterThan(dataAt(image, 1) + BLOCK);
    expect(image.map()).toEqual([
      hole(0, BLOCK),
      stored(1),
      stored(2),
      hole(3 * BLOCK, 2 * BLOCK),
      stored(5),
      hole(6 * BLOCK, SIZE - 6 * BLOCK),
    ]);
    image.close();
  });

  it("ends at the disk's size when the last block is partial", () => {
    const size = 2 * BLOCK + 1024;
    const { image } = dynamic(size, [[2 * BLOCK, 512]]);
    expect(image.map()).toEqual([
      { start: 0, length: 2 * BLOCK, depth: 0, data: false, zero: true },
      {
        start: 2 * BLOCK,
        length: 1024,
        depth: 0,
        data: true,
        zero: false,
        offset: dataAt(image, 2),
      },
    ]);
    image.close();
  });

  it("gives a differencing disk's own sectors at depth 0 and its parent's one deeper", () => {
    const { file: parentFile, image: parentImage } = dynamic(SIZE, [[0, BLOCK]]);
    parentImage.close();
    const parentBytes = parentFile.contents().slice();
    const parents: ParentSource = {
      open: (candidates) =>
        candidates.includes("/map/parent.vhd")
          ? {
              file: new MemoryFile("/map/parent.vhd", parentBytes.slice()),
              path: "/map/parent.vhd",
              mtimeMs: PARENT_MTIME,
            }
          : undefined,
    };
    const parent = VhdImage.open(new MemoryFile("/map/parent.vhd", parentBytes.slice()), {
      kernels,
    });
    const child = VhdImage.create(new MemoryFile("/map/child.vhd"), {
      type: "differencing",
      parent: { image: parent, path: "/map/parent.vhd", mtimeMs: PARENT_MTIME },
      path: "/map/child.vhd",
      kernels,
      now: 0,
      parents,
    });
    parent.close();
    // Sectors 3 and 4 of block 0, and the last sector of block 2.
    child.write(3 * 512, new Uint8Array(1024).fill(1));
    child.write(3 * BLOCK - 512, new Uint8Array(512).fill(2));
    const below = child.parent as VhdImage;
    const p0 = dataAt(below, 0);
    const c0 = dataAt(child, 0);
    expect(child.map()).toEqual([
      { start: 0, length: 1536, depth: 1, data: true, zero: false, offset: p0 },
      { start: 1536, length: 1024, depth: 0, data: true, zero: false, offset: c0 + 1536 },
      { start: 2560, length: BLOCK - 2560, depth: 1, data: true, zero: false, offset: p0 + 2560 },
      { start: BLOCK, length: 2 * BLOCK - 512, depth: 1, data: false, zero: true },
      {
        start: 3 * BLOCK - 512,
        length: 512,
        depth: 0,
        data: true,
        zero: false,
        offset: dataAt(child, 2) + BLOCK - 512,
      },
      { start: 3 * BLOCK, length: SIZE - 3 * BLOCK, depth: 1, data: false, zero: true },
    ]);
    // The sectors each image holds, from its bitmap: a dynamic block holds all.
    expect([child.sectorsPresent(0), child.sectorsPresent(1), child.sectorsPresent(2)]).toEqual([
      2, 0, 1,
    ]);
    expect([child.isAllocated(0), child.isAllocated(1), child.isAllocated(2)]).toEqual([
      true,
      false,
      true,
    ]);
    expect(below.sectorsPresent(0)).toBe(BLOCK / 512);
    // Reads take each sector from the image that holds it.
    const into = new Uint8Array(BLOCK);
    child.read(0, into);
    expect([into[0], into[1535], into[1536], into[2559], into[2560], into[4095]]).toEqual([
      0x5a, 0x5a, 1, 1, 0x5a, 0x5a,
    ]);
    child.close();
  });
});

describe("a closed VHD", () => {
  it("refuses reads, writes, maps and flushes, naming its file, and closes once", async () => {
    const { image } = dynamic(SIZE, [[0, 512]]);
    image.close();
    const closed = new DiskRequestError("/map/parent.vhd is closed");
    expect(() => image.read(0, new Uint8Array(512))).toThrow(closed);
    expect(() => image.write(0, new Uint8Array(512))).toThrow(closed);
    expect(() => image.map()).toThrow(closed);
    expect(() => image.flush()).toThrow(closed);
    await expect(image.readAsync(0, new Uint8Array(512))).rejects.toThrow(closed);
    await expect(image.writeAsync(0, new Uint8Array(512))).rejects.toThrow(closed);
    expect(() => image.close()).not.toThrow();
  });
});
