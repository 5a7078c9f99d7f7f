import { existsSync, linkSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { openDestination } from "../src/storage/destination.js";
import { openImage } from "../src/storage/open.js";
import { convertImage } from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// convert's destination is emptied through a file description of its own
// and written through another (as qemu-img's is): whatever the file held
// before must be gone, and the file must hold exactly the converted disk.
const KiB = 1024;

/** A dynamic VHD of `blocks` 4 KiB blocks with every third block written with `fill`. */
function sourceDisk(path: string, blocks: number, fill: number): void {
  const image = VhdImage.create(new FdFile(path, "w+"), {
    type: "dynamic",
    size: blocks * 4 * KiB,
    blockSize: 4 * KiB,
  });
  for (let b = 0; b < blocks; b += 3) image.write(b * 4 * KiB, new Uint8Array(4 * KiB).fill(fill));
  image.close();
}

function expected(blocks: number, fill: number): Buffer {
  const bytes = Buffer.alloc(blocks * 4 * KiB);
  for (let b = 0; b < blocks; b += 3) bytes.fill(fill, b * 4 * KiB, (b + 1) * 4 * KiB);
  return bytes;
}

describe("convert's destination", () => {
  it("replaces every byte of an existing, larger file of other data with the converted disk", async () => {
    const dir = testTempDir("convert-destination");
    const src = join(dir, "src.vhd");
    const dst = join(dir, "out.raw");
    sourceDisk(src, 40, 0x5a);
    // Stale data where the new disk has holes, and past its end.
    writeFileSync(dst, Buffer.alloc(100 * 4 * KiB, 0xee));
    const before = statSync(dst).ino;
    await convertImage(src, dst, { to: "raw" });
    const out = readFileSync(dst);
    expect(out.length).toBe(40 * 4 * KiB);
    expect(out.equals(expected(40, 0x5a))).toBe(true);
    // The file is emptied in place, not replaced: links and permissions stay.
    expect(statSync(dst).ino).toBe(before);
  });

  it("converts twice over the same file, and to a VHD over a raw file", async () => {
    const dir = testTempDir("convert-destination");
    const src = join(dir, "src.vhd");
    const dst = join(dir, "out");
    sourceDisk(src, 25, 0x11);
    await convertImage(src, dst, { to: "raw" });
    await convertImage(src, dst, { to: "raw" });
    expect(readFileSync(dst).equals(expected(25, 0x11))).toBe(true);
    await convertImage(src, dst, { to: "dynamic", blockSize: 4 * KiB });
    const back = VhdImage.open(new FdFile(dst, "r"));
    const bytes = new Uint8Array(back.size);
    back.read(0, bytes);
    back.close();
    expect(Buffer.from(bytes).equals(expected(25, 0x11))).toBe(true);
  });

  it("creates a file that does not exist, empty and writable", () => {
    const dir = testTempDir("convert-destination");
    const path = join(dir, "new.raw");
    expect(existsSync(path)).toBe(false);
    const file = openDestination(path);
    try {
      expect(file.size()).toBe(0);
      file.write(new Uint8Array([1, 2, 3]), 0);
      expect(file.size()).toBe(3);
    } finally {
      file.close();
    }
  });

  it("names the path when the destination's folder does not exist", () => {
    const dir = testTempDir("convert-destination");
    const path = join(dir, "missing", "out.raw");
    expect(() => openDestination(path)).toThrow(/missing\/out\.raw/);
  });

  it("refuses the source itself, another name of it and a parent as the destination, and leaves them intact", async () => {
    const dir = testTempDir("convert-destination");
    const parentPath = join(dir, "parent.vhd");
    const childPath = join(dir, "child.vhd");
    const alias = join(dir, "alias.vhd");
    sourceDisk(parentPath, 12, 0x33);
    const parent = openImage(parentPath) as VhdImage;
    VhdImage.create(new FdFile(childPath, "w+"), {
      type: "differencing",
      parent: { image: parent, path: parentPath, mtimeMs: statSync(parentPath).mtimeMs },
      path: childPath,
    }).close();
    parent.close();
    linkSync(childPath, alias);
    const parentBytes = readFileSync(parentPath);
    const childBytes = readFileSync(childPath);
    await expect(convertImage(childPath, childPath, { to: "raw" })).rejects.toThrow(
      /child\.vhd is the source itself/,
    );
    await expect(convertImage(childPath, alias, { to: "dynamic" })).rejects.toThrow(
      /alias\.vhd is the source itself/,
    );
    await expect(convertImage(childPath, parentPath, { to: "raw" })).rejects.toThrow(
      /parent\.vhd is .*parent\.vhd, a parent of the source/,
    );
    expect(readFileSync(parentPath).equals(parentBytes)).toBe(true);
    expect(readFileSync(childPath).equals(childBytes)).toBe(true);
  });
});
