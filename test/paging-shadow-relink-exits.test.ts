import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// A shadow entry above the leaf that went missing while the shadow table
// below it survived: the hardware's walk stops at the missing entry, so the
// fault is a hidden page fault (the guest's tables map the address), even
// though the shadow leaf the walk reaches once relinked is still in place.
// Counting it as accessed/dirty emulation would charge the wrong exit's cost.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;

describe("shadow paging: a fault that relinks a surviving shadow table", () => {
  for (const [name, access] of [
    ["read", READ],
    ["write", WRITE],
  ] as const) {
    it(`counts a ${name} whose leaf survived as a hidden page fault, not A/D emulation`, () => {
      const s = setUpShadow();
      const va = 2 ** 30 + 5 * 2 ** 21 + 3 * 4096;
      s.guest.map(va, DATA, P | W | U | A | D);
      s.shadow.cr3Load(s.process, true);
      touch(s, va, access);
      const leaf = shadowPath(s.window, s.mmu, va)[3];
      expect(leaf, "the shadow leaf is in place").not.toBe(0n);
      // The guest rewrites its PDPTE: the emulated write zaps the link to the shadow directory.
      const pdpt = s.guest.tableOf(va, 3);
      const pdpte = s.guest.entryAt(va, 3);
      s.shadow.tableWrite(pdpt, (pdpte - pdpt) / 8);
      expect(shadowPath(s.window, s.mmu, va)[1]).toBe(0n);
      const before = { ...s.counters.exits };
      const outcome = s.mmu.translate(va, access);
      if (!("fault" in outcome)) throw new Error("a zapped entry translated");
      expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
      expect(s.counters.exits["hidden-page-fault"]).toBe(before["hidden-page-fault"] + 1);
      expect(s.counters.exits["ad-emulation"]).toBe(before["ad-emulation"]);
      expect(s.counters.exits["dirty-log"]).toBe(before["dirty-log"]);
      expect(s.counters.exits["guest-page-fault"]).toBe(before["guest-page-fault"]);
      expect(shadowPath(s.window, s.mmu, va)[3], "the surviving leaf is reused").toBe(leaf);
      expect(s.mmu.translate(va, access)).toEqual({ hpa: HOST_BASE + DATA });
    });
  }

  it("still counts A/D emulation where every link was in place", () => {
    const s = setUpShadow();
    const va = 2 ** 30 + 5 * 2 ** 21 + 3 * 4096;
    s.guest.map(va, DATA, P | W | U | A);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, READ);
    const before = { ...s.counters.exits };
    // The guest PTE is clean, so the shadow leaf is read-only until the first write.
    const outcome = s.mmu.translate(va, WRITE);
    if (!("fault" in outcome)) throw new Error("a clean page's first write went through");
    expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
    expect(s.counters.exits["ad-emulation"]).toBe(before["ad-emulation"] + 1);
    expect(s.counters.exits["hidden-page-fault"]).toBe(before["hidden-page-fault"]);
    expect(s.guest.read(s.guest.entryAt(va, 1)) & D).toBe(D);
  });
});
