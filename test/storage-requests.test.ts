import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { checkRequest, RawImage } from "../src/storage/disk-image.js";
import { DiskRequestError } from "../src/storage/errors.js";
import { checkIoSpec, type IoSpec, isRandom, readShare } from "../src/storage/io-spec.js";
import { detectFormat, openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// What a disk takes and refuses before any format is involved: sector-aligned
// requests inside the disk, a raw file's size in whole sectors, the format
// told from the bytes, and a fio-style workload's limits, each on both sides.

function refused(run: () => unknown, message: string): void {
  expect(run).toThrow(DiskRequestError);
  expect(run).toThrow(message);
}

describe("I/O requests", () => {
  it("takes offsets and lengths in whole sectors up to the disk's last byte", () => {
    expect(() => checkRequest("d", 4096, 0, 4096)).not.toThrow();
    expect(() => checkRequest("d", 4096, 3584, 512)).not.toThrow();
    expect(() => checkRequest("d", 4096, 4096, 0)).not.toThrow();
  });

  it("refuses an offset that is negative, unaligned or not a safe integer, naming the disk", () => {
    for (const offset of [-512, 511, 513, 2 ** 53, 0.5]) {
      refused(
        () => checkRequest("d.vhd", 2 ** 60, offset, 512),
        `d.vhd: offset ${offset} is not a multiple of 512`,
      );
    }
  });

  it("refuses a length that is not whole sectors", () => {
    for (const length of [1, 511, 513]) {
      refused(
        () => checkRequest("d.vhd", 4096, 0, length),
        `d.vhd: length ${length} is not a multiple of 512`,
      );
    }
  });

  it("refuses one sector past the end, naming the range and the size", () => {
    refused(
      () => checkRequest("d.vhd", 4096, 3584, 1024),
      "d.vhd: [3584, 4608) is past the end of the disk (4096 bytes)",
    );
    refused(() => checkRequest("d.vhd", 4096, 4096, 512), "[4096, 4608) is past the end");
  });
});

describe("raw images", () => {
  it("round a file's size up to whole sectors and read the rest as zeros", () => {
    const bytes = new Uint8Array(1000).fill(7);
    const image = new RawImage(new MemoryFile("r.img", bytes));
    expect(image.size).toBe(1024);
    const into = new Uint8Array(512).fill(0xee);
    image.read(512, into);
    expect([...into.subarray(0, 488)].every((b) => b === 7)).toBe(true);
    expect([...into.subarray(488)].every((b) => b === 0)).toBe(true);
    expect(new RawImage(new MemoryFile("e.img", new Uint8Array(512))).size).toBe(512);
    expect(new RawImage(new MemoryFile("f.img", new Uint8Array(513))).size).toBe(1024);
  });

  it("reads past the file's end as zeros off the thread too", async () => {
    const image = new RawImage(new MemoryFile("r.img", new Uint8Array(600).fill(3)));
    const into = new Uint8Array(1024).fill(0xee);
    await image.readAsync(0, into);
    expect(into.subarray(0, 600).every((b) => b === 3)).toBe(true);
    expect(into.subarray(600).every((b) => b === 0)).toBe(true);
  });

  it("refuses a write unless opened writable, and a request past its end", async () => {
    const file = new MemoryFile("r.img", new Uint8Array(1024));
    const read = new RawImage(file);
    refused(() => read.write(0, new Uint8Array(512)), "r.img is open read-only");
    await expect(read.writeAsync(0, new Uint8Array(512))).rejects.toThrow(
      "r.img is open read-only",
    );
    refused(() => read.read(1024, new Uint8Array(512)), "[1024, 1536) is past the end");
    await expect(read.readAsync(1024, new Uint8Array(512))).rejects.toThrow(DiskRequestError);
    const rw = new RawImage(file, true);
    rw.write(512, new Uint8Array(512).fill(9));
    await rw.writeAsync(0, new Uint8Array(512).fill(8));
    expect(file.contents()[0]).toBe(8);
    expect(file.contents()[1023]).toBe(9);
    await expect(rw.writeAsync(1024, new Uint8Array(512))).rejects.toThrow("past the end");
    refused(() => rw.write(1024, new Uint8Array(512)), "past the end");
  });

  it("map as one extent of data at offset 0, or none when empty", () => {
    expect(new RawImage(new MemoryFile("r.img", new Uint8Array(2048))).map()).toEqual([
      { start: 0, length: 2048, depth: 0, data: true, zero: false, offset: 0 },
    ]);
    expect(new RawImage(new MemoryFile("e.img")).map()).toEqual([]);
  });
});

describe("format detection", () => {
  const cookie = Buffer.from("conectix", "latin1");

  it("finds the cookie in the last 512 bytes or the first, else calls the file raw", () => {
    const atEnd = new Uint8Array(4096);
    atEnd.set(cookie, 4096 - 512);
    expect(detectFormat(new MemoryFile("a", atEnd))).toBe("vpc");
    const atStart = new Uint8Array(4096);
    atStart.set(cookie, 0);
    expect(detectFormat(new MemoryFile("b", atStart))).toBe("vpc");
    // Anywhere else is data.
    const elsewhere = new Uint8Array(4096);
    elsewhere.set(cookie, 512);
    elsewhere.set(cookie, 4096 - 511);
    expect(detectFormat(new MemoryFile("c", elsewhere))).toBe("raw");
  });

  it("calls a file of exactly 512 bytes with the cookie a VHD, and one shorter raw", () => {
    const sector = new Uint8Array(512);
    sector.set(cookie, 0);
    expect(detectFormat(new MemoryFile("d", sector))).toBe("vpc");
    const short = new Uint8Array(511);
    short.set(cookie, 0);
    expect(detectFormat(new MemoryFile("e", short))).toBe("raw");
  });

  it("opens a raw file as raw and a VHD as a VHD, read-only unless asked", () => {
    const dir = testTempDir("storage-requests-");
    const raw = join(dir, "disk.img");
    writeFileSync(raw, new Uint8Array(4096).fill(1));
    const image = openImage(raw);
    expect(image).toBeInstanceOf(RawImage);
    expect(image.size).toBe(4096);
    expect(() => image.write(0, new Uint8Array(512))).toThrow("open read-only");
    image.close();
    const writable = openImage(raw, { writable: true });
    writable.write(0, new Uint8Array(512).fill(2));
    writable.close();
    const vhdFile = new MemoryFile("v.vhd");
    VhdImage.create(vhdFile, {
      type: "dynamic",
      size: 1024 * 1024,
      blockSize: 4096,
      now: 0,
    }).close();
    const vhd = join(dir, "disk.vhd");
    writeFileSync(vhd, vhdFile.contents());
    const opened = openImage(vhd);
    expect(opened).toBeInstanceOf(VhdImage);
    expect(opened.format).toBe("vpc");
    expect(() => opened.write(0, new Uint8Array(512))).toThrow("open read-only");
    opened.close();
    const rw = openImage(vhd, { writable: true, ordered: true });
    rw.write(0, new Uint8Array(512).fill(5));
    rw.close();
    // The format given wins over the bytes.
    const forced = openImage(vhd, { format: "raw" });
    expect(forced).toBeInstanceOf(RawImage);
    forced.close();
    const back = openImage(vhd);
    const sector = new Uint8Array(512);
    back.read(0, sector);
    expect(sector[0]).toBe(5);
    back.close();
  });
});

describe("workload specs", () => {
  const SPEC: IoSpec = {
    rw: "randrw",
    rwmixread: 70,
    bs: 4096,
    iodepth: 8,
    runtimeMs: 1000,
    seed: 1,
    verify: false,
  };
  const refuses = (change: Partial<IoSpec>, message: string) =>
    expect(() => checkIoSpec({ ...SPEC, ...change })).toThrow(new RangeError(message));
  const takes = (change: Partial<IoSpec>) =>
    expect(checkIoSpec({ ...SPEC, ...change })).toEqual({ ...SPEC, ...change });

  it("takes every limit on its near side", () => {
    for (const change of [
      { bs: 512 },
      { bs: 1 << 20 },
      { iodepth: 1 },
      { iodepth: 1024 },
      { rwmixread: 0 },
      { rwmixread: 100 },
      { zipf: 10 },
      { zipf: 0.01 },
      { runtimeMs: 3_600_000 },
      { runtimeMs: 0.5 },
    ]) {
      takes(change);
    }
  });

  it("refuses every limit on its far side, naming the field", () => {
    refuses(
      { rw: "trim" as IoSpec["rw"] },
      "rw must be one of read, write, randread, randwrite, randrw, rw, not trim",
    );
    for (const bs of [0, 511, 513, (1 << 20) + 512, 1536.5]) {
      refuses({ bs }, `bs must be a multiple of 512 from 512 to 1048576 bytes, not ${bs}`);
    }
    for (const iodepth of [0, 1025, 1.5]) {
      refuses({ iodepth }, `iodepth must be 1 to 1024, not ${iodepth}`);
    }
    for (const rwmixread of [-1, 101, Number.NaN]) {
      refuses({ rwmixread }, `rwmixread must be 0 to 100, not ${rwmixread}`);
    }
    for (const zipf of [0, 10.5, Number.NaN]) {
      refuses({ zipf }, `zipf exponent must be in (0, 10], not ${zipf}`);
    }
    for (const runtimeMs of [0, 3_600_001, Number.NaN]) {
      refuses({ runtimeMs }, `runtime must be 1 ms to 1 hour, not ${runtimeMs} ms`);
    }
  });

  it("reads all, none or the mix's share, and picks offsets at random only for rand modes", () => {
    expect(readShare({ ...SPEC, rw: "read" })).toBe(1);
    expect(readShare({ ...SPEC, rw: "randread" })).toBe(1);
    expect(readShare({ ...SPEC, rw: "write" })).toBe(0);
    expect(readShare({ ...SPEC, rw: "randwrite" })).toBe(0);
    expect(readShare({ ...SPEC, rw: "rw" })).toBe(0.7);
    expect(readShare(SPEC)).toBe(0.7);
    expect(IO_RANDOM.map((rw) => isRandom({ ...SPEC, rw }))).toEqual([
      false,
      false,
      true,
      true,
      true,
      false,
    ]);
  });
});

const IO_RANDOM = ["read", "write", "randread", "randwrite", "randrw", "rw"] as const;
