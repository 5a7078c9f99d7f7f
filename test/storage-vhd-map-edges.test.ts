import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { VHD_EPOCH_SECONDS } from "../src/storage/format.js";
import { StorageKernels } from "../src/storage/kernels.js";
import { blockProblems, type ParentSource, VhdImage } from "../src/storage/vhd.js";

// Edges of a VHD's map and of its block checks (Virtual Hard Disk Image
// Format Specification 1.0, "Block Allocation Table and Data Blocks"): a
// dynamic disk's extents come from the BAT alone, whatever its bitmaps say
// (QEMU's vpc_co_block_status, block/vpc.c); a parent's extent seen through
// a child's smaller blocks keeps its host offsets and comes out whole; a
// block may end exactly where metadata begins; an image closed twice gives
// its regions back once.

const PARENT_MTIME = (VHD_EPOCH_SECONDS + 800_000_000) * 1000;

describe("a VHD's map, at its edges", () => {
  it("reports a dynamic disk's allocated block whole even where its bitmap is clear", () => {
    const kernels = StorageKernels.standalone(256 * 1024);
    const made = new MemoryFile("/edges/d.vhd");
    const image = VhdImage.create(made, {
      type: "dynamic",
      size: 16 * 1024,
      blockSize: 4096,
      kernels,
      now: 0,
    });
    image.write(4096, new Uint8Array(512).fill(1));
    const entry = image.blockTable[1] ?? 0;
    image.close();
    // Another tool's bitmap: only the block's first sector marked present.
    const bytes = made.contents().slice();
    bytes.fill(0, entry * 512, entry * 512 + 512);
    bytes[entry * 512] = 0x80;
    const opened = VhdImage.open(new MemoryFile("/edges/d.vhd", bytes), { kernels });
    expect(opened.map()).toEqual([
      { start: 0, length: 4096, depth: 0, data: false, zero: true },
      { start: 4096, length: 4096, depth: 0, data: true, zero: false, offset: entry * 512 + 512 },
      { start: 8192, length: 8192, depth: 0, data: false, zero: true },
    ]);
    opened.close();
  });

  it("gives a parent's block through a child's smaller blocks whole, at its own offsets", () => {
    const kernels = StorageKernels.standalone(256 * 1024);
    const parentFile = new MemoryFile("/edges/parent.vhd");
    const parentMade = VhdImage.create(parentFile, {
      type: "dynamic",
      size: 32 * 1024,
      blockSize: 8192,
      kernels,
      now: 0,
    });
    parentMade.write(8192, new Uint8Array(8192).fill(9));
    parentMade.close();
    const parentBytes = parentFile.contents().slice();
    const parents: ParentSource = {
      open: (candidates) =>
        candidates.includes("/edges/parent.vhd")
          ? {
              file: new MemoryFile("/edges/parent.vhd", parentBytes.slice()),
              path: "/edges/parent.vhd",
              mtimeMs: PARENT_MTIME,
            }
          : undefined,
    };
    const parent = VhdImage.open(new MemoryFile("/edges/parent.vhd", parentBytes.slice()), {
      kernels,
    });
    const child = VhdImage.create(new MemoryFile("/edges/child.vhd"), {
      type: "differencing",
      blockSize: 2048,
      parent: { image: parent, path: "/edges/parent.vhd", mtimeMs: PARENT_MTIME },
      path: "/edges/child.vhd",
      kernels,
      now: 0,
      parents,
    });
    parent.close();
    // One sector of the child in the parent's block 1, at guest 12 KiB.
    child.write(12 * 1024, new Uint8Array(512).fill(2));
    const below = child.parent as VhdImage;
    const p1 = (below.blockTable[1] ?? 0) * 512 + below.bitmapBytes;
    const c6 = (child.blockTable[6] ?? 0) * 512 + child.bitmapBytes;
    expect(child.map()).toEqual([
      { start: 0, length: 8192, depth: 1, data: false, zero: true },
      { start: 8192, length: 4096, depth: 1, data: true, zero: false, offset: p1 },
      { start: 12288, length: 512, depth: 0, data: true, zero: false, offset: c6 },
      { start: 12800, length: 3584, depth: 1, data: true, zero: false, offset: p1 + 4608 },
      { start: 16384, length: 16384, depth: 1, data: false, zero: true },
    ]);
    child.close();
  });
});

describe("block checks, at a block's end", () => {
  const layout = (spans: [number, number, string][]) => ({
    bat: Uint32Array.of(8),
    blocks: 1,
    tableOffset: 1536,
    span: 4608,
    dataEnd: 1 << 20,
    spans,
  });

  it("take a block that ends exactly where metadata begins, and refuse one sector more", () => {
    // The block is [4096, 8704).
    expect(blockProblems(layout([[8704, 9216, "parent locator 0 data"]]))).toEqual([]);
    expect(blockProblems(layout([[20_000, 20_512, "parent locator 0 data"]]))).toEqual([]);
    const [problem] = blockProblems(layout([[8192, 8704, "parent locator 0 data"]]));
    expect(problem?.message).toBe(
      "BAT entry 0 at offset 1536 (0x600): block at 4096 overlaps the parent locator 0 data at [8192, 8704)",
    );
  });
});

describe("an image closed twice", () => {
  it("gives its regions back once: no page is handed out twice after it", () => {
    const kernels = StorageKernels.standalone(256 * 1024);
    const image = VhdImage.create(new MemoryFile("/edges/twice.vhd"), {
      type: "dynamic",
      size: 16 * 1024,
      blockSize: 4096,
      kernels,
      now: 0,
    });
    image.write(0, new Uint8Array(512).fill(1));
    image.close();
    image.close();
    // Its bitmap cache (4 slots of 512 bytes) and its metadata scratch are a
    // page each: four borrows of a page are four different pages.
    const offsets = [1, 2, 3, 4].map(() => kernels.borrow(4096).offset);
    expect(new Set(offsets).size).toBe(4);
  });
});
