import { describe, expect, it } from "vitest";
import { vhdChecksumOracle } from "../src/oracle/storage.js";
import { VhdFormatError } from "../src/storage/errors.js";
import {
  bitmapBytes,
  DiskType,
  decodeFooter,
  decodeHeader,
  encodeFooter,
  encodeHeader,
  Footer,
  formatUuid,
  Header,
  MAX_BLOCK_BYTES,
  MAX_DISK_BYTES,
  PlatformCode,
  type VhdFooter,
  type VhdHeader,
  vhdTimestamp,
} from "../src/storage/format.js";

// Each rule of the footer and the dynamic header (Virtual Hard Disk Image
// Format Specification 1.0, "Hard Disk Footer Format" and "Dynamic Disk
// Header Format") checked one field at a time: the bytes where the
// specification puts them, and each refusal naming its field and offset,
// with the value on the near side of a limit taken.

const checksum = vhdChecksumOracle;
/** A file offset the structures are read from, so that every offset named is base + field. */
const BASE = 7 * 512;

const FOOTER: Omit<VhdFooter, "checksum"> = {
  features: 2,
  version: 0x00010000,
  dataOffset: 512,
  timestamp: 0x12345678,
  creatorApp: "win ",
  creatorVersion: 0x00060001,
  creatorOs: "Wi2k",
  originalSize: 40 * 1024 * 1024,
  currentSize: 64 * 1024 * 1024,
  geometry: { cylinders: 963, heads: 8, sectorsPerTrack: 17 },
  diskType: "dynamic",
  uniqueId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i),
  savedState: 1,
};

const NO_LOCATOR = { platformCode: 0, dataSpace: 0, dataLength: 0, dataOffset: 0 };

const HEADER: Omit<VhdHeader, "checksum"> = {
  tableOffset: 1536,
  version: 0x00010000,
  maxTableEntries: 32,
  blockSize: 2 * 1024 * 1024,
  parentUniqueId: Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i),
  parentTimestamp: 0x0a0b0c0d,
  parentName: "parent disk ä.vhd",
  locators: [
    { platformCode: PlatformCode.W2ru, dataSpace: 1, dataLength: 24, dataOffset: 3072 },
    { platformCode: PlatformCode.W2ku, dataSpace: 2, dataLength: 60, dataOffset: 3584 },
    ...Array.from({ length: 6 }, () => NO_LOCATOR),
  ],
};

/** The structure with one u32 or u64 field set, its checksum made right again. */
function withField(
  bytes: Uint8Array,
  at: number,
  value: number | bigint,
  checksumAt: number,
): Uint8Array {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  if (typeof value === "bigint") view.setBigUint64(at, value);
  else view.setUint32(at, value);
  view.setUint32(checksumAt, checksum(out, checksumAt));
  return out;
}

const footerWith = (at: number, value: number | bigint, base = FOOTER) =>
  withField(encodeFooter(base, checksum), at, value, Footer.checksum);
const headerWith = (at: number, value: number | bigint) =>
  withField(encodeHeader(HEADER, checksum), at, value, Header.checksum);

/** The error a decode throws, which must be a VhdFormatError. */
function refusal(decode: () => unknown): VhdFormatError {
  try {
    decode();
  } catch (error) {
    expect(error).toBeInstanceOf(VhdFormatError);
    return error as VhdFormatError;
  }
  throw new Error("decoded without complaint");
}

function expectRefused(
  decode: () => unknown,
  field: string,
  offset: number,
  detail: string | RegExp,
): void {
  const error = refusal(decode);
  expect(error.field).toBe(field);
  expect(error.offset).toBe(offset);
  expect(
    error.message.startsWith(`${field} at offset ${offset} (0x${offset.toString(16)}): `),
  ).toBe(true);
  if (typeof detail === "string") expect(error.message).toContain(detail);
  else expect(error.message).toMatch(detail);
}

describe("the hard disk footer", () => {
  it("lays every field where the specification puts it, big-endian, with the one's complement checksum", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    expect(bytes.length).toBe(512);
    const view = new DataView(bytes.buffer);
    expect(Buffer.from(bytes.subarray(0, 8)).toString("latin1")).toBe("conectix");
    expect(view.getUint32(8)).toBe(2);
    expect(view.getUint32(12)).toBe(0x00010000);
    expect(view.getBigUint64(16)).toBe(512n);
    expect(view.getUint32(24)).toBe(0x12345678);
    expect(Buffer.from(bytes.subarray(28, 32)).toString("latin1")).toBe("win ");
    expect(view.getUint32(32)).toBe(0x00060001);
    expect(Buffer.from(bytes.subarray(36, 40)).toString("latin1")).toBe("Wi2k");
    expect(view.getBigUint64(40)).toBe(40n * 1024n * 1024n);
    expect(view.getBigUint64(48)).toBe(64n * 1024n * 1024n);
    expect([view.getUint16(56), bytes[58], bytes[59]]).toEqual([963, 8, 17]);
    expect(view.getUint32(60)).toBe(3);
    expect([...bytes.subarray(68, 84)]).toEqual([...FOOTER.uniqueId]);
    expect(bytes[84]).toBe(1);
    // Reserved: 427 zeros.
    expect(bytes.subarray(85).every((b) => b === 0)).toBe(true);
    // "This field holds a basic checksum of the hard disk footer. It is just a
    // one's complement of the sum of all the bytes in the footer without the
    // checksum field."
    let sum = 0;
    for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += bytes[i] ?? 0;
    expect(view.getUint32(64)).toBe(~sum >>> 0);
  });

  it("writes all ones as a fixed disk's data offset, and reads it back as -1", () => {
    const fixed = { ...FOOTER, diskType: "fixed" as const, dataOffset: -1 };
    const bytes = encodeFooter(fixed, checksum);
    expect(new DataView(bytes.buffer).getBigUint64(16)).toBe(0xffff_ffff_ffff_ffffn);
    expect(new DataView(bytes.buffer).getUint32(60)).toBe(DiskType.fixed);
    expect(decodeFooter(bytes, BASE, checksum).dataOffset).toBe(-1);
  });

  it("decodes every field it encoded", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    const footer = decodeFooter(bytes, BASE, checksum);
    expect(footer).toEqual({
      ...FOOTER,
      checksum: new DataView(bytes.buffer).getUint32(64),
    });
    // The id is a copy: changing the bytes read does not change the footer.
    bytes[68] = 0;
    expect(footer.uniqueId[0]).toBe(0xa0);
    const differencing = decodeFooter(footerWith(60, 4), BASE, checksum);
    expect(differencing.diskType).toBe("differencing");
  });

  it("reads a footer at the start of a longer buffer", () => {
    const bytes = new Uint8Array(1536);
    bytes.set(encodeFooter(FOOTER, checksum));
    bytes.fill(0x5a, 512);
    expect(decodeFooter(bytes, BASE, checksum).currentSize).toBe(FOOTER.currentSize);
  });

  it("refuses fewer than 512 bytes, naming the footer at its base", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    expectRefused(
      () => decodeFooter(bytes.subarray(0, 511), BASE, checksum),
      "footer",
      BASE,
      "only 511 bytes, needs 512",
    );
  });

  it("refuses a cookie other than conectix", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    bytes[7] = "y".charCodeAt(0);
    expectRefused(
      () => decodeFooter(bytes, BASE, checksum),
      "footer cookie",
      BASE,
      'is "conectiy", not "conectix"',
    );
  });

  it("refuses a checksum that is off by one, naming both sums", () => {
    const bytes = encodeFooter(FOOTER, checksum);
    const view = new DataView(bytes.buffer);
    const right = view.getUint32(64);
    view.setUint32(64, right + 1);
    expectRefused(
      () => decodeFooter(bytes, BASE, checksum),
      "footer checksum",
      BASE + 64,
      `is 0x${(right + 1).toString(16)}, the footer sums to 0x${right.toString(16)}`,
    );
  });

  it("takes any minor format version of major version 1 and refuses majors 0 and 2", () => {
    expect(decodeFooter(footerWith(12, 0x0001ffff), BASE, checksum).version).toBe(0x0001ffff);
    expectRefused(
      () => decodeFooter(footerWith(12, 0x00020000), BASE, checksum),
      "footer format version",
      BASE + 12,
      "is 0x20000, only major version 1 exists",
    );
    expectRefused(
      () => decodeFooter(footerWith(12, 0x0000ffff), BASE, checksum),
      "footer format version",
      BASE + 12,
      "is 0xffff",
    );
  });

  it("knows disk types 2, 3 and 4 only", () => {
    expect(decodeFooter(footerWith(60, 3), BASE, checksum).diskType).toBe("dynamic");
    for (const code of [0, 1, 5, 6]) {
      expectRefused(
        () => decodeFooter(footerWith(60, code), BASE, checksum),
        "footer disk type",
        BASE + 60,
        `is ${code}, not 2 (fixed), 3 (dynamic) or 4 (differencing)`,
      );
    }
  });

  it("takes a current size of whole sectors up to 2040 GiB and refuses one byte or sector more", () => {
    const max = BigInt(MAX_DISK_BYTES);
    expect(decodeFooter(footerWith(48, max), BASE, checksum).currentSize).toBe(MAX_DISK_BYTES);
    expect(decodeFooter(footerWith(48, 0n), BASE, checksum).currentSize).toBe(0);
    for (const size of [max + 512n, 513n, 64n * 1024n * 1024n + 1n]) {
      expectRefused(
        () => decodeFooter(footerWith(48, size), BASE, checksum),
        "footer current size",
        BASE + 48,
        `is ${size}, must be a multiple of 512 up to ${MAX_DISK_BYTES} (2040 GiB)`,
      );
    }
  });

  it("refuses a u64 past 2^53 by its own field, the first 2^53 - 1 taken", () => {
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    expect(decodeFooter(footerWith(40, safe), BASE, checksum).originalSize).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expectRefused(
      () => decodeFooter(footerWith(40, safe + 1n), BASE, checksum),
      "footer original size",
      BASE + 40,
      `value ${safe + 1n} is too large`,
    );
    expectRefused(
      () => decodeFooter(footerWith(48, 1n << 60n), BASE, checksum),
      "footer current size",
      BASE + 48,
      `value ${1n << 60n} is too large`,
    );
    // All ones is a fixed disk's data offset, and too large anywhere else.
    expectRefused(
      () => decodeFooter(footerWith(40, 0xffff_ffff_ffff_ffffn), BASE, checksum),
      "footer original size",
      BASE + 40,
      "is too large",
    );
  });

  it("holds a fixed disk's data offset at all ones and a dynamic disk's anywhere else", () => {
    const fixed = { ...FOOTER, diskType: "fixed" as const, dataOffset: -1 };
    expectRefused(
      () => decodeFooter(footerWith(16, 512n, fixed), BASE, checksum),
      "footer data offset",
      BASE + 16,
      "is 512, a fixed disk has all ones",
    );
    expectRefused(
      () => decodeFooter(footerWith(16, 0xffff_ffff_ffff_ffffn), BASE, checksum),
      "footer data offset",
      BASE + 16,
      "is all ones, a dynamic disk points to its header",
    );
    expect(decodeFooter(footerWith(16, 0n), BASE, checksum).dataOffset).toBe(0);
  });
});

describe("the dynamic disk header", () => {
  it("lays every field where the specification puts it", () => {
    const bytes = encodeHeader(HEADER, checksum);
    expect(bytes.length).toBe(1024);
    const view = new DataView(bytes.buffer);
    expect(Buffer.from(bytes.subarray(0, 8)).toString("latin1")).toBe("cxsparse");
    // "This field contains the absolute byte offset to the next structure in the
    // hard disk image. It is currently unused by existing formats and should be
    // set to 0xFFFFFFFF."
    expect(view.getBigUint64(8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(view.getBigUint64(16)).toBe(1536n);
    expect(view.getUint32(24)).toBe(0x00010000);
    expect(view.getUint32(28)).toBe(32);
    expect(view.getUint32(32)).toBe(2 * 1024 * 1024);
    expect([...bytes.subarray(40, 56)]).toEqual([...HEADER.parentUniqueId]);
    expect(view.getUint32(56)).toBe(0x0a0b0c0d);
    expect(view.getUint32(60)).toBe(0);
    // The parent's name in UTF-16 big-endian: "p" is 0x00 0x70, "ä" 0x00 0xe4.
    expect([...bytes.subarray(64, 66)]).toEqual([0x00, 0x70]);
    const at = 64 + 2 * "parent disk ".length;
    expect([...bytes.subarray(at, at + 2)]).toEqual([0x00, 0xe4]);
    // Locator 1 at 576 + 24.
    expect(view.getUint32(600)).toBe(PlatformCode.W2ku);
    expect(view.getUint32(604)).toBe(2);
    expect(view.getUint32(608)).toBe(60);
    expect(view.getUint32(612)).toBe(0);
    expect(view.getBigUint64(616)).toBe(3584n);
    expect(bytes.subarray(768).every((b) => b === 0)).toBe(true);
    let sum = 0;
    for (let i = 0; i < 1024; i++) if (i < 36 || i >= 40) sum += bytes[i] ?? 0;
    expect(view.getUint32(36)).toBe(~sum >>> 0);
  });

  it("decodes every field it encoded", () => {
    const bytes = encodeHeader(HEADER, checksum);
    const header = decodeHeader(bytes, BASE, checksum);
    expect(header).toEqual({ ...HEADER, checksum: new DataView(bytes.buffer).getUint32(36) });
  });

  it("reads a parent name up to its first NUL, and one of all 256 characters whole", () => {
    const bytes = encodeHeader(HEADER, checksum);
    // A name, a NUL, then bytes that are not part of it.
    const name = Buffer.from("ab\0cd", "utf16le").swap16();
    bytes.fill(0, 64, 576);
    bytes.set(name, 64);
    new DataView(bytes.buffer).setUint32(36, checksum(bytes, 36));
    expect(decodeHeader(bytes, BASE, checksum).parentName).toBe("ab");
    const long = `${"x".repeat(255)}y`;
    const full = encodeHeader({ ...HEADER, parentName: long }, checksum);
    expect(decodeHeader(full, BASE, checksum).parentName).toBe(long);
    // A longer name is cut to the field's 512 bytes.
    const cut = encodeHeader({ ...HEADER, parentName: `${long}zz` }, checksum);
    expect(decodeHeader(cut, BASE, checksum).parentName).toBe(long);
  });

  it("refuses fewer than 1024 bytes, a wrong cookie, a wrong checksum or major version", () => {
    const bytes = encodeHeader(HEADER, checksum);
    expectRefused(
      () => decodeHeader(bytes.subarray(0, 1023), BASE, checksum),
      "dynamic header",
      BASE,
      "only 1023 bytes, needs 1024",
    );
    const cookie = bytes.slice();
    cookie[0] = "C".charCodeAt(0);
    expectRefused(
      () => decodeHeader(cookie, BASE, checksum),
      "dynamic header cookie",
      BASE,
      'is "Cxsparse", not "cxsparse"',
    );
    const sum = bytes.slice();
    const right = new DataView(sum.buffer).getUint32(36);
    const wrong = (right ^ 0x100) >>> 0;
    new DataView(sum.buffer).setUint32(36, wrong);
    expectRefused(
      () => decodeHeader(sum, BASE, checksum),
      "dynamic header checksum",
      BASE + 36,
      `is 0x${wrong.toString(16)}, the header sums to 0x${right.toString(16)}`,
    );
    expect(decodeHeader(headerWith(24, 0x00010005), BASE, checksum).version).toBe(0x00010005);
    for (const version of [0x00020000, 0x0000ffff]) {
      expectRefused(
        () => decodeHeader(headerWith(24, version), BASE, checksum),
        "dynamic header version",
        BASE + 24,
        `is 0x${version.toString(16)}, only major version 1 exists`,
      );
    }
  });

  it("takes block sizes that are powers of two from 512 bytes to 256 MiB, and no other", () => {
    for (const size of [512, 1024, 4096, MAX_BLOCK_BYTES]) {
      expect(decodeHeader(headerWith(32, size), BASE, checksum).blockSize).toBe(size);
    }
    for (const size of [0, 256, 511, 513, 3 * 512, 2 * MAX_BLOCK_BYTES, MAX_BLOCK_BYTES + 512]) {
      expectRefused(
        () => decodeHeader(headerWith(32, size), BASE, checksum),
        "dynamic header block size",
        BASE + 32,
        `is ${size}, must be a power of two from 512 to ${MAX_BLOCK_BYTES}`,
      );
    }
  });

  it("refuses a table offset or a locator's data offset past 2^53, naming which", () => {
    expectRefused(
      () => decodeHeader(headerWith(16, 1n << 54n), BASE, checksum),
      "dynamic header table offset",
      BASE + 16,
      "is too large",
    );
    const locator5 = 576 + 5 * 24;
    expectRefused(
      () => decodeHeader(headerWith(locator5 + 16, 1n << 54n), BASE, checksum),
      "parent locator 5 data offset",
      BASE + locator5 + 16,
      "is too large",
    );
  });

  it("reads each of the eight locators from its own 24 bytes", () => {
    const bytes = encodeHeader(HEADER, checksum);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < 8; i++) {
      const at = 576 + i * 24;
      view.setUint32(at, 0x1000 + i);
      view.setUint32(at + 4, 0x2000 + i);
      view.setUint32(at + 8, 0x3000 + i);
      view.setBigUint64(at + 16, BigInt(0x4000 + i));
    }
    view.setUint32(36, checksum(bytes, 36));
    const { locators } = decodeHeader(bytes, BASE, checksum);
    expect(locators).toEqual(
      Array.from({ length: 8 }, (_, i) => ({
        platformCode: 0x1000 + i,
        dataSpace: 0x2000 + i,
        dataLength: 0x3000 + i,
        dataOffset: 0x4000 + i,
      })),
    );
  });
});

describe("sizes, times and ids", () => {
  it("gives a block's sector bitmap one bit per sector, rounded up to whole sectors", () => {
    // 1 to 4096 sectors fit one 512-byte sector of bits; 8192 need two.
    expect(bitmapBytes(512)).toBe(512);
    expect(bitmapBytes(2 * 1024 * 1024)).toBe(512);
    expect(bitmapBytes(2 * 1024 * 1024 + 512)).toBe(1024);
    expect(bitmapBytes(4 * 1024 * 1024)).toBe(1024);
    expect(bitmapBytes(MAX_BLOCK_BYTES)).toBe(64 * 1024);
  });

  it("counts a timestamp in whole seconds since 2000-01-01 UTC, clamped to a u32", () => {
    const y2k = Date.UTC(2000, 0, 1);
    expect(vhdTimestamp(y2k)).toBe(0);
    expect(vhdTimestamp(y2k + 1999)).toBe(1);
    expect(vhdTimestamp(Date.UTC(2009, 6, 22))).toBe(301_536_000);
    expect(vhdTimestamp(y2k - 5000)).toBe(0);
    expect(vhdTimestamp(y2k + 0xffffffff * 1000)).toBe(0xffffffff);
    expect(vhdTimestamp(y2k + 0x1_0000_0000 * 1000)).toBe(0xffffffff);
  });

  it("prints a unique id as a UUID in its byte order", () => {
    const id = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
    expect(formatUuid(id)).toBe("00112233-4455-6677-8899-aabbccddeeff");
  });
});
