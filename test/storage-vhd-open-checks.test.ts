import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { DiskRequestError, ParentChainError, VhdFormatError } from "../src/storage/errors.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";
import { expectSameBytes } from "./support/bytes.js";
import { HEADER_AT, resum, TABLE_AT, vhdImage, viewOf } from "./support/vhd-damage.js";

/*
 * What opening a VHD checks before it trusts a byte, after Microsoft's
 * "Virtual Hard Disk Image Format Specification" (October 2006):
 *
 * - "Hard Disk Footer Format": the footer at the end is the one in force,
 *   and a dynamic disk keeps a copy at offset 0 "for redundancy"; a footer,
 *   dynamic header, BAT or locator the file cannot deliver in full is
 *   refused naming the structure, its offset and the file's size, so that a
 *   disk cut short (or shrunk while opened) is never read as zeros.
 * - "Dynamic Disk Header Format": the BAT may end with the file but not
 *   pass it; blocks may overlap no metadata, and the error names which.
 * - "Parent Locator Entry": entries with platform code 0 are unused; the
 *   data space is a count of sectors (Windows writes bytes, told apart by
 *   size); only W2ru and W2ku hold paths, relative ones tried first; data
 *   that passes the end of the file or 64 KiB is refused at its entry.
 * - "Parent Unicode Name" and the parent checks of differencing disks: the
 *   name is a file name beside the child; parents open read-only through
 *   the same source, down a chain of at most 32 differencing disks, and a
 *   loop or a damaged parent is refused with the parent's own error.
 */

const KiB = 1024;
/** Parent locator entries: 8 x 24 bytes at header offset 576 (specification). */
const LOCATORS_AT = HEADER_AT + 576;
const LOCATOR_BYTES = 24;
/** Dynamic header checksum field offset. */
const HEADER_CHECKSUM = 36;
/** Platform codes: "W2ru", "W2ku" and Mac OS X's "MacX" (specification, Parent Locator Entry). */
const W2RU = 0x57327275;
const W2KU = 0x57326b75;
const MACX = 0x4d616358;
/** Any modification time: the parents' in these tests, recorded by their children. */
const PARENT_MTIME = (946_684_800 + 600_000_000) * 1000;

type Files = Record<string, Uint8Array>;

/** A file that says it is `claimed` bytes long but holds fewer: cut after its size was read. */
class CutFile extends MemoryFile {
  constructor(
    name: string,
    bytes: Uint8Array,
    private readonly claimed: number,
  ) {
    super(name, bytes);
  }
  override size(): number {
    return this.claimed;
  }
}

/** A memory file that counts its fdatasyncs and knows whether it was closed. */
class WatchedFile extends MemoryFile {
  syncs = 0;
  closed = false;
  override sync(): void {
    this.syncs++;
  }
  override close(): void {
    this.closed = true;
  }
}

/** Parents from memory under their paths; records every candidate list and every file opened. */
function source(files: Files, seen: string[] = [], opened: MemoryFile[] = []): ParentSource {
  return {
    open(candidates) {
      seen.push(...candidates);
      for (const path of candidates) {
        const bytes = files[path];
        if (bytes) {
          const file = new MemoryFile(path, bytes.slice());
          opened.push(file);
          return { file, path, mtimeMs: PARENT_MTIME };
        }
      }
      return undefined;
    },
  };
}

/** The bytes of a new differencing disk at `path` whose parent is `files[parentPath]`. */
function differencing(files: Files, path: string, parentPath: string): Uint8Array {
  const bytes = files[parentPath];
  if (!bytes) throw new Error(`no ${parentPath}`);
  const parents = source(files);
  const parent = VhdImage.open(new MemoryFile(parentPath, bytes.slice()), { parents });
  const file = new MemoryFile(path);
  VhdImage.create(file, {
    type: "differencing",
    parent: { image: parent, path: parentPath, mtimeMs: PARENT_MTIME },
    path,
    now: Date.UTC(2020, 0, 1),
    parents,
  }).close();
  parent.close();
  return file.contents().slice();
}

const PARENT = "/d/base/parent.vhd";
const CHILD = "/d/child.vhd";

/**
 * A 64 KiB parent in 4 KiB blocks (sector 0 written) and its child. The
 * child is laid out as footer copy (0), header (512), BAT of 16 entries in
 * one sector (1536), W2ru data "./base/parent.vhd" (2048, one sector), W2ku
 * data "/d/base/parent.vhd" (2560, one sector), then the footer at 3584,
 * where the first block's bitmap would go so that its data starts at 4096.
 */
function family(): { files: Files; child: Uint8Array } {
  const files: Files = { [PARENT]: vhdImage("dynamic", 64 * KiB, [0]) };
  return { files, child: differencing(files, CHILD, PARENT) };
}

function setLocator(
  bytes: Uint8Array,
  i: number,
  code: number,
  space: number,
  length: number,
  offset: number,
): void {
  const at = LOCATORS_AT + i * LOCATOR_BYTES;
  const view = viewOf(bytes);
  view.setUint32(at, code);
  view.setUint32(at + 4, space);
  view.setUint32(at + 8, length);
  view.setBigUint64(at + 16, BigInt(offset));
  resum(bytes, HEADER_AT, 1024, HEADER_CHECKSUM);
}

/** Writes `path` as locator data (UTF-16 little-endian); returns its length in bytes. */
function setLocatorData(bytes: Uint8Array, at: number, path: string): number {
  const data = Buffer.from(path, "utf16le");
  bytes.set(data, at);
  return data.length;
}

/** Writes the header's parent name (UTF-16 big-endian, 512 bytes at header offset 64). */
function setParentName(bytes: Uint8Array, name: string): void {
  bytes.fill(0, HEADER_AT + 64, HEADER_AT + 576);
  bytes.set(Buffer.from(name, "utf16le").swap16(), HEADER_AT + 64);
  resum(bytes, HEADER_AT, 1024, HEADER_CHECKSUM);
}

/** The same image with `extra` zero bytes before its footer. */
function grown(bytes: Uint8Array, extra: number): Uint8Array {
  const out = new Uint8Array(bytes.length + extra);
  out.set(bytes.subarray(0, bytes.length - 512));
  out.set(bytes.subarray(bytes.length - 512), out.length - 512);
  return out;
}

function openChild(bytes: Uint8Array, files: Files, seen: string[] = []): VhdImage {
  return VhdImage.open(new MemoryFile(CHILD, bytes), { parents: source(files, seen) });
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

/** The candidates a parent was looked for at, from the "not found" error. */
function lookedAt(bytes: Uint8Array): string[] {
  const seen: string[] = [];
  expect(() => openChild(bytes, {}, seen)).toThrow(ParentChainError);
  return seen;
}

describe("reading each structure whole", () => {
  it("refuses a footer the file cannot deliver in full, naming it, its offset and the file's size", () => {
    // A 16 KiB fixed disk (16896 bytes) that says it has one more sector.
    const bytes = vhdImage("fixed", 16 * KiB);
    expect(bytes.length).toBe(16 * KiB + 512);
    expectRefused(
      () => VhdImage.open(new CutFile("/c/cut.vhd", bytes, 17408)),
      "footer",
      16896,
      "512 bytes there pass the end of the file (17408 bytes)",
    );
  });

  it("refuses a dynamic header cut short, after the footer copy stood in for the lost end", () => {
    const bytes = vhdImage("dynamic", 64 * KiB);
    expect(bytes.length).toBe(4096);
    expectRefused(
      () => VhdImage.open(new CutFile("/c/cut.vhd", bytes.slice(0, 1000), 4096)),
      "dynamic header",
      HEADER_AT,
      "1024 bytes there pass the end of the file (4096 bytes)",
    );
  });

  it("refuses a BAT cut short, naming the table at its offset", () => {
    // 64 KiB in 4 KiB blocks: 16 entries, 64 bytes.
    const bytes = vhdImage("dynamic", 64 * KiB);
    expectRefused(
      () => VhdImage.open(new CutFile("/c/cut.vhd", bytes.slice(0, TABLE_AT + 4), 4096)),
      "BAT",
      TABLE_AT,
      "64 bytes there pass the end of the file (4096 bytes)",
    );
  });

  it("refuses a parent locator's data cut short, naming the locator's data at its offset", () => {
    const { child } = family();
    expect(child.length).toBe(4096);
    // "./base/parent.vhd", 17 UTF-16 characters, at 2048.
    expectRefused(
      () => VhdImage.open(new CutFile(CHILD, child.slice(0, 2050), 4096)),
      "parent locator 0 data",
      2048,
      "34 bytes there pass the end of the file (4096 bytes)",
    );
  });
});

describe("a fixed disk", () => {
  it("opens read-only unless asked for writing, with no dynamic header", () => {
    const bytes = vhdImage("fixed", 16 * KiB);
    const disk = VhdImage.open(new MemoryFile("/c/f.vhd", bytes.slice()));
    expect(disk.headerOffset).toBe(-1);
    expect(disk.header).toBeUndefined();
    expect(() => disk.write(0, new Uint8Array(512))).toThrow(
      new DiskRequestError("/c/f.vhd is open read-only"),
    );
    disk.close();
    const writable = VhdImage.open(new MemoryFile("/c/f.vhd", bytes.slice()), { writable: true });
    writable.write(0, new Uint8Array(512).fill(7));
    const sector = new Uint8Array(512);
    writable.read(0, sector);
    expect(sector.every((b) => b === 7)).toBe(true);
    writable.close();
  });
});

describe("the BAT and the metadata around it", () => {
  it("takes a table that ends exactly at the end of the file, and refuses one entry more", () => {
    // The end footer lost under a table of 128 unallocated entries in the
    // last sector (3584..4096); the copy at offset 0 is in force.
    const bytes = vhdImage("dynamic", 64 * KiB);
    bytes.fill(0xff, 3584, 4096);
    viewOf(bytes).setBigUint64(HEADER_AT + 16, 3584n);
    viewOf(bytes).setUint32(HEADER_AT + 28, 128);
    resum(bytes, HEADER_AT, 1024, HEADER_CHECKSUM);
    const disk = VhdImage.open(new MemoryFile("/c/t.vhd", bytes.slice()));
    expect(disk.blockTable.length).toBe(128);
    expect(disk.endOfData).toBe(4096);
    disk.close();
    viewOf(bytes).setUint32(HEADER_AT + 28, 129);
    resum(bytes, HEADER_AT, 1024, HEADER_CHECKSUM);
    expectRefused(
      () => VhdImage.open(new MemoryFile("/c/t.vhd", bytes)),
      "dynamic header table offset",
      HEADER_AT + 16,
      "BAT at 3584 of 516 bytes is unaligned or passes the end of the file",
    );
  });

  it("names the footer copy and the BAT, with their extents, when a block overlaps them", () => {
    // Block 0 at 3584 (its data at 4096), the footer at 8192.
    const bytes = vhdImage("dynamic", 64 * KiB, [0]);
    expect(bytes.length).toBe(8704);
    const onCopy = bytes.slice();
    viewOf(onCopy).setUint32(TABLE_AT + 4, 0);
    expectRefused(
      () => VhdImage.open(new MemoryFile("/c/b.vhd", onCopy)),
      "BAT entry 1",
      TABLE_AT + 4,
      "block at 0 overlaps the footer copy at [0, 512)",
    );
    const onTable = bytes.slice();
    viewOf(onTable).setUint32(TABLE_AT + 4, TABLE_AT / 512);
    expectRefused(
      () => VhdImage.open(new MemoryFile("/c/b.vhd", onTable)),
      "BAT entry 1",
      TABLE_AT + 4,
      "block at 1536 overlaps the BAT at [1536, 2048)",
    );
  });

  it("ends the data after the last metadata when the footer copy stands in", () => {
    const dynamic = vhdImage("dynamic", 64 * KiB);
    dynamic.fill(0, 3584);
    const disk = VhdImage.open(new MemoryFile("/c/m.vhd", dynamic));
    // After the BAT's one sector.
    expect(disk.endOfData).toBe(2048);
    disk.close();
    const { files, child } = family();
    child.fill(0, 3584);
    const diff = openChild(child, files);
    // After the W2ku locator's sector.
    expect(diff.endOfData).toBe(3072);
    diff.close();
  });

  it("notes no unused bytes when the gap before the footer only aligns the first block's data", () => {
    // No block: the footer at 3584 is where the first block's bitmap goes.
    const disk = VhdImage.open(new MemoryFile("/c/n.vhd", vhdImage("dynamic", 64 * KiB)));
    expect(disk.notes).toEqual([]);
    disk.close();
    const wider = VhdImage.open(
      new MemoryFile("/c/n.vhd", grown(vhdImage("dynamic", 64 * KiB), 512)),
    );
    expect(wider.notes).toEqual(["2048 bytes between the last block and the footer are unused"]);
    wider.close();
  });
});

describe("parent locators", () => {
  it("ignores an entry whose platform code is 0, whatever its other fields hold", () => {
    const { files, child } = family();
    setLocator(child, 3, 0, 0xffffffff, 0x10000000, 2 ** 40);
    const disk = openChild(child, files);
    expect(disk.endOfData).toBe(3584);
    disk.close();
  });

  it("refuses data past the end of the file at its entry, and takes data that ends with the file", () => {
    // The end footer lost: the last sector (3584..4096) may hold locator data.
    const { files, child } = family();
    child.fill(0, 3584);
    setLocator(child, 2, MACX, 1, 512, 3584);
    const disk = openChild(child.slice(), files);
    expect(disk.endOfData).toBe(4096);
    disk.close();
    setLocator(child, 2, MACX, 2, 513, 3584);
    expectRefused(
      () => openChild(child, files),
      "parent locator 2",
      LOCATORS_AT + 2 * LOCATOR_BYTES,
      "data of 513 bytes at 3584 passes the end of the file or 65536 bytes",
    );
  });

  it("refuses data longer than 64 KiB even inside the file, and takes 64 KiB", () => {
    const { files, child } = family();
    const big = grown(child, 129 * 512);
    expect(big.length).toBe(70144);
    setLocator(big, 2, MACX, 128, 65536, 3584);
    openChild(big.slice(), files).close();
    setLocator(big, 2, MACX, 129, 65537, 3584);
    expectRefused(
      () => openChild(big, files),
      "parent locator 2",
      LOCATORS_AT + 2 * LOCATOR_BYTES,
      "data of 65537 bytes at 3584 passes the end of the file or 65536 bytes",
    );
  });

  it("reads the data space in sectors, or in bytes from 512 on (as Windows writes it)", () => {
    // The child with block 0 at 3584..8192; locator 2's data at 3072.
    const { files, child } = family();
    const written = new MemoryFile(CHILD, child.slice());
    const writable = VhdImage.open(written, { writable: true, parents: source(files) });
    writable.write(0, new Uint8Array(512).fill(3));
    writable.close();
    const bytes = written.contents().slice();
    expect(viewOf(bytes).getUint32(TABLE_AT)).toBe(3584 / 512);
    const at = (space: number) => {
      const b = bytes.slice();
      setLocator(b, 2, MACX, space, 512, 3072);
      return () => openChild(b, files).close();
    };
    // 2 sectors: 3072..4096 holds the block's bitmap.
    expectRefused(
      at(2),
      "BAT entry 0",
      TABLE_AT,
      "block at 3584 overlaps the parent locator 2 data at [3072, 4096)",
    );
    // One sector, or 512 bytes: up to the block.
    at(1)();
    at(512)();
    // 1024 bytes.
    expectRefused(
      at(1024),
      "BAT entry 0",
      TABLE_AT,
      "block at 3584 overlaps the parent locator 2 data at [3072, 4096)",
    );
  });

  it("takes paths only from W2ru and W2ku entries, not from a Mac OS X entry's data", () => {
    const { files, child } = family();
    const length = setLocatorData(child, 3072, "/m/other.vhd");
    setLocator(child, 2, MACX, 1, length, 3072);
    const seen: string[] = [];
    const disk = openChild(child, files, seen);
    expect(disk.parentPath).toBe(PARENT);
    expect(seen).toEqual([PARENT, "/d/parent.vhd"]);
    disk.close();
  });

  it("drops the NULs that end an absolute locator's path", () => {
    const { files, child } = family();
    setLocator(child, 0, 0, 0, 0, 0);
    const length = setLocatorData(child, 2560, "\\d\\base\\parent.vhd\0\0");
    setLocator(child, 1, W2KU, 1, length, 2560);
    const seen: string[] = [];
    const disk = openChild(child, files, seen);
    expect(seen).toEqual([PARENT, "/d/parent.vhd"]);
    expect(disk.parentPath).toBe(PARENT);
    disk.close();
  });

  it("tries relative locators first, then absolute ones, each in table order, then the name", () => {
    const { child } = family();
    const bytes = grown(child, 1024);
    const entries: [number, string][] = [
      [W2KU, "\\p\\a.vhd"],
      [W2RU, ".\\b.vhd"],
      [W2KU, "\\p\\f.vhd"],
      [W2RU, "c.vhd"],
      // Not absolute: no place to look.
      [W2KU, "sub\\e.vhd"],
    ];
    entries.forEach(([code, path], i) => {
      const at = 2048 + i * 512;
      setLocator(bytes, i, code, 1, setLocatorData(bytes, at, path), at);
    });
    expect(lookedAt(bytes)).toEqual([
      "/d/b.vhd",
      "/d/c.vhd",
      "/p/a.vhd",
      "/p/f.vhd",
      "/d/parent.vhd",
    ]);
  });

  it("takes the parent name's last component when the name is a Windows path", () => {
    const { child } = family();
    setParentName(child, "C:\\vms\\base\\parent.vhd");
    expect(lookedAt(child)).toEqual([PARENT, "/d/parent.vhd"]);
  });

  it("with no parent name looks only at the locators, and with neither says there is no path", () => {
    const { child } = family();
    setParentName(child, "");
    expect(lookedAt(child)).toEqual([PARENT]);
    setLocator(child, 0, 0, 0, 0, 0);
    setLocator(child, 1, 0, 0, 0, 0);
    expect(() => openChild(child, {})).toThrow(
      new ParentChainError(
        `${CHILD}: parent "" not found (looked at no path: no locator and no name)`,
      ),
    );
  });
});

describe("the parents of a differencing disk", () => {
  it("opens a grandparent through the same parent source", () => {
    const files: Files = { "/d/p.vhd": vhdImage("dynamic", 64 * KiB, [0]) };
    files["/d/c.vhd"] = differencing(files, "/d/c.vhd", "/d/p.vhd");
    const grandchild = differencing(files, "/d/g.vhd", "/d/c.vhd");
    const disk = VhdImage.open(new MemoryFile("/d/g.vhd", grandchild), {
      parents: source(files),
    });
    expect(disk.parentPath).toBe("/d/c.vhd");
    expect(disk.parent?.parentPath).toBe("/d/p.vhd");
    const sector = new Uint8Array(512);
    disk.read(0, sector);
    expect(sector.every((b) => b === 1)).toBe(true);
    disk.close();
  });

  it("refuses two disks that name each other as parent, as a loop found one level down", () => {
    const files: Files = { "/d/b.vhd": vhdImage("dynamic", 64 * KiB) };
    files["/d/a.vhd"] = differencing(files, "/d/a.vhd", "/d/b.vhd");
    // A child of a.vhd made beside it, then put where a.vhd's parent was.
    files["/d/b.vhd"] = differencing(files, "/d/b2.vhd", "/d/a.vhd");
    expect(() =>
      VhdImage.open(new MemoryFile("/d/a.vhd", files["/d/a.vhd"]), { parents: source(files) }),
    ).toThrow(new ParentChainError("/d/b.vhd: the parent chain loops back to /d/a.vhd"));
  });

  it("opens a parent read-only: a damaged end footer is read through its copy, the file left as it was", () => {
    const { files, child } = family();
    const parent = files[PARENT] ?? new Uint8Array();
    parent[parent.length - 1] = (parent[parent.length - 1] ?? 0) ^ 1;
    const opened: MemoryFile[] = [];
    const disk = VhdImage.open(new MemoryFile(CHILD, child), {
      parents: source(files, [], opened),
    });
    expect(disk.parent?.notes).toHaveLength(1);
    expect(opened).toHaveLength(1);
    expectSameBytes(opened[0]?.contents() ?? new Uint8Array(), parent, "parent");
    disk.close();
  });

  it("refuses a damaged parent with the parent's own error, and closes the parent's file", () => {
    const { child } = family();
    const junk = new WatchedFile(PARENT, new Uint8Array(4096));
    const parents: ParentSource = {
      open: () => ({ file: junk, path: PARENT, mtimeMs: PARENT_MTIME }),
    };
    // Neither its end (3584) nor its start holds a footer.
    expectRefused(
      () => VhdImage.open(new MemoryFile(CHILD, child), { parents }),
      "footer cookie",
      3584,
      'is "\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000\\u0000", not "conectix"',
    );
    expect(junk.closed).toBe(true);
  });

  it("follows 32 differencing disks from the top, and refuses a 33rd", () => {
    const files: Files = { "/c/d0.vhd": vhdImage("dynamic", 4 * KiB) };
    for (let k = 1; k <= 32; k++) {
      files[`/c/d${k}.vhd`] = differencing(files, `/c/d${k}.vhd`, `/c/d${k - 1}.vhd`);
    }
    const top = VhdImage.open(new MemoryFile("/c/d32.vhd", files["/c/d32.vhd"]), {
      parents: source(files),
    });
    let depth = 0;
    for (let at: VhdImage | undefined = top; at?.parent; at = at.parent) depth++;
    expect(depth).toBe(32);
    top.close();
    // From the 33rd, the first differencing disk is 32 below the top.
    expect(() => differencing(files, "/c/d33.vhd", "/c/d32.vhd")).toThrow(
      new ParentChainError("/c/d1.vhd: differencing chain deeper than 32 images"),
    );
  });
});

describe("an image opened ordered", () => {
  it("fdatasyncs after a new block's data and after its BAT entry, and not otherwise", () => {
    const bytes = vhdImage("dynamic", 64 * KiB);
    const ordered = new WatchedFile("/c/o.vhd", bytes.slice());
    const disk = VhdImage.open(ordered, { writable: true, ordered: true });
    disk.write(0, new Uint8Array(512).fill(9));
    expect(ordered.syncs).toBe(2);
    disk.close();
    const plain = new WatchedFile("/c/o.vhd", bytes.slice());
    const other = VhdImage.open(plain, { writable: true });
    other.write(0, new Uint8Array(512).fill(9));
    expect(plain.syncs).toBe(0);
    other.close();
  });
});
