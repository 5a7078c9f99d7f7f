import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { AGILE_NESTED } from "../src/paging/shadow.js";
import { DATA, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// Agile paging's exits where a walk crosses from the shadow part into the
// nested part (Gandhi et al., ISCA 2016). A shadow entry that is missing is
// a hidden page fault whatever lies below it; below a table in nested mode
// the hardware walks the guest's own tables through the EPT, and an EPT
// violation there is the hardware's (Intel SDM vol. 3C 29.3.3), not the
// shadow MMU's to prevent.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const READ = ACCESS.user;
const CLEAN = P | W | U | A | D;

/** A guest page directory switched to nested mode by two emulated writes. */
function nestedDirectory() {
  const s = setUpShadow({ agileSwitchWrites: 2 });
  const va = 2 ** 30 + 5 * 2 ** 21;
  s.guest.map(va, DATA, CLEAN);
  s.shadow.cr3Load(s.process, true);
  touch(s, va, READ);
  const pd = s.guest.tableOf(va, 2);
  s.shadow.tableWrite(pd, 100);
  s.shadow.tableWrite(pd, 101);
  expect(s.counters.agileToNested).toBe(1);
  const pdpt = s.guest.tableOf(va, 3);
  const pdpte = s.guest.entryAt(va, 3);
  expect(shadowPath(s.window, s.mmu, va)[1]).toBe(BigInt(pd) | P | A | W | U | AGILE_NESTED);
  return { s, va, pd, pdpt, pdpte };
}

describe("agile paging: a walk into the nested part", () => {
  it("counts the hidden page fault that links a nested table again", () => {
    const { s, va, pdpt, pdpte } = nestedDirectory();
    // The guest rewrites the PDPTE: the emulated write zaps the link to the nested directory.
    s.shadow.tableWrite(pdpt, (pdpte - pdpt) / 8);
    expect(shadowPath(s.window, s.mmu, va)[1]).toBe(0n);
    const hidden = s.counters.exits["hidden-page-fault"];
    const outcome = s.mmu.translate(va, READ);
    if (!("fault" in outcome)) throw new Error("a zapped entry translated");
    expect(outcome.fault).toMatchObject({ code: "guest-not-present", level: 3 });
    expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
    expect(s.counters.exits["hidden-page-fault"]).toBe(hidden + 1);
    expect(s.counters.exits["guest-page-fault"]).toBe(0);
    expect(s.mmu.translate(va, READ)).toEqual({ hpa: HOST_BASE + DATA });
  });

  it("leaves the EPT to the hardware: a table the guest made while nested takes its own EPT violation", () => {
    const { s, va, pd, pdpt, pdpte } = nestedDirectory();
    // Nested, the guest adds a leaf table and a page under it without exits.
    const next = va + 2 ** 21;
    const pt = s.window.allocateGuestTable();
    s.guest.write(pt, BigInt(DATA + 0x2000) | CLEAN);
    s.guest.write(pd + 6 * 8, BigInt(pt) | P | W | U | A);
    s.shadow.tableWrite(pd, 6);
    s.shadow.tableWrite(pdpt, (pdpte - pdpt) / 8);
    const backed = s.host?.mappedPages ?? 0;
    const outcome = s.mmu.translate(next, READ);
    if (!("fault" in outcome)) throw new Error("a zapped entry translated");
    expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
    expect(s.host?.mappedPages, "the hypervisor walked the nested part, mapping nothing").toBe(
      backed,
    );
    const walk = s.mmu.translate(next, READ);
    expect("fault" in walk && walk.fault).toMatchObject({ code: "ept-violation", address: pt });
    expect(touch(s, next, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x2000 });
  });
});
