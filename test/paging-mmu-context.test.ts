import { describe, expect, it } from "vitest";
import { PagingError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

const READ = ACCESS.user;

/*
 * The translation context's flushes, each by what it drops and what it
 * keeps (Intel SDM vol. 3A 4.10.4: a CR3 load without PCIDs drops the TLB
 * entries and paging-structure caches of the address space; INVEPT, 28.4.3.1,
 * the guest-physical mappings, not the linear ones the TLBs hold), and the
 * addresses it refuses before the kernel runs.
 */
describe("MmuContext flushes (SLAT, one page touched, then touched again)", () => {
  function again(flush: (m: ReturnType<typeof testMachine>["machine"]) => void) {
    const { machine } = testMachine({ mode: "slat" });
    machine.touch(HEAP_BASE, READ);
    flush(machine);
    machine.mmu.resetCounters();
    machine.touch(HEAP_BASE, READ);
    return machine.counters();
  }

  it("nothing flushed: the L1 TLB holds the page", () => {
    expect(again(() => {})).toMatchObject({ l1Hits: 1, walks: 0, references: 0 });
  });

  it("flushTlbs drops the TLBs and keeps the page-walk caches and the nested TLB", () => {
    const c = again((m) => m.mmu.flushTlbs());
    expect(c.walks).toBe(1);
    expect(c.pwcGuestHits).toBeGreaterThan(0);
    expect(c.nestedTlbHits).toBeGreaterThan(0);
    // The cached upper levels leave only the leaf table to read.
    expect(c.references).toBe(1);
  });

  it("flushAddressSpace and flushAll drop the guest page-walk caches too, not the nested TLB", () => {
    for (const flush of ["flushAddressSpace", "flushAll"] as const) {
      const c = again((m) => m.mmu[flush]());
      expect(c.walks, flush).toBe(1);
      expect(c.pwcGuestHits, flush).toBe(0);
      expect(c.nestedTlbHits, flush).toBeGreaterThan(0);
      // The four guest levels are read; the nested TLB spares every EPT walk.
      expect(c.references, flush).toBe(4);
    }
  });

  it("flushNested (INVEPT) leaves the TLBs' linear translations", () => {
    expect(again((m) => m.mmu.flushNested())).toMatchObject({ l1Hits: 1, walks: 0 });
  });
});

describe("MmuContext refuses addresses before the kernel runs", () => {
  const { machine } = testMachine({ mode: "slat" });

  it("takes a virtual address of up to 57 bits; past 2^53 only page-aligned ones", () => {
    // A PagingError: what the user typed (the kernel's wrapper would refuse it too, as a RangeError).
    for (const va of [-1, 2 ** 57, 1.5, Number.NaN]) {
      expect(() => machine.mmu.translate(va, READ)).toThrow(PagingError);
      expect(() => machine.mmu.translate(va, READ)).toThrow(
        `virtual address ${va} is outside 57 bits`,
      );
    }
    expect(() => machine.mmu.translate(2 ** 53 + 2, READ)).toThrow(PagingError);
    expect(() => machine.mmu.translate(2 ** 53 + 2, READ)).toThrow(
      `virtual address ${2 ** 53 + 2} past 2^53 must be page-aligned (pass the offset apart)`,
    );
    // The edges themselves are translated (to a fault: nothing is mapped there).
    for (const va of [2 ** 57 - 4096, Number.MAX_SAFE_INTEGER, 2 ** 53 + 4096, 0]) {
      expect("fault" in machine.mmu.translate(va, READ), `0x${va.toString(16)}`).toBe(true);
    }
  });

  it("takes a guest-physical address of up to 52 bits to invalidate", () => {
    for (const gpa of [-1, 2 ** 52, 0.5]) {
      expect(() => machine.mmu.invalidateGuestPhysical(gpa)).toThrow(PagingError);
      expect(() => machine.mmu.invalidateGuestPhysical(gpa)).toThrow(
        `guest-physical address ${gpa} is outside 52 bits`,
      );
    }
    expect(() => machine.mmu.invalidateGuestPhysical(2 ** 52 - 4096)).not.toThrow();
    expect(() => machine.mmu.invalidateGuestPhysical(0)).not.toThrow();
  });

  it("keeps the address-space tag it is given", () => {
    machine.mmu.asid = 7;
    expect(machine.mmu.asid).toBe(7);
    machine.mmu.asid = 1;
    expect(machine.mmu.asid).toBe(1);
  });
});
