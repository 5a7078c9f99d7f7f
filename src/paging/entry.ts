/**
 * x86-64 paging entries and Intel EPT entries, bit for bit (Intel SDM
 * volume 3A chapter 4 and volume 3C chapter 29). Entries are 64-bit; this module encodes and decodes them as
 * BigInt so that bit 63 (NX) is exact.
 *
 * ```
 * x86-64 PML5E/PML4E/PDPTE/PDE/PTE
 *  63  62..52  51 .............. 12  11..9  8   7    6   5   4    3    2    1    0
 * +---+-------+---------------------+------+---+----+---+---+----+----+----+----+---+
 * |NX | avail |  frame address      |avail | G | PS | D | A |PCD |PWT | US | RW | P |
 * +---+-------+---------------------+------+---+----+---+---+----+----+----+----+---+
 *   PS: 1 GiB page in a PDPTE, 2 MiB page in a PDE; PAT in a 4 KiB PTE.
 *   Bit 12 is PAT in a large leaf (so a large frame's address starts higher).
 *
 * EPT PML4E/PDPTE/PDE/PTE
 *  63 ...  51 .............. 12  11  10  9   8   7     6    5..3   2   1   0
 * +-------+---------------------+---+---+---+---+-----+----+------+---+---+---+
 * |       |  frame address      |   |   | D | A |large|IPAT| type | X | W | R |
 * +-------+---------------------+---+---+---+---+-----+----+------+---+---+---+
 * ```
 */

/** Address bits 12-51. */
export const ADDRESS_MASK = 0x000f_ffff_ffff_f000n;

/** x86-64 entry bits. */
export const X86 = {
  present: 1n << 0n,
  writable: 1n << 1n,
  user: 1n << 2n,
  writeThrough: 1n << 3n,
  cacheDisable: 1n << 4n,
  accessed: 1n << 5n,
  dirty: 1n << 6n,
  pageSize: 1n << 7n,
  global: 1n << 8n,
  /** PAT of a large leaf (bit 12). */
  largePat: 1n << 12n,
  noExecute: 1n << 63n,
} as const;

/** Software-available bits 9-11: the guest OS model keeps copy-on-write in bit 9, as Linux keeps its own flags there. */
export const X86_SOFTWARE_COW = 1n << 9n;

/** EPT entry bits. */
export const EPT = {
  read: 1n << 0n,
  write: 1n << 1n,
  execute: 1n << 2n,
  ignorePat: 1n << 6n,
  largePage: 1n << 7n,
  accessed: 1n << 8n,
  dirty: 1n << 9n,
} as const;

/** EPT memory types (bits 5:3 of a leaf; SDM 28.3.7). */
export const EPT_MEMORY_TYPES = { UC: 0, WC: 1, WT: 4, WP: 5, WB: 6 } as const;
/** An EPT memory type name. */
export type EptMemoryType = keyof typeof EPT_MEMORY_TYPES;

/** A decoded x86-64 paging entry: every architectural field. */
export interface X86Entry {
  readonly present: boolean;
  readonly writable: boolean;
  readonly user: boolean;
  readonly writeThrough: boolean;
  readonly cacheDisable: boolean;
  readonly accessed: boolean;
  readonly dirty: boolean;
  /** PS: a 1 GiB or 2 MiB leaf (in a PDPTE or PDE); PAT in a 4 KiB PTE. */
  readonly pageSize: boolean;
  readonly global: boolean;
  /** Bits 9-11, ignored by the hardware. */
  readonly software: number;
  readonly noExecute: boolean;
  /** Bits 12-51 as an address (for a large leaf, bit 12 is PAT and is included here). */
  readonly address: bigint;
  /** Bits 52-62, ignored by the hardware. */
  readonly high: number;
}

/** Encodes an x86-64 entry. @throws RangeError for an address or field out of range. */
export function encodeX86(entry: X86Entry): bigint {
  if ((entry.address & ~ADDRESS_MASK) !== 0n) {
    throw new RangeError(`entry address 0x${entry.address.toString(16)} has bits outside 12-51`);
  }
  if (!Number.isInteger(entry.software) || entry.software < 0 || entry.software > 7) {
    throw new RangeError(`software bits must be 0-7, not ${entry.software}`);
  }
  if (!Number.isInteger(entry.high) || entry.high < 0 || entry.high > 0x7ff) {
    throw new RangeError(`bits 52-62 must be 0-0x7ff, not ${entry.high}`);
  }
  let e = entry.address;
  if (entry.present) e |= X86.present;
  if (entry.writable) e |= X86.writable;
  if (entry.user) e |= X86.user;
  if (entry.writeThrough) e |= X86.writeThrough;
  if (entry.cacheDisable) e |= X86.cacheDisable;
  if (entry.accessed) e |= X86.accessed;
  if (entry.dirty) e |= X86.dirty;
  if (entry.pageSize) e |= X86.pageSize;
  if (entry.global) e |= X86.global;
  if (entry.noExecute) e |= X86.noExecute;
  e |= BigInt(entry.software) << 9n;
  e |= BigInt(entry.high) << 52n;
  return e;
}

/** Decodes an x86-64 entry (every 64-bit value is some entry). */
export function decodeX86(e: bigint): X86Entry {
  const bit = (b: bigint) => (e & b) !== 0n;
  return {
    present: bit(X86.present),
    writable: bit(X86.writable),
    user: bit(X86.user),
    writeThrough: bit(X86.writeThrough),
    cacheDisable: bit(X86.cacheDisable),
    accessed: bit(X86.accessed),
    dirty: bit(X86.dirty),
    pageSize: bit(X86.pageSize),
    global: bit(X86.global),
    software: Number((e >> 9n) & 7n),
    noExecute: bit(X86.noExecute),
    address: e & ADDRESS_MASK,
    high: Number((e >> 52n) & 0x7ffn),
  };
}

/** A decoded EPT entry: every architectural field. */
export interface EptEntry {
  readonly read: boolean;
  readonly write: boolean;
  readonly execute: boolean;
  /** Bits 5:3 (meaningful in a leaf). */
  readonly memoryType: number;
  readonly ignorePat: boolean;
  readonly largePage: boolean;
  readonly accessed: boolean;
  readonly dirty: boolean;
  /** Bits 10-11 (user-execute and ignored). */
  readonly bits10to11: number;
  readonly address: bigint;
  /** Bits 52-63 (suppress-#VE and ignored bits). */
  readonly high: number;
}

/** Encodes an EPT entry. @throws RangeError for an address or field out of range. */
export function encodeEpt(entry: EptEntry): bigint {
  if ((entry.address & ~ADDRESS_MASK) !== 0n) {
    throw new RangeError(`EPT address 0x${entry.address.toString(16)} has bits outside 12-51`);
  }
  if (!Number.isInteger(entry.memoryType) || entry.memoryType < 0 || entry.memoryType > 7) {
    throw new RangeError(`EPT memory type must be 0-7, not ${entry.memoryType}`);
  }
  if (!Number.isInteger(entry.bits10to11) || entry.bits10to11 < 0 || entry.bits10to11 > 3) {
    throw new RangeError(`EPT bits 10-11 must be 0-3, not ${entry.bits10to11}`);
  }
  if (!Number.isInteger(entry.high) || entry.high < 0 || entry.high > 0xfff) {
    throw new RangeError(`EPT bits 52-63 must be 0-0xfff, not ${entry.high}`);
  }
  let e = entry.address | (BigInt(entry.memoryType) << 3n) | (BigInt(entry.bits10to11) << 10n);
  if (entry.read) e |= EPT.read;
  if (entry.write) e |= EPT.write;
  if (entry.execute) e |= EPT.execute;
  if (entry.ignorePat) e |= EPT.ignorePat;
  if (entry.largePage) e |= EPT.largePage;
  if (entry.accessed) e |= EPT.accessed;
  if (entry.dirty) e |= EPT.dirty;
  e |= BigInt(entry.high) << 52n;
  return e;
}

/** Decodes an EPT entry. */
export function decodeEpt(e: bigint): EptEntry {
  const bit = (b: bigint) => (e & b) !== 0n;
  return {
    read: bit(EPT.read),
    write: bit(EPT.write),
    execute: bit(EPT.execute),
    memoryType: Number((e >> 3n) & 7n),
    ignorePat: bit(EPT.ignorePat),
    largePage: bit(EPT.largePage),
    accessed: bit(EPT.accessed),
    dirty: bit(EPT.dirty),
    bits10to11: Number((e >> 10n) & 3n),
    address: e & ADDRESS_MASK,
    high: Number((e >> 52n) & 0xfffn),
  };
}

/**
 * An EPTP value: memory type in bits 2:0, page-walk length minus one in 5:3,
 * accessed/dirty enable in bit 6, the PML4 (or PML5) table address.
 */
export function encodeEptp(root: bigint, levels: 4 | 5, accessedDirty: boolean): bigint {
  if ((root & ~ADDRESS_MASK) !== 0n) throw new RangeError("EPTP root must be 4 KiB aligned");
  return (
    root |
    BigInt(EPT_MEMORY_TYPES.WB) |
    (BigInt(levels - 1) << 3n) |
    (accessedDirty ? 1n << 6n : 0n)
  );
}

/** Page sizes, as the level of their leaf minus one. */
export const PAGE_SIZES = { "4K": 0, "2M": 1, "1G": 2 } as const;
/** A page size name. */
export type PageSize = keyof typeof PAGE_SIZES;
/** Bytes in a page of each size. */
export const PAGE_BYTES: Readonly<Record<PageSize, number>> = {
  "4K": 4096,
  "2M": 2 * 1024 ** 2,
  "1G": 1024 ** 3,
};
/** The page size of a leaf at `level` (1 PTE, 2 PDE, 3 PDPTE). */
export function pageSizeOfLevel(level: number): PageSize {
  if (level === 1) return "4K";
  if (level === 2) return "2M";
  if (level === 3) return "1G";
  throw new RangeError(`no leaf at level ${level}`);
}
/** The leaf level of a page size. */
export function levelOfPageSize(size: PageSize): 1 | 2 | 3 {
  return (PAGE_SIZES[size] + 1) as 1 | 2 | 3;
}

/** The index into the table at `level` (1-5) of a virtual or guest-physical address. */
export function tableIndex(address: number, level: number): number {
  return Math.floor(address / 2 ** (12 + 9 * (level - 1))) % 512;
}
