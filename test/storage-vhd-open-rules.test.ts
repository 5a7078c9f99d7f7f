import { describe, expect, it } from "vitest";
import { vhdChecksumOracle } from "../src/oracle/storage.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { ParentChainError, VhdFormatError } from "../src/storage/errors.js";
import { FOOTER_BYTES, Footer, Header, VHD_EPOCH_SECONDS } from "../src/storage/format.js";
import { blockProblems, type ParentSource, VhdImage } from "../src/storage/vhd.js";

// What opening a VHD refuses, one rule at a time, each refusal naming the
// field and its byte offset, and the value on the near side of each limit
// taken (Virtual Hard Disk Image Format Specification 1.0: the footer at
// the end and its copy at offset 0, the dynamic header, the BAT, the parent
// locators and the parent's unique id and time stamp).

const KiB = 1024;
const HEADER_AT = 512;
const TABLE_AT = 1536;

/** The bytes of a new image, every field fixed. */
function image(type: "fixed" | "dynamic", size: number, blockSize: number, writes: number[] = []) {
  const file = new MemoryFile(`/t/${type}.vhd`);
  const disk = VhdImage.create(file, {
    type,
    size,
    blockSize,
    now: Date.UTC(2020, 0, 1),
    uniqueId: new Uint8Array(16).fill(0x42),
  });
  for (const at of writes) disk.write(at, new Uint8Array(512).fill(0x5a));
  disk.close();
  return file.contents().slice();
}

function setU32(bytes: Uint8Array, at: number, value: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, value);
}
function setU64(bytes: Uint8Array, at: number, value: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset).setBigUint64(at, value);
}
/** Makes the checksum of the structure at `at` right again. */
function resum(bytes: Uint8Array, at: number, length: number, field: number): void {
  setU32(bytes, at + field, vhdChecksumOracle(bytes.subarray(at, at + length), field));
}
/** Sets a footer field in both footers (the end and the copy). */
function footerField(bytes: Uint8Array, field: number, value: number | bigint): void {
  for (const at of [0, bytes.length - FOOTER_BYTES]) {
    if (typeof value === "bigint") setU64(bytes, at + field, value);
    else setU32(bytes, at + field, value);
    resum(bytes, at, FOOTER_BYTES, Footer.checksum);
  }
}
function headerField(bytes: Uint8Array, field: number, value: number | bigint): void {
  if (typeof value === "bigint") setU64(bytes, HEADER_AT + field, value);
  else setU32(bytes, HEADER_AT + field, value);
  resum(bytes, HEADER_AT, 1024, Header.checksum);
}

function open(bytes: Uint8Array, options: Parameters<typeof VhdImage.open>[1] = {}) {
  return VhdImage.open(new MemoryFile("/t/disk.vhd", bytes), options);
}

function refusal(run: () => unknown): VhdFormatError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(VhdFormatError);
    return error as VhdFormatError;
  }
  throw new Error("opened without complaint");
}

function expectRefused(run: () => unknown, field: string, offset: number, detail: string): void {
  const error = refusal(run);
  expect({ field: error.field, offset: error.offset }).toEqual({ field, offset });
  expect(error.message).toBe(`${field} at offset ${offset} (0x${offset.toString(16)}): ${detail}`);
}

describe("opening the footer", () => {
  it("refuses a file shorter than a footer, and reads one of exactly a fixed footer", () => {
    expectRefused(
      () => open(new Uint8Array(511)),
      "footer",
      0,
      "the file has 511 bytes, a VHD has at least 512",
    );
    const empty = image("fixed", 512, 4096).subarray(512);
    expect(() => open(empty.slice())).toThrow(
      "footer current size at offset 48 (0x30): is 512 but the file holds only 0 bytes of data",
    );
  });

  it("refuses a fixed disk whose data is one sector short, and opens it whole", () => {
    const bytes = image("fixed", 16 * KiB, 4096);
    expect(open(bytes.slice()).size).toBe(16 * KiB);
    const short = new Uint8Array(bytes.length - 512);
    short.set(bytes.subarray(0, 16 * KiB - 512));
    short.set(bytes.subarray(16 * KiB), 16 * KiB - 512);
    const endAt = short.length - FOOTER_BYTES;
    expectRefused(
      () => open(short),
      "footer current size",
      endAt + 48,
      `is ${16 * KiB} but the file holds only ${endAt} bytes of data`,
    );
  });

  it("uses a dynamic disk's copy at offset 0 when the end is damaged, and says so", () => {
    const bytes = image("dynamic", 64 * KiB, 4096, [0]);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
    const disk = open(bytes);
    expect(disk.type).toBe("dynamic");
    expect(disk.notes).toEqual([
      `no valid footer at the end (footer checksum at offset ${bytes.length - 512 + 64} (0x${(bytes.length - 512 + 64).toString(16)}): is 0x${new DataView(bytes.buffer).getUint32(bytes.length - 512 + 64).toString(16)}, the footer sums to 0x${vhdChecksumOracle(bytes.subarray(bytes.length - 512), 64).toString(16)}); using the copy at offset 0`,
    ]);
    const sector = new Uint8Array(512);
    disk.read(0, sector);
    expect(sector.every((b) => b === 0x5a)).toBe(true);
    disk.close();
  });

  it("reports the end's error, not the copy's, when both are damaged or the copy is a fixed disk's", () => {
    const bytes = image("dynamic", 64 * KiB, 4096);
    const endAt = bytes.length - FOOTER_BYTES;
    bytes[endAt] = 0;
    bytes[0] = 0;
    const error = refusal(() => open(bytes));
    expect([error.field, error.offset]).toEqual(["footer cookie", endAt]);
    // A fixed disk whose first sector holds a valid fixed footer: the data, never a copy.
    const fixed = image("fixed", 16 * KiB, 4096);
    fixed.set(fixed.subarray(16 * KiB), 0);
    fixed[fixed.length - 1] = (fixed[fixed.length - 1] ?? 0) ^ 1;
    const fixedError = refusal(() => open(fixed));
    expect([fixedError.field, fixedError.offset]).toEqual(["footer checksum", 16 * KiB + 64]);
  });
});

describe("opening the dynamic header and the BAT", () => {
  it("refuses a data offset that leaves no room for the header, named in the footer in force", () => {
    const bytes = image("dynamic", 64 * KiB, 4096);
    const endAt = bytes.length - FOOTER_BYTES;
    footerField(bytes, Footer.dataOffset, BigInt(bytes.length - 1023));
    expectRefused(
      () => open(bytes),
      "footer data offset",
      endAt + 16,
      `${bytes.length - 1023} leaves no room for the 1024-byte header`,
    );
    // Read from the copy, the offset named is the copy's.
    bytes[endAt] = 0;
    expectRefused(
      () => open(bytes),
      "footer data offset",
      16,
      `${bytes.length - 1023} leaves no room for the 1024-byte header`,
    );
    // Exactly room for it: the header is read there (and is not one).
    const room = image("dynamic", 64 * KiB, 4096);
    footerField(room, Footer.dataOffset, BigInt(room.length - 1024));
    expect(refusal(() => open(room)).field).toBe("dynamic header cookie");
  });

  it("needs a BAT entry for each block, and no more than 2^26", () => {
    const bytes = image("dynamic", 64 * KiB, 4096);
    // 16 blocks: 15 entries refused, 16 taken.
    headerField(bytes, Header.maxTableEntries, 15);
    expectRefused(
      () => open(bytes),
      "dynamic header max table entries",
      HEADER_AT + 28,
      "is 15, the disk has 16 blocks",
    );
    const big = image("dynamic", 64 * KiB, 4096);
    headerField(big, Header.maxTableEntries, 2 ** 26 + 1);
    expectRefused(
      () => open(big),
      "dynamic header max table entries",
      HEADER_AT + 28,
      `is ${2 ** 26 + 1}, more than ${2 ** 26}`,
    );
    // 2^26 entries pass that rule and fail the next: the table does not fit the file.
    headerField(big, Header.maxTableEntries, 2 ** 26);
    expect(refusal(() => open(big)).field).toBe("dynamic header table offset");
  });

  it("refuses a table that is unaligned or passes the end of the file, and takes one that ends with it", () => {
    const bytes = image("dynamic", 64 * KiB, 4096);
    headerField(bytes, Header.tableOffset, BigInt(TABLE_AT + 4));
    expectRefused(
      () => open(bytes),
      "dynamic header table offset",
      HEADER_AT + 16,
      `BAT at ${TABLE_AT + 4} of 64 bytes is unaligned or passes the end of the file`,
    );
    // A table in the file's last sector fits (its entries are then the
    // footer's bytes, refused as blocks); one sector on, it passes the end.
    const fits = image("dynamic", 64 * KiB, 4096);
    headerField(fits, Header.tableOffset, BigInt(fits.length - 512));
    expect(refusal(() => open(fits.slice())).field).toBe("BAT entry 0");
    headerField(fits, Header.tableOffset, BigInt(fits.length));
    expectRefused(
      () => open(fits),
      "dynamic header table offset",
      HEADER_AT + 16,
      `BAT at ${fits.length} of 64 bytes is unaligned or passes the end of the file`,
    );
  });

  it("names the first BAT entry that is wrong, at its offset in the table", () => {
    const bytes = image("dynamic", 64 * KiB, 4096, [0]);
    // Entry 3 onto the dynamic header.
    setU32(bytes, TABLE_AT + 3 * 4, HEADER_AT / 512);
    expectRefused(
      () => open(bytes),
      "BAT entry 3",
      TABLE_AT + 12,
      "block at 512 overlaps the dynamic header at [512, 1536)",
    );
  });

  it("notes bytes left unused between the last block and the footer", () => {
    const bytes = image("dynamic", 64 * KiB, 4096, [0]);
    const grown = new Uint8Array(bytes.length + 4096);
    grown.set(bytes.subarray(0, bytes.length - 512));
    grown.set(bytes.subarray(bytes.length - 512), grown.length - 512);
    const disk = open(grown);
    expect(disk.notes).toEqual(["4096 bytes between the last block and the footer are unused"]);
    expect(disk.endOfData).toBe(grown.length - 512);
    disk.close();
    // As created, nothing is unused.
    const fresh = open(bytes);
    expect(fresh.notes).toEqual([]);
    fresh.close();
  });
});

describe("where blocks may lie", () => {
  const span = 512 + 4096;
  const layout = (bat: number[], blocks = 4) => ({
    bat: Uint32Array.from(bat),
    blocks,
    tableOffset: 1536,
    span,
    dataEnd: 100 * 512 + 2 * span,
    spans: [
      [0, 512, "footer copy"],
      [512, 1536, "dynamic header"],
      [1536, 2048, "BAT"],
    ] as const,
  });
  const NONE = 0xffffffff;
  const describeAll = (bat: number[], blocks?: number) =>
    blockProblems(layout(bat, blocks)).map((e) => [e.field, e.offset, e.message.split("): ")[1]]);

  it("takes blocks that touch metadata, each other and the end of the data", () => {
    // 4 and 13 touch the BAT's end and each other's; 100 + 9 ends at the data's end.
    expect(describeAll([4, 4 + span / 512, NONE, 100 + span / 512])).toEqual([]);
    expect(describeAll([NONE, NONE, NONE, NONE])).toEqual([]);
  });

  it("refuses a block past the disk's blocks, past the data, or overlapping by one sector", () => {
    expect(describeAll([NONE, NONE, NONE, NONE, 4], 4)).toEqual([
      ["BAT entry 4", 1536 + 16, "allocates a block past the disk's 4 blocks"],
    ]);
    expect(describeAll([101 + span / 512])).toEqual([
      [
        "BAT entry 0",
        1536,
        `block at ${(101 + span / 512) * 512} of ${span} bytes passes the end of the data (${100 * 512 + 2 * span})`,
      ],
    ]);
    expect(describeAll([3])).toEqual([
      ["BAT entry 0", 1536, "block at 1536 overlaps the BAT at [1536, 2048)"],
    ]);
    expect(describeAll([NONE, 0])).toEqual([
      ["BAT entry 1", 1540, "block at 0 overlaps the footer copy at [0, 512)"],
    ]);
    // Entry 2 starts one sector before entry 0's block ends.
    expect(describeAll([20, NONE, 20 + span / 512 - 1])).toEqual([
      [
        "BAT entry 2",
        1544,
        `block at ${(20 + span / 512 - 1) * 512} overlaps the block of BAT entry 0`,
      ],
    ]);
    // Found in the file's order, whatever the table's order.
    expect(describeAll([40, 20 + span / 512 - 1, 20])).toEqual([
      [
        "BAT entry 1",
        1540,
        `block at ${(20 + span / 512 - 1) * 512} overlaps the block of BAT entry 2`,
      ],
    ]);
  });

  it("reports every problem, not only the first", () => {
    expect(describeAll([0, 1, NONE, NONE, 7]).map(([field]) => field)).toEqual([
      "BAT entry 0",
      "BAT entry 1",
      "BAT entry 4",
    ]);
  });
});

describe("the parent of a differencing disk", () => {
  const PARENT_MTIME = (VHD_EPOCH_SECONDS + 700_000_000) * 1000;
  const parentBytes = () => image("dynamic", 64 * KiB, 4096, [0, 8192]);

  /** Parents from memory under their paths, with the modification times given. */
  const source = (
    files: Record<string, [Uint8Array, number]>,
    seen: string[] = [],
  ): ParentSource => ({
    open(candidates) {
      seen.push(...candidates);
      for (const path of candidates) {
        const entry = files[path];
        if (entry) return { file: new MemoryFile(path, entry[0].slice()), path, mtimeMs: entry[1] };
      }
      return undefined;
    },
  });

  function child(parent: Uint8Array, path = "/d/child.vhd", parentPath = "/d/base/parent.vhd") {
    const parents = source({ [parentPath]: [parent, PARENT_MTIME] });
    const image = VhdImage.open(new MemoryFile(parentPath, parent.slice()));
    const file = new MemoryFile(path);
    VhdImage.create(file, {
      type: "differencing",
      parent: { image, path: parentPath, mtimeMs: PARENT_MTIME },
      path,
      now: Date.UTC(2020, 0, 1),
      parents,
    }).close();
    image.close();
    return file.contents().slice();
  }

  it("looks at the relative locator, the absolute one, then the name beside the child", () => {
    const seen: string[] = [];
    const bytes = child(parentBytes());
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), { parents: source({}, seen) }),
    ).toThrow(
      new ParentChainError(
        '/d/child.vhd: parent "parent.vhd" not found (looked at /d/base/parent.vhd, /d/parent.vhd)',
      ),
    );
    expect(seen).toEqual(["/d/base/parent.vhd", "/d/parent.vhd"]);
    // Moved with its child to another folder, the relative path is tried first.
    const moved: string[] = [];
    expect(() =>
      VhdImage.open(new MemoryFile("/e/child.vhd", bytes), { parents: source({}, moved) }),
    ).toThrow(ParentChainError);
    expect(moved).toEqual(["/e/base/parent.vhd", "/d/base/parent.vhd", "/e/parent.vhd"]);
  });

  it("opens through the chain and reads the parent's sectors", () => {
    const parent = parentBytes();
    const disk = VhdImage.open(new MemoryFile("/d/child.vhd", child(parent)), {
      parents: source({ "/d/base/parent.vhd": [parent, PARENT_MTIME] }),
    });
    expect(disk.parentPath).toBe("/d/base/parent.vhd");
    const sector = new Uint8Array(512);
    disk.read(8192, sector);
    expect(sector.every((b) => b === 0x5a)).toBe(true);
    disk.read(4096, sector);
    expect(sector.every((b) => b === 0)).toBe(true);
    disk.close();
  });

  it("refuses a parent with another id, another size or a later time stamp, naming both sides", () => {
    const parent = parentBytes();
    const bytes = child(parent);
    const other = image("dynamic", 64 * KiB, 4096);
    footerField(other, Footer.uniqueId, 0x11111111);
    const id = (b: Uint8Array) => {
      const h = Buffer.from(b.subarray(b.length - 512 + 68, b.length - 512 + 84)).toString("hex");
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
    };
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), {
        parents: source({ "/d/base/parent.vhd": [other, PARENT_MTIME] }),
      }),
    ).toThrow(
      `/d/child.vhd: parent /d/base/parent.vhd has id ${id(other)}, the child expects ${id(parent)}`,
    );
    const bigger = image("dynamic", 128 * KiB, 4096);
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), {
        parents: source({ "/d/base/parent.vhd": [bigger, PARENT_MTIME] }),
      }),
    ).toThrow(
      `/d/child.vhd: parent /d/base/parent.vhd is ${128 * KiB} bytes, the child ${64 * KiB}`,
    );
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), {
        parents: source({ "/d/base/parent.vhd": [parent, PARENT_MTIME + 1000] }),
      }),
    ).toThrow(
      "/d/child.vhd: parent /d/base/parent.vhd was modified (time stamp 700000001) after the child was made (it records 700000000)",
    );
    // Within the same second it is the same time stamp.
    VhdImage.open(new MemoryFile("/d/child.vhd", bytes), {
      parents: source({ "/d/base/parent.vhd": [parent, PARENT_MTIME + 999] }),
    }).close();
  });

  it("refuses a chain that names the child itself, or deeper than 32 images", () => {
    const parent = parentBytes();
    const bytes = child(parent);
    // The child's bytes under its parent's path: its absolute locator names itself.
    expect(() =>
      VhdImage.open(new MemoryFile("/d/base/parent.vhd", bytes), { parents: source({}) }),
    ).toThrow(
      new ParentChainError("/d/base/parent.vhd: the parent chain loops back to /d/base/parent.vhd"),
    );
    // Or a parent already open further down the chain.
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", bytes), {
        parents: source({}),
        chain: ["/d/x.vhd", "/d/parent.vhd"],
      }),
    ).toThrow(new ParentChainError("/d/child.vhd: the parent chain loops back to /d/parent.vhd"));
    const deep = child(parent);
    const chain = Array.from({ length: 32 }, (_, i) => `/d/c${i}.vhd`);
    expect(() =>
      VhdImage.open(new MemoryFile("/d/child.vhd", deep), { parents: source({}), chain }),
    ).toThrow(new ParentChainError("/d/child.vhd: differencing chain deeper than 32 images"));
    // 31 images below: one more is still taken.
    const ok = VhdImage.open(new MemoryFile("/d/child.vhd", deep), {
      parents: source({ "/d/base/parent.vhd": [parent, PARENT_MTIME] }),
      chain: chain.slice(1),
    });
    ok.close();
  });
});

describe("creating", () => {
  it("refuses a size that is not whole sectors from 512 bytes to 2040 GiB", () => {
    for (const size of [0, -512, 511, 2040 * 1024 ** 3 + 512, 1024.5]) {
      expect(() => VhdImage.create(new MemoryFile("c"), { type: "fixed", size })).toThrow(
        new RangeError(`disk size must be a positive multiple of 512 up to 2040 GiB, not ${size}`),
      );
    }
  });

  it("refuses a differencing disk without a parent, a parent to the others, and a bad block size", () => {
    expect(() => VhdImage.create(new MemoryFile("c"), { type: "differencing", size: 512 })).toThrow(
      new RangeError("a differencing disk needs a parent"),
    );
    const parent = VhdImage.open(new MemoryFile("p", image("dynamic", 64 * KiB, 4096)));
    expect(() =>
      VhdImage.create(new MemoryFile("c"), {
        type: "dynamic",
        parent: { image: parent, path: "p", mtimeMs: 0 },
      }),
    ).toThrow(new RangeError("a dynamic disk has no parent"));
    parent.close();
    for (const blockSize of [256, 1536, 512 * 1024 * 1024]) {
      expect(() =>
        VhdImage.create(new MemoryFile("c"), { type: "dynamic", size: 64 * KiB, blockSize }),
      ).toThrow(
        new RangeError(`block size must be a power of two from 512 to 268435456, not ${blockSize}`),
      );
    }
  });

  it("lays a dynamic disk out as footer copy, header, BAT of all ones, then the footer, 2 MiB blocks by default", () => {
    const file = new MemoryFile("n.vhd");
    VhdImage.create(file, { type: "dynamic", size: 6 * 1024 * KiB, now: 0 }).close();
    const bytes = file.contents();
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(
      Buffer.from(bytes.subarray(0, 512)).equals(Buffer.from(bytes.subarray(bytes.length - 512))),
    ).toBe(true);
    expect(view.getBigUint64(16)).toBe(512n);
    expect(Buffer.from(bytes.subarray(512, 520)).toString("latin1")).toBe("cxsparse");
    expect(view.getBigUint64(512 + 16)).toBe(1536n);
    expect(view.getUint32(512 + 28)).toBe(3);
    expect(view.getUint32(512 + 32)).toBe(2 * 1024 * KiB);
    // The BAT's sector: three entries and the rest of the sector, all ones.
    expect(bytes.subarray(1536, 2048).every((b) => b === 0xff)).toBe(true);
    // The first block's data (after its 512-byte bitmap) would start on a page.
    expect((bytes.length - 512 + 512) % 4096).toBe(0);
    expect(view.getUint32(bytes.length - 512 + 60)).toBe(3);
    // A fixed disk: its data, then its footer, no copy.
    const fixed = new MemoryFile("f.vhd");
    VhdImage.create(fixed, { type: "fixed", size: 4096, now: 0 }).close();
    expect(fixed.size()).toBe(4096 + 512);
    expect(
      fixed
        .contents()
        .subarray(0, 4096)
        .every((b) => b === 0),
    ).toBe(true);
  });
});
