import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";

/** A user-mode read: no write, no fetch. */
const READ = ACCESS.user;

import { cpuPreset, withoutCaches } from "../src/paging/presets.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

/*
 * Intel SDM Vol. 3A, 4.10.4.1: INVLPG invalidates, besides the TLB entries
 * of the page it names, every paging-structure-cache entry of the current
 * address space, whatever linear address it serves. So after an INVLPG the
 * next walk of any other page finds no upper level cached.
 */
describe("INVLPG and the guest page-walk caches", () => {
  it("drops every cached upper level of the address space, not only the page's", () => {
    const full = cpuPreset("skylake-sp").caches;
    // No TLB, so every access walks and only the walk caches matter.
    const caches = { ...withoutCaches(full), pwcGuest: full.pwcGuest };
    const { machine } = testMachine({
      mode: "native",
      caches,
      workingSetBytes: 4 * 2 ** 20,
      prefault: true,
    });
    const mmu = machine.mmu;
    const a = HEAP_BASE;
    // Another 4 KiB page under the same page table (same upper levels).
    const b = HEAP_BASE + 5 * 4096;
    const hits = () => mmu.counters().pwcGuestHits;
    expect("hpa" in mmu.translate(a, READ)).toBe(true);
    const before = hits();
    expect("hpa" in mmu.translate(b, READ)).toBe(true);
    // b's walk found a's upper levels cached.
    expect(hits()).toBeGreaterThan(before);
    mmu.invalidatePage(a);
    const afterInvlpg = hits();
    expect("hpa" in mmu.translate(b, READ)).toBe(true);
    expect(hits()).toBe(afterInvlpg);
  });
});
