import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { type DiskImage, RawImage } from "../src/storage/disk-image.js";
import { SECTOR } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { copyExtents } from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// The pipelined copy (several reads in flight, writes in order) leaves the
// destination's file byte for byte as a copy one chunk at a time does.
const KiB = 1024;
const kernels = defaultKernels();

/** The copy one chunk at a time, synchronously: what the pipeline must equal. */
function copyOneByOne(src: DiskImage, dst: DiskImage, chunk: number): void {
  for (const e of src.map()) {
    if (!e.data) continue;
    for (let at = e.start; at < e.start + e.length; ) {
      const n = Math.min(chunk - (at % chunk), e.start + e.length - at);
      const part = new Uint8Array(n);
      src.read(at, part);
      if (part.some((b) => b !== 0)) dst.write(at, part);
      at += n;
    }
  }
}

type Target = "raw" | "fixed" | "dynamic";

/** A new destination whose every field is fixed (no random id, no clock), so two copies can be compared. */
function destination(path: string, to: Target, size: number, blockSize: number): DiskImage {
  const file = new FdFile(path, "w+");
  if (to === "raw") {
    file.truncate(size);
    return new RawImage(file, true);
  }
  return VhdImage.create(file, {
    type: to,
    size,
    blockSize,
    kernels,
    uniqueId: new Uint8Array(16).fill(7),
    now: Date.UTC(2026, 0, 1),
  });
}

const scenario = fc.record({
  blockKiB: fc.constantFrom(4, 16, 64),
  // Disk sizes that are not a multiple of the block size: a short last block.
  sectors: fc.integer({ min: 1, max: 2048 }),
  writes: fc.array(
    fc.record({
      sector: fc.nat(),
      count: fc.integer({ min: 1, max: 300 }),
      byte: fc.integer({ min: 0, max: 255 }),
    }),
    { maxLength: 12 },
  ),
  to: fc.constantFrom<Target>("raw", "fixed", "dynamic"),
  depth: fc.integer({ min: 1, max: 8 }),
});

describe("the pipelined copy", () => {
  it("writes the same file as a copy one chunk at a time, for every target and depth (property)", async () => {
    const dir = testTempDir("copy-pipeline");
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ blockKiB, sectors, writes, to, depth }) => {
        const n = run++;
        const blockSize = blockKiB * KiB;
        const size = sectors * SECTOR;
        const srcPath = join(dir, `src-${n}.vhd`);
        const src = VhdImage.create(new FdFile(srcPath, "w+"), {
          type: "dynamic",
          size,
          blockSize,
          kernels,
        });
        for (const w of writes) {
          const first = w.sector % sectors;
          const count = Math.min(w.count, sectors - first);
          // Byte 0 writes allocate blocks of zeros: chunks the copy must skip.
          src.write(first * SECTOR, new Uint8Array(count * SECTOR).fill(w.byte));
        }
        const expected = join(dir, `expected-${n}`);
        const actual = join(dir, `actual-${n}`);
        const oracle = destination(expected, to, size, blockSize);
        copyOneByOne(src, oracle, blockSize);
        oracle.close();
        const dst = destination(actual, to, size, blockSize);
        const stats = await copyExtents(src, dst, src.map(), {
          kernels,
          chunk: blockSize,
          depth,
        });
        const stored = src.map().filter((e) => e.data);
        dst.close();
        src.close();
        expect(Buffer.compare(readFileSync(actual), readFileSync(expected))).toBe(0);
        expect(stats.bytesRead).toBe(stored.reduce((sum, e) => sum + e.length, 0));
        expect(stats.bytesWritten).toBeLessThanOrEqual(stats.bytesRead);
      }),
      { numRuns: 40 },
    );
  }, 120_000);

  it("stops at a failed read: the error comes out, and nothing after it is written", async () => {
    const dir = testTempDir("copy-pipeline-fail");
    const blockSize = 16 * KiB;
    const blocks = 32;
    const size = blocks * blockSize;
    const src = VhdImage.create(new FdFile(join(dir, "src.vhd"), "w+"), {
      type: "dynamic",
      size,
      blockSize,
      kernels,
    });
    for (let b = 0; b < blocks; b++)
      src.write(b * blockSize, new Uint8Array(blockSize).fill(b + 1));
    const failAt = 11 * blockSize;
    const failing: DiskImage = Object.assign(Object.create(src) as DiskImage, {
      readAsync: async (offset: number, into: Uint8Array) => {
        if (offset === failAt) throw new Error(`read of block 11 failed`);
        return src.readAsync(offset, into);
      },
    });
    const path = join(dir, "out.raw");
    const dst = destination(path, "raw", size, blockSize);
    await expect(
      copyExtents(failing, dst, src.map(), { kernels, chunk: blockSize, depth: 8 }),
    ).rejects.toThrow(/block 11 failed/);
    dst.close();
    src.close();
    const out = readFileSync(path);
    // Writes go out in order: every block before the failed one is written, none after it.
    for (let b = 0; b < blocks; b++) {
      const first = out[b * blockSize];
      expect(first, `block ${b}`).toBe(b < 11 ? b + 1 : 0);
    }
  });

  it("refuses a depth outside 1-64", async () => {
    const dir = testTempDir("copy-pipeline-depth");
    const src = destination(join(dir, "a.raw"), "raw", 4096, 4096);
    const dst = destination(join(dir, "b.raw"), "raw", 4096, 4096);
    for (const depth of [0, 65, 1.5]) {
      await expect(copyExtents(src, dst, src.map(), { kernels, depth })).rejects.toThrow(
        /copy depth must be 1-64/,
      );
    }
    src.close();
    dst.close();
  });
});
