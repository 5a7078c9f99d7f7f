import { readFileSync, readSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { loadCopier, nativeCopier, type RangeCopier } from "../src/storage/copy-range.js";
import { type DiskImage, RawImage } from "../src/storage/disk-image.js";
import { SECTOR } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { convertImage, copyExtents, ZERO_PROBE_BYTES } from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// convert copies a chunk that lies in one run of each file inside the
// kernel (copy_file_range(2), the copy_range addon), reading only its first
// 4 KiB to tell data from zeros; elsewhere, or where the kernel refuses, it
// reads and writes. Both ways must leave the same bytes.
const KiB = 1024;
const kernels = defaultKernels();
const native = nativeCopier();

type Target = "raw" | "fixed" | "dynamic";

/** A new destination whose every field is fixed (no random id, no clock), so two copies compare. */
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

/** A copier that counts its calls around `inner`. */
function counting(inner: RangeCopier): { copier: RangeCopier; calls: () => number } {
  let calls = 0;
  return {
    copier: (...args) => {
      calls++;
      return inner(...args);
    },
    calls: () => calls,
  };
}

/** copy_file_range(2) itself where the addon is built; else one made of a read and a write, in its shape. */
const realCopier: RangeCopier =
  native.copier ??
  ((fdIn, offsetIn, fdOut, offsetOut, length) => {
    const bytes = new Uint8Array(length);
    const n = readSync(fdIn, bytes, 0, length, offsetIn);
    writeSync(fdOut, bytes, 0, n, offsetOut);
    return n;
  });

/** Copies `src` into a new `to` file with `copier` (or none), and returns the file's bytes. */
async function convertWith(
  src: DiskImage,
  path: string,
  to: Target,
  blockSize: number,
  copier: RangeCopier | undefined,
): Promise<{ bytes: Buffer; zeroChunks: number }> {
  const dst = destination(path, to, src.size, blockSize);
  const stats = await copyExtents(src, dst, src.map(), {
    kernels,
    chunk: blockSize,
    ...(copier ? { copier } : {}),
  });
  dst.close();
  return { bytes: readFileSync(path), zeroChunks: stats.zeroChunks };
}

const scenario = fc.record({
  blockKiB: fc.constantFrom(4, 8, 16, 64),
  // A raw source of any length in bytes: a last sector and a last block that are short.
  bytes: fc.integer({ min: 1, max: 300 * KiB }),
  source: fc.constantFrom("raw", "dynamic"),
  // Runs of one byte value at any offset: zero chunks, chunks whose first 4 KiB are
  // zero and later bytes are not, chunks with data from their first byte.
  writes: fc.array(
    fc.record({
      at: fc.nat(),
      count: fc.integer({ min: 1, max: 20 * KiB }),
      byte: fc.integer({ min: 0, max: 255 }),
    }),
    { maxLength: 10 },
  ),
  to: fc.constantFrom<Target>("raw", "fixed", "dynamic"),
});

describe("convert's copy inside the kernel", () => {
  it("is built here (Linux, in CI: npm ci builds the addon)", () => {
    if (process.platform !== "linux" || (process.env.CI !== "true" && !native.copier)) {
      console.warn(`skipping: ${native.why}`);
      return;
    }
    expect(native.why).toBe("copy_file_range(2)");
    expect(typeof native.copier).toBe("function");
  });

  it("is none, with the reason, where the addon is missing or is not one", () => {
    const dir = testTempDir("copy-range-load");
    const missing = loadCopier(join(dir, "copy_range.node"));
    expect(missing.copier).toBeUndefined();
    expect(missing.why).toMatch(process.platform === "linux" ? /not built/ : /Linux's/);
    if (process.platform !== "linux") return;
    writeFileSync(join(dir, "broken.node"), "not a shared object");
    const broken = loadCopier(join(dir, "broken.node"));
    expect(broken.copier).toBeUndefined();
    expect(broken.why).toMatch(/broken\.node did not load/);
  });

  it("leaves the same bytes as reads and writes, for raw and dynamic sources and every target (property)", async () => {
    const dir = testTempDir("copy-range");
    let run = 0;
    let kernelCalls = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async ({ blockKiB, bytes, source, writes, to }) => {
        const n = run++;
        const blockSize = blockKiB * KiB;
        const data = new Uint8Array(bytes);
        for (const w of writes) {
          const at = w.at % bytes;
          data.fill(w.byte, at, Math.min(bytes, at + w.count));
        }
        let src: DiskImage;
        if (source === "raw") {
          writeFileSync(join(dir, `src-${n}.raw`), data);
          src = new RawImage(new FdFile(join(dir, `src-${n}.raw`)));
        } else {
          const size = Math.ceil(bytes / SECTOR) * SECTOR;
          const vhd = VhdImage.create(new FdFile(join(dir, `src-${n}.vhd`), "w+"), {
            type: "dynamic",
            size,
            blockSize,
            kernels,
          });
          const padded = new Uint8Array(size);
          padded.set(data);
          // Write only the chunks holding a byte that is not zero, and one all-zero chunk
          // if there is one: allocated zeros the copy must skip.
          for (let at = 0; at < size; at += blockSize) {
            const part = padded.subarray(at, Math.min(size, at + blockSize));
            if (part.some((b) => b !== 0) || at === 0) vhd.write(at, part);
          }
          src = vhd;
        }
        const count = counting(realCopier);
        const inKernel = await convertWith(src, join(dir, `k-${n}`), to, blockSize, count.copier);
        const readWrite = await convertWith(src, join(dir, `rw-${n}`), to, blockSize, undefined);
        src.close();
        expect(Buffer.compare(inKernel.bytes, readWrite.bytes)).toBe(0);
        expect(inKernel.zeroChunks).toBe(readWrite.zeroChunks);
        if (to === "raw") {
          const expected = Buffer.alloc(inKernel.bytes.length);
          expected.set(data);
          expect(Buffer.compare(inKernel.bytes, expected)).toBe(0);
        }
        kernelCalls += count.calls();
      }),
      { numRuns: 60 },
    );
    // The property did go through the kernel copy, not only around it.
    expect(kernelCalls).toBeGreaterThan(0);
  }, 180_000);

  it("reads whole, and copies, a chunk whose first 4 KiB are zero and later bytes are not", async () => {
    const dir = testTempDir("copy-range-probe");
    const blockSize = 64 * KiB;
    const data = new Uint8Array(4 * blockSize);
    data[blockSize + ZERO_PROBE_BYTES + 1] = 0x5a; // chunk 1: zero probe, data after it
    data[2 * blockSize] = 0xa5; // chunk 2: data in its probe
    // chunk 0 and 3: all zero
    writeFileSync(join(dir, "src.raw"), data);
    const src = new RawImage(new FdFile(join(dir, "src.raw")));
    const count = counting(realCopier);
    const out = await convertWith(src, join(dir, "out.raw"), "raw", blockSize, count.copier);
    src.close();
    expect(Buffer.compare(out.bytes, Buffer.from(data))).toBe(0);
    expect(out.zeroChunks).toBe(2);
    // Only chunk 2 went through the kernel: chunk 1 was read whole to find its data, so it is written.
    expect(count.calls()).toBe(1);
  });

  it("goes on with reads and writes where the kernel cannot copy, and fails on an I/O error", async () => {
    const dir = testTempDir("copy-range-fallback");
    const blockSize = 16 * KiB;
    const data = new Uint8Array(6 * blockSize).map((_, i) => (i % 251) + 1);
    writeFileSync(join(dir, "src.raw"), data);
    const src = new RawImage(new FdFile(join(dir, "src.raw")));
    for (const code of ["EXDEV", "ENOSYS", "EOPNOTSUPP", "EINVAL"]) {
      let calls = 0;
      const refusing: RangeCopier = () => {
        calls++;
        throw Object.assign(new Error(`copy_file_range: ${code}`), { code });
      };
      const out = await convertWith(src, join(dir, `${code}.raw`), "raw", blockSize, refusing);
      expect(Buffer.compare(out.bytes, Buffer.from(data)), code).toBe(0);
      // Refused once, not asked again.
      expect(calls, code).toBe(1);
    }
    // A copier that stops short (the source ended early) leaves the chunk to a read and a write.
    const short = await convertWith(src, join(dir, "short.raw"), "raw", blockSize, () => 0);
    expect(Buffer.compare(short.bytes, Buffer.from(data))).toBe(0);
    const failing: RangeCopier = () => {
      throw Object.assign(new Error("copy_file_range: EIO"), { code: "EIO" });
    };
    await expect(convertWith(src, join(dir, "eio.raw"), "raw", blockSize, failing)).rejects.toThrow(
      /EIO/,
    );
    src.close();
  });

  it("convert writes the same bytes and counts through the addon (its default) and without it (copier: null)", async () => {
    const dir = testTempDir("copy-range-convert");
    const blockSize = 2 * 1024 * KiB;
    const srcPath = join(dir, "src.vhd");
    const vhd = VhdImage.create(new FdFile(srcPath, "w+"), {
      type: "dynamic",
      size: 5 * blockSize,
      kernels,
    });
    const data = new Uint8Array(blockSize).map((_, i) => (i * 13 + 5) & 0xff);
    vhd.write(blockSize, data);
    vhd.write(4 * blockSize, data.subarray(0, 3 * SECTOR));
    vhd.close();
    const a = await convertImage(srcPath, join(dir, "a.raw"), { to: "raw", kernels });
    const b = await convertImage(srcPath, join(dir, "b.raw"), { to: "raw", kernels, copier: null });
    expect(a).toEqual(b);
    const bytesA = readFileSync(join(dir, "a.raw"));
    expect(Buffer.compare(bytesA, readFileSync(join(dir, "b.raw")))).toBe(0);
    expect(Buffer.compare(bytesA.subarray(blockSize, 2 * blockSize), Buffer.from(data))).toBe(0);
  });
});
