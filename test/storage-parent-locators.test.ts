import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { ParentChainError } from "../src/storage/errors.js";
import { PlatformCode } from "../src/storage/format.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";
import { HEADER_AT, resum, vhdImage, viewOf } from "./support/vhd-damage.js";

// Parent locators (VHD specification, "Dynamic Disk Header Format": the
// eight 24-byte entries at header offset 576). They name a differencing
// disk's parent; a dynamic disk has no parent, so its table is not read.

const KiB = 1024;
const HEADER_BYTES = 1024;
const HEADER_CHECKSUM = 36;
const LOCATORS = 576;
const LOCATOR_BYTES = 24;

/** Sets locator entry `i` of the header of `bytes` and rewrites the header's checksum. */
function setLocator(
  bytes: Uint8Array,
  i: number,
  entry: { code: number; space: number; length: number; offset: number },
): void {
  const view = viewOf(bytes);
  const at = HEADER_AT + LOCATORS + i * LOCATOR_BYTES;
  view.setUint32(at, entry.code);
  view.setUint32(at + 4, entry.space);
  view.setUint32(at + 8, entry.length);
  view.setBigUint64(at + 16, BigInt(entry.offset));
  resum(bytes, HEADER_AT, HEADER_BYTES, HEADER_CHECKSUM);
}

/** Locator entry `i` of the header of `bytes`: its data's length and offset. */
function locatorData(bytes: Uint8Array, i: number): { length: number; offset: number } {
  const view = viewOf(bytes);
  const at = HEADER_AT + LOCATORS + i * LOCATOR_BYTES;
  return { length: view.getUint32(at + 8), offset: Number(view.getBigUint64(at + 16)) };
}

describe("a dynamic disk's locator table", () => {
  // The specification keeps the locators for differencing disks; QEMU's
  // block/vpc.c never reads them. A stray entry in a dynamic disk, even one
  // whose data would lie far past the end of the file, does not stop it opening.
  it("is not read, so a stray entry pointing past the end is harmless", () => {
    const bytes = vhdImage("dynamic", 64 * KiB, [4096]);
    setLocator(bytes, 0, {
      code: PlatformCode.W2ku,
      space: 1,
      length: 512,
      offset: 1 << 30,
    });
    const disk = VhdImage.open(new MemoryFile("/c/dynamic.vhd", bytes));
    const into = new Uint8Array(512);
    disk.read(4096, into);
    expect(into.every((b) => b === 1)).toBe(true);
    expect(disk.parent).toBeUndefined();
    disk.close();
  });
});

describe("a differencing disk's locator text", () => {
  const PARENT_MTIME = Date.UTC(2020, 0, 1);

  /** A child of a 64 KiB dynamic parent at /d/base/parent.vhd, made at /d/child.vhd. */
  function child(): Uint8Array {
    const parentPath = "/d/base/parent.vhd";
    const parent = vhdImage("dynamic", 64 * KiB);
    const image = VhdImage.open(new MemoryFile(parentPath, parent.slice()));
    const parents: ParentSource = {
      open: () => ({
        file: new MemoryFile(parentPath, parent),
        path: parentPath,
        mtimeMs: PARENT_MTIME,
      }),
    };
    const file = new MemoryFile("/d/child.vhd");
    VhdImage.create(file, {
      type: "differencing",
      parent: { image, path: parentPath, mtimeMs: PARENT_MTIME },
      now: PARENT_MTIME,
      parents,
    }).close();
    image.close();
    return file.contents().slice();
  }

  // The data is the path in UTF-16 LE, padded with NULs up to its length:
  // only that trailing padding is taken off. A NUL inside the text is part of
  // what was written (no file system path has one), so it must not be spliced
  // out into another, existing, path.
  it("drops only the trailing padding, keeping a NUL inside the path", () => {
    const bytes = child();
    const relative = locatorData(bytes, 0);
    const text = Buffer.from("./base/par\0ent.vhd\0\0\0\0", "utf16le");
    bytes.set(text, relative.offset);
    setLocator(bytes, 0, {
      code: PlatformCode.W2ru,
      space: 1,
      length: text.length,
      offset: relative.offset,
    });
    const seen: string[] = [];
    const nowhere: ParentSource = {
      open(candidates) {
        seen.push(...candidates);
        return undefined;
      },
    };
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), { parents: nowhere }),
    ).toThrow(ParentChainError);
    expect(seen).toEqual(["/d/base/par\0ent.vhd", "/d/base/parent.vhd", "/d/parent.vhd"]);
  });
});
