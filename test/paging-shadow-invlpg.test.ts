import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

const READ = ACCESS.user;

/*
 * Linux arch/x86/kvm/mmu/mmu.c, kvm_mmu_invalidate_addr, and paging_tmpl.h,
 * FNAME(sync_spte): INVLPG syncs the one shadow entry of the address when
 * its page is unsync, and the page stays unsync; kvm_mmu_sync_roots on a CR3
 * load resynchronises whole pages and write-protects them again.
 */
describe("INVLPG on an unsync shadow page", () => {
  it("syncs the entry it names, leaves the page unsync, and a CR3 load resyncs the page", () => {
    const { machine } = testMachine({ mode: "shadow", unsync: true });
    const pages = [0, 1, 2].map((i) => HEAP_BASE + i * 4096);
    for (const va of pages) machine.touch(va, READ);
    // The first PTE write to the shadowed leaf table exits once and unsyncs it.
    machine.os.unmap(machine.os.current, pages[0] ?? 0, 4096);
    expect(machine.exits.exits["unsync-write"]).toBe(1);
    expect(machine.exits.exits.invlpg).toBe(1);
    // INVLPG synced the entry: the unmapped page faults to the guest.
    const gone = machine.mmu.translate(pages[0] ?? 0, READ);
    expect("fault" in gone && gone.fault.code).toBe("guest-not-present");
    // The page is still unsync: the next PTE write in it does not exit.
    machine.os.unmap(machine.os.current, pages[1] ?? 0, 4096);
    expect(machine.exits.exits["unsync-write"]).toBe(1);
    expect(machine.exits.exits.invlpg).toBe(2);
    expect(machine.exits.resyncs).toBe(0);
    const gone1 = machine.mmu.translate(pages[1] ?? 0, READ);
    expect("fault" in gone1 && gone1.fault.code).toBe("guest-not-present");
    // The untouched neighbour still translates.
    expect("hpa" in machine.mmu.translate(pages[2] ?? 0, READ)).toBe(true);
    // A CR3 load resyncs and write-protects the page: the next write exits again.
    machine.os.switchTo(machine.os.current);
    expect(machine.exits.resyncs).toBe(1);
    machine.os.unmap(machine.os.current, pages[2] ?? 0, 4096);
    expect(machine.exits.exits["unsync-write"]).toBe(2);
  });
});
