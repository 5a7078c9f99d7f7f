import {
  constants,
  existsSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { BAT_UNALLOCATED, VHD_EPOCH_SECONDS } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { openImage } from "../src/storage/open.js";
import {
  compactImage,
  convertImage,
  copyExtents,
  mergeImage,
  VHD_TYPES,
} from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// Convert, merge and compact on small files, each result read back through
// the engine and, where the rule is about the file, from its bytes: what
// each copies and skips (all-zero chunks; zeros kept where they hide a
// parent's data), the figures it returns, and what becomes of the child of
// a merge (qemu-img commit's emptying, or Hyper-V Merge-VHD's removal) and
// of a compacted disk's identity.

const KiB = 1024;
const MiB = 1024 * KiB;
const kernels = defaultKernels();

/** `n` bytes that differ from sector to sector, never all zero. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (((i >> 9) * 17 + seed * 29 + (i % 251)) % 255) | 1;
  return out;
}

/** Every byte of a disk image through the engine (a chain read whole). */
function readAll(path: string): Uint8Array {
  const image = openImage(path, { kernels });
  try {
    const out = new Uint8Array(image.size);
    image.read(0, out);
    return out;
  } finally {
    image.close();
  }
}

/** A dynamic VHD at `path` of `size` bytes and `blockSize` blocks, with `writes` written. */
function dynamic(
  path: string,
  size: number,
  blockSize: number,
  writes: readonly [number, Uint8Array][],
): void {
  const image = VhdImage.create(new FdFile(path, "w+"), {
    type: "dynamic",
    size,
    blockSize,
    kernels,
    uniqueId: new Uint8Array(16).fill(3),
    now: Date.UTC(2026, 0, 1),
  });
  for (const [at, bytes] of writes) image.write(at, bytes);
  image.close();
}

/** A differencing VHD at `path` on the parent at `parentPath`, with `writes` written. */
function differencing(
  path: string,
  parentPath: string,
  writes: readonly [number, Uint8Array][],
): void {
  const parent = VhdImage.open(new FdFile(parentPath, "r"), { kernels });
  const image = VhdImage.create(new FdFile(path, "w+"), {
    type: "differencing",
    kernels,
    path,
    uniqueId: new Uint8Array(16).fill(9),
    now: Date.UTC(2026, 1, 1),
    parent: { image: parent, path: parentPath, mtimeMs: statSync(parentPath).mtimeMs },
  });
  parent.close();
  for (const [at, bytes] of writes) image.write(at, bytes);
  image.close();
}

function allocatedBlocks(path: string): number[] {
  const image = VhdImage.open(new FdFile(path, "r"), { kernels });
  try {
    return [...image.blockTable].flatMap((entry, i) => (entry === BAT_UNALLOCATED ? [] : [i]));
  } finally {
    image.close();
  }
}

/** Where two byte strings first differ, -1 where nowhere: vitest's toEqual over MiBs takes seconds. */
function firstDifference(got: Uint8Array, want: Uint8Array): number {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) return i;
  return got.length === want.length ? -1 : n;
}

describe("convertImage", () => {
  it("reads every stored byte, writes the chunks that are not all zeros and counts the rest", async () => {
    const dir = testTempDir("ops-convert");
    const src = join(dir, "src.raw");
    // A raw disk of 5 MiB: its first 2 MiB chunk and the last, short one hold data; the middle is zeros.
    const bytes = new Uint8Array(5 * MiB);
    bytes.set(pattern(1000, 1), 4096);
    bytes.set(pattern(512, 2), 5 * MiB - 512);
    writeFileSync(src, bytes);
    const progress: [number, number][] = [];
    const stats = await convertImage(src, join(dir, "out.raw"), {
      to: "raw",
      kernels,
      progress: (done, total) => progress.push([done, total]),
    });
    expect(stats).toEqual({
      size: 5 * MiB,
      bytesRead: 5 * MiB,
      bytesWritten: 3 * MiB,
      zeroChunks: 1,
    });
    expect(progress).toEqual([
      [2 * MiB, 5 * MiB],
      [4 * MiB, 5 * MiB],
      [5 * MiB, 5 * MiB],
    ]);
    expect(firstDifference(new Uint8Array(readFileSync(join(dir, "out.raw"))), bytes)).toBe(-1);
  });

  it("makes a dynamic disk of the block size asked, allocating only the blocks with data", async () => {
    const dir = testTempDir("ops-convert-dynamic");
    const src = join(dir, "src.raw");
    const bytes = new Uint8Array(1 * MiB);
    bytes.set(pattern(512, 3), 64 * KiB + 512);
    bytes.set(pattern(512, 4), 10 * 64 * KiB);
    writeFileSync(src, bytes);
    const out = join(dir, "out.vhd");
    const stats = await convertImage(src, out, { to: "dynamic", blockSize: 64 * KiB, kernels });
    // One chunk a block: two with data, fourteen of zeros.
    expect(stats).toEqual({ size: MiB, bytesRead: MiB, bytesWritten: 128 * KiB, zeroChunks: 14 });
    expect(allocatedBlocks(out)).toEqual([1, 10]);
    const image = VhdImage.open(new FdFile(out, "r"), { kernels });
    expect(image.blockBytes).toBe(64 * KiB);
    expect(image.type).toBe("dynamic");
    image.close();
    expect(firstDifference(readAll(out), bytes)).toBe(-1);
    // Without a block size asked: 2 MiB blocks, and chunks of 2 MiB.
    const plain = join(dir, "plain.vhd");
    const whole = await convertImage(src, plain, { to: "dynamic", kernels });
    expect(whole).toEqual({ size: MiB, bytesRead: MiB, bytesWritten: MiB, zeroChunks: 0 });
    const big = VhdImage.open(new FdFile(plain, "r"), { kernels });
    expect(big.blockBytes).toBe(2 * MiB);
    big.close();
    // A fixed disk of the same bytes, its chunks 2 MiB whatever the block size asked.
    const fixed = join(dir, "fixed.vhd");
    expect(await convertImage(src, fixed, { to: "fixed", blockSize: 64 * KiB, kernels })).toEqual({
      size: MiB,
      bytesRead: MiB,
      bytesWritten: MiB,
      zeroChunks: 0,
    });
    expect(statSync(fixed).size).toBe(MiB + 512);
    expect(firstDifference(readAll(fixed), bytes)).toBe(-1);
  });

  it("reads a differencing disk through its chain, and copies only what the chain stores", async () => {
    const dir = testTempDir("ops-convert-chain");
    const parent = join(dir, "parent.vhd");
    const child = join(dir, "child.vhd");
    dynamic(parent, MiB, 64 * KiB, [[0, pattern(1024, 5)]]);
    differencing(child, parent, [[3 * 64 * KiB, pattern(2048, 6)]]);
    const out = join(dir, "out.raw");
    const stats = await convertImage(child, out, { to: "raw", kernels });
    // The parent's block 0 whole (a dynamic disk's block is stored whole),
    // and of the child's block 3 only the sectors its bitmap holds.
    expect(stats).toEqual({
      size: MiB,
      bytesRead: 64 * KiB + 2048,
      bytesWritten: 64 * KiB + 2048,
      zeroChunks: 0,
    });
    const want = new Uint8Array(MiB);
    want.set(pattern(1024, 5), 0);
    want.set(pattern(2048, 6), 3 * 64 * KiB);
    expect(firstDifference(new Uint8Array(readFileSync(out)), want)).toBe(-1);
  });

  it("opens the source and the destination around the page cache only when asked (O_DIRECT)", async () => {
    const dir = testTempDir("ops-convert-direct");
    const src = join(dir, "src.raw");
    writeFileSync(src, pattern(2 * MiB + 4096, 7));
    const flagsOf = (path: string): number[] =>
      readdirSync("/proc/self/fd").flatMap((fd) => {
        try {
          if (readlinkSync(`/proc/self/fd/${fd}`) !== path) return [];
          const text = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
          return [Number.parseInt(/flags:\s*([0-7]+)/.exec(text)?.[1] ?? "0", 8)];
        } catch {
          return [];
        }
      });
    const direct = constants.O_DIRECT ?? 0;
    const seen: { src: number[]; dst: number[] }[] = [];
    const out = join(dir, "out.raw");
    const look = () => seen.push({ src: flagsOf(src), dst: flagsOf(out) });
    await convertImage(src, out, { to: "raw", kernels, direct: true, progress: look });
    await convertImage(src, join(dir, "buffered.raw"), { to: "raw", kernels, progress: look });
    expect(seen.length).toBe(4);
    for (const { src: s, dst: d } of seen.slice(0, 2)) {
      expect(s.length).toBe(1);
      expect(d.length).toBe(1);
      expect((s[0] ?? 0) & direct).toBe(direct);
      expect((d[0] ?? 0) & direct).toBe(direct);
    }
    for (const { src: s } of seen.slice(2)) {
      expect(s.length).toBe(1);
      expect((s[0] ?? 0) & direct).toBe(0);
    }
    expect(
      firstDifference(new Uint8Array(readFileSync(out)), new Uint8Array(readFileSync(src))),
    ).toBe(-1);
  });
});

describe("copyExtents", () => {
  it("keeps all-zero chunks when told to, and defaults to 16 MiB in flight, at most 8 chunks", async () => {
    const dir = testTempDir("ops-copy");
    const src = join(dir, "src.raw");
    writeFileSync(src, new Uint8Array(256 * KiB));
    const from = openImage(src, { kernels });
    writeFileSync(join(dir, "dst.raw"), pattern(256 * KiB, 8));
    const dst = openImage(join(dir, "dst.raw"), { kernels, writable: true });
    try {
      const kept = await copyExtents(from, dst, from.map(), {
        kernels,
        chunk: 64 * KiB,
        keepZeros: true,
      });
      expect(kept).toEqual({
        size: 256 * KiB,
        bytesRead: 256 * KiB,
        bytesWritten: 256 * KiB,
        zeroChunks: 0,
      });
      expect(
        firstDifference(
          new Uint8Array(readFileSync(join(dir, "dst.raw"))),
          new Uint8Array(256 * KiB),
        ),
      ).toBe(-1);
      // The default depth with 2 MiB chunks is 2; 64 of 4 KiB chunks would be 1,024, held to 8.
      const borrowed: number[] = [];
      const counting = {
        ...kernels,
        kernel: kernels.kernel,
        memory: kernels.memory,
        borrow: (bytes: number) => {
          borrowed.push(bytes);
          return kernels.borrow(bytes);
        },
        release: kernels.release.bind(kernels),
      } as unknown as typeof kernels;
      await copyExtents(from, dst, from.map(), { kernels: counting, chunk: 4 * KiB });
      expect(borrowed).toEqual(new Array(8).fill(4 * KiB));
      borrowed.length = 0;
      await copyExtents(from, dst, from.map(), { kernels: counting });
      expect(borrowed).toEqual([2 * MiB, 2 * MiB]);
      borrowed.length = 0;
      await copyExtents(from, dst, from.map(), { kernels: counting, chunk: 4 * MiB });
      expect(borrowed).toEqual([4 * MiB]);
      borrowed.length = 0;
      await copyExtents(from, dst, from.map(), { kernels: counting, chunk: 8 * MiB });
      expect(borrowed).toEqual([8 * MiB]);
      // Depths of 1 and 64 are taken; 0, 65 and 1.5 refused.
      for (const depth of [1, 64]) {
        await expect(
          copyExtents(from, dst, [], { kernels, depth, chunk: 4 * KiB }),
        ).resolves.toEqual({
          size: 256 * KiB,
          bytesRead: 0,
          bytesWritten: 0,
          zeroChunks: 0,
        });
      }
      for (const depth of [0, 65, 1.5]) {
        await expect(
          copyExtents(from, dst, [], { kernels, depth, chunk: 4 * KiB }),
        ).rejects.toThrow(`copy depth must be 1-64 chunks in flight, not ${depth}`);
      }
    } finally {
      from.close();
      dst.close();
    }
  });

  it("cuts extents into chunks aligned to the chunk size, skipping the ones the source does not store", async () => {
    const dir = testTempDir("ops-chunks");
    const src = join(dir, "src.raw");
    writeFileSync(src, pattern(64 * KiB, 9));
    const from = openImage(src, { kernels });
    writeFileSync(join(dir, "dst.raw"), new Uint8Array(64 * KiB));
    const dst = openImage(join(dir, "dst.raw"), { kernels, writable: true });
    try {
      const progress: number[] = [];
      const stats = await copyExtents(
        from,
        dst,
        [
          { start: 512, length: 9 * KiB, depth: 0, data: true, zero: false, offset: 512 },
          { start: 9 * KiB + 512, length: 8 * KiB, depth: 0, data: false, zero: true },
          { start: 20 * KiB, length: 4 * KiB, depth: 0, data: true, zero: false, offset: 20 * KiB },
        ],
        { kernels, chunk: 4 * KiB, progress: (done) => progress.push(done) },
      );
      // 512-4096, 4096-8192, 8192-9728, then 20480-24576.
      expect(progress).toEqual([4 * KiB, 8 * KiB, 9 * KiB + 512, 24 * KiB]);
      expect(stats).toEqual({
        size: 64 * KiB,
        bytesRead: 13 * KiB,
        bytesWritten: 13 * KiB,
        zeroChunks: 0,
      });
      const want = new Uint8Array(64 * KiB);
      const source = pattern(64 * KiB, 9);
      want.set(source.subarray(512, 9 * KiB + 512), 512);
      want.set(source.subarray(20 * KiB, 24 * KiB), 20 * KiB);
      expect(firstDifference(new Uint8Array(readFileSync(join(dir, "dst.raw"))), want)).toBe(-1);
    } finally {
      from.close();
      dst.close();
    }
  });
});

describe("mergeImage", () => {
  it("folds the child's sectors into its parent and empties the child as qemu-img commit does", async () => {
    const dir = testTempDir("ops-merge");
    const parent = join(dir, "parent.vhd");
    const child = join(dir, "child.vhd");
    dynamic(parent, MiB, 64 * KiB, [[0, pattern(64 * KiB, 10)]]);
    // A block of zeros over the parent's data: the merge must carry the zeros too.
    differencing(child, parent, [
      [0, new Uint8Array(1024)],
      [5 * 64 * KiB + 512, pattern(1536, 11)],
    ]);
    const chain = readAll(child);
    const before = VhdImage.open(new FdFile(child, "r"), { kernels });
    const id = before.footer.uniqueId.slice();
    const time = before.footer.timestamp;
    before.close();
    const progress: number[] = [];
    const result = await mergeImage(child, { kernels, progress: (done) => progress.push(done) });
    // The child's own sectors: 1 KiB in block 0, 1.5 KiB in block 5, zeros included.
    expect(result).toEqual({
      size: MiB,
      bytesRead: 2560,
      bytesWritten: 2560,
      zeroChunks: 0,
      parent,
      child: "emptied",
    });
    expect(progress).toEqual([1024, 5 * 64 * KiB + 2048]);
    expect(firstDifference(readAll(parent), chain)).toBe(-1);
    expect(firstDifference(readAll(child), chain)).toBe(-1);
    const after = VhdImage.open(new FdFile(child, "r"), { kernels });
    try {
      expect(after.type).toBe("differencing");
      expect(after.blockBytes).toBe(64 * KiB);
      expect([...after.blockTable].every((e) => e === BAT_UNALLOCATED)).toBe(true);
      expect(after.footer.uniqueId).toEqual(id);
      expect(after.footer.timestamp).toBe(time);
      expect(after.parentPath).toBe(parent);
      expect(after.header?.parentTimestamp).toBe(
        Math.floor(statSync(parent).mtimeMs / 1000) - VHD_EPOCH_SECONDS,
      );
    } finally {
      after.close();
    }
    expect(readdirSync(dir).sort()).toEqual(["child.vhd", "parent.vhd"]);
  });

  it("removes the child when asked, as Hyper-V's Merge-VHD does", async () => {
    const dir = testTempDir("ops-merge-delete");
    const parent = join(dir, "parent.vhd");
    const child = join(dir, "child.vhd");
    dynamic(parent, MiB, 64 * KiB, []);
    differencing(child, parent, [[2 * 64 * KiB, pattern(512, 12)]]);
    const chain = readAll(child);
    const result = await mergeImage(child, { kernels, child: "deleted" });
    expect(result.child).toBe("deleted");
    expect(result.parent).toBe(parent);
    expect(result.bytesWritten).toBe(512);
    expect(existsSync(child)).toBe(false);
    expect(firstDifference(readAll(parent), chain)).toBe(-1);
  });

  it("refuses what is not a differencing VHD, naming it", async () => {
    const dir = testTempDir("ops-merge-refuse");
    const dyn = join(dir, "dynamic.vhd");
    dynamic(dyn, MiB, 64 * KiB, []);
    const raw = join(dir, "disk.raw");
    writeFileSync(raw, new Uint8Array(4096));
    for (const path of [dyn, raw]) {
      await expect(mergeImage(path, { kernels })).rejects.toThrow(
        new TypeError(`${path} is not a differencing VHD: there is nothing to merge`),
      );
    }
    expect(readdirSync(dir).sort()).toEqual(["disk.raw", "dynamic.vhd"]);
  });
});

describe("compactImage", () => {
  it("drops a dynamic disk's all-zero blocks and keeps its identity", async () => {
    const dir = testTempDir("ops-compact");
    const path = join(dir, "disk.vhd");
    dynamic(path, MiB, 64 * KiB, [
      [0, new Uint8Array(4096)],
      [2 * 64 * KiB, pattern(4096, 13)],
      [7 * 64 * KiB, new Uint8Array(512)],
    ]);
    const bytes = readAll(path);
    const size = statSync(path).size;
    const progress: number[] = [];
    const result = await compactImage(path, { kernels, progress: (done) => progress.push(done) });
    expect(result).toEqual({
      size: MiB,
      bytesRead: 3 * 64 * KiB,
      bytesWritten: 64 * KiB,
      zeroChunks: 2,
      before: size,
      after: statSync(path).size,
    });
    expect(result.after).toBeLessThan(size);
    expect(progress).toEqual([64 * KiB, 3 * 64 * KiB, 8 * 64 * KiB]);
    expect(allocatedBlocks(path)).toEqual([2]);
    expect(firstDifference(readAll(path), bytes)).toBe(-1);
    const image = VhdImage.open(new FdFile(path, "r"), { kernels });
    try {
      expect(image.footer.uniqueId).toEqual(new Uint8Array(16).fill(3));
      expect(image.footer.timestamp).toBe(Date.UTC(2026, 0, 1) / 1000 - VHD_EPOCH_SECONDS);
      expect(image.blockBytes).toBe(64 * KiB);
      expect(image.size).toBe(MiB);
    } finally {
      image.close();
    }
    expect(readdirSync(dir)).toEqual(["disk.vhd"]);
  });

  it("keeps a differencing disk's zeros, which hide its parent's data, and its parent", async () => {
    const dir = testTempDir("ops-compact-child");
    const parent = join(dir, "parent.vhd");
    const child = join(dir, "child.vhd");
    dynamic(parent, MiB, 64 * KiB, [[0, pattern(64 * KiB, 14)]]);
    differencing(child, parent, [[0, new Uint8Array(2048)]]);
    const chain = readAll(child);
    const before = VhdImage.open(new FdFile(child, "r"), { kernels });
    const parentTime = before.header?.parentTimestamp;
    before.close();
    const result = await compactImage(child, { kernels });
    expect(result.zeroChunks).toBe(0);
    expect(result.bytesWritten).toBe(2048);
    expect(firstDifference(readAll(child), chain)).toBe(-1);
    expect(allocatedBlocks(child)).toEqual([0]);
    const after = VhdImage.open(new FdFile(child, "r"), { kernels });
    try {
      expect(after.type).toBe("differencing");
      expect(after.parentPath).toBe(parent);
      expect(after.header?.parentTimestamp).toBe(parentTime);
      expect(after.footer.uniqueId).toEqual(new Uint8Array(16).fill(9));
    } finally {
      after.close();
    }
  });

  it("refuses a fixed disk and a raw one, leaving nothing behind", async () => {
    const dir = testTempDir("ops-compact-refuse");
    const fixed = join(dir, "fixed.vhd");
    const image = VhdImage.create(new FdFile(fixed, "w+"), {
      type: "fixed",
      size: 64 * KiB,
      kernels,
    });
    image.close();
    const raw = join(dir, "disk.raw");
    writeFileSync(raw, new Uint8Array(4096));
    for (const path of [fixed, raw]) {
      await expect(compactImage(path, { kernels })).rejects.toThrow(
        new TypeError(`${path} is not a dynamic or differencing VHD: there is nothing to compact`),
      );
    }
    expect(readdirSync(dir).sort()).toEqual(["disk.raw", "fixed.vhd"]);
  });

  it("names the VHD types --type takes", () => {
    expect(VHD_TYPES).toEqual(["fixed", "dynamic", "differencing"]);
  });
});
