import {
  EPT,
  EPT_MEMORY_TYPES,
  encodeEptp,
  levelOfPageSize,
  PAGE_BYTES,
  type PageSize,
  tableIndex,
} from "./entry.js";
import { PagingError } from "./errors.js";
import { HOST_BASE, type PhysicalWindow } from "./physical.js";

/** Options of a {@link HostMemory}. */
export interface HostMemoryOptions {
  /** EPT levels: 4, or 5 (Ice Lake's 5-level EPT). */
  readonly levels: 4 | 5;
  /** The host page size backing guest memory: what the EPT's leaves map. */
  readonly backing: PageSize;
  /** Guest memory size in bytes. */
  readonly guestBytes: number;
  /** EPT accessed and dirty flags (EPTP bit 6). */
  readonly accessedDirty?: boolean;
}

const EPT_TABLE = EPT.read | EPT.write | EPT.execute;
const EPT_LEAF =
  EPT.read | EPT.write | EPT.execute | (BigInt(EPT_MEMORY_TYPES.WB) << 3n) | EPT.ignorePat;

/**
 * The host: guest-physical memory [0, guestBytes) backed linearly at host-physical
 * HOST_BASE + gPA, mapped through a real EPT in 4 KiB, 2 MiB or 1 GiB leaves,
 * filled on first touch (an EPT violation), as KVM and Hyper-V do.
 */
export class HostMemory {
  /** The EPT's top table (host-physical). */
  readonly root: number;
  /** EPT leaves written so far (one per EPT violation serviced). */
  mappedPages = 0;
  private readonly leafLevel: number;

  constructor(
    readonly window: PhysicalWindow,
    readonly options: HostMemoryOptions,
  ) {
    const page = PAGE_BYTES[options.backing];
    if (options.guestBytes % page !== 0) {
      throw new PagingError(
        `guest memory (${options.guestBytes} bytes) is not a whole number of ${options.backing} host pages`,
      );
    }
    this.leafLevel = levelOfPageSize(options.backing);
    this.root = window.allocateHostTable();
  }

  /** The EPTP a VMCS would hold. */
  get eptp(): bigint {
    return encodeEptp(BigInt(this.root), this.options.levels, this.options.accessedDirty === true);
  }

  /** Host-physical address of guest-physical `gpa`. @throws PagingError past the guest's memory. */
  hpaOf(gpa: number): number {
    this.check(gpa);
    return HOST_BASE + gpa;
  }

  private check(gpa: number): void {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa >= this.options.guestBytes) {
      throw new PagingError(
        `guest-physical 0x${gpa.toString(16)} is past the guest's memory (${this.options.guestBytes} bytes)`,
      );
    }
  }

  /** Services an EPT violation at `gpa`: writes the EPT leaf (and tables) that map it. */
  map(gpa: number): void {
    this.check(gpa);
    let table = this.root;
    for (let level = this.options.levels; level > this.leafLevel; level--) {
      const at = table + tableIndex(gpa, level) * 8;
      const entry = this.window.read(at);
      if ((entry & EPT_TABLE) === 0n) {
        const next = this.window.allocateHostTable();
        this.window.write(at, BigInt(next) | EPT_TABLE);
        table = next;
      } else {
        table = Number(entry & 0x000f_ffff_ffff_f000n);
      }
    }
    const page = PAGE_BYTES[this.options.backing];
    const base = Math.floor(gpa / page) * page;
    const at = table + tableIndex(gpa, this.leafLevel) * 8;
    const large = this.leafLevel > 1 ? EPT.largePage : 0n;
    this.window.write(at, BigInt(HOST_BASE + base) | EPT_LEAF | large);
    this.mappedPages++;
  }

  /** Maps all of guest memory up front (no EPT violations later). */
  mapAll(): void {
    const page = PAGE_BYTES[this.options.backing];
    for (let gpa = 0; gpa < this.options.guestBytes; gpa += page) this.map(gpa);
  }
}
