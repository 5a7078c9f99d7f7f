import type { ExitCounters } from "./exits.js";
import type { GuestPagingHooks, GuestProcess } from "./guest-os.js";
import type { HostMemory } from "./host.js";
import type { MmuContext } from "./mmu.js";

/**
 * The guest's paging activity on hardware that translates it itself: natively,
 * or under SLAT, where guest page-table writes, CR3 loads and INVLPG do not
 * exit (Intel SDM vol. 3C 29.3; KVM's TDP MMU). Only the TLBs see them, and,
 * under SLAT, the EPT: a guest store to a table frame that the host has not
 * mapped, or write-protected for dirty logging, exits like any other store.
 */
export class HardwarePaging implements GuestPagingHooks {
  constructor(
    readonly mmu: MmuContext,
    readonly tagged: boolean,
    readonly counters: ExitCounters,
    readonly host: HostMemory | null = null,
  ) {}

  tableWrite(tableGpa: number): void {
    this.store(tableGpa);
  }

  tableAllocated(tableGpa: number): void {
    // Zeroing a fresh table is a store to its frame too.
    this.store(tableGpa);
  }

  private store(gpa: number): void {
    const reason = this.host?.guestStore(gpa) ?? null;
    if (reason === null) return;
    // The exit (an EPT violation) dropped what the processor cached for the page.
    this.mmu.invalidateGuestPhysical(gpa);
    this.counters.exits[reason]++;
    if (reason === "dirty-log") {
      this.counters.dirtyLogged++;
      this.counters.dirtyLoggedTables++;
    }
  }

  cr3Load(process: GuestProcess, fresh: boolean): void {
    this.mmu.setRoot(process.cr3);
    if (this.tagged) this.mmu.asid = process.pcid;
    if (!this.tagged || fresh) this.mmu.flushAddressSpace();
  }

  invlpg(va: number): void {
    this.mmu.invalidatePage(va);
  }
}
