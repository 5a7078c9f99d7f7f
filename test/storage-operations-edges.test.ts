import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { type DiskImage, RawImage } from "../src/storage/disk-image.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { compactImage, convertImage, copyExtents, mergeImage } from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// The copy's failures in the disk's order, whatever order the reads fail
// in: the error of the first failed chunk comes out, no chunk after it is
// written and none is read once one has failed with no buffer free; every
// buffer borrowed is given back; convert, merge and compact close every
// file they open; convert writes over an existing file that is not its
// source.

const KiB = 1024;
const kernels = defaultKernels();
const CHUNK = 4 * KiB;

/** A raw source of `chunks` chunks, chunk i filled with i + 1. */
function source(dir: string, chunks: number): { path: string; image: DiskImage } {
  const path = join(dir, "src.raw");
  const bytes = new Uint8Array(chunks * CHUNK);
  for (let i = 0; i < chunks; i++) bytes.fill(i + 1, i * CHUNK, (i + 1) * CHUNK);
  writeFileSync(path, bytes);
  return { path, image: new RawImage(new FdFile(path, "r"), false) };
}

function destination(dir: string, chunks: number): { path: string; image: DiskImage } {
  const path = join(dir, "dst.raw");
  writeFileSync(path, new Uint8Array(chunks * CHUNK));
  return { path, image: new RawImage(new FdFile(path, "r+"), true) };
}

/**
 * `image` whose reads of the chunks in `failing` fail, each after its own
 * delay in event-loop turns (so the test sets the order they fail in), and
 * which records every chunk it is asked for.
 */
function failingReads(image: DiskImage, failing: ReadonlyMap<number, number>) {
  const asked: number[] = [];
  const wrapped: DiskImage = Object.assign(Object.create(image) as DiskImage, {
    readAsync: async (offset: number, into: Uint8Array) => {
      const chunk = offset / CHUNK;
      asked.push(chunk);
      const turns = failing.get(chunk);
      if (turns === undefined) return image.readAsync(offset, into);
      for (let t = 0; t < turns; t++) await new Promise((resolve) => setImmediate(resolve));
      throw new Error(`read of chunk ${chunk} failed`);
    },
  });
  return { wrapped, asked };
}

function openDescriptors(): number {
  return readdirSync("/proc/self/fd").length;
}

describe("copyExtents' failures", () => {
  it("gives the first failed chunk's error in the disk's order, when a later chunk failed before it", async () => {
    const dir = testTempDir("ops-edges-order");
    const src = source(dir, 8);
    const dst = destination(dir, 8);
    try {
      // Chunk 3 fails at once, chunk 1 some turns later.
      const { wrapped } = failingReads(
        src.image,
        new Map([
          [1, 20],
          [3, 0],
        ]),
      );
      await expect(
        copyExtents(wrapped, dst.image, src.image.map(), { kernels, chunk: CHUNK, depth: 8 }),
      ).rejects.toThrow(new Error("read of chunk 1 failed"));
    } finally {
      src.image.close();
      dst.image.close();
    }
    const out = new Uint8Array(readFileSync(dst.path));
    expect(out.subarray(0, CHUNK)).toEqual(new Uint8Array(CHUNK).fill(1));
    expect(out.subarray(CHUNK).every((b) => b === 0)).toBe(true);
  });

  it("keeps the first chunk's error when a later chunk fails after it", async () => {
    const dir = testTempDir("ops-edges-later");
    const src = source(dir, 8);
    const dst = destination(dir, 8);
    try {
      const { wrapped } = failingReads(
        src.image,
        new Map([
          [1, 0],
          [3, 20],
        ]),
      );
      await expect(
        copyExtents(wrapped, dst.image, src.image.map(), { kernels, chunk: CHUNK, depth: 8 }),
      ).rejects.toThrow(new Error("read of chunk 1 failed"));
    } finally {
      src.image.close();
      dst.image.close();
    }
  });

  it("writes no chunk read after a failed one, though its read came back first", async () => {
    const dir = testTempDir("ops-edges-after");
    const src = source(dir, 4);
    const dst = destination(dir, 4);
    try {
      const { wrapped } = failingReads(src.image, new Map([[1, 20]]));
      await expect(
        copyExtents(wrapped, dst.image, src.image.map(), { kernels, chunk: CHUNK, depth: 4 }),
      ).rejects.toThrow(new Error("read of chunk 1 failed"));
    } finally {
      src.image.close();
      dst.image.close();
    }
    const out = new Uint8Array(readFileSync(dst.path));
    expect(out.subarray(0, CHUNK)).toEqual(new Uint8Array(CHUNK).fill(1));
    expect(out.subarray(CHUNK).every((b) => b === 0)).toBe(true);
  });

  it("reads no further chunk once one has failed", async () => {
    const dir = testTempDir("ops-edges-stop");
    const src = source(dir, 8);
    const dst = destination(dir, 8);
    try {
      const { wrapped, asked } = failingReads(src.image, new Map([[2, 0]]));
      await expect(
        copyExtents(wrapped, dst.image, src.image.map(), { kernels, chunk: CHUNK, depth: 1 }),
      ).rejects.toThrow(new Error("read of chunk 2 failed"));
      expect(asked).toEqual([0, 1, 2]);
    } finally {
      src.image.close();
      dst.image.close();
    }
  });

  it("gives back every buffer it borrowed, after a copy and after a failure", async () => {
    const dir = testTempDir("ops-edges-buffers");
    const src = source(dir, 8);
    const dst = destination(dir, 8);
    const borrowed: number[] = [];
    const released: number[] = [];
    const counting = Object.assign(Object.create(kernels) as typeof kernels, {
      borrow: (bytes: number) => {
        const region = kernels.borrow(bytes);
        borrowed.push(region.offset);
        return region;
      },
      release: (region: ReturnType<typeof kernels.borrow>) => {
        released.push(region.offset);
        kernels.release(region);
      },
    });
    try {
      await copyExtents(src.image, dst.image, src.image.map(), {
        kernels: counting,
        chunk: CHUNK,
        depth: 3,
      });
      expect(borrowed.length).toBe(3);
      expect([...released].sort()).toEqual([...borrowed].sort());
      borrowed.length = 0;
      released.length = 0;
      const { wrapped } = failingReads(src.image, new Map([[5, 0]]));
      await expect(
        copyExtents(wrapped, dst.image, src.image.map(), {
          kernels: counting,
          chunk: CHUNK,
          depth: 3,
        }),
      ).rejects.toThrow("read of chunk 5 failed");
      expect(borrowed.length).toBe(3);
      expect([...released].sort()).toEqual([...borrowed].sort());
    } finally {
      src.image.close();
      dst.image.close();
    }
  });
});

describe("the operations' files", () => {
  it("convert closes its source and destination, and writes over an existing file that is not its source", async () => {
    const dir = testTempDir("ops-edges-convert");
    const src = join(dir, "src.raw");
    writeFileSync(src, new Uint8Array(64 * KiB).fill(5));
    const dst = join(dir, "old.raw");
    writeFileSync(dst, new Uint8Array(3 * 64 * KiB).fill(9));
    const before = openDescriptors();
    await convertImage(src, dst, { to: "raw", kernels });
    await convertImage(src, join(dir, "new.vhd"), { to: "dynamic", kernels, flush: true });
    expect(openDescriptors()).toBe(before);
    expect(new Uint8Array(readFileSync(dst))).toEqual(new Uint8Array(64 * KiB).fill(5));
  });

  it("merge and compact close every image they open", async () => {
    const dir = testTempDir("ops-edges-merge");
    const parentPath = join(dir, "parent.vhd");
    const childPath = join(dir, "child.vhd");
    VhdImage.create(new FdFile(parentPath, "w+"), {
      type: "dynamic",
      size: 256 * KiB,
      blockSize: 64 * KiB,
      kernels,
    }).close();
    const parent = VhdImage.open(new FdFile(parentPath, "r"), { kernels });
    const child = VhdImage.create(new FdFile(childPath, "w+"), {
      type: "differencing",
      kernels,
      path: childPath,
      parent: { image: parent, path: parentPath, mtimeMs: statSync(parentPath).mtimeMs },
    });
    parent.close();
    child.write(0, new Uint8Array(512).fill(4));
    child.close();
    const before = openDescriptors();
    await mergeImage(childPath, { kernels });
    expect(openDescriptors()).toBe(before);
    await compactImage(childPath, { kernels });
    expect(openDescriptors()).toBe(before);
    await mergeImage(childPath, { kernels, child: "deleted" });
    expect(openDescriptors()).toBe(before);
    // The parent last: compacting it rewrites it, so a child made before
    // would record an older time stamp than its parent's and be refused
    // (the footer's Parent Time Stamp check) once a second boundary passes.
    await compactImage(parentPath, { kernels });
    expect(openDescriptors()).toBe(before);
  });
});
