import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { checkVhdFile } from "../src/storage/check.js";
import { FOOTER_BYTES, Footer, Header } from "../src/storage/format.js";
import { defaultKernels } from "../src/storage/kernels.js";
import { type ParentSource, VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";
import {
  checkBytes as check,
  HEADER_AT,
  vhdImage as image,
  resum,
  TABLE_AT,
  viewOf as view,
} from "./support/vhd-damage.js";

// storage check's own rules where opening the image would not repeat them:
// when an error found earlier stops the open, each rule must have been
// reported by the check itself.

const KiB = 1024;

const flip = (bytes: Uint8Array, at: number) => {
  bytes[at] = (bytes[at] ?? 0) ^ 1;
};

describe("storage check, rule by rule", () => {
  it("never lets a fixed disk's first sector stand in for its footer, even when it looks like one", () => {
    const bytes = image("fixed", 16 * KiB);
    const endAt = bytes.length - FOOTER_BYTES;
    // The data's first sector holds a valid fixed footer (without the reserved bit).
    bytes.set(bytes.subarray(endAt), 0);
    view(bytes).setUint32(Footer.features, 0);
    resum(bytes, 0, FOOTER_BYTES, Footer.checksum);
    flip(bytes, endAt + 100);
    const report = check(bytes);
    expect(report.ok).toBe(false);
    expect(report.problems.map((p) => [p.severity, p.offset])).toEqual([["error", endAt + 64]]);
  });

  it("reports the BAT's rules itself: a block on the footer copy, in the BAT's second sector, into the footer", () => {
    // 256 blocks of 4 KiB: a BAT of 1024 bytes, [1536, 2560).
    const bytes = image("dynamic", 1024 * KiB, [0]);
    // 8 KiB of unused room before the footer, where block 12 will end in the footer.
    const grown = new Uint8Array(bytes.length + 8 * KiB);
    grown.set(bytes.subarray(0, bytes.length - FOOTER_BYTES));
    grown.set(bytes.subarray(bytes.length - FOOTER_BYTES), grown.length - FOOTER_BYTES);
    const span = 512 + 4096;
    view(grown).setUint32(TABLE_AT + 10 * 4, 0);
    view(grown).setUint32(TABLE_AT + 11 * 4, 2048 / 512);
    view(grown).setUint32(TABLE_AT + 12 * 4, (grown.length - span) / 512);
    const report = check(grown);
    expect(report.problems.map((p) => [p.offset, p.message.split("): ")[1]])).toEqual([
      [TABLE_AT + 40, "block at 0 overlaps the footer copy at [0, 512)"],
      [TABLE_AT + 44, "block at 2048 overlaps the BAT at [1536, 2560)"],
      [
        TABLE_AT + 48,
        `block at ${grown.length - span} of ${span} bytes passes the end of the data (${grown.length - FOOTER_BYTES})`,
      ],
    ]);
  });

  it("reports a damaged header beside another error", () => {
    const bytes = image("dynamic", 64 * KiB);
    view(bytes).setUint32(Footer.timestamp, 9);
    resum(bytes, 0, FOOTER_BYTES, Footer.checksum);
    flip(bytes, HEADER_AT + 300);
    expect(check(bytes).problems.map((p) => [p.severity, p.offset])).toEqual([
      ["error", 0],
      ["error", HEADER_AT + Header.checksum],
    ]);
  });

  it("still opens the image after warnings, and adds what the open notes", () => {
    const bytes = image("dynamic", 64 * KiB, [0]);
    const grown = new Uint8Array(bytes.length + 4096);
    grown.set(bytes.subarray(0, bytes.length - FOOTER_BYTES));
    grown.set(bytes.subarray(bytes.length - FOOTER_BYTES), grown.length - FOOTER_BYTES);
    for (const at of [0, grown.length - FOOTER_BYTES]) {
      view(grown).setUint32(at + Footer.features, 0);
      resum(grown, at, FOOTER_BYTES, Footer.checksum);
    }
    expect(check(grown).problems.map((p) => [p.severity, p.message])).toEqual([
      ["warning", "footer features: the reserved bit 0x2 is not set"],
      ["warning", "4096 bytes between the last block and the footer are unused"],
    ]);
  });

  it("lets an error other than the image's own out, not taken for a finding", () => {
    const parentBytes = image("dynamic", 64 * KiB);
    const parent = VhdImage.open(new MemoryFile("/c/p.vhd", parentBytes.slice()));
    const file = new MemoryFile("/c/disk.vhd");
    const source: ParentSource = {
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
      parents: source,
    }).close();
    parent.close();
    const failing: ParentSource = {
      open: () => {
        throw new TypeError("the parent's device went away");
      },
    };
    expect(() => check(file.contents().slice(), failing)).toThrow(
      new TypeError("the parent's device went away"),
    );
  });

  it("gives block counts only for disks that have blocks", () => {
    expect(Object.keys(check(image("fixed", 16 * KiB)))).toEqual(["file", "ok", "problems"]);
    expect(Object.keys(check(image("dynamic", 64 * KiB)))).toEqual([
      "file",
      "ok",
      "problems",
      "allocatedBlocks",
      "totalBlocks",
    ]);
  });

  it("checks a file by its path, with the kernels given or its own", () => {
    const dir = testTempDir("storage-check-");
    const path = join(dir, "disk.vhd");
    writeFileSync(path, image("dynamic", 64 * KiB, [4096]));
    const report = checkVhdFile(path);
    expect(report).toEqual({
      file: path,
      ok: true,
      problems: [],
      allocatedBlocks: 1,
      totalBlocks: 16,
    });
    expect(checkVhdFile(path, defaultKernels())).toEqual(report);
  });
});
