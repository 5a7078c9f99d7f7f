import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile, MemoryFile } from "../src/storage/block-file.js";
import { checkVhdFile } from "../src/storage/check.js";
import { openDestination } from "../src/storage/destination.js";
import { DirectFile, directIoRefusal } from "../src/storage/direct-file.js";
import { imageInfo } from "../src/storage/info.js";
import { defaultKernels, type StorageKernels } from "../src/storage/kernels.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// The files behind info, check and convert's destination: info and check
// close what they open and read with the kernels they are given; the
// destination is opened through the page cache or around it as asked.

const openFds = () => readdirSync("/proc/self/fd").length;

function vhdAt(path: string): void {
  const file = new MemoryFile(path);
  VhdImage.create(file, { type: "dynamic", size: 64 * 1024, blockSize: 4096, now: 0 }).close();
  writeFileSync(path, file.contents());
}

describe("storage info's files", () => {
  it("closes the image it described", () => {
    const path = join(testTempDir("storage-info-files-"), "disk.vhd");
    vhdAt(path);
    const before = openFds();
    for (let i = 0; i < 5; i++) imageInfo(path);
    expect(openFds()).toBe(before);
  });

  it("checks the footer's sum with the kernels it is given", () => {
    const path = join(testTempDir("storage-info-files-"), "disk.vhd");
    vhdAt(path);
    const own = defaultKernels();
    // Kernels whose checksum disagrees with every footer.
    const wrong = Object.assign(Object.create(own) as StorageKernels, {
      checksum: () => 0x1234,
    });
    expect(() => imageInfo(path, wrong)).toThrow(/footer checksum .* the footer sums to 0x1234/);
    expect(imageInfo(path, own).format).toBe("vpc");
  });
});

describe("storage check's file", () => {
  it("closes the file it checked", () => {
    const path = join(testTempDir("storage-check-files-"), "disk.vhd");
    vhdAt(path);
    const before = openFds();
    for (let i = 0; i < 5; i++) expect(checkVhdFile(path).ok).toBe(true);
    expect(openFds()).toBe(before);
  });

  it("checks the footer's sum with the kernels it is given", () => {
    const path = join(testTempDir("storage-check-files-"), "disk.vhd");
    vhdAt(path);
    const wrong = Object.assign(Object.create(defaultKernels()) as StorageKernels, {
      checksum: () => 0x1234,
    });
    const report = checkVhdFile(path, wrong);
    expect(report.ok).toBe(false);
    expect(report.problems[0]?.message).toMatch(/footer checksum .* the footer sums to 0x1234/);
  });
});

describe("convert's destination", () => {
  it("opens through the page cache unless told direct", () => {
    const dir = testTempDir("storage-destination-");
    const file = openDestination(join(dir, "out.img"));
    expect(file).toBeInstanceOf(FdFile);
    expect(file).not.toBeInstanceOf(DirectFile);
    file.close();
    if (directIoRefusal(dir) !== undefined) return;
    const direct = openDestination(join(dir, "direct.img"), { direct: true });
    expect(direct).toBeInstanceOf(DirectFile);
    direct.close();
  });
});
