import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { FOOTER_BYTES, Footer, Header } from "../src/storage/format.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";
import {
  checkBytes as check,
  HEADER_AT,
  vhdImage as image,
  resum,
  TABLE_AT,
  viewOf as view,
} from "./support/vhd-damage.js";

// What `hvlab storage check` reports for each kind of damage: its severity,
// the offset of the field, and its words; every problem, not only the first.

const KiB = 1024;

function footerField(bytes: Uint8Array, at: number, field: number, value: number): void {
  view(bytes).setUint32(at + field, value);
  resum(bytes, at, FOOTER_BYTES, Footer.checksum);
}

describe("storage check", () => {
  it("finds nothing wrong with a new disk, and counts its blocks", () => {
    expect(check(image("dynamic", 64 * KiB, [0, 8192]))).toEqual({
      file: "/c/disk.vhd",
      ok: true,
      problems: [],
      allocatedBlocks: 2,
      totalBlocks: 16,
    });
    expect(check(image("fixed", 16 * KiB))).toEqual({
      file: "/c/disk.vhd",
      ok: true,
      problems: [],
    });
  });

  it("refuses a file with no cookie at either end, at the last footer's offset", () => {
    expect(check(new Uint8Array(4096))).toEqual({
      file: "/c/disk.vhd",
      ok: false,
      problems: [
        {
          severity: "error",
          offset: 3584,
          message: 'no VHD footer: no "conectix" cookie at the end or at offset 0',
        },
      ],
    });
    expect(check(new Uint8Array(100)).problems[0]?.offset).toBe(0);
  });

  it("warns, not errs, when the end is damaged and the copy stands in", () => {
    const bytes = image("dynamic", 64 * KiB, [0]);
    const endAt = bytes.length - FOOTER_BYTES;
    bytes[endAt + 100] = (bytes[endAt + 100] ?? 0) ^ 1;
    const report = check(bytes);
    expect(report.ok).toBe(true);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]?.severity).toBe("warning");
    expect(report.problems[0]?.offset).toBe(endAt + 64);
    expect(report.problems[0]?.message).toMatch(
      /^footer checksum at offset \d+ \(0x[0-9a-f]+\): is 0x[0-9a-f]+, the footer sums to 0x[0-9a-f]+; the footer copy at offset 0 is valid and used$/,
    );
    expect(report.allocatedBlocks).toBe(1);
  });

  it("errs on a copy that differs from the footer, and on a damaged copy of a dynamic disk", () => {
    const bytes = image("dynamic", 64 * KiB);
    footerField(bytes, 0, Footer.timestamp, 5);
    expect(check(bytes).problems).toEqual([
      {
        severity: "error",
        offset: 0,
        message: "footer copy at offset 0 differs from the footer at the end",
      },
    ]);
    bytes[0] = 0;
    const report = check(bytes);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      {
        severity: "error",
        offset: 0,
        message: 'footer cookie at offset 0 (0x0): is "\\u0000onectix", not "conectix"',
      },
    ]);
  });

  it("warns of a footer without its reserved feature bit, and of a geometry not the specification's", () => {
    const bytes = image("fixed", 16 * KiB);
    const endAt = bytes.length - FOOTER_BYTES;
    footerField(bytes, endAt, Footer.features, 0);
    view(bytes).setUint16(endAt + Footer.geometry, 7);
    resum(bytes, endAt, FOOTER_BYTES, Footer.checksum);
    const report = check(bytes);
    expect(report.ok).toBe(true);
    expect(report.problems).toEqual([
      {
        severity: "warning",
        offset: endAt + 8,
        message: "footer features: the reserved bit 0x2 is not set",
      },
      {
        severity: "warning",
        offset: endAt + 56,
        message: `footer geometry 7/4/17 is not the specification's 0/4/17 for ${16 * KiB} bytes`,
      },
    ]);
    // Other feature bits beside 0x2 are no problem.
    const temporary = image("fixed", 16 * KiB);
    footerField(temporary, temporary.length - 512, Footer.features, 3);
    expect(check(temporary).problems).toEqual([]);
  });

  it("compares each of cylinders, heads and sectors per track", () => {
    for (const at of [2, 3]) {
      const bytes = image("fixed", 16 * KiB);
      const endAt = bytes.length - FOOTER_BYTES;
      bytes[endAt + Footer.geometry + at] = 9;
      resum(bytes, endAt, FOOTER_BYTES, Footer.checksum);
      expect(check(bytes).problems.map((p) => p.offset)).toEqual([endAt + 56]);
    }
  });

  it("errs on a BAT that does not fit the file or the disk's blocks, at the header's table offset", () => {
    const bytes = image("dynamic", 64 * KiB);
    view(bytes).setUint32(HEADER_AT + Header.maxTableEntries, 15);
    resum(bytes, HEADER_AT, 1024, Header.checksum);
    expect(check(bytes).problems).toEqual([
      {
        severity: "error",
        offset: HEADER_AT + 16,
        message: `dynamic header: a BAT of 15 entries at ${TABLE_AT} does not fit the file or the disk's 16 blocks`,
      },
    ]);
    expect(check(bytes).totalBlocks).toBe(16);
    view(bytes).setUint32(HEADER_AT + Header.maxTableEntries, 16);
    view(bytes).setBigUint64(HEADER_AT + Header.tableOffset, BigInt(bytes.length - 63));
    resum(bytes, HEADER_AT, 1024, Header.checksum);
    expect(check(bytes).problems[0]?.message).toContain(
      `a BAT of 16 entries at ${bytes.length - 63} does not fit`,
    );
  });

  it("reports every BAT entry that is wrong, each at its own offset", () => {
    const bytes = image("dynamic", 64 * KiB, [0]);
    view(bytes).setUint32(TABLE_AT + 4, 1);
    view(bytes).setUint32(TABLE_AT + 8, 0x7fffffff);
    const report = check(bytes);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.severity, p.offset])).toEqual([
      ["error", TABLE_AT + 4],
      ["error", TABLE_AT + 8],
    ]);
    expect(report.problems[0]?.message).toContain("overlaps the dynamic header");
    expect(report.problems[1]?.message).toContain("passes the end of the data");
    expect(report.allocatedBlocks).toBe(3);
  });

  it("errs on a damaged header, at its field", () => {
    const bytes = image("dynamic", 64 * KiB);
    bytes[HEADER_AT + 200] = (bytes[HEADER_AT + 200] ?? 0) ^ 1;
    const report = check(bytes);
    expect(report.problems.map((p) => [p.severity, p.offset])).toEqual([["error", HEADER_AT + 36]]);
    expect(report.problems[0]?.message).toMatch(/^dynamic header checksum/);
  });

  it("adds what opening finds (unused bytes, a missing parent), once each", () => {
    const bytes = image("dynamic", 64 * KiB, [0]);
    const grown = new Uint8Array(bytes.length + 4096);
    grown.set(bytes.subarray(0, bytes.length - 512));
    grown.set(bytes.subarray(bytes.length - 512), grown.length - 512);
    expect(check(grown).problems).toEqual([
      {
        severity: "warning",
        offset: -1,
        message: "4096 bytes between the last block and the footer are unused",
      },
    ]);
    const parentBytes = image("dynamic", 64 * KiB);
    const parent = VhdImage.open(new MemoryFile("/c/p.vhd", parentBytes.slice()));
    const file = new MemoryFile("/c/disk.vhd");
    const none: ParentSource = { open: () => undefined };
    const withParent: ParentSource = {
      open: () => ({
        file: new MemoryFile("/c/p.vhd", parentBytes.slice()),
        path: "/c/p.vhd",
        mtimeMs: 0,
      }),
    };
    VhdImage.create(file, {
      type: "differencing",
      parent: { image: parent, path: "/c/p.vhd", mtimeMs: 0 },
      path: "/c/disk.vhd",
      now: 0,
      parents: withParent,
    }).close();
    parent.close();
    const report = check(file.contents().slice(), none);
    expect(report.ok).toBe(false);
    expect(report.problems).toEqual([
      {
        severity: "error",
        offset: -1,
        message: '/c/disk.vhd: parent "p.vhd" not found (looked at /c/p.vhd)',
      },
    ]);
  });
});
