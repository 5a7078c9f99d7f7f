import { ADDRESS_MASK, tableIndex, X86 } from "./entry.js";
import type { ExitCounters } from "./exits.js";
import type { GuestPagingHooks, GuestProcess } from "./guest-os.js";
import type { HostMemory } from "./host.js";
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
  /**
   * Agile paging (Gandhi et al., ISCA 2016): a shadowed table the guest
   * writes this many times switches to nested mode (its parent shadow entries
   * point at the guest's own table); absent: shadow paging alone.
   */
  readonly agileSwitchWrites?: number;
  /**
   * Agile paging: the EPT, the hypervisor's map of guest memory. A shadow fill
   * backs the page it maps there (so a later nested walk finds it), and a
   * large guest page over smaller host pages is shadowed at the host's page
   * size, through direct shadow pages (KVM's role.direct): a shadow entry never
   * maps more than the host backs contiguously.
   */
  readonly host?: HostMemory;
  /**
   * Agile paging: a guest page fault in the nested part of a walk reaches the
   * guest without an exit (the hardware support of Gandhi et al., ISCA 2016).
   */
  readonly nestedFaultsToGuest?: boolean;
}

/**
 * Bit 11 of a shadow entry (ignored by the processor, Intel SDM vol. 3A 4.5):
 * the walk goes on, nested, in the guest table whose guest-physical address
 * the entry holds (assembly/walk.ts, AGILE_NESTED).
 */
export const AGILE_NESTED = 1n << 11n;

/** A guest table in nested mode under agile paging: the shadow entries that point at it. */
interface NestedTable {
  readonly parents: Set<number>;
  /** Written by the guest since the last check (the hypervisor reads its EPT leaf's D bit). */
  written: boolean;
}

/** A shadow page: the hypervisor's copy of one guest table, mapping to host-physical. */
interface ShadowPage {
  readonly gpa: number;
  readonly hpa: number;
  readonly level: number;
  unsync: boolean;
  flood: number;
  /** Guest writes to the table while shadowed (agile paging's switch policy). */
  writes: number;
  /** Shadow entries (their hPA) that point at this page. */
  readonly parents: Set<number>;
}

const PERMS = X86.writable | X86.user | X86.noExecute;

/**
 * Bit 9 of a shadow leaf (ignored by the processor, Intel SDM vol. 3A 4.5):
 * write-protected by a dirty-log harvest, so that the write fault it takes is
 * told apart from accessed/dirty emulation.
 */
const DIRTY_LOG_PROTECTED = 1n << 9n;

/** Bytes a leaf at `level` maps. */
const leafBytes = (level: number) => 2 ** (12 + 9 * (level - 1));

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
  /** Agile paging: guest tables in nested mode, by guest-physical address. */
  private readonly nestedTables = new Map<number, NestedTable>();
  /** Dirty logging is on: set by the first harvest (KVM: a memslot with KVM_MEM_LOG_DIRTY_PAGES). */
  private logging = false;
  /** Host frames of the pages logged dirty since the last harvest (KVM's dirty bitmap). */
  private readonly logged = new Set<number>();

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
      sp = { gpa, hpa, level, unsync: false, flood: 0, writes: 0, parents: new Set() };
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
    const nested = this.nestedTables.get(gpa);
    if (nested) {
      nested.written = true; // not write-protected: no exit
      return;
    }
    const sp = this.pages.get(gpa);
    if (!sp || sp.unsync) return; // not write-protected: no exit
    const switchAt = this.options.agileSwitchWrites;
    if (switchAt !== undefined && sp.level < this.options.levels) {
      // Agile paging: emulate the write, and move a table that keeps changing to nested mode.
      this.counters.exits["page-table-write"]++;
      this.counters.emulatedWrites++;
      sp.writes++;
      if (sp.writes >= switchAt && sp.parents.size > 0) this.toNested(sp);
      else this.zapEntry(sp, index);
      return;
    }
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
    this.revertQuietTables();
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

  /**
   * Agile paging's steady state after a warm-up: tables that demand paging
   * moved to nested mode go back to shadow, as they would once the guest has
   * left them alone for a review period.
   */
  settle(): boolean {
    const any = this.nestedTables.size > 0;
    this.revertQuietTables(true);
    return any;
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
    // Agile paging: below a table in nested mode the hardware walks the guest's
    // own tables; the hypervisor only finds whether the fault is the guest's.
    let nested = false;
    // This fault linked a table whose shadow entry was missing: a nested table
    // (agile) or a shadow table that survived its link's zap. The hardware's
    // walk stopped there, so the exit is a hidden page fault whatever the leaf.
    let linked = false;
    for (let level: number = this.options.levels; level >= 1; level--) {
      const index = tableIndex(va, level);
      const gAt = HOST_BASE + table + index * 8;
      // Agile: the hypervisor reads the guest's table through its map of guest memory.
      if (!nested) this.options.host?.ensureMapped(table);
      const g = this.window.read(gAt);
      if ((g & X86.present) === 0n) return this.inject(fault, "guest-not-present", level, nested);
      perms =
        (perms & g & (X86.writable | X86.user)) | (perms & X86.noExecute) | (g & X86.noExecute);
      const large = level > 1 && (g & X86.pageSize) !== 0n;
      if (large && level > 3) return this.inject(fault, "guest-reserved", level, nested);
      const sAt = sp.hpa + index * 8;
      if (level === 1 || large) {
        if (write && (perms & X86.writable) === 0n)
          return this.inject(fault, "guest-protection", level, nested);
        if ((fault.kind & ACCESS.user) !== 0 && (perms & X86.user) === 0n) {
          return this.inject(fault, "guest-protection", level, nested);
        }
        if ((fault.kind & ACCESS.execute) !== 0 && (perms & X86.noExecute) !== 0n) {
          return this.inject(fault, "guest-protection", level, nested);
        }
        if (nested) {
          if (linked) this.counters.exits["hidden-page-fault"]++;
          return null;
        }
        // The hypervisor sets the guest's accessed (and dirty) bit itself.
        const gNew = g | X86.accessed | (write ? X86.dirty : 0n);
        if (gNew !== g) this.window.write(gAt, gNew);
        const host = this.options.host;
        const leafLevel = host && large ? Math.min(level, host.leafLevelOfBacking) : level;
        const at = leafLevel < level ? this.directLeafAt(sp, gNew, level, leafLevel, va) : sAt;
        host?.ensureMapped(this.frameOf(gNew, level, va, leafLevel));
        const before = this.window.read(at);
        const leaf = this.shadowLeaf(gNew, level, va, leafLevel);
        this.window.write(at, leaf);
        if (linked || (before & X86.present) === 0n) this.counters.exits["hidden-page-fault"]++;
        else if ((before & DIRTY_LOG_PROTECTED) !== 0n) {
          // The guest page was dirty already: the shadow entry was write-protected for dirty logging.
          this.counters.exits["dirty-log"]++;
        } else this.counters.exits["ad-emulation"]++;
        this.logIfWritable(leaf);
        return null;
      }
      if (nested) {
        table = Number(g & ADDRESS_MASK);
        continue;
      }
      if ((g & X86.accessed) === 0n) this.window.write(gAt, g | X86.accessed);
      const childGpa = Number(g & ADDRESS_MASK);
      const inNested = this.nestedTables.get(childGpa);
      if (inNested) {
        const want = BigInt(childGpa) | X86.present | X86.accessed | (g & PERMS) | AGILE_NESTED;
        const have = this.window.read(sAt);
        if (have !== want) {
          if ((have & X86.present) !== 0n) this.unlink(sAt, have);
          this.window.write(sAt, want);
          inNested.parents.add(sAt);
          linked = true;
        }
        nested = true;
        table = childGpa;
        continue;
      }
      const child = this.page(childGpa, level - 1);
      child.flood = 0; // in use as a page table: not flooding
      const want = BigInt(child.hpa) | X86.present | X86.accessed | (g & PERMS);
      const have = this.window.read(sAt);
      if (have !== want) {
        if ((have & X86.present) !== 0n) this.unlink(sAt, have);
        else linked = true;
        this.window.write(sAt, want);
        child.parents.add(sAt);
      }
      sp = child;
      table = childGpa;
    }
    return null;
  }

  private inject(fault: Fault, code: Fault["code"], level: number, nested = false): Fault {
    // Shadow paging intercepts every guest #PF and reflects the ones that are the guest's;
    // agile paging's hardware support delivers one from the nested part directly.
    if (!(nested && this.options.nestedFaultsToGuest)) this.counters.exits["guest-page-fault"]++;
    return { ...fault, code, level };
  }

  /**
   * The guest-physical frame that a shadow leaf at `leafLevel` maps for `va`
   * under guest leaf `g` at `level` (the part of a large guest page that
   * holds `va`, when the host backs it with smaller pages).
   */
  private frameOf(g: bigint, level: number, va: number, leafLevel: number): number {
    // Bit 12 of a large leaf is PAT, not address: masked with the page's offset bits.
    const base = Number(g & ADDRESS_MASK & ~BigInt(leafBytes(level) - 1));
    return base + (va % leafBytes(level)) - (va % leafBytes(leafLevel));
  }

  /**
   * The shadow leaf for `va` under guest leaf `g` at `level`, at `leafLevel`
   * (below `level` when the host backs a large guest page with smaller
   * pages): writable only once the guest's dirty bit is set (A/D emulation).
   */
  private shadowLeaf(g: bigint, level: number, va: number, leafLevel = level): bigint {
    const frame = BigInt(HOST_BASE + this.frameOf(g, level, va, leafLevel));
    let s = frame | X86.present | X86.accessed | (g & (X86.user | X86.noExecute));
    if ((g & X86.writable) !== 0n && (g & X86.dirty) !== 0n) s |= X86.writable | X86.dirty;
    if (leafLevel > 1) s |= X86.pageSize;
    return s;
  }

  /**
   * Links direct shadow pages (KVM's role.direct: they shadow no guest table,
   * only a part of a large guest page) from shadow page `sp` at `level` down
   * to `leafLevel`, and returns the address of the shadow leaf for `va`.
   * A direct page is keyed by the negative of the guest-physical range it
   * maps plus its level, so it never meets a guest table's address.
   */
  private directLeafAt(
    sp: ShadowPage,
    g: bigint,
    level: number,
    leafLevel: number,
    va: number,
  ): number {
    let parent = sp;
    for (let l = level; l > leafLevel; l--) {
      const base = this.frameOf(g, level, va, l);
      const child = this.page(-(base + l), l - 1);
      child.flood = 0;
      const at = parent.hpa + tableIndex(va, l) * 8;
      const want = BigInt(child.hpa) | X86.present | X86.accessed | (g & PERMS);
      const have = this.window.read(at);
      if (have !== want) {
        if ((have & X86.present) !== 0n) this.unlink(at, have);
        // Linked anew (the guest's leaf changed): what it mapped before may be stale.
        for (let i = 0; i < 512; i++) this.zapEntry(child, i);
        this.window.write(at, want);
        child.parents.add(at);
      }
      parent = child;
    }
    return parent.hpa + tableIndex(va, leafLevel) * 8;
  }

  private unlink(at: number, entry: bigint): void {
    if ((entry & AGILE_NESTED) !== 0n) {
      this.nestedTables.get(Number(entry & ADDRESS_MASK))?.parents.delete(at);
      return;
    }
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

  /**
   * Agile paging, shadow to nested: the table's parent shadow entries point at
   * the guest's table itself (marked AGILE_NESTED), so walks go nested from
   * there and the guest writes it without exits; its shadow page, and those
   * below it that nothing else points at, are dropped.
   */
  private toNested(sp: ShadowPage): void {
    // The parents' permissions, read before unshadowing clears them.
    const parents = [...sp.parents].map((at) => ({ at, entry: this.window.read(at) }));
    const below: ShadowPage[] = [];
    if (sp.level > 1) {
      for (let i = 0; i < 512; i++) {
        const e = this.window.read(sp.hpa + i * 8);
        const table = (e & X86.present) !== 0n && (e & (X86.pageSize | AGILE_NESTED)) === 0n;
        const child = table ? this.byHpa.get(Number(e & ADDRESS_MASK)) : undefined;
        if (child) below.push(child);
      }
    }
    this.unshadow(sp);
    this.counters.unshadowed--; // a switch, not write flooding
    this.counters.agileToNested++;
    const nested: NestedTable = { parents: new Set(), written: true };
    for (const { at, entry } of parents) {
      const perms = entry & (X86.writable | X86.user | X86.noExecute);
      this.window.write(at, BigInt(sp.gpa) | X86.present | X86.accessed | perms | AGILE_NESTED);
      nested.parents.add(at);
    }
    this.nestedTables.set(sp.gpa, nested);
    for (const child of below) {
      if (child.parents.size === 0 && this.pages.has(child.gpa)) {
        this.unshadow(child);
        this.counters.unshadowed--;
      }
    }
  }

  /**
   * Agile paging, nested to shadow: a nested table the guest did not write
   * since the last CR3 load goes back to shadow mode (its parent entries are
   * cleared; the next walk through them is a hidden fault that shadows it).
   */
  private revertQuietTables(all = false): void {
    let reverted = false;
    for (const [gpa, t] of this.nestedTables) {
      if (t.written && !all) {
        t.written = false;
        continue;
      }
      for (const at of t.parents) this.window.write(at, 0n);
      this.nestedTables.delete(gpa);
      this.counters.agileToShadow++;
      reverted = true;
    }
    if (reverted) this.mmu.flushAll();
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
    this.logging = true;
    this.logged.clear();
    let cleared = 0;
    for (const sp of this.pages.values()) {
      for (let i = 0; i < 512; i++) {
        const at = sp.hpa + i * 8;
        const s = this.window.read(at);
        const leaf = sp.level === 1 || (s & X86.pageSize) !== 0n;
        if ((s & X86.present) !== 0n && leaf && (s & X86.writable) !== 0n) {
          this.window.write(at, (s & ~X86.writable) | DIRTY_LOG_PROTECTED);
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
      let want = this.shadowLeaf(g, 1, 0);
      // A harvest write-protected this leaf (clearDirtyLog): it stays so, and
      // the page's next write exits and is logged, as every harvested page's,
      // even where the guest has cleared its D meanwhile.
      if ((s & DIRTY_LOG_PROTECTED) !== 0n) want = (want & ~X86.writable) | DIRTY_LOG_PROTECTED;
      if (want !== s) this.window.write(at, want);
      this.logIfWritable(want);
    }
  }

  /**
   * Logs the page a shadow leaf maps when the leaf lets the guest write it
   * while dirty logging is on, once per page between harvests. KVM marks the
   * page dirty whenever it makes a writable spte in a logged memslot
   * (arch/x86/kvm/mmu/spte.c, `make_spte` calling `mark_page_dirty_in_slot`),
   * whatever the fault: a write through the leaf needs no exit after that,
   * so a leaf made writable anew (refilled after a zap, by A/D emulation, or
   * by a resync) must log its page here or the page's writes go unlogged.
   */
  private logIfWritable(leaf: bigint): void {
    if (!this.logging || (leaf & X86.writable) === 0n) return;
    const frame = Number(leaf & ADDRESS_MASK);
    if (this.logged.has(frame)) return;
    this.logged.add(frame);
    this.counters.dirtyLogged++;
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
      // A large leaf, or (agile) the guest's own table below: nothing shadowed to sync.
      if ((s & (X86.pageSize | AGILE_NESTED)) !== 0n) return;
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
