import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import { computeLayout } from "../src/csv/layout.js";
import {
  encodeSuperblock,
  SuperblockField as F,
  parseSuperblock,
  type Superblock,
} from "../src/csv/superblock.js";
import { type Spoil, spoiledSector } from "./support/csv-sector.js";

// The superblock, sector 0 of the LUN (docs/csv.md): every field at its
// offset, little-endian, the CRC-32C over bytes 0 to 507; each refusal
// names its field and its offset, on both sides of each bound.

const MiB = 1 << 20;
const LAYOUT = computeLayout({
  volumeBytes: 16 * MiB,
  clusterBytes: 4096,
  fileSlots: 256,
  journalSectors: 64,
});
const SB: Superblock = {
  layout: LAYOUT,
  generation: 0x0102_0304_0506,
  epoch: 9,
  coordinator: 3,
  uuid: "00112233445566778899aabbccddeeff",
  label: "vms",
};

/** `SB`'s sector with `spoil` applied and the CRC rewritten. */
function spoiled(spoil: Spoil, sb = SB): Uint8Array {
  return spoiledSector(encodeSuperblock, sb, F.crc, spoil);
}

/** The VolumeFormatError `parse` throws. */
function refusal(parse: () => unknown): VolumeFormatError {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return error as VolumeFormatError;
  }
  throw new Error("parsed without a refusal");
}

describe("the superblock's fields", () => {
  it("writes every field at its offset, little-endian, and the CRC-32C of bytes 0 to 507", () => {
    const bytes = encodeSuperblock(SB);
    const view = new DataView(bytes.buffer);
    expect(bytes.length).toBe(512);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("HVCSVOL1");
    expect(view.getUint32(8, true)).toBe(1);
    expect(view.getUint32(12, true)).toBe(512);
    expect(view.getUint32(16, true)).toBe(4096);
    expect(view.getUint32(20, true)).toBe(256);
    expect(view.getBigUint64(24, true)).toBe(BigInt(16 * MiB));
    expect(view.getBigUint64(32, true)).toBe(0x0102_0304_0506n);
    expect(view.getBigUint64(40, true)).toBe(9n);
    expect(view.getUint32(48, true)).toBe(3);
    expect(view.getUint32(52, true)).toBe(64);
    expect(view.getBigUint64(56, true)).toBe(BigInt(LAYOUT.journalOffset));
    expect(view.getBigUint64(64, true)).toBe(BigInt(LAYOUT.epochLogOffset));
    expect(view.getBigUint64(72, true)).toBe(BigInt(LAYOUT.fileTableOffset));
    expect(view.getBigUint64(80, true)).toBe(BigInt(LAYOUT.bitmapOffset));
    expect(view.getUint32(88, true)).toBe(LAYOUT.bitmapSectors);
    expect(view.getUint32(92, true)).toBe(0);
    expect(view.getBigUint64(96, true)).toBe(BigInt(LAYOUT.dataOffset));
    expect(view.getUint32(104, true)).toBe(LAYOUT.dataClusters);
    expect([...bytes.subarray(108, 124)]).toEqual([
      0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
      0xff,
    ]);
    expect(new TextDecoder().decode(bytes.subarray(124, 127))).toBe("vms");
    expect(bytes.subarray(127, 508).every((b) => b === 0)).toBe(true);
    expect(view.getUint32(508, true)).toBe(crc32c(bytes.subarray(0, 508)));
    expect(parseSuperblock(bytes, 16 * MiB)).toEqual(SB);
  });

  it("reads a superblock from the start of a longer buffer that does not start its ArrayBuffer", () => {
    const lun = new Uint8Array(8 + 4096);
    lun.set(encodeSuperblock(SB), 8);
    expect(parseSuperblock(lun.subarray(8), 16 * MiB)).toEqual(SB);
  });

  it("takes a label of exactly 32 bytes, with no NUL after it, and refuses 33", () => {
    const label = `${"a".repeat(31)}b`;
    expect(new TextEncoder().encode(label).length).toBe(32);
    expect(parseSuperblock(encodeSuperblock({ ...SB, label }), 16 * MiB).label).toBe(label);
    expect(() => encodeSuperblock({ ...SB, label: `${label}c` })).toThrow(
      new RangeError("volume label is 33 bytes; at most 32"),
    );
    // 30 bytes of UTF-8 in 16 characters: the bound is on bytes.
    const accented = "é".repeat(15);
    expect(parseSuperblock(encodeSuperblock({ ...SB, label: accented }), 16 * MiB).label).toBe(
      accented,
    );
    expect(parseSuperblock(encodeSuperblock({ ...SB, label: "" }), 16 * MiB).label).toBe("");
  });

  it("takes u64 fields up to 2^53 - 1 and refuses 2^53, naming the field at its offset", () => {
    const max = Number.MAX_SAFE_INTEGER;
    const top = parseSuperblock(encodeSuperblock({ ...SB, generation: max, epoch: max }), 16 * MiB);
    expect([top.generation, top.epoch]).toEqual([max, max]);
    const cases: [number, string][] = [
      [F.generation, "superblock generation"],
      [F.epoch, "superblock epoch"],
      [F.volumeBytes, "superblock volume bytes"],
      [F.journalOffset, "superblock journal offset"],
      [F.epochLogOffset, "superblock epoch log offset"],
      [F.fileTableOffset, "superblock file table offset"],
      [F.bitmapOffset, "superblock bitmap offset"],
      [F.dataOffset, "superblock data offset"],
    ];
    for (const [at, field] of cases) {
      const error = refusal(() =>
        parseSuperblock(
          spoiled((v) => v.setBigUint64(at, 1n << 53n, true)),
          16 * MiB,
        ),
      );
      expect(error.message, field).toBe(
        `${field} at offset ${at} (0x${at.toString(16)}): 9007199254740992 is beyond 2^53`,
      );
    }
  });

  it("refuses fewer than 512 bytes, naming how many the LUN holds", () => {
    const error = refusal(() => parseSuperblock(encodeSuperblock(SB).subarray(0, 511), 16 * MiB));
    expect(error.message).toBe(
      "superblock at offset 0 (0x0): LUN holds 511 bytes; a volume needs at least one sector",
    );
  });

  it("refuses another magic as not a cluster shared volume, quoting what it read", () => {
    const error = refusal(() =>
      parseSuperblock(
        spoiled((_v, b) => b.set(new TextEncoder().encode("HVCSVOL2"), 0)),
        16 * MiB,
      ),
    );
    expect(error.message).toBe(
      'superblock magic at offset 0 (0x0): "HVCSVOL2" is not "HVCSVOL1": not a cluster shared volume',
    );
  });

  it("refuses a CRC off by one, stating both values", () => {
    const bytes = encodeSuperblock(SB);
    const view = new DataView(bytes.buffer);
    const crc = view.getUint32(508, true);
    view.setUint32(508, (crc + 1) >>> 0, true);
    const error = refusal(() => parseSuperblock(bytes, 16 * MiB));
    expect(error.message).toBe(
      `superblock checksum at offset 508 (0x1fc): stored 0x${((crc + 1) >>> 0).toString(16)}, computed 0x${crc.toString(16)}`,
    );
  });

  it("refuses each fixed field, the reserved word and the padding, at their offsets", () => {
    const cases: [string, (v: DataView, b: Uint8Array) => void, string][] = [
      [
        "version 2",
        (v) => v.setUint32(8, 2, true),
        "superblock version at offset 8 (0x8): 2 is not 1",
      ],
      [
        "version 0",
        (v) => v.setUint32(8, 0, true),
        "superblock version at offset 8 (0x8): 0 is not 1",
      ],
      [
        "4096-byte sectors",
        (v) => v.setUint32(12, 4096, true),
        "superblock sector bytes at offset 12 (0xc): 4096 is not 512",
      ],
      [
        "reserved",
        (v) => v.setUint32(92, 1, true),
        "superblock reserved at offset 92 (0x5c): must be zero",
      ],
      [
        "first padding byte",
        (_v, b) => b.set([1], 156),
        "superblock padding at offset 156 (0x9c): must be zero",
      ],
      [
        "last padding byte",
        (_v, b) => b.set([0x80], 507),
        "superblock padding at offset 507 (0x1fb): must be zero",
      ],
    ];
    for (const [what, spoil, message] of cases)
      expect(refusal(() => parseSuperblock(spoiled(spoil), 16 * MiB)).message, what).toBe(message);
  });

  it("refuses each stored offset and count that disagrees with the layout, by one either way", () => {
    const fields = [
      ["journalOffset", 8],
      ["epochLogOffset", 8],
      ["fileTableOffset", 8],
      ["bitmapOffset", 8],
      ["bitmapSectors", 4],
      ["dataOffset", 8],
      ["dataClusters", 4],
    ] as const;
    for (const [field, size] of fields) {
      for (const delta of [-1, 1]) {
        const value = LAYOUT[field] + delta;
        const bytes = spoiled((v) =>
          size === 8
            ? v.setBigUint64(F[field], BigInt(value), true)
            : v.setUint32(F[field], value, true),
        );
        const error = refusal(() => parseSuperblock(bytes, 16 * MiB));
        expect(error.message, `${field} ${delta}`).toBe(
          `superblock ${field} at offset ${F[field]} (0x${F[field].toString(16)}): ${value} disagrees with the layout, which puts it at ${LAYOUT[field]}`,
        );
      }
    }
  });

  it("takes a volume exactly as large as the LUN and refuses one byte more", () => {
    expect(parseSuperblock(encodeSuperblock(SB), 16 * MiB).layout).toEqual(LAYOUT);
    const error = refusal(() => parseSuperblock(encodeSuperblock(SB), 16 * MiB - 1));
    expect(error.message).toBe(
      `superblock volume bytes at offset 24 (0x18): volume of ${16 * MiB} bytes is larger than the LUN (${16 * MiB - 1} bytes)`,
    );
  });

  it("takes epoch 0 with no coordinator; refuses a coordinator of epoch 0; takes epoch 1 with one", () => {
    expect(
      parseSuperblock(encodeSuperblock({ ...SB, epoch: 0, coordinator: 0 }), 16 * MiB),
    ).toMatchObject({ epoch: 0, coordinator: 0 });
    const error = refusal(() =>
      parseSuperblock(encodeSuperblock({ ...SB, epoch: 0, coordinator: 2 }), 16 * MiB),
    );
    expect(error.message).toBe(
      "superblock coordinator at offset 48 (0x30): node 2 holds no term: the epoch is 0",
    );
    expect(
      parseSuperblock(encodeSuperblock({ ...SB, epoch: 1, coordinator: 2 }), 16 * MiB),
    ).toMatchObject({ epoch: 1, coordinator: 2 });
  });

  it("refuses bytes after the label's end, naming the first, and a label that is not UTF-8", () => {
    const tail = refusal(() =>
      parseSuperblock(
        spoiled((_v, b) => b.set([0x41], 130)),
        16 * MiB,
      ),
    );
    expect(tail.message).toBe(
      "superblock label at offset 130 (0x82): bytes after the label's end must be zero",
    );
    const last = refusal(() =>
      parseSuperblock(
        spoiled((_v, b) => b.set([0x41], 155)),
        16 * MiB,
      ),
    );
    expect(last.message).toBe(
      "superblock label at offset 155 (0x9b): bytes after the label's end must be zero",
    );
    const latin1 = refusal(() =>
      parseSuperblock(
        spoiled((_v, b) => b.set([0xe9], 124 + 3)),
        16 * MiB,
      ),
    );
    expect(latin1.message).toBe("superblock label at offset 124 (0x7c): is not UTF-8");
  });

  it("reads the uuid as 32 lower-case hex digits, leading zeros kept", () => {
    const uuid = "0a0b0c0d000000000000000000000001";
    expect(parseSuperblock(encodeSuperblock({ ...SB, uuid }), 16 * MiB).uuid).toBe(uuid);
  });
});
