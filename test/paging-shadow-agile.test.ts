import { describe, expect, it } from "vitest";
import { tableIndex, X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { AGILE_NESTED } from "../src/paging/shadow.js";
import { DATA, type ShadowRig, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// Agile paging's switches on guest tables written by hand (Gandhi et al.,
// "Agile Paging: Exceeding the Best of Nested and Shadow Paging", ISCA 2016,
// as docs/paging.md describes it): a shadowed table the guest writes
// `agileSwitchWrites` times goes to nested mode (the shadow entries above it
// hold the guest table's own address, marked AGILE_NESTED, and the hardware
// walks on through the EPT); a nested table the guest leaves alone across a
// CR3 load goes back to shadow mode. Shadowed tables are write-protected as
// under shadow paging (KVM's arch/x86/kvm/mmu/mmu.c): each guest write exits
// and is emulated, zapping the shadow entry it changed.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const READ = ACCESS.user;
const CLEAN = P | W | U | A | D;

/** Two pages in one leaf table: both shadowed, four shadow pages (root, PDPT, PD, PT). */
function twoPages() {
  const s = setUpShadow({ agileSwitchWrites: 2 });
  const va = 0x1000_0000;
  const pte0 = s.guest.map(va, DATA, CLEAN);
  const pte1 = s.guest.map(va + 0x1000, DATA + 0x1000, CLEAN);
  s.shadow.cr3Load(s.process, true);
  expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA });
  expect(touch(s, va + 0x1000, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
  expect(s.shadow.size).toBe(4);
  const pt = s.guest.tableOf(va, 1);
  const pd = s.guest.tableOf(va, 2);
  return { s, va, pte0, pte1, pt, pd, pde: s.guest.entryAt(va, 2) };
}

/** The guest writes `entry` at `gpa` in table `table` (index from the address), as the hook sees it. */
function guestWrite(s: ShadowRig, table: number, gpa: number, entry: bigint): void {
  s.guest.write(gpa, entry);
  s.shadow.tableWrite(table, (gpa - table) / 8);
}

/** The shadow entry that links a guest table in nested mode. */
const nestedLink = (gpa: number) => BigInt(gpa) | P | A | W | U | AGILE_NESTED;

/** Switches the leaf table of {@link twoPages} to nested mode with two emulated PTE writes. */
function switched() {
  const t = twoPages();
  const { s, va, pte0, pte1, pt } = t;
  guestWrite(s, pt, pte1, BigInt(DATA + 0x5000) | CLEAN);
  expect(s.counters.agileToNested, "one write: still shadowed").toBe(0);
  guestWrite(s, pt, pte0, BigInt(DATA + 0x4000) | CLEAN);
  expect(s.counters.agileToNested).toBe(1);
  expect(shadowPath(s.window, s.mmu, va)[2]).toBe(nestedLink(pt));
  return t;
}

describe("agile paging: shadow to nested", () => {
  it("emulates each write to a shadowed table until the switch, then lets the guest write it freely", () => {
    const { s, va, pte0, pte1, pt } = twoPages();
    guestWrite(s, pt, pte1, BigInt(DATA + 0x5000) | CLEAN);
    expect(s.counters.exits["page-table-write"]).toBe(1);
    expect(s.counters.emulatedWrites).toBe(1);
    expect(shadowPath(s.window, s.mmu, va + 0x1000)[3], "the entry it changed, zapped").toBe(0n);
    expect(shadowPath(s.window, s.mmu, va)[3] ?? 0n).toBe(
      BigInt(HOST_BASE + DATA) | P | A | U | W | D,
    );

    guestWrite(s, pt, pte0, BigInt(DATA + 0x4000) | CLEAN);
    expect(s.counters.exits["page-table-write"]).toBe(2);
    expect(s.counters.emulatedWrites).toBe(2);
    expect(s.counters.agileToNested).toBe(1);
    expect(s.counters.unshadowed, "a switch is not write flooding").toBe(0);
    expect(s.shadow.size, "the leaf table's shadow page dropped").toBe(3);
    expect(shadowPath(s.window, s.mmu, va)[2], "the PDE's shadow: the guest table itself").toBe(
      nestedLink(pt),
    );

    // Nested: the guest's writes no longer exit, and the walk reads its table through the EPT.
    guestWrite(s, pt, pte1, BigInt(DATA + 0x6000) | CLEAN);
    expect(s.counters.exits["page-table-write"]).toBe(2);
    expect(s.counters.emulatedWrites).toBe(2);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x4000 });
    expect(touch(s, va + 0x1000, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x6000 });
  });

  it("switches a directory: frees the shadow pages below it nothing else points at, keeps a shared one", () => {
    const s = setUpShadow({ agileSwitchWrites: 2 });
    // Two leaf tables at PD indices 5 and 6; the first is also linked from a second directory.
    const vaA = 2 ** 30 + 5 * 2 ** 21;
    const vaB = 2 ** 30 + 6 * 2 ** 21;
    const vaC = 2 * 2 ** 30 + 9 * 2 ** 21;
    s.guest.map(vaA, DATA, CLEAN);
    s.guest.map(vaB, DATA + 0x1000, CLEAN);
    const ptA = s.guest.tableOf(vaA, 1);
    s.guest.write(s.guest.entryAt(vaC, 2), BigInt(ptA) | P | W | U);
    s.shadow.cr3Load(s.process, true);
    for (const va of [vaA, vaB, vaC]) touch(s, va, READ);
    expect(s.shadow.size, "root, PDPT, two PDs, two PTs").toBe(6);
    const pd = s.guest.tableOf(vaA, 2);

    s.shadow.tableWrite(pd, 100);
    s.shadow.tableWrite(pd, 101);
    expect(s.counters.agileToNested).toBe(1);
    expect(s.counters.unshadowed).toBe(0);
    expect(s.shadow.size, "the PD and the PT only it linked").toBe(4);
    expect(shadowPath(s.window, s.mmu, vaA)[1]).toBe(nestedLink(pd));
    // The shared leaf table stays shadowed under the other directory.
    const c = shadowPath(s.window, s.mmu, vaC);
    expect(c).toHaveLength(4);
    expect(c[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U | W | D);
    expect(s.counters.shadowPages).toBe(6);
    s.mmu.flushAll();
    expect(s.mmu.translate(vaC, READ)).toEqual({ hpa: HOST_BASE + DATA });
    // Both pages under the nested directory translate through the guest's own tables.
    expect(touch(s, vaA, READ)).toEqual({ hpa: HOST_BASE + DATA });
    expect(touch(s, vaB, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
    expect(s.counters.shadowPages, "no shadow page built below the nested directory").toBe(6);
  });

  it("does not switch a table no shadow entry points at any more: its writes are emulated", () => {
    const { s, va, pt, pd, pde } = twoPages();
    // The guest rewrites the PDE: the emulated write zaps the shadow entry that linked the table.
    guestWrite(s, pd, pde, s.guest.read(pde));
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(0n);
    s.shadow.tableWrite(pt, 7);
    s.shadow.tableWrite(pt, 8);
    s.shadow.tableWrite(pt, 9);
    expect(s.counters.agileToNested).toBe(0);
    expect(s.counters.emulatedWrites).toBe(4);
    expect(s.shadow.size).toBe(4);
    // The next walk links it again, shadowed.
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA });
    const link = shadowPath(s.window, s.mmu, va)[2] ?? 0n;
    expect(link & (P | AGILE_NESTED)).toBe(P);
  });
});

describe("agile paging: nested to shadow", () => {
  it("keeps a table the guest wrote since the last CR3 load nested, and reverts it once left alone", () => {
    const { s, va, pt } = switched();
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.agileToShadow, "written since the load before").toBe(0);
    s.shadow.tableWrite(pt, 3);
    expect(s.counters.exits["page-table-write"], "nested: no exit").toBe(2);
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.agileToShadow, "written again in this interval").toBe(0);
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(nestedLink(pt));
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.agileToShadow).toBe(1);
    expect(shadowPath(s.window, s.mmu, va)[2], "its link cleared").toBe(0n);
    const faults = s.counters.exits["hidden-page-fault"];
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x4000 });
    expect(s.counters.exits["hidden-page-fault"]).toBe(faults + 1);
    expect((shadowPath(s.window, s.mmu, va)[2] ?? 0n) & (P | AGILE_NESTED)).toBe(P);
    // Shadowed again: a write exits.
    s.shadow.tableWrite(pt, 3);
    expect(s.counters.exits["page-table-write"]).toBe(3);
  });

  it("settles every nested table back to shadow, written or not, and says whether there was one", () => {
    const fresh = twoPages().s;
    expect(fresh.shadow.settle()).toBe(false);
    expect(fresh.counters.agileToShadow).toBe(0);

    const { s, va } = switched();
    expect(s.shadow.settle()).toBe(true);
    expect(s.counters.agileToShadow).toBe(1);
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(0n);
    expect(s.shadow.settle(), "nothing nested left").toBe(false);
    expect(s.counters.agileToShadow).toBe(1);
  });

  it("clears only the links it still owns: an entry relinked to another table stays", () => {
    const { s, va, pd, pde } = switched();
    // The guest points the PDE at a new leaf table (an emulated write to the shadowed PD).
    const y = s.window.allocateGuestTable();
    s.guest.write(y + tableIndex(va, 1) * 8, BigInt(DATA + 0x9000) | CLEAN);
    guestWrite(s, pd, pde, BigInt(y) | P | W | U);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x9000 });
    const link = shadowPath(s.window, s.mmu, va)[2] ?? 0n;
    expect(link & (P | AGILE_NESTED)).toBe(P);
    // The old table, nested and left alone, reverts at the second load.
    s.shadow.cr3Load(s.process, false);
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.agileToShadow).toBe(1);
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(link);
    expect(s.mmu.translate(va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x9000 });
  });
});

describe("agile paging: faults above and in the nested part", () => {
  it("links a nested table again where its shadow entry was zapped", () => {
    const { s, va, pt, pd, pde } = switched();
    guestWrite(s, pd, pde, s.guest.read(pde));
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(0n);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x4000 });
    expect(shadowPath(s.window, s.mmu, va)[2]).toBe(nestedLink(pt));
    expect(s.counters.agileToNested, "still the one switch").toBe(1);
  });

  it("shadows nothing below a nested directory: a guest fault there is only found and reflected", () => {
    const s = setUpShadow({ agileSwitchWrites: 2 });
    const va = 2 ** 30 + 5 * 2 ** 21;
    const pte = s.guest.map(va, DATA, CLEAN);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, READ);
    const pd = s.guest.tableOf(va, 2);
    s.shadow.tableWrite(pd, 100);
    s.shadow.tableWrite(pd, 101);
    expect(s.counters.agileToNested).toBe(1);
    const pages = s.counters.shadowPages;
    const size = s.shadow.size;
    s.guest.write(pte, 0n);
    const outcome = s.mmu.translate(va, READ);
    if (!("fault" in outcome)) throw new Error("an unmapped page translated");
    expect(outcome.fault).toMatchObject({ code: "guest-not-present", level: 1 });
    expect(s.shadow.handleFault(s.process, outcome.fault)).toEqual({
      ...outcome.fault,
      code: "guest-not-present",
      level: 1,
    });
    expect(s.counters.exits["guest-page-fault"]).toBe(1);
    expect(s.counters.shadowPages).toBe(pages);
    expect(s.shadow.size).toBe(size);
  });

  it("leaves a spurious fault in the nested part to the hardware: no shadow entry, no A/D, no count", () => {
    const { s, va, pte1 } = switched();
    const va1 = va + 0x1000;
    s.guest.write(pte1, 0n);
    const outcome = s.mmu.translate(va1, READ);
    if (!("fault" in outcome)) throw new Error("an unmapped page translated");
    // The guest maps the page again before the fault is handled (another vCPU, say).
    s.guest.write(pte1, BigInt(DATA + 0x7000) | P | W | U);
    const before = shadowPath(s.window, s.mmu, va1);
    // The shadow page above the nested table, at the leaf's index: what a fill would overwrite.
    const pdShadowAt =
      Number((shadowPath(s.window, s.mmu, va)[1] ?? 0n) & ~0xfffn) + tableIndex(va1, 1) * 8;
    const pdShadow = s.window.read(pdShadowAt);
    const counters = structuredClone(s.counters);
    expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
    expect(s.counters).toEqual(counters);
    expect(s.guest.read(pte1), "A is the walker's to set").toBe(BigInt(DATA + 0x7000) | P | W | U);
    expect(shadowPath(s.window, s.mmu, va1)).toEqual(before);
    expect(s.window.read(pdShadowAt)).toBe(pdShadow);
    expect(touch(s, va1, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x7000 });
  });
});
