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
  /** Dirty logging: leaves are mapped read-only until a write logs the page (as for live migration). */
  readonly dirtyLogging?: boolean;
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
  /** The dirty log: guest-physical pages (at the leaf's size) written since the last harvest. */
  readonly dirtyLog = new Set<number>();
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
    // A page mapped already keeps its write permission (a spurious violation changes nothing).
    const mapped = (this.window.read(at) & EPT.read) !== 0n;
    const writable =
      !this.options.dirtyLogging || (mapped && (this.window.read(at) & EPT.write) !== 0n);
    const leaf = writable ? EPT_LEAF : EPT_LEAF & ~EPT.write;
    this.window.write(at, BigInt(HOST_BASE + base) | leaf | large);
    if (!mapped) this.mappedPages++;
  }

  /**
   * Maps `gpa` if no leaf maps it yet, as the hypervisor does when it backs a
   * page while servicing another exit (agile paging's shadow fill): the EPT is
   * its map of guest memory, so a later nested walk finds the page. Returns
   * whether it mapped.
   */
  ensureMapped(gpa: number): boolean {
    if (this.leafOf(gpa) !== null) return false;
    this.map(gpa);
    return true;
  }

  /** The EPT leaf's level (1 for 4 KiB host pages, 2 for 2 MiB, 3 for 1 GiB). */
  get leafLevelOfBacking(): number {
    return this.leafLevel;
  }

  /** The EPT leaf entry's address for `gpa`, or null when no leaf maps it. */
  private leafOf(gpa: number): number | null {
    let table = this.root;
    for (let level = this.options.levels; level > this.leafLevel; level--) {
      const entry = this.window.read(table + tableIndex(gpa, level) * 8);
      if ((entry & EPT_TABLE) === 0n) return null;
      table = Number(entry & 0x000f_ffff_ffff_f000n);
    }
    const at = table + tableIndex(gpa, this.leafLevel) * 8;
    return (this.window.read(at) & EPT.read) !== 0n ? at : null;
  }

  /**
   * Services an EPT violation: a write to a leaf write-protected for dirty
   * logging logs the page and makes it writable (returns "dirty-log");
   * anything else maps the page (returns "ept-violation").
   */
  service(gpa: number): "dirty-log" | "ept-violation" {
    const at = this.leafOf(gpa);
    if (at !== null) {
      const entry = this.window.read(at);
      if ((entry & EPT.write) === 0n && this.options.dirtyLogging) {
        this.window.write(at, entry | EPT.write);
        this.dirtyLog.add(this.pageOf(gpa));
        return "dirty-log";
      }
    }
    this.map(gpa);
    return "ept-violation";
  }

  /**
   * A store by the guest itself (not through the walker) to `gpa`: exits when
   * no leaf maps the page (an EPT violation) or the leaf is write-protected for
   * dirty logging; with EPT A/D the store sets the leaf's A and D. Returns the
   * exit it took, or null.
   */
  guestStore(gpa: number): "dirty-log" | "ept-violation" | null {
    let at = this.leafOf(gpa);
    let exit: "dirty-log" | "ept-violation" | null = null;
    if (at === null || (this.window.read(at) & EPT.write) === 0n) {
      exit = this.service(gpa);
      at = this.leafOf(gpa);
    }
    if (at !== null && this.options.accessedDirty) {
      this.window.write(at, this.window.read(at) | EPT.accessed | EPT.dirty);
    }
    return exit;
  }

  private pageOf(gpa: number): number {
    const page = PAGE_BYTES[this.options.backing];
    return Math.floor(gpa / page) * page;
  }

  /** Clears the dirty log: write-protects every leaf again. Returns how many were writable. */
  clearDirtyLog(): number {
    this.dirtyLog.clear();
    let cleared = 0;
    const visit = (table: number, level: number) => {
      for (let i = 0; i < 512; i++) {
        const at = table + i * 8;
        const entry = this.window.read(at);
        if ((entry & EPT_TABLE) === 0n) continue;
        if (level === this.leafLevel) {
          if ((entry & EPT.write) !== 0n) {
            this.window.write(at, entry & ~EPT.write);
            cleared++;
          }
        } else {
          visit(Number(entry & 0x000f_ffff_ffff_f000n), level - 1);
        }
      }
    };
    visit(this.root, this.options.levels);
    return cleared;
  }

  /** Maps all of guest memory up front (no EPT violations later). */
  mapAll(): void {
    const page = PAGE_BYTES[this.options.backing];
    for (let gpa = 0; gpa < this.options.guestBytes; gpa += page) this.map(gpa);
  }
}
