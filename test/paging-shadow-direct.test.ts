import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// A 2 MiB guest page over 4 KiB host pages under agile paging: one shadow
// entry may not map more than the host backs contiguously, so the page is
// shadowed through a direct shadow page of 4 KiB leaves (KVM's role.direct,
// arch/x86/kvm/mmu/mmu.c, kvm_mmu_get_child_sp and FNAME(fetch) in
// paging_tmpl.h), each leaf the 4 KiB part of the guest page that holds the
// address (Intel SDM vol. 3A 4.5: a 2 MiB PDE's frame is bits 51:21).
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
const big = 0x4000_0000 + 3 * 2 ** 21;

/** A 2 MiB guest page at `big`, guest-physical DATA, under agile paging over 4 KiB host pages. */
function rig() {
  // Never switched in these tests: each table's writes stay emulated.
  const s = setUpShadow({ agileSwitchWrites: 100, hostBacking: "4K" });
  const pde = s.guest.map(big, DATA, P | W | U, 2);
  s.shadow.cr3Load(s.process, true);
  return { s, pde, pd: s.guest.tableOf(big, 2) };
}

describe("a 2 MiB guest page over 4 KiB host pages", () => {
  it("is shadowed by 4 KiB leaves in a direct shadow page, each the piece that holds its address", () => {
    const { s, pde } = rig();
    expect(touch(s, big + 0x3123, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x3123 });
    expect(touch(s, big + 0x1f_f008, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1f_f008 });
    const path = shadowPath(s.window, s.mmu, big + 0x3123);
    expect(path).toHaveLength(4);
    expect((path[2] ?? 0n) & ~X86.noExecute & 0xfffn, "a table pointer, no PS").toBe(P | A | W | U);
    expect(path[3]).toBe(BigInt(HOST_BASE + DATA + 0x3000) | P | A | U);
    expect(shadowPath(s.window, s.mmu, big + 0x1f_f008)[3]).toBe(
      BigInt(HOST_BASE + DATA + 0x1f_f000) | P | A | U,
    );
    expect(s.guest.read(pde)).toBe(BigInt(DATA) | P | W | U | A | PS);
    expect(s.counters.exits["hidden-page-fault"]).toBe(2);
  });

  it("drops the pieces' old permissions when the guest changes its leaf: a write-protected page faults", () => {
    const { s, pde, pd } = rig();
    expect(touch(s, big, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    expect(touch(s, big + 0x1000, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
    expect(shadowPath(s.window, s.mmu, big + 0x1000)[3]).toBe(
      BigInt(HOST_BASE + DATA + 0x1000) | P | A | U | W | D,
    );
    const backed = s.host?.mappedPages;
    // The guest write-protects the page (copy-on-write, say): an emulated PDE write.
    s.guest.write(pde, BigInt(DATA) | P | U | A | D | PS);
    s.shadow.tableWrite(pd, (pde - pd) / 8);
    expect(shadowPath(s.window, s.mmu, big)[2]).toBe(0n);
    expect(touch(s, big, READ)).toEqual({ hpa: HOST_BASE + DATA });
    // Linked anew, the direct page holds no piece of the old, writable mapping.
    expect(shadowPath(s.window, s.mmu, big + 0x1000)[3]).toBe(0n);
    const write = touch(s, big + 0x1000, WRITE);
    expect("fault" in write && write.fault).toMatchObject({ code: "guest-protection", level: 2 });
    // The host backs the same pages as before: the EPT is not touched.
    expect(s.host?.mappedPages).toBe(backed);
    expect(touch(s, big + 0x1000, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
    expect(s.host?.mappedPages).toBe(backed);
  });

  it("is left alone by an INVLPG of one of its addresses: a direct page shadows no guest table to sync", () => {
    const { s } = rig();
    touch(s, big + 0x1000, WRITE);
    const before = shadowPath(s.window, s.mmu, big + 0x1000);
    s.shadow.invlpg(big + 0x1000);
    expect(s.counters.exits.invlpg).toBe(1);
    expect(shadowPath(s.window, s.mmu, big + 0x1000)).toEqual(before);
    expect(touch(s, big + 0x1000, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x1000 });
  });

  it("has its 4 KiB leaves write-protected by a dirty-log harvest, one per piece shadowed", () => {
    const { s } = rig();
    touch(s, big, WRITE);
    touch(s, big + 0x5000, WRITE);
    // The guest's D covers the whole 2 MiB page: a piece read after the write is writable too.
    touch(s, big + 0x6000, READ);
    expect(s.shadow.clearDirtyLog()).toBe(3);
    for (const at of [big, big + 0x5000, big + 0x6000]) {
      expect((shadowPath(s.window, s.mmu, at)[3] ?? 0n) & (W | DIRTY_LOG_PROTECTED | PS)).toBe(
        DIRTY_LOG_PROTECTED,
      );
    }
    s.mmu.flushAll();
    expect(touch(s, big + 0x5000, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x5000 });
    expect(s.counters.exits["dirty-log"]).toBe(1);
  });
});
