import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ADDRESS_MASK, tableIndex, X86 } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { ACCESS, MmuContext, type MmuOptions } from "../src/paging/mmu.js";
import { HOST_BASE, PhysicalWindow } from "../src/paging/physical.js";
import { cpuPreset, type TranslationCaches } from "../src/paging/presets.js";
import { WalkKernel } from "../src/wasm/walk.js";

// What a context's options tell the walk kernel, seen through native walks
// (guest-physical = host-physical - HOST_BASE): whether the walker sets A and
// D in the entries it uses (Intel SDM vol. 3A 4.8), and where each CPU's
// TLBs keep large pages (Intel 248966, the presets' tables): Skylake-SP has
// four 1 GiB L1 entries behind a 16-entry 1 GiB STLB and an STLB that holds
// 2 MiB pages; Nehalem has no 1 GiB entries at all (a 1 GiB page is cached
// as the 2 MiB fragment used) and an STLB of 4 KiB pages only.
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const PS = X86.pageSize;
const READ = ACCESS.user;
const GIB = 2 ** 30;
const MIB2 = 2 ** 21;

function nativeMmu(caches: TranslationCaches, options: Partial<MmuOptions> = {}) {
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "tables", {
    hostTableBytes: 4096,
    guestTableBytes: 16 * 4096,
  });
  const mmu = new MmuContext(
    layout.memory,
    WalkKernel.on(layout.memory),
    MmuContext.regions(layout, "mmu", caches),
    window,
    { mode: "native", guestLevels: 4, hostLevels: 4, caches, ...options },
  );
  mmu.setNativeDelta(HOST_BASE);
  const root = window.allocateGuestTable();
  mmu.setRoot(root);
  /** Guest-physical address of `va`'s entry at `level`, making the tables above it. */
  const entryAt = (va: number, level: number): number => {
    let table = root;
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
  const map = (va: number, frame: number, level: number) => {
    const at = entryAt(va, level);
    window.write(at, BigInt(frame) | P | W | U | (level > 1 ? PS : 0n));
    return at;
  };
  /** Reads each address in turn; returns the walks and the STLB hits they took. */
  const touch = (addresses: number[]) => {
    mmu.resetCounters();
    for (const va of addresses) {
      const outcome = mmu.translate(va, READ);
      if (!("hpa" in outcome)) throw new Error(`0x${va.toString(16)} faulted`);
    }
    const c = mmu.counters();
    return { walks: c.walks, l2Hits: c.l2Hits };
  };
  return { window, mmu, map, entryAt, touch };
}

const range = (n: number, step: number, from = 0) =>
  Array.from({ length: n }, (_, i) => from + i * step);

describe("A and D set by the walker (SDM vol. 3A 4.8)", () => {
  it("are set unless the context is told not to", () => {
    const caches = cpuPreset("skylake-sp").caches;
    for (const setAccessedDirty of [undefined, true, false]) {
      const { mmu, map, entryAt, window } = nativeMmu(caches, { setAccessedDirty });
      const va = 0x1234_5000;
      const pte = map(va, 0x8000_0000, 1);
      expect("hpa" in mmu.translate(va, READ | ACCESS.write)).toBe(true);
      const set = setAccessedDirty !== false;
      expect(window.read(pte) & (A | D), `setAccessedDirty ${setAccessedDirty}`).toBe(
        set ? A | D : 0n,
      );
      expect(window.read(entryAt(va, 2)) & (A | D)).toBe(set ? A : 0n);
    }
  });
});

describe("where the TLBs keep large pages", () => {
  it("Skylake-SP: 1 GiB pages past the four L1 entries hit the 1 GiB STLB", () => {
    const skylake = cpuPreset("skylake-sp").caches;
    for (const caches of [skylake, { ...skylake, l2OneGig: null }]) {
      const { map, touch } = nativeMmu(caches);
      const pages = range(8, GIB);
      for (const va of pages) map(va, 0, 3);
      expect(touch(pages).walks).toBe(8);
      // The L1's four entries hold the last four: the first four come from the STLB.
      const again = touch(pages.slice(0, 4));
      if (caches.l2OneGig) expect(again).toEqual({ walks: 0, l2Hits: 4 });
      else expect(again).toEqual({ walks: 4, l2Hits: 0 });
    }
  });

  it("Skylake-SP keeps a 1 GiB page whole; Nehalem caches the 2 MiB fragment used", () => {
    const inOnePage = [0x4000_0000 + 0x1234, 0x4000_0000 + 5 * MIB2 + 0x1234, 0x7fff_f000];
    const skylake = nativeMmu(cpuPreset("skylake-sp").caches);
    skylake.map(GIB, 0, 3);
    expect(skylake.touch(inOnePage), "one walk, then the L1's 1 GiB entry").toEqual({
      walks: 1,
      l2Hits: 0,
    });
    const nehalem = nativeMmu(cpuPreset("nehalem").caches);
    nehalem.map(GIB, 0, 3);
    expect(nehalem.touch(inOnePage).walks).toBe(3);
    expect(nehalem.touch([0x4000_0000 + 5 * MIB2]).walks, "a fragment cached").toBe(0);
  });

  it("2 MiB pages past the L1 hit Skylake-SP's STLB and walk again on Nehalem", () => {
    const pages = range(64, MIB2, GIB);
    for (const [name, stlbHolds2M] of [
      ["skylake-sp", true],
      ["nehalem", false],
    ] as const) {
      const caches = cpuPreset(name).caches;
      expect(caches.l2Holds2M).toBe(stlbHolds2M);
      const { map, touch } = nativeMmu(caches);
      for (const va of pages) map(va, 0x8000_0000, 2);
      expect(touch(pages).walks).toBe(64);
      // 32 L1 entries in sets of 4: each set kept the last four of its eight pages.
      const again = touch(pages.slice(0, 32));
      expect(again, name).toEqual(
        stlbHolds2M ? { walks: 0, l2Hits: 32 } : { walks: 32, l2Hits: 0 },
      );
    }
  });
});

describe("a context's cache geometries", () => {
  it("are checked, each named by its slot", () => {
    const skylake = cpuPreset("skylake-sp").caches;
    expect(() => nativeMmu({ ...skylake, l2: { entries: 10, ways: 4 } })).toThrow(
      new PagingError(
        "cache 3: 10 entries cannot be split into sets of 4 ways (impossible geometry)",
      ),
    );
    expect(() => nativeMmu({ ...skylake, nestedTlb: { entries: 64, ways: 65 } })).toThrow(
      new PagingError("cache 13: ways must be 1 to 64, not 65"),
    );
  });
});
