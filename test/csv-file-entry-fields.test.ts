import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import {
  checkName,
  clustersFor,
  encodeFileEntry,
  FileEntryField as F,
  type FileEntry,
  parseFileEntry,
} from "../src/csv/file-entry.js";
import { type Spoil, spoiledSector } from "./support/csv-sector.js";

// A file-table entry (docs/csv.md): one sector per slot, each field at its
// offset, little-endian, the CRC-32C over bytes 0 to 507; each refusal
// names its field and its offset on the LUN, on both sides of each bound.

/** The entry's sector sits at this byte of the LUN in every case below. */
const AT = 0x1_0000;
const CLUSTER = 4096;
const DATA_CLUSTERS = 100;
const ENTRY: FileEntry = {
  name: "vm1.vhd",
  size: 3 * CLUSTER + 1,
  extents: [
    { first: 10, count: 3 },
    { first: 40, count: 1 },
  ],
  createdGeneration: 0x0a0b_0c0d_0e0f,
  writtenEpoch: 7,
};

/** `ENTRY`'s sector with `spoil` applied and the CRC rewritten. */
function spoiled(spoil: Spoil, entry = ENTRY): Uint8Array {
  return spoiledSector(encodeFileEntry, entry, F.crc, spoil);
}

const parse = (bytes: Uint8Array) => parseFileEntry(bytes, AT, DATA_CLUSTERS, CLUSTER);

/** The message of the VolumeFormatError parsing `bytes` throws. */
function refusal(bytes: Uint8Array): string {
  try {
    parse(bytes);
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return (error as Error).message;
  }
  throw new Error("parsed without a refusal");
}

/** "file entry <field> at offset AT + at (hex): detail" */
const said = (field: string, at: number, detail: string) =>
  `file entry ${field} at offset ${AT + at} (0x${(AT + at).toString(16)}): ${detail}`;

describe("a file-table entry's fields", () => {
  it("writes every field at its offset, little-endian, and reads them back", () => {
    const bytes = encodeFileEntry(ENTRY);
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(0, true)).toBe(1);
    expect(view.getUint16(4, true)).toBe(7);
    expect(view.getUint16(6, true)).toBe(2);
    expect(view.getBigUint64(8, true)).toBe(BigInt(3 * CLUSTER + 1));
    expect(view.getBigUint64(16, true)).toBe(0x0a0b_0c0d_0e0fn);
    expect(view.getBigUint64(24, true)).toBe(7n);
    expect(new TextDecoder().decode(bytes.subarray(32, 39))).toBe("vm1.vhd");
    expect(bytes.subarray(39, 160).every((b) => b === 0)).toBe(true);
    expect([160, 164, 168, 172].map((o) => view.getUint32(o, true))).toEqual([10, 3, 40, 1]);
    expect(bytes.subarray(176, 508).every((b) => b === 0)).toBe(true);
    expect(view.getUint32(508, true)).toBe(crc32c(bytes.subarray(0, 508)));
    expect(parse(bytes)).toEqual(ENTRY);
  });

  it("reads an entry from a sector that does not start its ArrayBuffer", () => {
    const table = new Uint8Array(3 * 512);
    table.set(encodeFileEntry(ENTRY), 512);
    expect(parse(table.subarray(512, 1024))).toEqual(ENTRY);
  });

  it("reads 512 zero bytes as a free slot, and refuses a free slot with any other byte, naming it", () => {
    expect(parse(new Uint8Array(512))).toBeUndefined();
    for (const at of [4, 200, 511]) {
      const bytes = new Uint8Array(512);
      bytes[at] = 1;
      expect(refusal(bytes)).toBe(
        `free file entry at offset ${AT + at} (0x${(AT + at).toString(16)}): a free slot must be all zeros`,
      );
    }
  });

  it("refuses a sector of another length", () => {
    expect(() => parse(new Uint8Array(511))).toThrow(
      new RangeError("a file entry is 512 bytes, not 511"),
    );
    expect(() => parse(new Uint8Array(513))).toThrow(/not 513$/);
  });

  it("refuses a CRC off by one, stating both", () => {
    const bytes = encodeFileEntry(ENTRY);
    const view = new DataView(bytes.buffer);
    const crc = view.getUint32(508, true);
    view.setUint32(508, (crc + 1) >>> 0, true);
    expect(refusal(bytes)).toBe(
      said(
        "checksum",
        508,
        `stored 0x${((crc + 1) >>> 0).toString(16)}, computed 0x${crc.toString(16)}`,
      ),
    );
  });

  it("refuses each field out of its bounds, at its offset, when the CRC matches", () => {
    const cases: [string, (v: DataView, b: Uint8Array) => void, string][] = [
      [
        "state 2",
        (v) => v.setUint32(0, 2, true),
        said("state", 0, "2 is neither 0 (free) nor 1 (used)"),
      ],
      [
        "name length 0",
        (v) => v.setUint16(4, 0, true),
        said("name length", 4, "0 is not 1 to 128"),
      ],
      [
        "name length 129",
        (v) => v.setUint16(4, 129, true),
        said("name length", 4, "129 is not 1 to 128"),
      ],
      [
        "44 extents",
        (v) => v.setUint16(6, 44, true),
        said("extent count", 6, "44 is more than 43"),
      ],
      [
        "size 2^53",
        (v) => v.setBigUint64(8, 1n << 53n, true),
        said("size", 8, "9007199254740992 is beyond 2^53"),
      ],
      [
        "created 2^53",
        (v) => v.setBigUint64(16, 1n << 53n, true),
        said("created generation", 16, "9007199254740992 is beyond 2^53"),
      ],
      [
        "written 2^53",
        (v) => v.setBigUint64(24, 1n << 53n, true),
        said("written epoch", 24, "9007199254740992 is beyond 2^53"),
      ],
      ["name not UTF-8", (_v, b) => b.set([0xff], 33), said("name", 32, "is not UTF-8")],
      [
        "name with a slash",
        (_v, b) => b.set([0x2f], 33),
        said("name", 32, '"v/1.vhd" holds NUL, / or \\'),
      ],
      [
        "name with a NUL",
        (_v, b) => b.set([0], 33),
        said("name", 32, '"v\\u00001.vhd" holds NUL, / or \\'),
      ],
      ["name padding first", (_v, b) => b.set([1], 39), said("name padding", 39, "must be zero")],
      ["name padding last", (_v, b) => b.set([1], 159), said("name padding", 159, "must be zero")],
      [
        "extent past the count",
        (v) => v.setUint32(176, 5, true),
        said("extent 2", 176, "past the extent count, must be zero"),
      ],
      [
        "its count past the count",
        (v) => v.setUint32(180, 5, true),
        said("extent 2", 176, "past the extent count, must be zero"),
      ],
      [
        "last extent slot",
        (v) => v.setUint32(500, 1, true),
        said("extent 42", 496, "past the extent count, must be zero"),
      ],
      [
        "an empty extent",
        (v) => v.setUint32(172, 0, true),
        said("extent 1 count", 172, "an extent holds at least one cluster"),
      ],
      ["padding first", (_v, b) => b.set([1], 504), said("padding", 504, "must be zero")],
      ["padding last", (_v, b) => b.set([1], 507), said("padding", 507, "must be zero")],
      [
        "a size needing 5 clusters",
        (v) => v.setBigUint64(8, BigInt(4 * CLUSTER + 1), true),
        said("size", 8, "16385 bytes need 5 clusters of 4096, but the extents hold 4"),
      ],
      [
        "a size needing 3 clusters",
        (v) => v.setBigUint64(8, BigInt(3 * CLUSTER), true),
        said("size", 8, "12288 bytes need 3 clusters of 4096, but the extents hold 4"),
      ],
    ];
    for (const [what, spoil, message] of cases) expect(refusal(spoiled(spoil)), what).toBe(message);
  });

  it("takes an extent ending at the data area's last cluster and refuses one past it", () => {
    const last: FileEntry = { ...ENTRY, size: 2 * CLUSTER, extents: [{ first: 98, count: 2 }] };
    expect(parse(encodeFileEntry(last))).toEqual(last);
    const past: FileEntry = { ...ENTRY, size: 2 * CLUSTER, extents: [{ first: 99, count: 2 }] };
    expect(refusal(encodeFileEntry(past))).toBe(
      said("extent 0", 160, "clusters 99..100 pass the data area's 100 clusters"),
    );
  });

  it("takes a file of 0 bytes with no extents, 43 extents, and a name of 128 bytes", () => {
    const empty: FileEntry = { ...ENTRY, size: 0, extents: [] };
    expect(parse(encodeFileEntry(empty))).toEqual(empty);
    const extents = Array.from({ length: 43 }, (_, i) => ({ first: i * 2, count: 1 }));
    const many: FileEntry = { ...ENTRY, size: 43 * CLUSTER, extents };
    expect(parse(encodeFileEntry(many))).toEqual(many);
    const long: FileEntry = { ...ENTRY, name: "n".repeat(128) };
    expect(parse(encodeFileEntry(long))).toEqual(long);
    expect(() =>
      encodeFileEntry({ ...many, extents: [...extents, { first: 90, count: 1 }] }),
    ).toThrow(new RangeError("vm1.vhd: 44 extents; at most 43"));
  });
});

describe("file names and sizes", () => {
  it("takes 1 to 128 bytes of UTF-8 without NUL, / or \\, and refuses the rest naming why", () => {
    expect([...checkName("a")]).toEqual([0x61]);
    expect(checkName("é".repeat(64)).length).toBe(128);
    expect(() => checkName("")).toThrow(
      new RangeError("file name must be 1 to 128 bytes of UTF-8, not 0"),
    );
    expect(() => checkName(`${"é".repeat(64)}a`)).toThrow(
      new RangeError("file name must be 1 to 128 bytes of UTF-8, not 129"),
    );
    for (const bad of ["a/b", "a\\b", "a\0b"])
      expect(() => checkName(bad)).toThrow(
        new RangeError(`file name ${JSON.stringify(bad)} holds NUL, / or \\`),
      );
  });

  it("a file holds the clusters its size needs, rounded up", () => {
    expect([0, 1, 4096, 4097, 8192].map((s) => clustersFor(s, 4096))).toEqual([0, 1, 1, 2, 2]);
  });
});
