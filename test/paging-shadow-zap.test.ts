import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, type ShadowRig, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// What an emulated write drops, what a harvest write-protects, and what a
// resync brings back, under shadow paging alone (KVM's arch/x86/kvm/mmu/mmu.c
// and paging_tmpl.h): a write to a shadowed table zaps the one shadow entry
// it changed; only a table pointer going flushes the paging-structure caches
// (a leaf's translation the guest drops itself, with INVLPG: Intel SDM vol.
// 3A 4.10.4.1); a resync rewrites the shadow entries that exist and fills none.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const PS = X86.pageSize;
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
/** Bit 9 of a shadow leaf: write-protected by a dirty-log harvest. */
const DIRTY_LOG_PROTECTED = 1n << 9n;

/** Walks of the hardware for `va` now (0: the TLB served it). */
function walksFor(s: ShadowRig, va: number): number {
  s.mmu.resetCounters();
  expect("hpa" in s.mmu.translate(va, READ)).toBe(true);
  return s.mmu.counters().walks;
}

describe("an emulated write zaps one shadow entry", () => {
  const va = 0x1000_0000;
  const large = 0x4000_0000;
  function rig() {
    const s = setUpShadow();
    const pte = s.guest.map(va, DATA, P | W | U | A | D);
    s.guest.map(va + 0x1000, DATA + 0x1000, P | W | U | A | D);
    const pde = s.guest.map(large, 2 ** 30, P | W | U | A | D, 2);
    s.shadow.cr3Load(s.process, true);
    for (const at of [va, va + 0x1000, large]) touch(s, at, READ);
    expect(walksFor(s, va + 0x1000), "cached").toBe(0);
    return { s, pte, pde, pt: s.guest.tableOf(va, 1), pd: s.guest.tableOf(large, 2) };
  }

  it("of a 4 KiB leaf without flushing the other translations", () => {
    const { s, pte, pt } = rig();
    s.guest.write(pte, BigInt(DATA + 0x8000) | P | W | U | A | D);
    s.shadow.tableWrite(pt, (pte - pt) / 8);
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(0n);
    expect(walksFor(s, va + 0x1000), "the neighbour still in the TLB").toBe(0);
    expect(walksFor(s, large)).toBe(0);
  });

  it("of a large leaf without flushing the other translations", () => {
    const { s, pde, pd } = rig();
    s.guest.write(pde, BigInt(2 ** 30 + 2 ** 21) | P | W | U | A | D | PS);
    s.shadow.tableWrite(pd, (pde - pd) / 8);
    expect(shadowPath(s.window, s.mmu, large)[2]).toBe(0n);
    expect(walksFor(s, va + 0x1000)).toBe(0);
  });

  it("of an entry never shadowed: nothing to drop, nothing flushed", () => {
    const { s, pt, pd } = rig();
    s.shadow.tableWrite(pt, 300);
    s.shadow.tableWrite(pd, 300);
    expect(s.counters.emulatedWrites).toBe(2);
    expect(walksFor(s, va + 0x1000)).toBe(0);
    expect(walksFor(s, large)).toBe(0);
  });
});

describe("a guest leaf without W", () => {
  it("is shadowed read-only even when the guest's D is set (a page written, then write-protected)", () => {
    const s = setUpShadow();
    const va = 0x1000_0000;
    s.guest.map(va, DATA, P | U | A | D);
    s.shadow.cr3Load(s.process, true);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA });
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U);
    const write = touch(s, va, WRITE);
    expect("fault" in write && write.fault).toMatchObject({ code: "guest-protection", level: 1 });
  });
});

describe("a dirty-log harvest", () => {
  it("counts the writable leaves of leaf tables only, never a directory's table pointers", () => {
    const s = setUpShadow();
    // The second page's directory is built right after the first page's leaf table,
    // and its entry 0 links a table (writable).
    const first = 0x1000_0000;
    const second = 0x4000_0000;
    s.guest.map(first, DATA, P | W | U);
    s.guest.map(second, DATA + 0x1000, P | W | U);
    s.shadow.cr3Load(s.process, true);
    touch(s, first, WRITE);
    touch(s, second, WRITE);
    expect(shadowPath(s.window, s.mmu, second)[2] ?? 0n).not.toBe(0n);
    expect(s.shadow.clearDirtyLog()).toBe(2);
    expect((shadowPath(s.window, s.mmu, second)[2] ?? 0n) & (W | DIRTY_LOG_PROTECTED)).toBe(W);
  });
});

describe("unsync leaf tables", () => {
  const va = 0x3000_0000;

  it("are resynced entry by entry where a shadow entry exists; a page mapped meanwhile faults in", () => {
    const s = setUpShadow({ unsync: true });
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, READ);
    const pt = s.guest.tableOf(va, 1);
    const pte = s.guest.map(va + 0x1000, DATA + 0x1000, P | W | U);
    s.shadow.tableWrite(pt, (pte - pt) / 8);
    expect(s.counters.exits["unsync-write"]).toBe(1);
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.resyncs).toBe(1);
    expect(shadowPath(s.window, s.mmu, va + 0x1000)[3], "not filled by the resync").toBe(0n);
    expect(s.guest.read(pte)).toBe(BigInt(DATA + 0x1000) | P | W | U);
    expect(touch(s, va + 0x1000, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
    expect(s.counters.exits["hidden-page-fault"]).toBe(2);
    expect(s.guest.read(pte), "the hidden fault set the guest's A").toBe(
      BigInt(DATA + 0x1000) | P | W | U | A,
    );
  });
});

describe("a resync", () => {
  it("rewrites the unsync table's own entries and nothing past it: the next shadow page is left alone", () => {
    const s = setUpShadow({ unsync: true });
    // As for the harvest above: the second page's directory is the host frame right after
    // the first page's leaf table, and the guest's directory the guest frame after its table.
    const first = 0x1000_0000;
    const second = 0x4000_0000;
    s.guest.map(first, DATA, P | W | U | A | D);
    s.guest.map(second, DATA + 0x1000, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    touch(s, first, READ);
    touch(s, second, READ);
    const before = shadowPath(s.window, s.mmu, second);
    const pt = s.guest.tableOf(first, 1);
    s.shadow.tableWrite(pt, 9);
    expect(s.counters.exits["unsync-write"]).toBe(1);
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.resyncs).toBe(1);
    expect(shadowPath(s.window, s.mmu, second)).toEqual(before);
    s.mmu.flushAll();
    expect(s.mmu.translate(second, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
  });
});

describe("the shadow root", () => {
  it("is none before the first CR3 load: an INVLPG exits and syncs nothing", () => {
    const s = setUpShadow({ unsync: true });
    s.shadow.invlpg(0x1000_0000);
    expect(s.counters.exits.invlpg).toBe(1);
    expect(s.shadow.size).toBe(0);
  });

  it("is shadowed again at once when the guest reuses the running root's frame (exec)", () => {
    const s = setUpShadow();
    const va = 0x1000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, READ);
    expect(s.counters.shadowPages).toBe(4);
    // exec frees the root and allocates the new one from the same frame, zeroed.
    for (let i = 0; i < 512; i++) s.guest.write(s.process.cr3 + i * 8, 0n);
    s.shadow.tableAllocated(s.process.cr3);
    expect(s.counters.unshadowed).toBe(1);
    expect(s.counters.shadowPages, "a new root shadow page").toBe(5);
    expect(s.shadow.size, "the new root and the three orphans below the old one").toBe(4);
    expect(shadowPath(s.window, s.mmu, va)).toEqual([0n]);
    s.guest.map(va, DATA + 0x3000, P | W | U | A | D);
    expect(touch(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x3000 });
  });
});
