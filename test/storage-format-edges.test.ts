import { describe, expect, it } from "vitest";
import { vhdChecksumOracle } from "../src/oracle/storage.js";
import {
  decodeFooter,
  decodeHeader,
  encodeFooter,
  encodeHeader,
  type VhdFooter,
  type VhdHeader,
} from "../src/storage/format.js";

// Edges of the footer's and header's codecs: a data offset of 0 and one past
// 2^53, a header read from a longer buffer, a parent name whose tail after
// its NUL holds blanks.

const checksum = vhdChecksumOracle;

const FOOTER: Omit<VhdFooter, "checksum"> = {
  features: 2,
  version: 0x00010000,
  dataOffset: 0,
  timestamp: 0,
  creatorApp: "win ",
  creatorVersion: 0x00060001,
  creatorOs: "Wi2k",
  originalSize: 4096,
  currentSize: 4096,
  geometry: { cylinders: 0, heads: 4, sectorsPerTrack: 17 },
  diskType: "dynamic",
  uniqueId: new Uint8Array(16),
  savedState: 0,
};

const HEADER: Omit<VhdHeader, "checksum"> = {
  tableOffset: 1536,
  version: 0x00010000,
  maxTableEntries: 1,
  blockSize: 4096,
  parentUniqueId: new Uint8Array(16),
  parentTimestamp: 0,
  parentName: "",
  locators: [],
};

describe("footer and header codecs at their edges", () => {
  it("writes a data offset of 0 as 0, not as all ones", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    expect(new DataView(bytes.buffer).getBigUint64(16)).toBe(0n);
    expect(decodeFooter(bytes, 0, checksum).dataOffset).toBe(0);
  });

  it("writes a creator read from another tool's footer back byte for byte (Latin-1, not UTF-8)", () => {
    // decodeFooter reads the creator fields one character a byte; a byte of
    // 0x80 or more must be written back as that one byte.
    const bytes = encodeFooter(
      { ...FOOTER, creatorApp: "\u00e9vo ", creatorOs: "Mac\u00ff" },
      checksum,
    );
    expect([...bytes.subarray(28, 32)]).toEqual([0xe9, 0x76, 0x6f, 0x20]);
    expect([...bytes.subarray(36, 40)]).toEqual([0x4d, 0x61, 0x63, 0xff]);
    const footer = decodeFooter(bytes, 0, checksum);
    expect([footer.creatorApp, footer.creatorOs]).toEqual(["\u00e9vo ", "Mac\u00ff"]);
  });

  it("refuses a dynamic disk's data offset past 2^53 that is not all ones, naming the field", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(16, 0xffff_ffff_ffff_fffen);
    view.setUint32(64, checksum(bytes, 64));
    expect(() => decodeFooter(bytes, 1024, checksum)).toThrow(
      `footer data offset at offset 1040 (0x410): value ${0xffff_ffff_ffff_fffen} is too large`,
    );
  });

  it("reads the parent's name from its own 512 bytes of a header inside a longer buffer", () => {
    const name = `${"n".repeat(255)}m`;
    const bytes = new Uint8Array(1536).fill(0x41);
    // Locator 0 follows the name: its platform code is no NUL to stop at.
    const locators = [{ platformCode: 0x57327275, dataSpace: 1, dataLength: 2, dataOffset: 3072 }];
    bytes.set(encodeHeader({ ...HEADER, parentName: name, locators }, checksum));
    expect(decodeHeader(bytes, 0, checksum).parentName).toBe(name);
  });

  it("cuts the name at its first NUL whatever follows, blanks included", () => {
    const bytes = encodeHeader({ ...HEADER, parentName: "ab\0 c d\0e" }, checksum);
    expect(decodeHeader(bytes, 0, checksum).parentName).toBe("ab");
  });
});
