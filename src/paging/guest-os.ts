import {
  ADDRESS_MASK,
  levelOfPageSize,
  PAGE_BYTES,
  type PageSize,
  tableIndex,
  X86,
  X86_SOFTWARE_COW,
} from "./entry.js";
import { PagingError } from "./errors.js";
import { ACCESS, type Fault } from "./mmu.js";
import { HOST_BASE, type PhysicalWindow } from "./physical.js";

/** Software bit 10: a page the guest write-protected to track writes (soft-dirty tracking). */
export const X86_SOFTWARE_TRACKED = 1n << 10n;

/** What a hypervisor (or bare hardware) sees of the guest's paging activity. */
export interface GuestPagingHooks {
  /** The guest wrote entry `index` of its table at guest-physical `tableGpa` (table level `level`). */
  tableWrite(tableGpa: number, index: number, level: number): void;
  /** The guest allocated (and zeroed) a table frame. */
  tableAllocated(tableGpa: number): void;
  /**
   * The guest loaded CR3 (a context switch, or a reload to flush). `fresh`:
   * the address-space tag last served another address space (a new process,
   * or one that exec'ed), so the load flushes what the tag cached.
   */
  cr3Load(process: GuestProcess, fresh: boolean): void;
  /** The guest ran INVLPG. */
  invlpg(va: number): void;
}

/** A virtual memory area: a range the process may touch, demand paged. */
export interface Vma {
  readonly start: number;
  readonly end: number;
  readonly pageSize: PageSize;
  readonly writable: boolean;
  readonly executable: boolean;
}

/** A guest process: its address space and its tag. */
export interface GuestProcess {
  readonly pid: number;
  /** Guest-physical address of its top table. */
  cr3: number;
  /** Its PCID (address-space tag), 1-4095. */
  readonly pcid: number;
  vmas: Vma[];
  /** Leaf pages mapped now. */
  mapped: number;
}

/** Options of a {@link GuestOs}. */
export interface GuestOsOptions {
  /** Paging levels: 4, or 5 (LA57). */
  readonly levels: 4 | 5;
  /** Guest memory in bytes (guest-physical [0, guestBytes)). */
  readonly guestBytes: number;
  /** Bytes of the page-table zone at the bottom of guest-physical memory. */
  readonly tableZoneBytes: number;
}

/** What the guest OS did, counted. */
export interface GuestOsCounters {
  pageFaults: number;
  copyOnWrite: number;
  tableWrites: number;
  contextSwitches: number;
  invlpgs: number;
  forks: number;
  execs: number;
}

const TABLE_FLAGS = X86.present | X86.writable | X86.user;

/**
 * A guest operating system's memory manager over real x86-64 page tables:
 * frames, demand-paged VMAs, map/unmap, protection changes, copy-on-write
 * fork, exec, context switches and INVLPG, with 4 KiB, 2 MiB and 1 GiB pages.
 * Every write to a table goes through {@link GuestPagingHooks.tableWrite}, so
 * a shadow MMU sees exactly what a write-protected page would trap.
 */
export class GuestOs {
  readonly counters: GuestOsCounters = {
    pageFaults: 0,
    copyOnWrite: 0,
    tableWrites: 0,
    contextSwitches: 0,
    invlpgs: 0,
    forks: 0,
    execs: 0,
  };
  readonly processes = new Map<number, GuestProcess>();
  current!: GuestProcess;
  private nextPid = 1;
  private nextData: number;
  private readonly freeData: Record<PageSize, number[]> = { "4K": [], "2M": [], "1G": [] };
  private readonly shared = new Map<number, number>();
  /** Which address space (pid and exec count) each PCID last served. */
  private readonly pcidOwner = new Map<number, string>();
  private readonly execs = new Map<number, number>();

  constructor(
    readonly window: PhysicalWindow,
    readonly options: GuestOsOptions,
    readonly hooks: GuestPagingHooks,
  ) {
    this.nextData = options.tableZoneBytes;
  }

  // --- tables -----------------------------------------------------------

  private readEntry(table: number, index: number): bigint {
    return this.window.read(HOST_BASE + table + index * 8);
  }

  private writeEntry(table: number, index: number, level: number, entry: bigint): void {
    this.window.write(HOST_BASE + table + index * 8, entry);
    this.counters.tableWrites++;
    this.hooks.tableWrite(table, index, level);
  }

  private newTable(): number {
    const gpa = this.window.allocateGuestTable();
    this.hooks.tableAllocated(gpa);
    return gpa;
  }

  /** Finds (or with `create`, builds) the table holding `va`'s leaf at `leafLevel`. */
  private leafTable(
    process: GuestProcess,
    va: number,
    leafLevel: number,
    create: boolean,
  ): number | null {
    let table = process.cr3;
    for (let level = this.options.levels; level > leafLevel; level--) {
      const index = tableIndex(va, level);
      const entry = this.readEntry(table, index);
      if ((entry & X86.present) === 0n) {
        if (!create) return null;
        const next = this.newTable();
        this.writeEntry(table, index, level, BigInt(next) | TABLE_FLAGS);
        table = next;
      } else if ((entry & X86.pageSize) !== 0n) {
        return null;
      } else {
        table = Number(entry & ADDRESS_MASK);
      }
    }
    return table;
  }

  // --- frames -----------------------------------------------------------

  private allocateData(size: PageSize): number {
    const free = this.freeData[size].pop();
    if (free !== undefined) return free;
    const bytes = PAGE_BYTES[size];
    const at = Math.ceil(this.nextData / bytes) * bytes;
    if (at + bytes > this.options.guestBytes) {
      throw new PagingError(
        `guest memory (${this.options.guestBytes} bytes) is exhausted allocating a ${size} page`,
      );
    }
    // Smaller frames skipped by the alignment go to their free lists.
    for (let gap = this.nextData; gap + 4096 <= at; gap += 4096) this.freeData["4K"].push(gap);
    this.nextData = at + bytes;
    return at;
  }

  private releaseData(frame: number, size: PageSize): void {
    const refs = this.shared.get(frame);
    if (refs !== undefined && refs > 1) {
      this.shared.set(frame, refs - 1);
      return;
    }
    this.shared.delete(frame);
    this.freeData[size].push(frame);
  }

  // --- processes --------------------------------------------------------

  /** Creates a process with an empty address space and the given areas. */
  createProcess(vmas: Vma[]): GuestProcess {
    const pid = this.nextPid++;
    const process: GuestProcess = {
      pid,
      cr3: this.newTable(),
      pcid: ((pid - 1) % 4095) + 1,
      vmas: [...vmas],
      mapped: 0,
    };
    this.processes.set(pid, process);
    this.current ??= process;
    return process;
  }

  /** Loads `process`'s CR3: a context switch. */
  switchTo(process: GuestProcess): void {
    this.current = process;
    this.counters.contextSwitches++;
    // Linux gives a new address space a PCID whose old entries are flushed (switch_mm_irqs_off).
    const mm = this.mmOf(process);
    const fresh = this.pcidOwner.get(process.pcid) !== mm;
    this.pcidOwner.set(process.pcid, mm);
    this.hooks.cr3Load(process, fresh);
  }

  private invlpg(process: GuestProcess, va: number): void {
    if (process !== this.current) {
      // Another address space: its next load must flush it, which a load
      // under its own PCID would not (Linux bumps the mm's tlb_gen, and
      // switch_mm_irqs_off flushes a PCID whose generation is behind).
      this.stale(process);
      return;
    }
    this.counters.invlpgs++;
    this.hooks.invlpg(va);
  }

  /** Makes `process`'s next CR3 load flush what its PCID has cached. */
  private stale(process: GuestProcess): void {
    if (this.pcidOwner.get(process.pcid) === this.mmOf(process))
      this.pcidOwner.delete(process.pcid);
  }

  /** An address space's identity: a process's, until its next exec. */
  private mmOf(process: GuestProcess): string {
    return `${process.pid}:${this.execs.get(process.pid) ?? 0}`;
  }

  private vmaOf(process: GuestProcess, va: number): Vma | undefined {
    return process.vmas.find((v) => va >= v.start && va < v.end);
  }

  /** Maps one page of `size` at `va` (aligned down) to a fresh frame. */
  private mapPage(process: GuestProcess, va: number, vma: Vma): void {
    const size = vma.pageSize;
    const level = levelOfPageSize(size);
    const table = this.leafTable(process, va, level, true);
    if (table === null) throw new PagingError(`0x${va.toString(16)} is covered by a larger page`);
    const frame = this.allocateData(size);
    let entry = BigInt(frame) | X86.present | X86.user;
    if (vma.writable) entry |= X86.writable;
    if (!vma.executable) entry |= X86.noExecute;
    if (level > 1) entry |= X86.pageSize;
    this.writeEntry(table, tableIndex(va, level), level, entry);
    process.mapped++;
  }

  /**
   * The guest's page-fault handler: demand paging, copy-on-write and
   * write-tracking faults. @throws PagingError for a fault no area explains
   * (the process would get SIGSEGV).
   */
  handleFault(fault: Fault): void {
    const process = this.current;
    const va = fault.address;
    this.counters.pageFaults++;
    const vma = this.vmaOf(process, va);
    if (!vma) {
      throw new PagingError(
        `segmentation fault: pid ${process.pid} touched 0x${va.toString(16)}, outside its areas`,
      );
    }
    if (fault.code === "guest-not-present") {
      this.mapPage(process, va, vma);
      return;
    }
    const write = (fault.kind & ACCESS.write) !== 0;
    const level = levelOfPageSize(vma.pageSize);
    const table = this.leafTable(process, va, level, false);
    const index = tableIndex(va, level);
    const entry = table === null ? 0n : this.readEntry(table, index);
    const special = X86_SOFTWARE_COW | X86_SOFTWARE_TRACKED;
    if (fault.code === "guest-protection" && write && table !== null && (entry & special) !== 0n) {
      let next = (entry | X86.writable) & ~special;
      if ((entry & X86_SOFTWARE_COW) !== 0n) {
        this.counters.copyOnWrite++;
        const frame = Number(entry & ADDRESS_MASK);
        const refs = this.shared.get(frame) ?? 1;
        if (refs > 1) {
          // Copy: a new frame for this process, the old one keeps its other sharers.
          this.shared.set(frame, refs - 1);
          next = (next & ~ADDRESS_MASK) | BigInt(this.allocateData(vma.pageSize));
        }
      }
      this.writeEntry(table, index, level, next);
      this.invlpg(process, va);
      return;
    }
    throw new PagingError(
      `segmentation fault: pid ${process.pid} ${fault.code} at 0x${va.toString(16)} (level ${fault.level})`,
    );
  }

  /** Visits every present leaf of `process`: (table, index, level, va, entry). */
  private forEachLeaf(
    process: GuestProcess,
    visit: (table: number, index: number, level: number, va: number, entry: bigint) => void,
  ): void {
    const walk = (table: number, level: number, base: number) => {
      for (let i = 0; i < 512; i++) {
        const entry = this.readEntry(table, i);
        if ((entry & X86.present) === 0n) continue;
        const va = base + i * 2 ** (12 + 9 * (level - 1));
        if (level === 1 || (entry & X86.pageSize) !== 0n) visit(table, i, level, va, entry);
        else walk(Number(entry & ADDRESS_MASK), level - 1, va);
      }
    };
    walk(process.cr3, this.options.levels, 0);
  }

  /** Unmaps the pages of [start, start + bytes) (munmap / MADV_DONTNEED): clears entries, INVLPG each. */
  unmap(process: GuestProcess, start: number, bytes: number): number {
    let cleared = 0;
    for (let va = start; va < start + bytes; ) {
      const vma = this.vmaOf(process, va);
      const size = vma?.pageSize ?? "4K";
      const page = PAGE_BYTES[size];
      const level = levelOfPageSize(size);
      const table = this.leafTable(process, va, level, false);
      if (table !== null) {
        const index = tableIndex(va, level);
        const entry = this.readEntry(table, index);
        if ((entry & X86.present) !== 0n) {
          this.writeEntry(table, index, level, 0n);
          this.releaseData(Number(entry & ADDRESS_MASK), size);
          process.mapped--;
          this.invlpg(process, Math.floor(va / page) * page);
          cleared++;
        }
      }
      va = Math.floor(va / page) * page + page;
    }
    return cleared;
  }

  /** Write-protects the page holding `va` to track its next write (soft-dirty); INVLPG. */
  trackWrites(process: GuestProcess, va: number): boolean {
    const vma = this.vmaOf(process, va);
    if (!vma?.writable) return false;
    const level = levelOfPageSize(vma.pageSize);
    const table = this.leafTable(process, va, level, false);
    if (table === null) return false;
    const index = tableIndex(va, level);
    const entry = this.readEntry(table, index);
    if ((entry & X86.present) === 0n || (entry & X86.writable) === 0n) return false;
    this.writeEntry(table, index, level, (entry & ~X86.writable) | X86_SOFTWARE_TRACKED);
    this.invlpg(process, va);
    return true;
  }

  /**
   * fork(): a child with a copy of `parent`'s tables; every writable leaf of
   * both becomes read-only copy-on-write; the parent's TLB is flushed, as
   * Linux's flush_tlb_mm does: by a CR3 reload that flushes its PCID.
   */
  fork(parent: GuestProcess): GuestProcess {
    this.counters.forks++;
    const child = this.createProcess(parent.vmas);
    this.forEachLeaf(parent, (table, index, level, va, entry) => {
      let shared = entry;
      if ((entry & X86.writable) !== 0n || (entry & X86_SOFTWARE_TRACKED) !== 0n) {
        shared = (entry & ~(X86.writable | X86_SOFTWARE_TRACKED)) | X86_SOFTWARE_COW;
        this.writeEntry(table, index, level, shared);
      }
      const frame = Number(entry & ADDRESS_MASK);
      this.shared.set(frame, (this.shared.get(frame) ?? 1) + 1);
      const childTable = this.leafTable(child, va, level, true);
      if (childTable === null) throw new PagingError("fork: child table clash");
      this.writeEntry(childTable, index, level, shared);
      child.mapped++;
    });
    // flush_tlb_mm(parent): the parent's cached writable translations must
    // go, under its PCID too, or its next write through one would take no
    // copy-on-write fault. A running parent reloads CR3 now; another
    // flushes at its next load.
    this.stale(parent);
    if (parent === this.current) this.switchTo(parent);
    return child;
  }

  /** exec(): drops the process's address space and starts an empty one with `vmas`. */
  exec(process: GuestProcess, vmas: Vma[]): void {
    this.counters.execs++;
    this.execs.set(process.pid, (this.execs.get(process.pid) ?? 0) + 1);
    this.teardown(process);
    this.window.releaseGuestTable(process.cr3);
    process.cr3 = this.newTable();
    process.vmas = [...vmas];
    process.mapped = 0;
    if (process === this.current) this.switchTo(process);
  }

  /** exit(): frees the address space of a process that is not running. */
  exit(process: GuestProcess): void {
    if (process === this.current) throw new PagingError("a running process cannot exit here");
    this.teardown(process);
    this.window.releaseGuestTable(process.cr3);
    this.processes.delete(process.pid);
    this.execs.delete(process.pid);
  }

  private teardown(process: GuestProcess): void {
    const free = (table: number, level: number) => {
      for (let i = 0; i < 512; i++) {
        const entry = this.readEntry(table, i);
        if ((entry & X86.present) === 0n) continue;
        if (level === 1 || (entry & X86.pageSize) !== 0n) {
          this.releaseData(
            Number(entry & ADDRESS_MASK),
            level === 1 ? "4K" : level === 2 ? "2M" : "1G",
          );
        } else {
          const next = Number(entry & ADDRESS_MASK);
          free(next, level - 1);
          this.window.releaseGuestTable(next);
        }
      }
    };
    free(process.cr3, this.options.levels);
    // Linux clears the top-level entries (free_pgd_range) before freeing the tables.
    for (let i = 0; i < 512; i++) {
      if ((this.readEntry(process.cr3, i) & X86.present) !== 0n) {
        this.writeEntry(process.cr3, i, this.options.levels, 0n);
      }
    }
  }
}
