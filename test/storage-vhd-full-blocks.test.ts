import { existsSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { directIoRefusal } from "../src/storage/direct-file.js";
import { ParentChainError } from "../src/storage/errors.js";
import { openImage } from "../src/storage/open.js";
import { directParents, fileParents, type ParentSource, VhdImage } from "../src/storage/vhd.js";
import { expectSameBytes } from "./support/bytes.js";
import { testTempDir } from "./support/temp.js";
import {
  BITMAP,
  BLOCK,
  FIRST,
  LogFile,
  PAGE,
  pattern,
  placed,
  SECTOR,
  TABLE,
} from "./support/vhd-log.js";

/*
 * The file I/O behind a VHD's reads and writes where a block is known to
 * hold every sector, and where a differencing disk mixes its own sectors
 * with its parent's (Microsoft, "Virtual Hard Disk Image Format
 * Specification", October 2006):
 *
 * - A block whose sector bitmap is all ones (every block of a dynamic disk
 *   once allocated, whole-block writes made off the thread included) is read
 *   and written at its data alone: its bitmap is not read again.
 * - A guest offset lies in block offset / block size, also on a disk of more
 *   than 262,144 blocks.
 * - A differencing disk reads each run of sectors its bitmap holds from its
 *   own data in one read, and each run it does not hold from its parent,
 *   each read exactly the run's length.
 * - A parent that is not on the file system, opened through the page cache
 *   or for direct I/O, is a missing parent, refused as such.
 *
 * File offsets come from the layout: the footer copy, the 1024-byte header,
 * the BAT (padded to a sector), any parent locators (one sector each here),
 * then each block's bitmap and data, its data page-aligned when the block
 * size is a multiple of 4 KiB.
 */

/** ... and that block's data here. */
const FIRST_DATA = FIRST + BITMAP;

/** A new 4-block dynamic disk whose block 0 was written whole by `writeAsync`, its log cleared. */
async function asyncAllocated() {
  const file = new LogFile("/full/d.vhd");
  const image = VhdImage.create(file, {
    type: "dynamic",
    size: 4 * BLOCK,
    blockSize: BLOCK,
    now: 0,
  });
  const data = pattern(BLOCK, 1);
  await image.writeAsync(0, data);
  // The whole block went out in one gathered write: its bitmap (all ones), then its data.
  expect(file.log).toContainEqual(["writevAsync", FIRST, BITMAP + BLOCK]);
  expect(file.bytes(FIRST, 2)).toEqual(Uint8Array.of(0xff, 0xff));
  file.log = [];
  return { file, image, data };
}

describe("a block written whole off the thread holds every sector", () => {
  it("readAsync of one of its sectors reads that sector's data and nothing else", async () => {
    const { file, image, data } = await asyncAllocated();
    const got = new Uint8Array(SECTOR);
    await image.readAsync(SECTOR, got);
    expect(file.log).toEqual([["readAsync", FIRST_DATA + SECTOR, SECTOR]]);
    expectSameBytes(got, data.subarray(SECTOR, 2 * SECTOR), "sector 1");
  });

  it("a sync read across its end into an unallocated block reads only its last sector's data", async () => {
    const { file, image, data } = await asyncAllocated();
    const got = new Uint8Array(2 * SECTOR).fill(0xee);
    image.read(BLOCK - SECTOR, got);
    // Block 1 is unallocated: zeros, with no file call.
    expect(file.log).toEqual([["read", FIRST_DATA + BLOCK - SECTOR, SECTOR]]);
    expectSameBytes(got.subarray(0, SECTOR), data.subarray(BLOCK - SECTOR), "sector 15");
    expectSameBytes(got.subarray(SECTOR), new Uint8Array(SECTOR), "sector 16");
  });

  it("a sync write of one sector into it writes that sector's data and nothing else", async () => {
    const { file, image, data } = await asyncAllocated();
    const sector = pattern(SECTOR, 2);
    image.write(SECTOR, sector);
    expect(file.log).toEqual([["write", FIRST_DATA + SECTOR, SECTOR]]);
    // The bitmap is untouched and the block reads back with the new sector in it.
    expect(file.bytes(FIRST, 2)).toEqual(Uint8Array.of(0xff, 0xff));
    const want = data.slice();
    want.set(sector, SECTOR);
    const got = new Uint8Array(BLOCK);
    file.log = [];
    image.read(0, got);
    expect(file.log).toEqual([["read", FIRST_DATA, BLOCK]]);
    expectSameBytes(got, want, "block 0");
  });
});

describe("a dynamic disk of more than 262,144 blocks", () => {
  it("reads guest sector 1 from block 1, in one read at its data", () => {
    // 512-byte blocks: one bitmap bit, padded to a sector; blocks smaller than a
    // page are not aligned, so each follows the last with no padding.
    const blocks = 262_145;
    const file = new LogFile("/full/big.vhd");
    const image = VhdImage.create(file, {
      type: "dynamic",
      size: blocks * SECTOR,
      blockSize: SECTOR,
      now: 0,
    });
    const batBytes = Math.ceil((blocks * 4) / SECTOR) * SECTOR; // 1,049,088
    const firstBlock = TABLE + batBytes; // 1,050,624
    const span = SECTOR + SECTOR; // bitmap and data
    const last = pattern(SECTOR, 3);
    const one = pattern(SECTOR, 4);
    image.write(262_144 * SECTOR, last); // the first block allocated
    image.write(SECTOR, one); // the second
    expect(image.blockTable[262_144]).toBe(firstBlock / SECTOR);
    expect(image.blockTable[1]).toBe((firstBlock + span) / SECTOR);
    file.log = [];
    const got = new Uint8Array(SECTOR);
    image.read(SECTOR, got);
    expect(file.log).toEqual([["read", firstBlock + span + SECTOR, SECTOR]]);
    expect(firstBlock + span + SECTOR).toBe(1_052_160);
    expectSameBytes(got, one, "guest sector 1");
    // And the last block still reads as written.
    file.log = [];
    image.read(262_144 * SECTOR, got);
    expect(file.log).toEqual([["read", firstBlock + SECTOR, SECTOR]]);
    expectSameBytes(got, last, "guest sector 262,144");
  });
});

describe("a differencing disk holding part of a block", () => {
  it("reads its own run in one read and each of its parent's runs at that run's length", () => {
    const PARENT = "/full/parent.vhd";
    const CHILD = "/full/child.vhd";
    const MTIME = 1_700_000_000_000;
    const parentFile = new LogFile(PARENT);
    const size = 4 * BLOCK;
    const made = VhdImage.create(parentFile, { type: "dynamic", size, blockSize: BLOCK, now: 0 });
    const below = pattern(size, 9);
    made.write(0, below);
    made.close();
    const parentBytes = parentFile.all();
    const opened: LogFile[] = [];
    const parents: ParentSource = {
      open: (candidates) => {
        if (!candidates.includes(PARENT)) return undefined;
        const file = LogFile.of(PARENT, parentBytes);
        opened.push(file);
        return { file, path: PARENT, mtimeMs: MTIME };
      },
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
    expect(opened).toHaveLength(1);
    const parentLog = opened[0] as LogFile;
    // Sectors 2-4 of block 0 in the child.
    const own = pattern(3 * SECTOR, 5);
    child.write(2 * SECTOR, own);
    // The child's BAT (one sector) and two locators (a sector each) precede its block.
    const childData = placed(TABLE + SECTOR + 2 * SECTOR) + BITMAP;
    expect(childData).toBe(4096);
    expect(file.bytes(childData - BITMAP, 2)).toEqual(Uint8Array.of(0b0011_1000, 0));
    file.log = [];
    parentLog.log = [];
    const got = new Uint8Array(5 * SECTOR);
    child.read(SECTOR, got);
    // The child's bitmap is cached since the write: one read, of sectors 2-4.
    expect(file.log).toEqual([["read", childData + 2 * SECTOR, 3 * SECTOR]]);
    // The parent is asked for sector 1, then sector 5, one sector each. Its
    // block 0 is read at its bitmap first (not yet known full), then at its data.
    expect(parentLog.log).toEqual([
      ["read", FIRST, BITMAP],
      ["read", FIRST_DATA + SECTOR, SECTOR],
      ["read", FIRST_DATA + 5 * SECTOR, SECTOR],
    ]);
    const want = below.slice(SECTOR, 6 * SECTOR);
    want.set(own, SECTOR);
    expectSameBytes(got, want, "sectors 1-5");
  });
});

/** The error `run` throws: fails unless it throws one. */
function thrownBy(run: () => unknown): Error {
  try {
    run();
  } catch (error) {
    return error as Error;
  }
  return expect.fail("expected a refusal, got none");
}

/** A dynamic parent and a differencing child of it in `dir`, on real files; the parent removed. */
function orphan(dir: string): { parentPath: string; childPath: string } {
  const parentPath = join(dir, "parent.vhd");
  const childPath = join(dir, "child.vhd");
  const parentFile = new FdFile(parentPath, "w+");
  const parent = VhdImage.create(parentFile, {
    type: "dynamic",
    size: 4 * BLOCK,
    blockSize: BLOCK,
    now: 0,
  });
  parent.write(0, pattern(SECTOR, 6));
  parent.flush();
  const child = VhdImage.create(new FdFile(childPath, "w+"), {
    type: "differencing",
    parent: { image: parent, path: parentPath, mtimeMs: parentFile.mtimeMs() },
    path: childPath,
    now: 0,
  });
  child.close();
  parent.close();
  rmSync(parentPath);
  expect(existsSync(parentPath)).toBe(false);
  return { parentPath, childPath };
}

describe("a parent that is not on the file system", () => {
  it("is not found by the file-system parent source, which goes on to a later candidate", () => {
    const dir = testTempDir("vhd-full-");
    const missing = join(dir, "none.vhd");
    expect(fileParents.open([missing])).toBeUndefined();
    const there = join(dir, "there.vhd");
    writeFileSync(there, pattern(SECTOR, 7));
    const found = fileParents.open([missing, there]);
    expect(found).toBeDefined();
    try {
      expect(found?.path).toBe(there);
      expect(found?.mtimeMs).toBe(statSync(there).mtimeMs);
      const back = new Uint8Array(SECTOR);
      expect(found?.file.read(back, 0)).toBe(SECTOR);
      expectSameBytes(back, pattern(SECTOR, 7), "the candidate's bytes");
    } finally {
      found?.file.close();
    }
  });

  it("is refused as not found when a differencing disk is opened through the page cache", () => {
    const dir = testTempDir("vhd-full-");
    const { parentPath, childPath } = orphan(dir);
    const message = `${childPath}: parent "parent.vhd" not found (looked at ${parentPath})`;
    const file = new FdFile(childPath, "r");
    try {
      const error = thrownBy(() => VhdImage.open(file));
      expect(error).toBeInstanceOf(ParentChainError);
      expect(error.message).toBe(message);
    } finally {
      file.close();
    }
    const error = thrownBy(() => openImage(childPath).close());
    expect(error).toBeInstanceOf(ParentChainError);
    expect(error.message).toBe(message);
  });

  it("is not found by the direct-I/O parent source either", (context) => {
    const dir = testTempDir("vhd-full-");
    const missing = join(dir, "none.vhd");
    expect(directParents.open([missing])).toBeUndefined();
    const refused = directIoRefusal(dir);
    if (refused !== undefined) {
      context.skip(`direct I/O is not available in ${dir}: ${refused}`);
      return;
    }
    const there = join(dir, "there.vhd");
    writeFileSync(there, pattern(PAGE, 8));
    const found = directParents.open([missing, there]);
    expect(found).toBeDefined();
    try {
      expect(found?.path).toBe(there);
      expect(found?.mtimeMs).toBe(statSync(there).mtimeMs);
      const back = new Uint8Array(PAGE);
      expect(found?.file.read(back, 0)).toBe(PAGE);
      expectSameBytes(back, pattern(PAGE, 8), "the candidate's bytes");
    } finally {
      found?.file.close();
    }
  });

  it("is refused as not found when a differencing disk is opened for direct I/O", (context) => {
    const dir = testTempDir("vhd-full-");
    const refused = directIoRefusal(dir);
    if (refused !== undefined) {
      context.skip(`direct I/O is not available in ${dir}: ${refused}`);
      return;
    }
    const { parentPath, childPath } = orphan(dir);
    const error = thrownBy(() => openImage(childPath, { direct: true }).close());
    expect(error).toBeInstanceOf(ParentChainError);
    expect(error.message).toBe(
      `${childPath}: parent "parent.vhd" not found (looked at ${parentPath})`,
    );
  });
});
