import { VhdFormatError } from "./errors.js";
import type { ChsGeometry } from "./geometry.js";

/*
 * The VHD on-disk structures, from Microsoft's Virtual Hard Disk Image
 * Format Specification 1.0 (2006). Big-endian throughout; offsets in bytes.
 *
 * Hard disk footer (512 bytes; at the end of every VHD, and copied to
 * offset 0 of dynamic and differencing disks):
 *
 *    0 cookie "conectix"        8 features (0x2 set)   12 format version 0x00010000
 *   16 data offset u64 (fixed: all ones; else the dynamic header's offset)
 *   24 timestamp (seconds since 2000-01-01 00:00 UTC)  28 creator application
 *   32 creator version         36 creator host OS     40 original size u64
 *   48 current size u64        56 geometry: cylinders u16, heads u8, spt u8
 *   60 disk type (2 fixed, 3 dynamic, 4 differencing)  64 checksum
 *   68 unique id (16)          84 saved state u8      85 reserved (427 zeros)
 *
 * Dynamic disk header (1024 bytes):
 *
 *    0 cookie "cxsparse"        8 data offset u64 (unused: all ones)
 *   16 table offset u64        24 header version 0x00010000
 *   28 max table entries       32 block size          36 checksum
 *   40 parent unique id (16)   56 parent time stamp   60 reserved
 *   64 parent unicode name (512 bytes, UTF-16 big-endian)
 *  576 parent locator entries, 8 x 24 bytes:
 *        0 platform code  4 platform data space  8 platform data length
 *       12 reserved      16 platform data offset u64
 *  768 reserved (256 zeros)
 */

/** Bytes in a sector: the unit of every VHD offset stored in sectors. */
export const SECTOR = 512;
/** Bytes of the hard disk footer. */
export const FOOTER_BYTES = 512;
/** Bytes of the dynamic disk header. */
export const HEADER_BYTES = 1024;
/** The largest disk the specification allows: 2040 GiB. */
export const MAX_DISK_BYTES = 2040 * 1024 ** 3;
/** The default block size of dynamic and differencing disks. */
export const DEFAULT_BLOCK_BYTES = 2 * 1024 * 1024;
/** Block sizes accepted: powers of two from a sector to 256 MiB (bitmaps <= 64 KiB). */
export const MIN_BLOCK_BYTES = SECTOR;
export const MAX_BLOCK_BYTES = 256 * 1024 * 1024;
/** A BAT entry of a block not yet allocated. */
export const BAT_UNALLOCATED = 0xffffffff;
/** Seconds from 1970-01-01 to 2000-01-01 UTC: the VHD timestamp epoch. */
export const VHD_EPOCH_SECONDS = 946_684_800;

/** Footer field offsets. */
export const Footer = {
  cookie: 0,
  features: 8,
  version: 12,
  dataOffset: 16,
  timestamp: 24,
  creatorApp: 28,
  creatorVersion: 32,
  creatorOs: 36,
  originalSize: 40,
  currentSize: 48,
  geometry: 56,
  diskType: 60,
  checksum: 64,
  uniqueId: 68,
  savedState: 84,
} as const;

/** Dynamic header field offsets. */
export const Header = {
  cookie: 0,
  dataOffset: 8,
  tableOffset: 16,
  version: 24,
  maxTableEntries: 28,
  blockSize: 32,
  checksum: 36,
  parentUniqueId: 40,
  parentTimestamp: 56,
  parentName: 64,
  locators: 576,
} as const;

/** Bytes of the parent unicode name field. */
export const PARENT_NAME_BYTES = 512;
/** Parent locator entries in the header, and bytes of each. */
export const LOCATOR_COUNT = 8;
export const LOCATOR_BYTES = 24;
/** Largest parent locator data accepted (a path in UTF-16). */
export const MAX_LOCATOR_BYTES = 64 * 1024;

/** Disk types (footer offset 60). */
export const DiskType = { fixed: 2, dynamic: 3, differencing: 4 } as const;
/** A VHD's type. */
export type VhdType = keyof typeof DiskType;

/** Platform codes of parent locators: Windows absolute and relative paths, UTF-16 LE. */
export const PlatformCode = { W2ku: 0x57326b75, W2ru: 0x57327275 } as const;

/**
 * The creator hvlab writes. QEMU's block/vpc.c vpc_open takes the disk size
 * from current_size only for the creators it knows ("win ", "qem2", "d2v ",
 * "CTXS", "tap\0"), and from C x H x S otherwise, which rounds most sizes
 * down; "win " with Hyper-V's version 6.1 and host OS "Wi2k" is what a
 * Windows Server 2008 R2 host writes, and makes qemu read the exact size.
 */
export const CREATOR = { app: "win ", version: 0x00060001, os: "Wi2k" } as const;

/** The decoded hard disk footer. */
export interface VhdFooter {
  readonly features: number;
  readonly version: number;
  /** Offset of the dynamic header, or -1 (all ones) for a fixed disk. */
  readonly dataOffset: number;
  readonly timestamp: number;
  readonly creatorApp: string;
  readonly creatorVersion: number;
  readonly creatorOs: string;
  readonly originalSize: number;
  readonly currentSize: number;
  readonly geometry: ChsGeometry;
  readonly diskType: VhdType;
  readonly checksum: number;
  readonly uniqueId: Uint8Array;
  readonly savedState: number;
}

/** A parent locator entry. */
export interface ParentLocator {
  readonly platformCode: number;
  readonly dataSpace: number;
  readonly dataLength: number;
  readonly dataOffset: number;
}

/** The decoded dynamic disk header. */
export interface VhdHeader {
  readonly tableOffset: number;
  readonly version: number;
  readonly maxTableEntries: number;
  readonly blockSize: number;
  readonly checksum: number;
  readonly parentUniqueId: Uint8Array;
  readonly parentTimestamp: number;
  readonly parentName: string;
  readonly locators: readonly ParentLocator[];
}

/** Computes a VHD checksum of a structure with its checksum field at `skipAt` (the kernel). */
export type ChecksumFn = (bytes: Uint8Array, skipAt: number) => number;

const ALL_ONES = 0xffff_ffff_ffff_ffffn;

function ascii(bytes: Uint8Array, at: number, n: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + n));
}

function u64(
  view: DataView,
  at: number,
  field: string,
  base: number,
  allowAllOnes = false,
): number {
  const v = view.getBigUint64(at);
  if (allowAllOnes && v === ALL_ONES) return -1;
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new VhdFormatError(field, base + at, `value ${v} is too large`);
  }
  return Number(v);
}

/** Reads the type of a footer without validating it (for error messages). */
function diskTypeName(code: number): VhdType | undefined {
  for (const [name, value] of Object.entries(DiskType)) if (value === code) return name as VhdType;
  return undefined;
}

/**
 * Decodes and validates a footer read from file offset `base`.
 *
 * @throws VhdFormatError naming the first field that is wrong.
 */
export function decodeFooter(bytes: Uint8Array, base: number, checksum: ChecksumFn): VhdFooter {
  if (bytes.length < FOOTER_BYTES) {
    throw new VhdFormatError("footer", base, `only ${bytes.length} bytes, needs ${FOOTER_BYTES}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, FOOTER_BYTES);
  const cookie = ascii(bytes, Footer.cookie, 8);
  if (cookie !== "conectix") {
    throw new VhdFormatError("footer cookie", base, `is ${JSON.stringify(cookie)}, not "conectix"`);
  }
  const stored = view.getUint32(Footer.checksum);
  const computed = checksum(bytes.subarray(0, FOOTER_BYTES), Footer.checksum);
  if (stored !== computed) {
    throw new VhdFormatError(
      "footer checksum",
      base + Footer.checksum,
      `is 0x${stored.toString(16)}, the footer sums to 0x${computed.toString(16)}`,
    );
  }
  const version = view.getUint32(Footer.version);
  if (version >>> 16 !== 1) {
    throw new VhdFormatError(
      "footer format version",
      base + Footer.version,
      `is 0x${version.toString(16)}, only major version 1 exists`,
    );
  }
  const typeCode = view.getUint32(Footer.diskType);
  const diskType = diskTypeName(typeCode);
  if (!diskType) {
    throw new VhdFormatError(
      "footer disk type",
      base + Footer.diskType,
      `is ${typeCode}, not 2 (fixed), 3 (dynamic) or 4 (differencing)`,
    );
  }
  const currentSize = u64(view, Footer.currentSize, "footer current size", base);
  if (currentSize % SECTOR !== 0 || currentSize > MAX_DISK_BYTES) {
    throw new VhdFormatError(
      "footer current size",
      base + Footer.currentSize,
      `is ${currentSize}, must be a multiple of 512 up to ${MAX_DISK_BYTES} (2040 GiB)`,
    );
  }
  const dataOffset = u64(view, Footer.dataOffset, "footer data offset", base, true);
  if (diskType === "fixed" ? dataOffset !== -1 : dataOffset < 0) {
    throw new VhdFormatError(
      "footer data offset",
      base + Footer.dataOffset,
      diskType === "fixed"
        ? `is ${dataOffset}, a fixed disk has all ones`
        : "is all ones, a dynamic disk points to its header",
    );
  }
  return {
    features: view.getUint32(Footer.features),
    version,
    dataOffset,
    timestamp: view.getUint32(Footer.timestamp),
    creatorApp: ascii(bytes, Footer.creatorApp, 4),
    creatorVersion: view.getUint32(Footer.creatorVersion),
    creatorOs: ascii(bytes, Footer.creatorOs, 4),
    originalSize: u64(view, Footer.originalSize, "footer original size", base),
    currentSize,
    geometry: {
      cylinders: view.getUint16(Footer.geometry),
      heads: view.getUint8(Footer.geometry + 2),
      sectorsPerTrack: view.getUint8(Footer.geometry + 3),
    },
    diskType,
    checksum: stored,
    uniqueId: bytes.slice(Footer.uniqueId, Footer.uniqueId + 16),
    savedState: view.getUint8(Footer.savedState),
  };
}

/** Encodes a footer, checksum included. */
export function encodeFooter(
  footer: Omit<VhdFooter, "checksum">,
  checksum: ChecksumFn,
): Uint8Array {
  const bytes = new Uint8Array(FOOTER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(Buffer.from("conectix", "latin1"), Footer.cookie);
  view.setUint32(Footer.features, footer.features);
  view.setUint32(Footer.version, footer.version);
  view.setBigUint64(
    Footer.dataOffset,
    footer.dataOffset < 0 ? ALL_ONES : BigInt(footer.dataOffset),
  );
  view.setUint32(Footer.timestamp, footer.timestamp);
  bytes.set(Buffer.from(footer.creatorApp, "latin1").subarray(0, 4), Footer.creatorApp);
  view.setUint32(Footer.creatorVersion, footer.creatorVersion);
  bytes.set(Buffer.from(footer.creatorOs, "latin1").subarray(0, 4), Footer.creatorOs);
  view.setBigUint64(Footer.originalSize, BigInt(footer.originalSize));
  view.setBigUint64(Footer.currentSize, BigInt(footer.currentSize));
  view.setUint16(Footer.geometry, footer.geometry.cylinders);
  view.setUint8(Footer.geometry + 2, footer.geometry.heads);
  view.setUint8(Footer.geometry + 3, footer.geometry.sectorsPerTrack);
  view.setUint32(Footer.diskType, DiskType[footer.diskType]);
  bytes.set(footer.uniqueId.subarray(0, 16), Footer.uniqueId);
  view.setUint8(Footer.savedState, footer.savedState);
  view.setUint32(Footer.checksum, checksum(bytes, Footer.checksum));
  return bytes;
}

/**
 * Decodes and validates a dynamic disk header read from file offset `base`.
 *
 * @throws VhdFormatError naming the first field that is wrong.
 */
export function decodeHeader(bytes: Uint8Array, base: number, checksum: ChecksumFn): VhdHeader {
  if (bytes.length < HEADER_BYTES) {
    throw new VhdFormatError(
      "dynamic header",
      base,
      `only ${bytes.length} bytes, needs ${HEADER_BYTES}`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const cookie = ascii(bytes, Header.cookie, 8);
  if (cookie !== "cxsparse") {
    throw new VhdFormatError(
      "dynamic header cookie",
      base,
      `is ${JSON.stringify(cookie)}, not "cxsparse"`,
    );
  }
  const stored = view.getUint32(Header.checksum);
  const computed = checksum(bytes.subarray(0, HEADER_BYTES), Header.checksum);
  if (stored !== computed) {
    throw new VhdFormatError(
      "dynamic header checksum",
      base + Header.checksum,
      `is 0x${stored.toString(16)}, the header sums to 0x${computed.toString(16)}`,
    );
  }
  const version = view.getUint32(Header.version);
  if (version >>> 16 !== 1) {
    throw new VhdFormatError(
      "dynamic header version",
      base + Header.version,
      `is 0x${version.toString(16)}, only major version 1 exists`,
    );
  }
  const blockSize = view.getUint32(Header.blockSize);
  if (
    blockSize < MIN_BLOCK_BYTES ||
    blockSize > MAX_BLOCK_BYTES ||
    (blockSize & (blockSize - 1)) !== 0
  ) {
    throw new VhdFormatError(
      "dynamic header block size",
      base + Header.blockSize,
      `is ${blockSize}, must be a power of two from ${MIN_BLOCK_BYTES} to ${MAX_BLOCK_BYTES}`,
    );
  }
  const locators: ParentLocator[] = [];
  for (let i = 0; i < LOCATOR_COUNT; i++) {
    const at = Header.locators + i * LOCATOR_BYTES;
    locators.push({
      platformCode: view.getUint32(at),
      dataSpace: view.getUint32(at + 4),
      dataLength: view.getUint32(at + 8),
      dataOffset: u64(view, at + 16, `parent locator ${i} data offset`, base),
    });
  }
  const name = Buffer.from(
    bytes.subarray(Header.parentName, Header.parentName + PARENT_NAME_BYTES),
  );
  name.swap16();
  const parentName = name.toString("utf16le").replace(/\0[\s\S]*$/, "");
  return {
    tableOffset: u64(view, Header.tableOffset, "dynamic header table offset", base),
    version,
    maxTableEntries: view.getUint32(Header.maxTableEntries),
    blockSize,
    checksum: stored,
    parentUniqueId: bytes.slice(Header.parentUniqueId, Header.parentUniqueId + 16),
    parentTimestamp: view.getUint32(Header.parentTimestamp),
    parentName,
    locators,
  };
}

/** Encodes a dynamic disk header, checksum included. */
export function encodeHeader(
  header: Omit<VhdHeader, "checksum">,
  checksum: ChecksumFn,
): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(Buffer.from("cxsparse", "latin1"), Header.cookie);
  view.setBigUint64(Header.dataOffset, ALL_ONES);
  view.setBigUint64(Header.tableOffset, BigInt(header.tableOffset));
  view.setUint32(Header.version, header.version);
  view.setUint32(Header.maxTableEntries, header.maxTableEntries);
  view.setUint32(Header.blockSize, header.blockSize);
  bytes.set(header.parentUniqueId.subarray(0, 16), Header.parentUniqueId);
  view.setUint32(Header.parentTimestamp, header.parentTimestamp);
  const name = Buffer.from(header.parentName, "utf16le");
  name.swap16();
  bytes.set(name.subarray(0, PARENT_NAME_BYTES), Header.parentName);
  header.locators.forEach((l, i) => {
    const at = Header.locators + i * LOCATOR_BYTES;
    view.setUint32(at, l.platformCode);
    view.setUint32(at + 4, l.dataSpace);
    view.setUint32(at + 8, l.dataLength);
    view.setBigUint64(at + 16, BigInt(l.dataOffset));
  });
  view.setUint32(Header.checksum, checksum(bytes, Header.checksum));
  return bytes;
}

/** Bytes of a block's sector bitmap: one bit per sector, rounded up to a sector. */
export function bitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / SECTOR / 8 / SECTOR) * SECTOR;
}

/** A VHD timestamp for a JavaScript time in milliseconds (clamped to u32). */
export function vhdTimestamp(ms: number): number {
  return Math.max(0, Math.min(0xffffffff, Math.floor(ms / 1000) - VHD_EPOCH_SECONDS));
}

/** Formats a 16-byte unique id as a UUID string. */
export function formatUuid(id: Uint8Array): string {
  const h = Buffer.from(id).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
