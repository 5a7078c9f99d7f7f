import { describe, expect, it } from "vitest";
import { tableIndex, X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, type ShadowRig, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// Dirty logging under shadow paging when a harvested leaf does not survive:
// KVM marks a page dirty whenever it makes a writable spte in a logged
// memslot (arch/x86/kvm/mmu/spte.c, make_spte and mark_page_dirty_in_slot),
// so a leaf zapped after the harvest and filled again writable logs its page
// then, whether a write or a read filled it, and a page is logged once
// between two harvests however many of its mappings take a write.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
const va = 0x3000_0000;

/** A page written, the log harvested, then its PTE rewritten by the guest: the shadow leaf is zapped. */
function zappedAfterHarvest(): ShadowRig {
  const s = setUpShadow();
  const pte = s.guest.map(va, DATA, P | W | U);
  s.shadow.cr3Load(s.process, true);
  expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
  expect(s.counters.dirtyLogged, "logging is off before the first harvest").toBe(0);
  expect(s.shadow.clearDirtyLog()).toBe(1);
  s.mmu.flushAll();
  // The guest rewrites the same PTE (same frame, its A and D kept): an
  // emulated write, which zaps the shadow leaf.
  const pt = s.guest.tableOf(va, 1);
  s.guest.write(pte, BigInt(DATA) | P | W | U | A | D);
  s.shadow.tableWrite(pt, tableIndex(va, 1));
  s.mmu.flushAll();
  expect(shadowPath(s.window, s.mmu, va)[3]).toBe(0n);
  return s;
}

describe("dirty logging under shadow paging, a harvested leaf zapped and filled again", () => {
  it("logs the page on the write that fills the leaf again (a hidden page fault)", () => {
    const s = zappedAfterHarvest();
    expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.exits["hidden-page-fault"]).toBe(2);
    expect(s.counters.exits["dirty-log"]).toBe(0);
    expect(s.counters.dirtyLogged).toBe(1);
  });

  it("logs the page when a read fills the leaf writable, and its write then takes no exit", () => {
    const s = zappedAfterHarvest();
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA });
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U | W | D);
    expect(s.counters.dirtyLogged).toBe(1);
    const exits = { ...s.counters.exits };
    expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.exits).toEqual(exits);
    expect(s.counters.dirtyLogged).toBe(1);
  });
});

describe("dirty logging under shadow paging, a read-only leaf", () => {
  it("logs nothing when a read maps a clean page after the harvest, and logs the page on its first write", () => {
    const s = setUpShadow();
    s.guest.map(va, DATA, P | W | U);
    s.shadow.cr3Load(s.process, true);
    expect(s.shadow.clearDirtyLog(), "nothing mapped yet").toBe(0);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA });
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U);
    expect(s.counters.dirtyLogged).toBe(0);
    expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.exits["ad-emulation"]).toBe(1);
    expect(s.counters.dirtyLogged).toBe(1);
  });
});

describe("dirty logging under shadow paging, one page between two harvests", () => {
  it("is logged once however many of its mappings take a write, and again after the next harvest", () => {
    const s = setUpShadow();
    const alias = va + 0x20_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.guest.map(alias, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, READ);
    touch(s, alias, READ);
    expect(s.shadow.clearDirtyLog(), "both mappings' leaves").toBe(2);
    s.mmu.flushAll();
    expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(touch(s, alias, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.exits["dirty-log"], "each write-protected leaf exits").toBe(2);
    expect(s.counters.dirtyLogged, "one page").toBe(1);

    expect(s.shadow.clearDirtyLog()).toBe(2);
    s.mmu.flushAll();
    expect(touch(s, alias, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.dirtyLogged).toBe(2);
  });
});
