import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import {
  MAX_BLOCK_BYTES,
  MAX_DISK_BYTES,
  MIN_BLOCK_BYTES,
  PlatformCode,
} from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";

// What VhdImage.create writes into the fields a reader relies on (Virtual
// Hard Disk Image Format Specification 1.0): the footer's Unique Id, a
// random UUID (RFC 9562 section 5.4: version 4 in the high nibble of byte
// 6, variant 10 in the top bits of byte 8); a dynamic disk's empty Parent
// Unicode Name; a differencing disk's two parent locators, W2ru relative to
// the child's own path ("." first, as Hyper-V writes it) and W2ku absolute,
// each in UTF-16LE with backslashes, in whole sectors one after the other;
// the size and block size limits taken at their edges.

const kernels = defaultKernels();

function parentAt(path: string): { bytes: Uint8Array; parents: ParentSource } {
  const file = new MemoryFile(path);
  VhdImage.create(file, { type: "dynamic", size: 1 << 20, blockSize: 64 * 1024, kernels }).close();
  const bytes = file.contents().slice();
  return {
    bytes,
    parents: {
      open: (candidates) => {
        const found = candidates.find((c) => c.replaceAll("\\", "/").endsWith(path.slice(1)));
        return found === undefined
          ? undefined
          : { file: new MemoryFile(path, bytes.slice()), path, mtimeMs: 0 };
      },
    },
  };
}

function child(parentPath: string, childPath: string, fileName = childPath) {
  const { bytes, parents } = parentAt(parentPath);
  const parent = VhdImage.open(new MemoryFile(parentPath, bytes.slice()), { kernels });
  const file = new MemoryFile(fileName);
  const image = VhdImage.create(file, {
    type: "differencing",
    parent: { image: parent, path: parentPath, mtimeMs: 0 },
    path: childPath,
    kernels,
    now: 0,
    parents,
  });
  parent.close();
  const header = image.header;
  image.close();
  const contents = file.contents();
  const locator = (i: number) => {
    const l = header?.locators[i];
    if (!l) throw new Error(`no locator ${i}`);
    return {
      ...l,
      text: Buffer.from(contents.subarray(l.dataOffset, l.dataOffset + l.dataLength)).toString(
        "utf16le",
      ),
    };
  };
  return { header, locator };
}

describe("VhdImage.create's fields", () => {
  it("gives a new disk a random version 4 UUID as its unique id", () => {
    const ids = [0, 1, 2, 3].map(() => {
      const image = VhdImage.create(new MemoryFile("/ids/disk.vhd"), {
        type: "dynamic",
        size: 1 << 20,
        kernels,
      });
      const id = image.footer.uniqueId.slice();
      image.close();
      return id;
    });
    for (const id of ids) {
      expect(id.length).toBe(16);
      expect((id[6] ?? 0) >> 4).toBe(4);
      expect((id[8] ?? 0) & 0xc0).toBe(0x80);
    }
    expect(new Set(ids.map((id) => Buffer.from(id).toString("hex"))).size).toBe(4);
  });

  it("leaves a dynamic disk's parent name empty", () => {
    const image = VhdImage.create(new MemoryFile("/names/disk.vhd"), {
      type: "dynamic",
      size: 1 << 20,
      kernels,
    });
    expect(image.header?.parentName).toBe("");
    image.close();
  });

  it("writes the relative locator from the child's own path, with './' before a name in its folder", () => {
    const same = child("/vhds/parent.vhd", "/vhds/child.vhd", "/elsewhere/child-file.vhd");
    expect(same.locator(0).platformCode).toBe(PlatformCode.W2ru);
    expect(same.locator(0).text).toBe(".\\parent.vhd");
    expect(same.locator(1).platformCode).toBe(PlatformCode.W2ku);
    expect(same.locator(1).text).toBe("\\vhds\\parent.vhd");
    expect(same.header?.parentName).toBe("parent.vhd");
    const below = child("/vhds/parent.vhd", "/vhds/sub/child.vhd");
    expect(below.locator(0).text).toBe("..\\parent.vhd");
  });

  it("gives each locator whole sectors of room, one after the other", () => {
    const short = child("/vhds/parent.vhd", "/vhds/child.vhd");
    const first = short.locator(0);
    expect(first.dataLength).toBe(".\\parent.vhd".length * 2);
    expect(first.dataSpace).toBe(1);
    expect(short.locator(1).dataOffset).toBe(first.dataOffset + 512);
    // A path of 300 characters: 600 bytes of UTF-16, two sectors.
    const longName = `/${"d".repeat(288)}/parent.vhd`;
    const long = child(longName, `/${"d".repeat(288)}/child.vhd`);
    const absolute = long.locator(1);
    expect(absolute.dataLength).toBe(600);
    expect(absolute.dataSpace).toBe(2);
    const relative = long.locator(0);
    expect(absolute.dataOffset).toBe(relative.dataOffset + 512);
    expect(long.header?.locators.slice(2).every((l) => l.platformCode === 0)).toBe(true);
    expect(long.header?.locators.length).toBe(8);
  });

  it("takes a disk of exactly 2040 GiB and blocks of exactly 512 bytes and 256 MiB", () => {
    const big = VhdImage.create(new MemoryFile("/edges/big.vhd"), {
      type: "dynamic",
      size: MAX_DISK_BYTES,
      kernels,
    });
    expect(big.size).toBe(MAX_DISK_BYTES);
    big.close();
    for (const blockSize of [MIN_BLOCK_BYTES, MAX_BLOCK_BYTES]) {
      const image = VhdImage.create(new MemoryFile("/edges/blocks.vhd"), {
        type: "dynamic",
        size: 1 << 20,
        blockSize,
        kernels,
      });
      expect(image.blockBytes).toBe(blockSize);
      image.close();
    }
  });
});
