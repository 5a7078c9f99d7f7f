import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ADDRESS_MASK, EPT, EPT_MEMORY_TYPES, tableIndex, X86 } from "../src/paging/entry.js";
import { ACCESS, MmuContext, type MmuOptions } from "../src/paging/mmu.js";
import { HOST_BASE, PhysicalWindow } from "../src/paging/physical.js";
import { cpuPreset } from "../src/paging/presets.js";
import { WalkKernel } from "../src/wasm/walk.js";

/*
 * Rules of the walk kernel's TLB and nested walk, each on tables written by
 * hand here (not by the guest OS or host models) with the answer worked out
 * from the Intel SDM:
 *
 * - Vol. 3A 4.6.1 and 4.10.2.2: a TLB entry caches the access rights of its
 *   translation; a write through an entry whose R/W is 0 is refused (a page
 *   fault), whether or not the translation is in the TLB.
 * - Vol. 3C 29.3.5 (accessed and dirty flags for EPT): with EPTP bit 6 set,
 *   a write to a guest-physical address sets the dirty flag (bit 9) of the
 *   EPT leaf that maps it; a read sets only the accessed flag (bit 8). Guest
 *   paging-structure accesses count as writes for these flags.
 * - Vol. 3A 4.10.2.3 and 3C 29.4.1: a TLB entry for a translation combined
 *   from a guest page and a host page is no larger than the smaller of the
 *   two (a 2 MiB guest page over 4 KiB host pages is cached 4 KiB at a time).
 */

const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const PS = X86.pageSize;
const RWX = EPT.read | EPT.write | EPT.execute;
const WB = BigInt(EPT_MEMORY_TYPES.WB) << 3n;
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
const MIB2 = 2 ** 21;

/**
 * A context over tables built by hand: 4-level guest tables in the window's
 * guest zone (guest-physical g backed at host-physical HOST_BASE + g) and,
 * for nested contexts, a 4-level EPT in its host zone.
 */
function handTables(options: Pick<MmuOptions, "mode"> & Partial<MmuOptions>) {
  const caches = cpuPreset("skylake-sp").caches;
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "hand tables", {
    hostTableBytes: 32 * 4096,
    guestTableBytes: 16 * 4096,
  });
  const mmu = new MmuContext(
    layout.memory,
    WalkKernel.on(layout.memory),
    MmuContext.regions(layout, "hand mmu", caches),
    window,
    { guestLevels: 4, hostLevels: 4, caches, ...options },
  );
  const guestRoot = window.allocateGuestTable();
  const eptRoot = window.allocateHostTable();
  mmu.setRoot(guestRoot);
  mmu.setEptRoot(eptRoot);
  mmu.setNativeDelta(HOST_BASE);

  /** Host-physical address of the EPT entry for `gpa` at `level`, making the tables above it. */
  const eptEntryAt = (gpa: number, level: number): number => {
    let table = eptRoot;
    for (let l = 4; l > level; l--) {
      const at = table + tableIndex(gpa, l) * 8;
      let entry = window.read(at);
      if ((entry & RWX) === 0n) {
        entry = BigInt(window.allocateHostTable()) | RWX;
        window.write(at, entry);
      }
      table = Number(entry & ADDRESS_MASK);
    }
    return table + tableIndex(gpa, level) * 8;
  };
  /** Maps guest-physical `gpa` to host-physical `hpa` with an EPT leaf at `level` (1: 4 KiB, 2: 2 MiB). */
  const eptMap = (gpa: number, hpa: number, level: number, rights = RWX): number => {
    const at = eptEntryAt(gpa, level);
    window.write(at, BigInt(hpa) | rights | WB | (level > 1 ? EPT.largePage : 0n));
    return at;
  };
  /** Host-physical address of the guest entry for `va` at `level`, making the tables above it. */
  const guestEntryAt = (va: number, level: number): number => {
    let table = guestRoot;
    for (let l = 4; l > level; l--) {
      const at = HOST_BASE + table + tableIndex(va, l) * 8;
      let entry = window.read(at);
      if ((entry & P) === 0n) {
        entry = BigInt(window.allocateGuestTable()) | P | W | U;
        window.write(at, entry);
      }
      table = Number(entry & ADDRESS_MASK);
    }
    return HOST_BASE + table + tableIndex(va, level) * 8;
  };
  /** Maps `va` to guest-physical `gpa` with a guest leaf at `level` holding `bits`. */
  const guestMap = (va: number, gpa: number, level: number, bits: bigint): number => {
    const at = guestEntryAt(va, level);
    window.write(at, BigInt(gpa) | bits | (level > 1 ? PS : 0n));
    return at;
  };
  /** EPT leaves for every guest table frame, so that a nested walk reads them in place. */
  const eptMapGuestTables = () => {
    for (let gpa = 0; gpa < 16 * 4096; gpa += 4096) eptMap(gpa, HOST_BASE + gpa, 1);
  };
  return { window, mmu, eptMap, guestMap, eptMapGuestTables };
}

/** The translation's host-physical address, or the fault's name, level and address. */
function outcome(mmu: MmuContext, va: number, kind: number) {
  const r = mmu.translate(va, kind);
  if ("hpa" in r) return { hpa: r.hpa };
  const { code, level, address } = r.fault;
  return { code, level, address };
}

describe("a TLB entry without W does not serve a write (SDM vol. 3A 4.6.1, 4.10.2.2)", () => {
  const va = 0x1234_5000;
  const gpa = 0x0070_0000;

  it("natively, without A/D upkeep: a read caches the page, the write after it faults", () => {
    const { mmu, guestMap } = handTables({ mode: "native", setAccessedDirty: false });
    guestMap(va, gpa, 1, P | U);
    expect(outcome(mmu, va + 0x10, READ)).toEqual({ hpa: gpa + 0x10 });
    expect(mmu.counters().walks).toBe(1);
    expect(outcome(mmu, va + 0x10, READ), "the read is cached").toEqual({ hpa: gpa + 0x10 });
    expect(mmu.counters().walks).toBe(1);
    expect(outcome(mmu, va + 0x20, WRITE)).toEqual({
      code: "guest-protection",
      level: 1,
      address: va,
    });
  });

  it("natively, on a read-only page already dirty: the cached entry's D does not make it writable", () => {
    const { mmu, guestMap } = handTables({ mode: "native" });
    guestMap(va, gpa, 1, P | U | A | D);
    expect(outcome(mmu, va, READ)).toEqual({ hpa: gpa });
    expect(outcome(mmu, va, WRITE)).toEqual({
      code: "guest-protection",
      level: 1,
      address: va,
    });
    // Read-only above the leaf (a page directory entry without R/W) refuses it too.
    const other = 0x4000_0000;
    const { mmu: mmu2, guestMap: guestMap2, window } = handTables({ mode: "native" });
    guestMap2(other, gpa, 1, P | W | U | A | D);
    // The page directory entry above `other`'s page table: its R/W cleared.
    const pde = findParent(window, mmu2.root, other, 2);
    window.write(pde.at, pde.entry & ~W);
    expect(outcome(mmu2, other, READ)).toEqual({ hpa: gpa });
    expect(outcome(mmu2, other, WRITE)).toEqual({
      code: "guest-protection",
      level: 1,
      address: other,
    });
  });

  it("under SLAT, on a page the EPT maps read-only (dirty logging): the write exits after the cached read", () => {
    const { mmu, guestMap, eptMap, eptMapGuestTables } = handTables({ mode: "nested" });
    eptMapGuestTables();
    guestMap(va, gpa, 1, P | W | U | A | D);
    eptMap(gpa, 0x3_0000_0000, 1, EPT.read | EPT.execute);
    expect(outcome(mmu, va + 8, READ)).toEqual({ hpa: 0x3_0000_0008 });
    expect(outcome(mmu, va + 8, WRITE)).toEqual({
      code: "ept-violation",
      level: 1,
      address: gpa,
    });
  });
});

/** The guest entry at `level` on `va`'s walk from `root` (guest-physical), and its host-physical address. */
function findParent(window: PhysicalWindow, root: number, va: number, level: number) {
  let table = root;
  for (let l = 4; l > level; l--) {
    table = Number(window.read(HOST_BASE + table + tableIndex(va, l) * 8) & ADDRESS_MASK);
  }
  const at = HOST_BASE + table + tableIndex(va, level) * 8;
  return { at, entry: window.read(at) };
}

describe("EPT accessed and dirty flags (SDM vol. 3C 29.3.5)", () => {
  const va = 0x5555_5000;
  const gpa = 0x0080_0000;
  const hpa = 0x3_0040_0000;

  it("a read sets A in the data page's EPT leaf; the write after it sets D", () => {
    const { mmu, window, guestMap, eptMap, eptMapGuestTables } = handTables({
      mode: "nested",
      eptAccessedDirty: true,
    });
    eptMapGuestTables();
    guestMap(va, gpa, 1, P | W | U | A | D);
    const leaf = eptMap(gpa, hpa, 1);
    const flags = () => window.read(leaf) & (EPT.accessed | EPT.dirty);
    expect(flags()).toBe(0n);
    expect(outcome(mmu, va, READ)).toEqual({ hpa });
    expect(flags(), "read: accessed only").toBe(EPT.accessed);
    expect(outcome(mmu, va, WRITE)).toEqual({ hpa });
    expect(flags(), "written: accessed and dirty").toBe(EPT.accessed | EPT.dirty);
  });

  it("a first access that writes sets A and D at once; without EPTP bit 6 neither is set", () => {
    for (const eptAccessedDirty of [true, false]) {
      const { mmu, window, guestMap, eptMap, eptMapGuestTables } = handTables({
        mode: "nested",
        eptAccessedDirty,
      });
      eptMapGuestTables();
      guestMap(va, gpa, 1, P | W | U | A | D);
      const leaf = eptMap(gpa, hpa, 1);
      expect(outcome(mmu, va + 0x7f8, WRITE)).toEqual({ hpa: hpa + 0x7f8 });
      expect(window.read(leaf) & (EPT.accessed | EPT.dirty)).toBe(
        eptAccessedDirty ? EPT.accessed | EPT.dirty : 0n,
      );
    }
  });

  it("the guest's page-table frames are written for EPT's purposes: their leaves get D on a read", () => {
    const { mmu, window, guestMap, eptMap } = handTables({
      mode: "nested",
      eptAccessedDirty: true,
    });
    const tableLeaves: number[] = [];
    for (let g = 0; g < 16 * 4096; g += 4096) tableLeaves.push(eptMap(g, HOST_BASE + g, 1));
    guestMap(va, gpa, 1, P | W | U | A | D);
    eptMap(gpa, hpa, 1);
    expect(outcome(mmu, va, READ)).toEqual({ hpa });
    // The walk read the root (frame 0) and the three tables below it (frames 1-3).
    const marked = tableLeaves.map((at) => window.read(at) & (EPT.accessed | EPT.dirty));
    expect(marked.slice(0, 4)).toEqual(Array(4).fill(EPT.accessed | EPT.dirty));
    expect(marked.slice(4)).toEqual(Array(12).fill(0n));
  });
});

describe("the TLB holds the smaller of the guest and host page sizes (SDM vol. 3A 4.10.2.3)", () => {
  it("a 2 MiB guest page over 4 KiB host pages: each 4 KiB piece walks and lands on its own host page", () => {
    const { mmu, guestMap, eptMap, eptMapGuestTables } = handTables({ mode: "nested" });
    eptMapGuestTables();
    const va = 0x0060_0000;
    const gpa = 0x4000_0000;
    guestMap(va, gpa, 2, P | W | U | A | D);
    // Two host pages far apart: a 2 MiB TLB entry would put the second next to the first.
    eptMap(gpa, 0x2_0000_0000, 1);
    eptMap(gpa + 0x1000, 0x2_0050_0000, 1);
    expect(outcome(mmu, va + 0x123, READ)).toEqual({ hpa: 0x2_0000_0123 });
    expect(outcome(mmu, va + 0x1123, READ)).toEqual({ hpa: 0x2_0050_0123 });
    expect(mmu.counters().walks, "one walk per 4 KiB piece").toBe(2);
    expect(outcome(mmu, va + 0x1fff, READ), "the second piece is cached").toEqual({
      hpa: 0x2_0050_0fff,
    });
    expect(mmu.counters().walks).toBe(2);
  });

  it("a 1 GiB guest page over 2 MiB host pages: cached 2 MiB at a time", () => {
    const { mmu, guestMap, eptMap, eptMapGuestTables } = handTables({ mode: "nested" });
    eptMapGuestTables();
    const va = 0x80_0000_0000;
    const gpa = 0x4000_0000;
    guestMap(va, gpa, 3, P | W | U | A | D);
    eptMap(gpa, 0x2_0000_0000, 2);
    eptMap(gpa + MIB2, 0x2_4000_0000, 2);
    expect(outcome(mmu, va + 0x1234, READ)).toEqual({ hpa: 0x2_0000_1234 });
    expect(outcome(mmu, va + MIB2 + 0x1234, READ)).toEqual({ hpa: 0x2_4000_1234 });
    expect(mmu.counters().walks).toBe(2);
  });
});
