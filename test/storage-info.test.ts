import { statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile, MemoryFile } from "../src/storage/block-file.js";
import { imageInfo } from "../src/storage/info.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// What `hvlab storage info` reports: qemu-img info's keys where they
// overlap, and the VHD footer's and header's fields decoded.

const KiB = 1024;
const ID = Uint8Array.from({ length: 16 }, (_, i) => i);
const PARENT_ID = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 + i);

function writeVhd(path: string, type: "fixed" | "dynamic", size: number, id: Uint8Array): void {
  const file = new MemoryFile(path);
  const disk = VhdImage.create(file, {
    type,
    size,
    blockSize: 4096,
    now: Date.UTC(2021, 5, 1, 12, 0, 30),
    uniqueId: id,
  });
  if (type === "dynamic") {
    disk.write(0, new Uint8Array(512).fill(1));
    disk.write(8192, new Uint8Array(512).fill(1));
  }
  disk.close();
  writeFileSync(path, file.contents());
}

describe("storage info", () => {
  it("describes a raw file by its sizes alone", () => {
    const dir = testTempDir("storage-info-");
    const path = join(dir, "disk.img");
    writeFileSync(path, new Uint8Array(1000));
    const stat = statSync(path);
    expect(imageInfo(path)).toEqual({
      filename: path,
      format: "raw",
      "virtual-size": 1024,
      "actual-size": stat.blocks * 512,
      "file-length": 1000,
    });
  });

  it("decodes a dynamic disk's footer and counts its blocks", () => {
    const dir = testTempDir("storage-info-");
    const path = join(dir, "disk.vhd");
    writeVhd(path, "dynamic", 64 * KiB, ID);
    const info = imageInfo(path);
    expect(info.format).toBe("vpc");
    expect(info["virtual-size"]).toBe(64 * KiB);
    expect(info["file-length"]).toBe(statSync(path).size);
    expect(info["cluster-size"]).toBe(4096);
    expect(info.vhd).toEqual({
      type: "dynamic",
      creator: "win ",
      creatorVersion: "6.1",
      creatorOs: "Wi2k",
      timestamp: "2021-06-01T12:00:30.000Z",
      uuid: "00010203-0405-0607-0809-0a0b0c0d0e0f",
      geometry: { cylinders: 1, heads: 4, sectorsPerTrack: 17 },
      chsSize: 1 * 4 * 17 * 512,
      allocatedBlocks: 2,
      totalBlocks: 16,
      notes: [],
    });
  });

  it("gives a fixed disk no cluster size and no block counts", () => {
    const dir = testTempDir("storage-info-");
    const path = join(dir, "fixed.vhd");
    writeVhd(path, "fixed", 16 * KiB, ID);
    const info = imageInfo(path);
    expect(info["cluster-size"]).toBeUndefined();
    expect(info.vhd?.type).toBe("fixed");
    expect(info.vhd?.allocatedBlocks).toBeUndefined();
    expect(info.vhd?.totalBlocks).toBeUndefined();
    expect(info.vhd?.parent).toBeUndefined();
    expect(info.vhd?.geometry).toEqual({ cylinders: 0, heads: 4, sectorsPerTrack: 17 });
  });

  it("names a differencing disk's parent: its id, name, path and time stamp", () => {
    const dir = testTempDir("storage-info-");
    const parentPath = join(dir, "parent.vhd");
    writeVhd(parentPath, "dynamic", 64 * KiB, PARENT_ID);
    const mtime = new Date(Date.UTC(2022, 0, 2, 3, 4, 5));
    utimesSync(parentPath, mtime, mtime);
    const childPath = join(dir, "child.vhd");
    const parentFile = new FdFile(parentPath, "r");
    const parent = VhdImage.open(parentFile);
    const file = new FdFile(childPath, "w+");
    VhdImage.create(file, {
      type: "differencing",
      parent: { image: parent, path: parentPath, mtimeMs: parentFile.mtimeMs() },
      path: childPath,
      now: 0,
    }).close();
    parent.close();
    const info = imageInfo(childPath);
    expect(info.vhd?.type).toBe("differencing");
    expect(info.vhd?.allocatedBlocks).toBe(0);
    expect(info.vhd?.parent).toEqual({
      uuid: "f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff",
      name: "parent.vhd",
      path: parentPath,
      timestamp: "2022-01-02T03:04:05.000Z",
    });
  });
});
