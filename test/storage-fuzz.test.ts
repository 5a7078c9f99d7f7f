import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { checkVhd } from "../src/storage/check.js";
import { DiskRequestError, ParentChainError, VhdFormatError } from "../src/storage/errors.js";
import { FOOTER_BYTES, Footer, Header, VHD_EPOCH_SECONDS } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";

// The parser's contract on hostile input: a typed error naming the field and
// its offset, never another exception, a hang, or an allocation beyond the
// file's own size.

const kernels = defaultKernels();

/**
 * How many mutated images the open test tries: 100,000 unless
 * HVLAB_STORAGE_FUZZ_IMAGES names another count. Mutation testing sets a
 * smaller one (vitest.stryker.config.mjs): this test reaches nearly every
 * mutant of the format, open and read paths, so each surviving mutant ran
 * all 100,000 images; `npm test` runs the full count. The check test tries
 * 3 % as many, and the outcome floors scale with the count.
 */
const IMAGES = fuzzImages(process.env.HVLAB_STORAGE_FUZZ_IMAGES);

function fuzzImages(given: string | undefined): number {
  if (given === undefined || given === "") return 100_000;
  const count = Number(given);
  if (!Number.isSafeInteger(count) || count < 1000) {
    throw new Error(`HVLAB_STORAGE_FUZZ_IMAGES: '${given}' is not a whole number of 1000 or more`);
  }
  return count;
}
const PARENT_MTIME = (VHD_EPOCH_SECONDS + 800_000_000) * 1000;

function build(
  type: "fixed" | "dynamic",
  size: number,
  blockSize: number,
  writes: number[],
): Uint8Array {
  const file = new MemoryFile(`/fuzz/${type}.vhd`);
  const image = VhdImage.create(file, { type, size, blockSize, kernels, now: 0 });
  for (const s of writes) image.write(s * 512, new Uint8Array(512).fill(s & 0xff));
  image.close();
  return file.contents().slice();
}

const parentBytes = build("dynamic", 64 * 1024, 4096, [0, 9, 40]);

/** Parents come from memory: "/fuzz/parent.vhd" exists, and the child's own path loops. */
function parents(child: Uint8Array): ParentSource {
  return {
    open(candidates) {
      for (const path of candidates) {
        if (path === "/fuzz/parent.vhd") {
          return { file: new MemoryFile(path, parentBytes.slice()), path, mtimeMs: PARENT_MTIME };
        }
        if (path === "/fuzz/other.vhd") {
          return { file: new MemoryFile(path, child.slice()), path, mtimeMs: PARENT_MTIME };
        }
      }
      return undefined;
    },
  };
}

function differencing(): Uint8Array {
  const parentFile = new MemoryFile("/fuzz/parent.vhd", parentBytes.slice());
  const parent = VhdImage.open(parentFile, { kernels });
  const file = new MemoryFile("/fuzz/child.vhd");
  const child = VhdImage.create(file, {
    type: "differencing",
    parent: { image: parent, path: "/fuzz/parent.vhd", mtimeMs: PARENT_MTIME },
    path: "/fuzz/child.vhd",
    kernels,
    now: 0,
    parents: parents(new Uint8Array(0)),
  });
  child.write(512 * 3, new Uint8Array(1024).fill(7));
  child.close();
  parent.close();
  return file.contents().slice();
}

const SEEDS = {
  fixed: build("fixed", 16 * 1024, 4096, []),
  dynamic: build("dynamic", 64 * 1024, 4096, [0, 1, 17, 100]),
  differencing: differencing(),
};

let rng = 0x2545f491;
function rand(n: number): number {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) % n;
}

/** Rewrites the checksum of the footer at `at` (or of the header), so mutations reach deeper checks. */
function fixChecksum(bytes: Uint8Array, at: number, length: number, field: number): void {
  if (at < 0 || at + length > bytes.length) return;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  view.setUint32(at + field, kernels.checksum(bytes.subarray(at, at + length), field));
}

function headerAt(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  const at = bytes.length - FOOTER_BYTES + Footer.dataOffset;
  return at >= 0 ? Number(view.getBigUint64(at) & 0xffffffffn) : -1;
}

const FIELD_VALUES = [
  0, 1, 2, 3, 4, 5, 511, 512, 513, 4095, 4096, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];

function mutate(seed: Uint8Array): Uint8Array {
  let bytes = seed.slice();
  const view = () => new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const footerAt = bytes.length - FOOTER_BYTES;
  const header = headerAt(bytes);
  const kind = rand(10);
  if (kind === 0) {
    // Raw bit flips anywhere, checksums left as they fall.
    for (let i = 0, n = 1 + rand(8); i < n; i++) {
      const at = rand(bytes.length);
      bytes[at] = (bytes[at] ?? 0) ^ (1 << rand(8));
    }
    return bytes;
  }
  if (kind === 1) return bytes.subarray(0, rand(bytes.length + 1));
  if (kind <= 4) {
    // A footer field set to a boundary value, checksum made right again.
    const fields = [8, 12, 16, 20, 24, 40, 44, 48, 52, 56, 60, 84];
    const field = fields[rand(fields.length)] ?? 0;
    view().setUint32(footerAt + field, FIELD_VALUES[rand(FIELD_VALUES.length)] ?? 0);
    if (rand(4) === 0) view().setUint32(footerAt + Footer.currentSize, 0x1ff); // over 2040 GiB
    fixChecksum(bytes, footerAt, FOOTER_BYTES, Footer.checksum);
    if (rand(2) === 0) bytes.set(bytes.subarray(footerAt, footerAt + FOOTER_BYTES), 0);
    return bytes;
  }
  if (kind <= 7 && header >= 0 && header + 1024 <= bytes.length) {
    // A header field (block size, table offset and entries, parent id, time stamp, locators).
    const fields = [16, 20, 24, 28, 32, 40, 56, 576, 580, 584, 596, 600, 604, 608, 620];
    const field = fields[rand(fields.length)] ?? 0;
    view().setUint32(header + field, FIELD_VALUES[rand(FIELD_VALUES.length)] ?? 0);
    if (field === 32 && rand(2) === 0) view().setUint32(header + 32, 3 * 4096); // not a power of two
    fixChecksum(bytes, header, 1024, Header.checksum);
    return bytes;
  }
  if (kind === 8 && header >= 0 && header + 1024 <= bytes.length) {
    // BAT entries past the end, onto metadata, or onto each other.
    const table = Number(view().getBigUint64(header + Header.tableOffset) & 0xffffffffn);
    const entries = view().getUint32(header + Header.maxTableEntries);
    for (let i = 0, n = 1 + rand(3); i < n && entries > 0; i++) {
      const at = table + 4 * rand(entries);
      if (at + 4 > bytes.length) break;
      const choices = [0, 1, 3, bytes.length / 512, 0x7fffffff, view().getUint32(table)];
      view().setUint32(at, choices[rand(choices.length)] ?? 0);
    }
    return bytes;
  }
  // Appended garbage or a grown file: the footer is no longer at the end.
  const grown = new Uint8Array(bytes.length + 512 * (1 + rand(4)));
  grown.set(bytes);
  if (rand(2) === 0) grown.fill(0xa5, bytes.length);
  bytes = grown;
  return bytes;
}

function attempt(bytes: Uint8Array, name: string): "opened" | "refused" {
  const file = new MemoryFile(name, bytes, bytes.length + 64 * 1024 * 1024);
  try {
    const image = VhdImage.open(file, { kernels, parents: parents(bytes) });
    try {
      // Read it all: every path through BAT, bitmaps and the parent.
      const buf = new Uint8Array(8192);
      for (let at = 0; at + buf.length <= image.size && at < 256 * 1024; at += buf.length)
        image.read(at, buf);
      image.map();
    } finally {
      image.close();
    }
    return "opened";
  } catch (error) {
    if (error instanceof VhdFormatError) {
      expect(error.message).toMatch(/at offset \d+ \(0x[0-9a-f]+\)/);
      return "refused";
    }
    if (error instanceof ParentChainError || error instanceof DiskRequestError) return "refused";
    throw error;
  }
}

describe("VHD parser fuzzing", () => {
  it("opens every seed and reads it", () => {
    for (const [name, bytes] of Object.entries(SEEDS)) {
      expect(attempt(bytes.slice(), `/fuzz/${name}.vhd`)).toBe("opened");
    }
  });

  it(`refuses or reads ${IMAGES} mutated images, never throwing an untyped error`, () => {
    const seeds = Object.entries(SEEDS);
    const counts = { opened: 0, refused: 0 };
    const start = Date.now();
    for (let i = 0; i < IMAGES; i++) {
      const [name, seed] = seeds[i % seeds.length] ?? ["", new Uint8Array(0)];
      const bytes = mutate(seed);
      try {
        counts[attempt(bytes, `/fuzz/${name}.vhd`)]++;
      } catch (error) {
        throw new Error(`mutant ${i} of ${name}: ${(error as Error).stack}`);
      }
    }
    // Both outcomes happen: the mutations reach past the checksums.
    expect(counts.opened).toBeGreaterThan(IMAGES / 100);
    expect(counts.refused).toBeGreaterThan(IMAGES / 10);
    expect(Date.now() - start).toBeLessThan(60_000);
  }, 90_000);

  it("check reports mutated images with offsets and does not throw", () => {
    for (let i = 0; i < (IMAGES * 3) / 100; i++) {
      const seed = [SEEDS.dynamic, SEEDS.fixed, SEEDS.differencing][i % 3] ?? SEEDS.dynamic;
      const bytes = mutate(seed);
      const report = checkVhd(new MemoryFile("/fuzz/child.vhd", bytes), {
        kernels,
        parents: parents(bytes),
      });
      for (const p of report.problems) expect(p.message.length).toBeGreaterThan(0);
      if (!report.ok) expect(report.problems.some((p) => p.severity === "error")).toBe(true);
    }
  });

  it("names the field and offset of known corruptions", () => {
    const bad = SEEDS.dynamic.slice();
    const header = headerAt(bad);
    new DataView(bad.buffer).setUint32(header + Header.blockSize, 3 * 4096);
    fixChecksum(bad, header, 1024, Header.checksum);
    expect(() => VhdImage.open(new MemoryFile("x", bad), { kernels })).toThrow(
      `dynamic header block size at offset ${header + 32} (0x${(header + 32).toString(16)}): is 12288, must be a power of two`,
    );
    const loop = SEEDS.differencing.slice();
    // A locator that names the child itself.
    const loopParents: ParentSource = { open: () => undefined };
    const h = headerAt(loop);
    const name = Buffer.from("child.vhd", "utf16le").swap16();
    loop.fill(0, h + Header.parentName, h + Header.parentName + 512);
    loop.set(name, h + Header.parentName);
    fixChecksum(loop, h, 1024, Header.checksum);
    expect(() =>
      VhdImage.open(new MemoryFile("/fuzz/child.vhd", loop), { kernels, parents: loopParents }),
    ).toThrow(ParentChainError);
  });
});
