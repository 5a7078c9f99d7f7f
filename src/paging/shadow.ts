import { ADDRESS_MASK, tableIndex, X86 } from "./entry.js";
import type { ExitCounters } from "./exits.js";
import type { GuestPagingHooks, GuestProcess } from "./guest-os.js";
import { ACCESS, type Fault, type MmuContext } from "./mmu.js";
import { HOST_BASE, type PhysicalWindow } from "./physical.js";

/** Options of a {@link ShadowMmu}. */
export interface ShadowOptions {
  readonly levels: 4 | 5;
  /** Let leaf tables go unsync (written freely; INVLPG syncs one entry, a flush or CR3 load the whole page). */
  readonly unsync: boolean;
  /** Emulated writes to a shadowed page, without use in between, that unshadow it (KVM: 3). */
  readonly floodThreshold: number;
  /** Address-space tags: a CR3 load selects the process's tag instead of flushing. */
  readonly tagged: boolean;
}

/** A shadow page: the hypervisor's copy of one guest table, mapping to host-physical. */
interface ShadowPage {
  readonly gpa: number;
  readonly hpa: number;
  readonly level: number;
  unsync: boolean;
  flood: number;
  /** Shadow entries (their hPA) that point at this page. */
  readonly parents: Set<number>;
}

const PERMS = X86.writable | X86.user | X86.noExecute;

/**
 * A shadow MMU with KVM's semantics (Linux arch/x86/kvm/mmu/mmu.c and Documentation/virt/kvm/x86/mmu.rst): shadow tables
 * map guest-virtual straight to host-physical and the hardware walks them
 * natively. Guest tables that are shadowed are write-protected, so each guest
 * write to one exits and is emulated (or, for an unsync leaf table, exits once
 * and is then written freely: INVLPG syncs the one entry it names, the next
 * flush or CR3 load resynchronises the page); CR3 writes and INVLPG exit; a missing shadow entry is a
 * hidden page fault; accessed and dirty bits are emulated by mapping clean
 * pages read-only; a page emulated too often is unshadowed (write flooding).
 */
export class ShadowMmu implements GuestPagingHooks {
  private readonly pages = new Map<number, ShadowPage>();
  private readonly byHpa = new Map<number, ShadowPage>();
  private readonly unsyncPages = new Set<ShadowPage>();

  constructor(
    readonly window: PhysicalWindow,
    readonly mmu: MmuContext,
    readonly options: ShadowOptions,
    readonly counters: ExitCounters,
  ) {}

  private page(gpa: number, level: number): ShadowPage {
    let sp = this.pages.get(gpa);
    if (!sp) {
      const hpa = this.window.allocateHostTable();
      sp = { gpa, hpa, level, unsync: false, flood: 0, parents: new Set() };
      this.pages.set(gpa, sp);
      this.byHpa.set(hpa, sp);
      this.counters.shadowPages++;
    }
    return sp;
  }

  /** Shadow pages alive now. */
  get size(): number {
    return this.pages.size;
  }

  // --- guest activity (the hooks) ----------------------------------------

  tableWrite(gpa: number, index: number): void {
    const sp = this.pages.get(gpa);
    if (!sp || sp.unsync) return; // not write-protected: no exit
    if (this.options.unsync && sp.level === 1) {
      this.counters.exits["unsync-write"]++;
      sp.unsync = true;
      this.unsyncPages.add(sp);
      return;
    }
    this.counters.exits["page-table-write"]++;
    this.counters.emulatedWrites++;
    this.zapEntry(sp, index);
    sp.flood++;
    if (sp.flood >= this.options.floodThreshold && sp.level < this.options.levels) {
      this.unshadow(sp);
    }
  }

  tableAllocated(gpa: number): void {
    const sp = this.pages.get(gpa);
    if (!sp) return;
    // The guest reuses a freed table that is still write-protected: zeroing it
    // exits until write flooding unshadows it.
    const writes = Math.max(1, this.options.floodThreshold - sp.flood);
    this.counters.exits["page-table-write"] += writes;
    this.counters.emulatedWrites += writes;
    this.unshadow(sp);
  }

  cr3Load(process: GuestProcess, fresh: boolean): void {
    this.counters.exits["cr3-write"]++;
    this.resync();
    const root = this.page(process.cr3, this.options.levels);
    this.mmu.setRoot(root.hpa);
    if (this.options.tagged) this.mmu.asid = process.pcid;
    if (!this.options.tagged || fresh) this.mmu.flushAddressSpace();
  }

  invlpg(va: number): void {
    this.counters.exits.invlpg++;
    // KVM syncs only the shadow entry that maps `va`, and only where its page
    // is unsync; the page stays unsync (Linux arch/x86/kvm/mmu/mmu.c,
    // kvm_mmu_invalidate_addr, and paging_tmpl.h, FNAME(sync_spte)). A whole
    // resync waits for the next CR3 load or flush.
    this.syncAddress(va);
    this.mmu.invalidatePage(va);
  }

  // --- faults on the shadow tables ------------------------------------------

  /**
   * Handles a fault the hardware took on the shadow tables. Returns null when
   * the shadow entry was filled (a hidden page fault, or accessed/dirty
   * emulation), or the fault to inject into the guest (the guest's own tables
   * refuse the access).
   */
  handleFault(process: GuestProcess, fault: Fault): Fault | null {
    const va = fault.address;
    const write = (fault.kind & ACCESS.write) !== 0;
    let table = process.cr3;
    let sp = this.page(process.cr3, this.options.levels);
    let perms = X86.writable | X86.user;
    for (let level: number = this.options.levels; level >= 1; level--) {
      const index = tableIndex(va, level);
      const gAt = HOST_BASE + table + index * 8;
      const g = this.window.read(gAt);
      if ((g & X86.present) === 0n) return this.inject(fault, "guest-not-present", level);
      perms =
        (perms & g & (X86.writable | X86.user)) | (perms & X86.noExecute) | (g & X86.noExecute);
      const large = level > 1 && (g & X86.pageSize) !== 0n;
      if (large && level > 3) return this.inject(fault, "guest-reserved", level);
      const sAt = sp.hpa + index * 8;
      if (level === 1 || large) {
        if (write && (perms & X86.writable) === 0n)
          return this.inject(fault, "guest-protection", level);
        if ((fault.kind & ACCESS.user) !== 0 && (perms & X86.user) === 0n) {
          return this.inject(fault, "guest-protection", level);
        }
        if ((fault.kind & ACCESS.execute) !== 0 && (perms & X86.noExecute) !== 0n) {
          return this.inject(fault, "guest-protection", level);
        }
        // The hypervisor sets the guest's accessed (and dirty) bit itself.
        const gNew = g | X86.accessed | (write ? X86.dirty : 0n);
        if (gNew !== g) this.window.write(gAt, gNew);
        const before = this.window.read(sAt);
        this.window.write(sAt, this.shadowLeaf(gNew, level));
        if ((before & X86.present) === 0n) this.counters.exits["hidden-page-fault"]++;
        else if ((g & X86.dirty) !== 0n) {
          // The guest page was dirty already: the shadow entry was write-protected for dirty logging.
          this.counters.exits["dirty-log"]++;
          this.counters.dirtyLogged++;
        } else this.counters.exits["ad-emulation"]++;
        return null;
      }
      if ((g & X86.accessed) === 0n) this.window.write(gAt, g | X86.accessed);
      const childGpa = Number(g & ADDRESS_MASK);
      const child = this.page(childGpa, level - 1);
      child.flood = 0; // in use as a page table: not flooding
      const want = BigInt(child.hpa) | X86.present | X86.accessed | (g & PERMS);
      const have = this.window.read(sAt);
      if (have !== want) {
        if ((have & X86.present) !== 0n) this.unlink(sAt, have);
        this.window.write(sAt, want);
        child.parents.add(sAt);
      }
      sp = child;
      table = childGpa;
    }
    return null;
  }

  private inject(fault: Fault, code: Fault["code"], level: number): Fault {
    // Shadow paging intercepts every guest #PF and reflects the ones that are the guest's.
    this.counters.exits["guest-page-fault"]++;
    return { ...fault, code, level };
  }

  /** The shadow leaf for guest leaf `g`: writable only once the guest's dirty bit is set (A/D emulation). */
  private shadowLeaf(g: bigint, level: number): bigint {
    const large = level > 1;
    const mask = large ? ADDRESS_MASK & ~BigInt(2 ** (12 + 9 * (level - 1)) - 1) : ADDRESS_MASK;
    const frame = BigInt(HOST_BASE) + (g & mask);
    let s = frame | X86.present | X86.accessed | (g & (X86.user | X86.noExecute));
    if ((g & X86.writable) !== 0n && (g & X86.dirty) !== 0n) s |= X86.writable | X86.dirty;
    if (large) s |= X86.pageSize;
    return s;
  }

  private unlink(at: number, entry: bigint): void {
    const child = this.byHpa.get(Number(entry & ADDRESS_MASK));
    child?.parents.delete(at);
  }

  private zapEntry(sp: ShadowPage, index: number): void {
    const at = sp.hpa + index * 8;
    const s = this.window.read(at);
    if ((s & X86.present) === 0n) return;
    this.window.write(at, 0n);
    if (sp.level > 1 && (s & X86.pageSize) === 0n) {
      this.unlink(at, s);
      // A table pointer went: the paging-structure caches may hold it.
      this.mmu.flushAll();
    }
  }

  private unshadow(sp: ShadowPage): void {
    for (let i = 0; i < 512; i++) this.zapEntry(sp, i);
    for (const parent of sp.parents) this.window.write(parent, 0n);
    this.pages.delete(sp.gpa);
    this.byHpa.delete(sp.hpa);
    this.unsyncPages.delete(sp);
    this.window.releaseHostTable(sp.hpa);
    this.counters.unshadowed++;
    this.mmu.flushAll();
    if (this.mmu.root === sp.hpa) {
      const root = this.page(sp.gpa, sp.level);
      this.mmu.setRoot(root.hpa);
    }
  }

  /**
   * Clears the dirty log: write-protects every writable shadow leaf, so that
   * the next write to each page exits and is logged (KVM's shadow dirty
   * logging). Returns how many were writable.
   */
  clearDirtyLog(): number {
    let cleared = 0;
    for (const sp of this.pages.values()) {
      for (let i = 0; i < 512; i++) {
        const at = sp.hpa + i * 8;
        const s = this.window.read(at);
        const leaf = sp.level === 1 || (s & X86.pageSize) !== 0n;
        if ((s & X86.present) !== 0n && leaf && (s & X86.writable) !== 0n) {
          this.window.write(at, s & ~X86.writable);
          cleared++;
        }
      }
    }
    return cleared;
  }

  /** Brings the present shadow entry `i` of leaf page `sp` in line with the guest's entry. */
  private syncEntry(sp: ShadowPage, i: number): void {
    const at = sp.hpa + i * 8;
    const s = this.window.read(at);
    if ((s & X86.present) === 0n) return;
    const g = this.window.read(HOST_BASE + sp.gpa + i * 8);
    if ((g & X86.present) === 0n) this.window.write(at, 0n);
    else {
      const want = this.shadowLeaf(g, 1);
      if (want !== s) this.window.write(at, want);
    }
  }

  /** Syncs the shadow leaf entry that maps `va` in the current shadow root, when its page is unsync. */
  private syncAddress(va: number): void {
    let sp = this.byHpa.get(this.mmu.root);
    for (let level: number = this.options.levels; sp && level >= 1; level--) {
      const index = tableIndex(va, level);
      const s = this.window.read(sp.hpa + index * 8);
      if ((s & X86.present) === 0n) return;
      if (level === 1) {
        if (sp.unsync) this.syncEntry(sp, index);
        return;
      }
      if ((s & X86.pageSize) !== 0n) return;
      sp = this.byHpa.get(Number(s & ADDRESS_MASK));
    }
  }

  /** Resynchronises every unsync page with its guest table and write-protects it again. */
  private resync(): void {
    for (const sp of this.unsyncPages) {
      for (let i = 0; i < 512; i++) this.syncEntry(sp, i);
      sp.unsync = false;
      this.counters.resyncs++;
    }
    this.unsyncPages.clear();
  }
}
