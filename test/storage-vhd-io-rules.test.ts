import { describe, expect, it } from "vitest";
import { DiskRequestError, VhdFormatError } from "../src/storage/errors.js";
import { BAT_UNALLOCATED, FOOTER_BYTES } from "../src/storage/format.js";
import { StorageKernels } from "../src/storage/kernels.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";
import { expectSameBytes } from "./support/bytes.js";
import {
  BITMAP,
  BLOCK,
  FIRST,
  LogFile,
  pattern,
  placed,
  SECTOR,
  TABLE,
} from "./support/vhd-log.js";

/*
 * How a VHD's reads and writes reach its file (Microsoft, "Virtual Hard Disk
 * Image Format Specification", October 2006):
 *
 * - "Block Allocation Table and Data Blocks": a guest offset lies in block
 *   offset / block size, whose data follows its sector bitmap in the file at
 *   the sector the BAT entry names; a request is split at every block end.
 * - "Sector bitmap": one bit per sector, most significant first (sector 0 is
 *   bit 7 of byte 0). A differencing disk reads a sector from itself when its
 *   bit is set and from its parent otherwise ("Implementing a Differencing
 *   Hard Disk"), so partial writes must set exactly their bits, on disk.
 * - "Dynamic Disk Header Format" / "Hard Disk Footer Format": a new block goes
 *   where the footer was; its bitmap and data are written before its BAT
 *   entry, and the footer is moved after the last block later, so that a
 *   crash never leaves a BAT entry on unwritten data. The file's sector
 *   numbers are 32 bits: no block may end past sector 0xFFFFFFFF.
 *
 * The async paths must give the same bytes as the sync ones, and one block
 * allocated by two writes at once is allocated once. Expected bytes come
 * from a plain model of the virtual disk written alongside; file offsets
 * from the layout (footer copy, header, BAT, then page-aligned block data).
 */

const MiB = 1024 * 1024;

const ENDS_AT = (start: number) => start + BITMAP + BLOCK;

/** Fails unless `run` throws or rejects with an error of `expected`'s class and exact message. */
async function expectRefusal(run: () => unknown, expected: Error): Promise<void> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(expected.constructor);
  expect((error as Error).name).toBe(expected.name);
  expect((error as Error).message).toBe(expected.message);
}

/** A disk image and the model of its bytes, written together. */
function writeBoth(image: VhdImage, model: Uint8Array, at: number, data: Uint8Array): void {
  image.write(at, data);
  model.set(data, at);
}

function batEntry(file: LogFile, block: number): number {
  const b = file.bytes(TABLE + 4 * block, 4);
  return new DataView(b.buffer).getUint32(0);
}

/** Bitmap bytes of a block holding `sectors`: sector s is bit 0x80 >> (s % 8) of byte s / 8. */
function bitmapOf(sectors: readonly number[]): Uint8Array {
  const bm = new Uint8Array(BITMAP);
  for (const s of sectors) bm[s >> 3] = (bm[s >> 3] ?? 0) | (0x80 >> (s & 7));
  return bm;
}

function created(blocks: number, name = "/io/d.vhd") {
  const file = new LogFile(name);
  const image = VhdImage.create(file, {
    type: "dynamic",
    size: blocks * BLOCK,
    blockSize: BLOCK,
    now: 0,
  });
  file.log = [];
  return { file, image, model: new Uint8Array(blocks * BLOCK) };
}

/** Every window of 1, 2, 3, 5 and 17 sectors, read sync and async, matches the model. */
async function expectWindows(image: VhdImage, model: Uint8Array): Promise<void> {
  const total = model.length / SECTOR;
  for (const n of [1, 2, 3, 5, 17]) {
    for (let s = 0; s + n <= total; s++) {
      const sync = new Uint8Array(n * SECTOR);
      image.read(s * SECTOR, sync);
      const async = new Uint8Array(n * SECTOR);
      await image.readAsync(s * SECTOR, async);
      const want = model.subarray(s * SECTOR, (s + n) * SECTOR);
      expectSameBytes(sync, want, `read of ${n} sectors at sector ${s}`);
      expectSameBytes(async, want, `readAsync of ${n} sectors at sector ${s}`);
    }
  }
}

const PARENT = "/io/parent.vhd";
const CHILD = "/io/child.vhd";
const MTIME = 1_700_000_000_000;

/** A 4-block parent full of a pattern, and an empty differencing child over it. */
function differencing() {
  const parentFile = new LogFile(PARENT);
  const size = 4 * BLOCK;
  const parentImage = VhdImage.create(parentFile, {
    type: "dynamic",
    size,
    blockSize: BLOCK,
    now: 0,
  });
  const model = pattern(size, 9);
  parentImage.write(0, model);
  parentImage.close();
  const parentBytes = parentFile.all();
  const parents: ParentSource = {
    open: (candidates) =>
      candidates.includes(PARENT)
        ? { file: LogFile.of(PARENT, parentBytes), path: PARENT, mtimeMs: MTIME }
        : undefined,
  };
  const parent = VhdImage.open(LogFile.of(PARENT, parentBytes));
  const file = new LogFile(CHILD);
  const child = VhdImage.create(file, {
    type: "differencing",
    parent: { image: parent, path: PARENT, mtimeMs: MTIME },
    path: CHILD,
    now: 0,
    parents,
  });
  parent.close();
  file.log = [];
  return { file, child, model, parents };
}

describe("reads and writes of a dynamic disk", () => {
  it("read a whole block off the thread, at the block's data plus the offset in it, bitmap read once", async () => {
    const { file, image, model } = created(4);
    writeBoth(image, model, BLOCK, pattern(BLOCK, 1));
    image.close();
    // A fresh open knows nothing of block 1 but its BAT entry.
    const again = VhdImage.open(file, { writable: true });
    file.log = [];
    const data1 = FIRST + BITMAP;
    const got = new Uint8Array(1024);
    await again.readAsync(BLOCK + 1024, got);
    expectSameBytes(got, model.subarray(BLOCK + 1024, BLOCK + 2048));
    expect(file.log).toEqual([
      ["read", FIRST, BITMAP],
      ["readAsync", data1 + 1024, 1024],
    ]);
    // The last sector of the block: still one run, still off the thread.
    file.log = [];
    const last = new Uint8Array(SECTOR);
    await again.readAsync(2 * BLOCK - SECTOR, last);
    expectSameBytes(last, model.subarray(2 * BLOCK - SECTOR, 2 * BLOCK));
    expect(file.log).toEqual([["readAsync", data1 + BLOCK - SECTOR, SECTOR]]);
    // The whole block, from its first sector.
    file.log = [];
    const whole = new Uint8Array(BLOCK);
    await again.readAsync(BLOCK, whole);
    expectSameBytes(whole, model.subarray(BLOCK, 2 * BLOCK));
    expect(file.log).toEqual([["readAsync", data1, BLOCK]]);
    again.close();
  });

  it("split reads at every block end, sync and async alike, unallocated blocks reading as zeros", async () => {
    const { image, model } = created(4);
    writeBoth(image, model, 0, pattern(BLOCK, 2));
    writeBoth(image, model, BLOCK, pattern(BLOCK, 3));
    // Block 2 is never written; block 3 holds an odd run in its middle.
    writeBoth(image, model, 3 * BLOCK + 3 * SECTOR, pattern(5 * SECTOR, 4));
    await expectWindows(image, model);
    for (const [at, n] of [
      [BLOCK - SECTOR, 2 * SECTOR],
      [BLOCK - 3 * SECTOR, BLOCK],
      [SECTOR, 3 * BLOCK],
      [2 * BLOCK - SECTOR, 2 * SECTOR],
    ] as const) {
      const sync = new Uint8Array(n);
      image.read(at, sync);
      expectSameBytes(sync, model.subarray(at, at + n), `read at ${at}`);
      const async = new Uint8Array(n);
      await image.readAsync(at, async);
      expectSameBytes(async, model.subarray(at, at + n), `readAsync at ${at}`);
    }
    image.close();
  });

  it("write into a block that holds every sector off the thread, at its data plus the offset", async () => {
    const { file, image, model } = created(6);
    writeBoth(image, model, BLOCK, pattern(BLOCK, 5));
    const data1 = FIRST + BITMAP;
    file.log = [];
    const mid = pattern(3 * SECTOR, 6);
    await image.writeAsync(BLOCK + 4 * SECTOR, mid);
    model.set(mid, BLOCK + 4 * SECTOR);
    expect(file.log).toEqual([["writevAsync", data1 + 4 * SECTOR, 3 * SECTOR]]);
    file.log = [];
    const last = pattern(SECTOR, 7);
    await image.writeAsync(2 * BLOCK - SECTOR, last);
    model.set(last, 2 * BLOCK - SECTOR);
    expect(file.log).toEqual([["writevAsync", data1 + BLOCK - SECTOR, SECTOR]]);
    // Across the block's end into block 2, not yet allocated: split, block 2 allocated.
    const across = pattern(4 * SECTOR, 8);
    await image.writeAsync(2 * BLOCK - 2 * SECTOR, across);
    model.set(across, 2 * BLOCK - 2 * SECTOR);
    expect(image.blockTable[2]).not.toBe(BAT_UNALLOCATED);
    // Part of a new block, from its first sector: written here; the rest of the block reads as zeros.
    file.log = [];
    const head = pattern(2 * SECTOR, 9);
    await image.writeAsync(0, head);
    model.set(head, 0);
    expect(file.log.some(([op]) => op === "writevAsync")).toBe(false);
    // A block's length from the middle of a new block: split over blocks 4 and 5.
    const straddle = pattern(BLOCK, 10);
    await image.writeAsync(4 * BLOCK + 3 * SECTOR, straddle);
    model.set(straddle, 4 * BLOCK + 3 * SECTOR);
    await expectWindows(image, model);
    image.close();
  });

  it("write a whole block over an allocated one in place, on a fresh open too", async () => {
    const { file, image, model } = created(4);
    writeBoth(image, model, BLOCK, pattern(BLOCK, 11));
    image.close();
    const again = VhdImage.open(file, { writable: true });
    const end = again.endOfData;
    const size = file.size();
    const data = pattern(BLOCK, 12);
    await again.writeAsync(BLOCK, data);
    model.set(data, BLOCK);
    expect(again.endOfData).toBe(end);
    expect(file.size()).toBe(size);
    expect(batEntry(file, 1)).toBe(FIRST / SECTOR);
    expectSameBytes(file.bytes(FIRST + BITMAP, BLOCK), data);
    await expectWindows(again, model);
    again.close();
  });

  it("allocates one block once when two whole-block writes reach it at the same time, the second landing last", async () => {
    const { file, image, model } = created(4);
    const a = pattern(BLOCK, 13);
    const b = pattern(BLOCK, 14);
    const first = image.writeAsync(2 * BLOCK, a);
    const second = image.writeAsync(2 * BLOCK, b);
    // A synchronous write cannot take the block while its allocation is in flight.
    await expectRefusal(
      () => image.write(2 * BLOCK + SECTOR, new Uint8Array(SECTOR)),
      new DiskRequestError(
        `${file.name}: block 2 is being allocated by a write in flight; wait for it`,
      ),
    );
    await Promise.all([first, second]);
    model.set(b, 2 * BLOCK);
    expect(image.endOfData).toBe(ENDS_AT(FIRST));
    expect(batEntry(file, 2)).toBe(FIRST / SECTOR);
    // Once settled, the block takes further writes.
    const later = pattern(SECTOR, 15);
    await image.writeAsync(2 * BLOCK + 5 * SECTOR, later);
    model.set(later, 2 * BLOCK + 5 * SECTOR);
    await expectWindows(image, model);
    image.close();
    expect(file.size()).toBe(ENDS_AT(FIRST) + FOOTER_BYTES);
  });
});

describe("block allocation on disk", () => {
  it("writes bitmap and data, then the BAT entry, and the footer only on flush, at the new end", () => {
    const { file, image } = created(4);
    image.write(BLOCK, pattern(BLOCK, 16));
    expect(file.log).toEqual([
      ["writev", FIRST, BITMAP + BLOCK],
      // The table only partly fills its sector: the entry alone.
      ["write", TABLE + 4, 4],
    ]);
    expectSameBytes(file.bytes(FIRST, 2), new Uint8Array([0xff, 0xff]), "bitmap of a new block");
    file.log = [];
    image.flush();
    const end = ENDS_AT(FIRST);
    expect(file.log).toEqual([
      ["write", end, FOOTER_BYTES],
      ["truncate", end + FOOTER_BYTES, 0],
      ["sync", 0, 0],
    ]);
    image.close();
  });

  it("syncs after the data and after the BAT entry when opened ordered, zeroing the old footer", () => {
    const { file, image } = created(4);
    image.write(0, pattern(BLOCK, 17));
    image.close();
    const footerAt = ENDS_AT(FIRST);
    expect(file.bytes(footerAt, 8)).toEqual(new TextEncoder().encode("conectix"));
    const ordered = VhdImage.open(file, { writable: true, ordered: true });
    file.log = [];
    const data = pattern(BLOCK, 18);
    ordered.write(2 * BLOCK, data);
    const start = placed(footerAt);
    expect(file.log).toEqual([
      ["writev", footerAt, start - footerAt + BITMAP + BLOCK],
      ["sync", 0, 0],
      ["write", TABLE + 8, 4],
      ["sync", 0, 0],
    ]);
    expectSameBytes(file.bytes(footerAt, start - footerAt), new Uint8Array(start - footerAt));
    expectSameBytes(file.bytes(start + BITMAP, BLOCK), data);
    ordered.close();
  });

  it("pads a whole block written off the thread over the footer a flush left, with zeros", async () => {
    const { file, image, model } = created(4);
    const a = pattern(BLOCK, 19);
    await image.writeAsync(0, a);
    model.set(a, 0);
    image.flush();
    const footerAt = ENDS_AT(FIRST);
    const start = placed(footerAt);
    file.log = [];
    const b = pattern(BLOCK, 20);
    await image.writeAsync(3 * BLOCK, b);
    model.set(b, 3 * BLOCK);
    expect(file.log).toEqual([
      ["writevAsync", footerAt, start - footerAt + BITMAP + BLOCK],
      ["write", TABLE + 12, 4],
    ]);
    expectSameBytes(file.bytes(footerAt, start - footerAt), new Uint8Array(start - footerAt));
    expectSameBytes(file.bytes(start, 2), new Uint8Array([0xff, 0xff]));
    expect(batEntry(file, 3)).toBe(start / SECTOR);
    await expectWindows(image, model);
    image.close();
  });

  it("extends the file only to the block's end when the allocating write reaches it", () => {
    const { file, image } = created(4);
    image.write(BLOCK - SECTOR, pattern(SECTOR, 21));
    expect(file.size()).toBe(ENDS_AT(FIRST));
    expect(file.log.some(([op]) => op === "truncate")).toBe(false);
    image.close();
  });

  it("extends the file 64 MiB past a new block once, not again for the blocks that fit", async () => {
    // A file whose data ends at 48 MiB (a sparse stand-in).
    const src = new LogFile("/io/src.vhd");
    VhdImage.create(src, { type: "dynamic", size: 4 * BLOCK, blockSize: BLOCK, now: 0 }).close();
    const file = farCopy(src, 48 * MiB);
    const image = VhdImage.open(file, { writable: true });
    const model = new Uint8Array(4 * BLOCK);
    writeBoth(image, model, SECTOR, pattern(SECTOR, 22));
    const start0 = placed(48 * MiB);
    const end0 = ENDS_AT(start0);
    expect(file.size()).toBe(end0 + 64 * MiB);
    const whole = pattern(BLOCK, 23);
    await image.writeAsync(BLOCK, whole);
    model.set(whole, BLOCK);
    const end1 = ENDS_AT(placed(end0));
    writeBoth(image, model, 2 * BLOCK + SECTOR, pattern(SECTOR, 24));
    const end2 = ENDS_AT(placed(end1));
    expect(file.size()).toBe(end0 + 64 * MiB);
    await expectWindows(image, model);
    image.flush();
    expect(file.size()).toBe(end2 + FOOTER_BYTES);
    image.close();
  });
});

/** `src`'s bytes with its footer moved to `footerAt`, the gap a hole. */
function farCopy(src: LogFile, footerAt: number): LogFile {
  const bytes = src.all();
  const end = bytes.length - FOOTER_BYTES;
  const file = LogFile.of("/io/far.vhd", bytes.subarray(0, end));
  file.write(bytes.subarray(end), footerAt);
  file.log = [];
  return file;
}

describe("the 32-bit sector numbers of the BAT", () => {
  for (const how of ["sync", "async"] as const) {
    it(`let a block end at sector 0xFFFFFFFF and refuse the next (${how})`, async () => {
      const src = new LogFile("/io/src.vhd");
      VhdImage.create(src, {
        type: "dynamic",
        size: 2 * SECTOR,
        blockSize: SECTOR,
        now: 0,
      }).close();
      // Blocks of one sector, not page-aligned: each takes a bitmap sector and a data sector.
      const file = farCopy(src, 0xffffffff * SECTOR - 2 * SECTOR);
      const image = VhdImage.open(file, { writable: true });
      const data = pattern(SECTOR, 25);
      const put = (at: number) =>
        how === "sync" ? image.write(at, data) : image.writeAsync(at, data);
      await put(0);
      expect(image.endOfData).toBe(0xffffffff * SECTOR);
      expect(batEntry(file, 0)).toBe(0xffffffff - 2);
      await expectRefusal(
        () => put(SECTOR),
        new DiskRequestError(`${file.name}: the file would pass 2 TiB of sectors`),
      );
      expect(image.blockTable[1]).toBe(BAT_UNALLOCATED);
      const got = new Uint8Array(2 * SECTOR);
      image.read(0, got);
      expectSameBytes(got.subarray(0, SECTOR), data);
      expectSameBytes(got.subarray(SECTOR), new Uint8Array(SECTOR));
      image.close();
    });
  }
});

describe("a differencing disk", () => {
  it("reads the sectors it holds from itself and the rest from its parent, at every boundary", async () => {
    const { file, child, model } = differencing();
    // Sectors 6..9 straddle bitmap bytes 0 and 1; 15 and 16 straddle blocks 0 and 1.
    writeBoth(child, model, 6 * SECTOR, pattern(4 * SECTOR, 26));
    writeBoth(child, model, 15 * SECTOR, pattern(2 * SECTOR, 27));
    const odd = pattern(3 * SECTOR, 28);
    await child.writeAsync(2 * BLOCK + 3 * SECTOR, odd);
    model.set(odd, 2 * BLOCK + 3 * SECTOR);
    await expectWindows(child, model);
    const bitmaps: [number, number[]][] = [
      [0, [6, 7, 8, 9, 15]],
      [1, [0]],
      [2, [3, 4, 5]],
    ];
    for (const [block, sectors] of bitmaps) {
      expectSameBytes(
        file.bytes(batEntry(file, block) * SECTOR, BITMAP),
        bitmapOf(sectors),
        `bitmap of block ${block}`,
      );
    }
    expect(batEntry(file, 3)).toBe(BAT_UNALLOCATED);
    child.close();
  });

  it("sets the bits of a write into a block it holds in part, writing the bitmap after the data", async () => {
    const { file, child, model } = differencing();
    writeBoth(child, model, 6 * SECTOR, pattern(4 * SECTOR, 29));
    const at0 = batEntry(file, 0) * SECTOR;
    file.log = [];
    writeBoth(child, model, 11 * SECTOR, pattern(2 * SECTOR, 30));
    expect(file.log).toEqual([
      ["write", at0 + BITMAP + 11 * SECTOR, 2 * SECTOR],
      ["write", at0, BITMAP],
    ]);
    expectSameBytes(file.bytes(at0, BITMAP), bitmapOf([6, 7, 8, 9, 11, 12]));
    // Sectors it holds already: the data alone.
    file.log = [];
    writeBoth(child, model, 7 * SECTOR, pattern(2 * SECTOR, 31));
    expect(file.log).toEqual([["write", at0 + BITMAP + 7 * SECTOR, 2 * SECTOR]]);
    // Off the thread too, the bitmap follows.
    const late = pattern(SECTOR, 32);
    await child.writeAsync(13 * SECTOR, late);
    model.set(late, 13 * SECTOR);
    expectSameBytes(file.bytes(at0, BITMAP), bitmapOf([6, 7, 8, 9, 11, 12, 13]));
    // A whole new block of a differencing disk is written on this thread, all its bits set.
    file.log = [];
    const whole = pattern(BLOCK, 33);
    await child.writeAsync(3 * BLOCK, whole);
    model.set(whole, 3 * BLOCK);
    expect(file.log.some(([op]) => op === "writevAsync")).toBe(false);
    expectSameBytes(
      file.bytes(batEntry(file, 3) * SECTOR, BITMAP),
      bitmapOf([...Array(BLOCK / SECTOR).keys()]),
    );
    await expectWindows(child, model);
    child.close();
  });

  it("reads a block's bitmap from the file once, then from memory", async () => {
    const { file, child, model, parents } = differencing();
    writeBoth(child, model, 2 * SECTOR, pattern(3 * SECTOR, 34));
    child.close();
    const again = VhdImage.open(file, { parents });
    const at0 = batEntry(file, 0) * SECTOR;
    file.log = [];
    const got = new Uint8Array(BLOCK);
    again.read(0, got);
    again.read(0, got);
    await again.readAsync(0, got);
    expectSameBytes(got, model.subarray(0, BLOCK));
    expect(file.log.filter(([, at]) => at === at0)).toEqual([["read", at0, BITMAP]]);
    again.close();
  });
});

describe("requests an image refuses", () => {
  it("refuse writes to a read-only image, requests past the end, and any request once closed", async () => {
    const { file, image } = created(4);
    image.close();
    const ro = VhdImage.open(file);
    const sector = new Uint8Array(SECTOR);
    const readOnly = new DiskRequestError(`${file.name} is open read-only`);
    await expectRefusal(() => ro.write(0, sector), readOnly);
    file.log = [];
    await expectRefusal(() => ro.writeAsync(0, sector), readOnly);
    // A whole new block too, which would otherwise be written off the thread.
    await expectRefusal(() => ro.writeAsync(BLOCK, new Uint8Array(BLOCK)), readOnly);
    expect(file.log.filter(([op]) => op !== "read" && op !== "readAsync")).toEqual([]);
    const past = new DiskRequestError(
      `${file.name}: [${4 * BLOCK - SECTOR}, ${4 * BLOCK + SECTOR}) is past the end of the disk (${4 * BLOCK} bytes)`,
    );
    await expectRefusal(() => ro.readAsync(4 * BLOCK - SECTOR, new Uint8Array(2 * SECTOR)), past);
    ro.close();
    await expectRefusal(() => ro.read(0, sector), new DiskRequestError(`${file.name} is closed`));
    await expectRefusal(
      () => ro.readAsync(0, sector),
      new DiskRequestError(`${file.name} is closed`),
    );
  });

  it("name the data, block or bitmap a file cut short no longer holds", async () => {
    const fixedFile = new LogFile("/io/fixed.vhd");
    const fixed = VhdImage.create(fixedFile, { type: "fixed", size: 4 * BLOCK, now: 0 });
    fixedFile.truncate(1024);
    const cut = (field: string, at: number, n: number, name: string) =>
      new VhdFormatError(field, at, `${n} bytes there pass the end of ${name}`);
    await expectRefusal(
      () => fixed.read(1024, new Uint8Array(SECTOR)),
      cut("data", 1024, SECTOR, fixedFile.name),
    );
    await expectRefusal(
      () => fixed.readAsync(1024, new Uint8Array(SECTOR)),
      cut("data", 1024, SECTOR, fixedFile.name),
    );
    fixed.close();

    const { file, image } = created(4);
    image.write(0, pattern(BLOCK, 35));
    file.truncate(FIRST + BITMAP);
    await expectRefusal(
      () => image.read(SECTOR, new Uint8Array(2 * SECTOR)),
      cut("block 0", FIRST + BITMAP + SECTOR, 2 * SECTOR, file.name),
    );
    await expectRefusal(
      () => image.readAsync(SECTOR, new Uint8Array(2 * SECTOR)),
      cut("block 0", FIRST + BITMAP + SECTOR, 2 * SECTOR, file.name),
    );
    image.close();

    const fresh = VhdImage.open(file);
    file.truncate(FIRST);
    await expectRefusal(
      () => fresh.read(0, new Uint8Array(SECTOR)),
      cut("sector bitmap of block 0", FIRST, BITMAP, file.name),
    );
    fresh.close();
  });

  it("a fixed disk's async reads and writes go to the file's async calls, at the guest offset", async () => {
    const file = new LogFile("/io/fixed.vhd");
    const fixed = VhdImage.create(file, { type: "fixed", size: 4 * BLOCK, now: 0 });
    file.log = [];
    const data = pattern(3 * SECTOR, 36);
    await fixed.writeAsync(5 * SECTOR, data);
    const got = new Uint8Array(3 * SECTOR);
    await fixed.readAsync(5 * SECTOR, got);
    expectSameBytes(got, data);
    expectSameBytes(file.bytes(5 * SECTOR, 3 * SECTOR), data);
    expect(file.log).toEqual([
      ["writevAsync", 5 * SECTOR, 3 * SECTOR],
      ["readAsync", 5 * SECTOR, 3 * SECTOR],
    ]);
    fixed.close();
  });
});

describe("memory an image borrows", () => {
  it("borrows the constant bytes of async allocations once, however many blocks it allocates", async () => {
    const kernels = StorageKernels.standalone(64 * 1024);
    const file = new LogFile("/io/arena.vhd");
    const image = VhdImage.create(file, {
      type: "dynamic",
      size: 16 * BLOCK,
      blockSize: BLOCK,
      now: 0,
      kernels,
    });
    for (let b = 0; b < 16; b++) await image.writeAsync(b * BLOCK, pattern(BLOCK, b));
    const got = new Uint8Array(BLOCK);
    image.read(15 * BLOCK, got);
    expectSameBytes(got, pattern(BLOCK, 15));
    image.close();
  });

  it("caps the sector bitmap cache at 1 MiB, however many blocks the disk has", () => {
    const kernels = StorageKernels.standalone(1.5 * MiB);
    // 4096 blocks of one sector: 2 MiB of bitmaps, 1 MiB of them cached.
    const image = VhdImage.create(new LogFile("/io/many.vhd"), {
      type: "dynamic",
      size: 4096 * SECTOR,
      blockSize: SECTOR,
      now: 0,
      kernels,
    });
    const data = pattern(SECTOR, 37);
    image.write(0, data);
    image.write(2048 * SECTOR, data);
    const got = new Uint8Array(SECTOR);
    image.read(0, got);
    expectSameBytes(got, data);
    image.close();
  });
});
