import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile, MemoryFile } from "../src/storage/block-file.js";
import { DirectFile, directIoRefusal } from "../src/storage/direct-file.js";
import { RawImage } from "../src/storage/disk-image.js";
import { DirectIoUnavailableError, VhdFormatError } from "../src/storage/errors.js";
import { StorageKernels } from "../src/storage/kernels.js";
import { openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";
import { WatchedFile } from "./support/watched-file.js";

// What each option of openImage changes: the file it opens (direct I/O or
// the page cache, for the image and its parents), the kernels it reads
// with, and that a file it cannot take is closed again.

const KiB = 1024;

function vhdBytes(writes: number[]): Uint8Array {
  const file = new MemoryFile("v.vhd");
  const disk = VhdImage.create(file, { type: "dynamic", size: 64 * KiB, blockSize: 4096, now: 0 });
  for (const at of writes) disk.write(at, new Uint8Array(512).fill(3));
  disk.close();
  return file.contents().slice();
}

/** Open file descriptors of this process. */
const openFds = () => readdirSync("/proc/self/fd").length;

describe("raw images", () => {
  it("fdatasync on flush and close their file on close", () => {
    const file = new WatchedFile("r.img", new Uint8Array(1024));
    const image = new RawImage(file, true);
    image.flush();
    expect([file.syncs, file.closes]).toEqual([1, 0]);
    image.close();
    expect([file.syncs, file.closes]).toEqual([1, 1]);
  });
});

describe("openImage", () => {
  it("reads through the page cache unless told direct, and around it when told", () => {
    const dir = testTempDir("storage-open-");
    const path = join(dir, "disk.vhd");
    writeFileSync(path, vhdBytes([0]));
    const cached = openImage(path);
    expect(cached.file).toBeInstanceOf(FdFile);
    expect(cached.file).not.toBeInstanceOf(DirectFile);
    cached.close();
    const refusal = directIoRefusal(dir);
    if (refusal !== undefined) {
      expect(() => openImage(path, { direct: true })).toThrow(DirectIoUnavailableError);
      return;
    }
    const direct = openImage(path, { direct: true });
    expect(direct.file).toBeInstanceOf(DirectFile);
    const sector = new Uint8Array(512);
    direct.read(0, sector);
    expect(sector.every((b) => b === 3)).toBe(true);
    direct.close();
  });

  it("opens a differencing disk's parents for direct I/O too", () => {
    const dir = testTempDir("storage-open-");
    if (directIoRefusal(dir) !== undefined) return;
    const parentPath = join(dir, "parent.vhd");
    writeFileSync(parentPath, vhdBytes([4096]));
    const childPath = join(dir, "child.vhd");
    const parentFile = new FdFile(parentPath, "r");
    const parent = VhdImage.open(parentFile);
    VhdImage.create(new FdFile(childPath, "w+"), {
      type: "differencing",
      parent: { image: parent, path: parentPath, mtimeMs: parentFile.mtimeMs() },
      path: childPath,
    }).close();
    parent.close();
    const child = openImage(childPath, { direct: true }) as VhdImage;
    expect(child.parent?.file).toBeInstanceOf(DirectFile);
    const sector = new Uint8Array(512);
    child.read(4096, sector);
    expect(sector.every((b) => b === 3)).toBe(true);
    child.close();
    const cached = openImage(childPath) as VhdImage;
    expect(cached.parent?.file).not.toBeInstanceOf(DirectFile);
    cached.close();
  });

  it("reads with the kernels it is given", () => {
    const dir = testTempDir("storage-open-");
    const path = join(dir, "disk.vhd");
    writeFileSync(path, vhdBytes([0]));
    // An arena of its first 4 KiB of scratch only: no room for a bitmap cache.
    const cramped = StorageKernels.standalone(4 * KiB);
    const image = openImage(path, { kernels: cramped });
    expect(() => image.read(0, new Uint8Array(512))).toThrow(/region 'storage arena': no room/);
    image.close();
  });

  it("closes the file of an image it refuses", () => {
    const dir = testTempDir("storage-open-");
    const path = join(dir, "broken.vhd");
    const bytes = vhdBytes([]);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    bytes[511] = (bytes[511] ?? 0) ^ 1;
    writeFileSync(path, bytes);
    const before = openFds();
    for (let i = 0; i < 5; i++) expect(() => openImage(path)).toThrow(VhdFormatError);
    expect(openFds()).toBe(before);
  });
});
