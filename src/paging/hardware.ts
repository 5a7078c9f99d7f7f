import type { ExitCounters } from "./exits.js";
import type { GuestPagingHooks, GuestProcess } from "./guest-os.js";
import type { MmuContext } from "./mmu.js";

/**
 * The guest's paging activity on hardware that translates it itself: natively,
 * or under SLAT, where guest page-table writes, CR3 loads and INVLPG do not
 * exit (REFERENCE.md section 2). Only the TLBs see them.
 */
export class HardwarePaging implements GuestPagingHooks {
  constructor(
    readonly mmu: MmuContext,
    readonly tagged: boolean,
    readonly counters: ExitCounters,
  ) {}

  tableWrite(): void {}

  tableAllocated(): void {}

  cr3Load(process: GuestProcess): void {
    this.mmu.setRoot(process.cr3);
    if (this.tagged) this.mmu.asid = process.pcid;
    else this.mmu.flushAddressSpace();
  }

  invlpg(va: number): void {
    this.mmu.invalidatePage(va);
  }
}
