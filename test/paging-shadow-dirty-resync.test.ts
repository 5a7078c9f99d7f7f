import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, type ShadowRig, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// Dirty logging under shadow paging with unsync leaf tables. docs/paging.md:
// a harvest write-protects every shadow leaf, and the first write to each
// page after it exits and is logged. An unsync table's shadow entries are
// rewritten from the guest's on a resync (the next CR3 load) and, one at a
// time, on INVLPG (KVM's paging_tmpl.h, FNAME(sync_spte)); rewriting a
// harvested leaf writable there would let the page's next write go unlogged.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const WRITE = ACCESS.user | ACCESS.write;
/** Bit 9 of a shadow leaf: write-protected by a dirty-log harvest. */
const DIRTY_LOG_PROTECTED = 1n << 9n;
const va = 0x3000_0000;

/** Two dirty pages harvested, then a PTE write elsewhere in their table: it goes unsync. */
function harvested(): ShadowRig {
  const s = setUpShadow({ unsync: true });
  s.guest.map(va, DATA, P | W | U);
  s.guest.map(va + 0x1000, DATA + 0x1000, P | W | U | A | D);
  s.shadow.cr3Load(s.process, true);
  touch(s, va, WRITE);
  touch(s, va + 0x1000, ACCESS.user);
  expect(s.shadow.clearDirtyLog()).toBe(2);
  s.mmu.flushAll();
  const pt = s.guest.tableOf(va, 1);
  const pte = s.guest.map(va + 0x2000, DATA + 0x2000, P | W | U);
  s.shadow.tableWrite(pt, (pte - pt) / 8);
  expect(s.counters.exits["unsync-write"]).toBe(1);
  return s;
}

/** Both pages still write-protected for the log, and each one's next write logged. */
function expectLoggedOnWrite(s: ShadowRig): void {
  for (const at of [va, va + 0x1000]) {
    expect((shadowPath(s.window, s.mmu, at)[3] ?? 0n) & (W | DIRTY_LOG_PROTECTED)).toBe(
      DIRTY_LOG_PROTECTED,
    );
  }
  expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
  expect(touch(s, va + 0x1000, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
  expect(s.counters.exits["dirty-log"]).toBe(2);
  expect(s.counters.dirtyLogged).toBe(2);
  expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U | W | D);
}

describe("a harvest's write protection on an unsync leaf table", () => {
  it("survives the resync of a CR3 load: the next write to each page is logged", () => {
    const s = harvested();
    s.shadow.cr3Load(s.process, false);
    expect(s.counters.resyncs).toBe(1);
    expectLoggedOnWrite(s);
  });

  it("survives the INVLPG that syncs one entry", () => {
    const s = harvested();
    s.shadow.invlpg(va);
    s.shadow.invlpg(va + 0x1000);
    expectLoggedOnWrite(s);
  });

  it("survives where the guest cleared its D meanwhile: the write is logged, not A/D emulation", () => {
    const s = harvested();
    const pte = s.guest.entryAt(va + 0x1000, 1);
    s.guest.write(pte, BigInt(DATA + 0x1000) | P | W | U | A);
    s.shadow.cr3Load(s.process, false);
    expect(shadowPath(s.window, s.mmu, va + 0x1000)[3]).toBe(
      BigInt(HOST_BASE + DATA + 0x1000) | P | A | U | DIRTY_LOG_PROTECTED,
    );
    expect(touch(s, va + 0x1000, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
    expect(s.counters.exits["dirty-log"]).toBe(1);
    expect(s.counters.exits["ad-emulation"]).toBe(0);
    expect(s.guest.read(pte), "the guest's D set again").toBe(
      BigInt(DATA + 0x1000) | P | W | U | A | D,
    );
  });

  it("is not made up where the guest's page is clean: the resync maps it read-only, and its first write is logged by A/D emulation", () => {
    const s = setUpShadow({ unsync: true });
    s.guest.map(va, DATA, P | W | U);
    s.shadow.cr3Load(s.process, true);
    touch(s, va, ACCESS.user);
    expect(s.shadow.clearDirtyLog(), "clean: nothing writable").toBe(0);
    const pt = s.guest.tableOf(va, 1);
    s.shadow.tableWrite(pt, 5);
    s.shadow.cr3Load(s.process, false);
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U);
    expect(touch(s, va, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(s.counters.exits["ad-emulation"]).toBe(1);
    expect(s.counters.exits["dirty-log"]).toBe(0);
    expect(s.counters.dirtyLogged).toBe(1);
  });
});
