import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { EPT, EPT_MEMORY_TYPES, type PageSize, tableIndex } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { HostMemory, type HostMemoryOptions } from "../src/paging/host.js";
import { HOST_BASE, PhysicalWindow } from "../src/paging/physical.js";

// The host's EPT as the hypervisor fills it (Intel SDM vol. 3C 29.3.2): a
// non-leaf entry holds R, W and X and the next table's address; a leaf maps
// a 4 KiB page at level 1, or a 2 MiB (level 2) or 1 GiB (level 3) page
// with bit 7 set; its memory type is bits 5:3 (write-back, 6) and bit 6
// ignores the guest's PAT (29.3.7). With EPTP bit 6 set the processor keeps
// an accessed flag (bit 8) and, on a leaf written through, a dirty flag
// (bit 9) (29.3.5). Dirty logging maps leaves without W, so the first write
// to each page exits (KVM's write-protection for dirty logging).
const ADDRESS = 0x000f_ffff_ffff_f000n;
const RWX = EPT.read | EPT.write | EPT.execute;
const LEAF = RWX | (BigInt(EPT_MEMORY_TYPES.WB) << 3n) | EPT.ignorePat;
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

function host(options: Partial<HostMemoryOptions> = {}, hostFrames = 64) {
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "tables", {
    hostTableBytes: hostFrames * 4096,
    guestTableBytes: 4096,
  });
  const memory = new HostMemory(window, {
    levels: 4,
    backing: "4K",
    guestBytes: 4 * GIB,
    ...options,
  });
  return { window, memory };
}

/** The entries a walk of the EPT reads for `gpa`, top level first, each with the table it read. */
function walkEpt(window: PhysicalWindow, root: number, levels: number, gpa: number) {
  const entries: bigint[] = [];
  let table = root;
  for (let level = levels; level >= 1; level--) {
    const entry = window.read(table + tableIndex(gpa, level) * 8);
    entries.push(entry);
    if ((entry & RWX) === 0n || (level > 1 && (entry & EPT.largePage) !== 0n)) break;
    table = Number(entry & ADDRESS);
  }
  return entries;
}

describe("the host's EPT (Intel SDM vol. 3C 29.3.2)", () => {
  const cases: { backing: PageSize; levels: 4 | 5; gpa: number; base: number }[] = [
    { backing: "4K", levels: 4, gpa: 0x1234_5678, base: 0x1234_5000 },
    { backing: "2M", levels: 4, gpa: 0x1234_5678, base: 0x1220_0000 },
    { backing: "1G", levels: 4, gpa: 3 * GIB + 0x1234_5678, base: 3 * GIB },
    { backing: "4K", levels: 5, gpa: 0x1234_5678, base: 0x1234_5000 },
    { backing: "2M", levels: 5, gpa: 0x1234_5678, base: 0x1220_0000 },
  ];
  for (const { backing, levels, gpa, base } of cases) {
    it(`maps a ${backing} page through ${levels} levels: tables RWX, the leaf write-back with its size bit`, () => {
      const { window, memory } = host({ backing, levels });
      memory.map(gpa);
      const leafLevel = { "4K": 1, "2M": 2, "1G": 3 }[backing];
      expect(memory.leafLevelOfBacking).toBe(leafLevel);
      const entries = walkEpt(window, memory.root, levels, gpa);
      expect(entries).toHaveLength(levels - leafLevel + 1);
      for (const table of entries.slice(0, -1)) {
        expect(table & ~ADDRESS, "a table entry: R, W and X only").toBe(RWX);
        expect(window.holds(Number(table & ADDRESS)), "a table in host table memory").toBe(true);
      }
      const large = leafLevel > 1 ? EPT.largePage : 0n;
      expect(entries.at(-1)).toBe(BigInt(HOST_BASE + base) | LEAF | large);
      expect(memory.hpaOf(gpa)).toBe(HOST_BASE + gpa);
      expect(memory.mappedPages).toBe(1);
      // The root and one table per level between it and the leaf.
      expect(window.usage.hostTables).toBe(1 + levels - leafLevel);
    });
  }

  it("reuses the tables already there and allocates only what a new path needs", () => {
    const { window, memory } = host({ guestBytes: 1024 * GIB });
    memory.map(0x1000);
    memory.map(0x2000);
    expect(window.usage.hostTables, "same page table").toBe(4);
    memory.map(2 * MIB);
    expect(window.usage.hostTables, "a new page table under the same directory").toBe(5);
    memory.map(GIB);
    expect(window.usage.hostTables, "a new directory and page table").toBe(7);
    memory.map(512 * GIB);
    expect(window.usage.hostTables, "a new PML4 entry: three new tables").toBe(10);
    expect(memory.mappedPages).toBe(5);
    for (const gpa of [0x1000, 0x2000, 2 * MIB, GIB, 512 * GIB]) {
      expect(walkEpt(window, memory.root, 4, gpa).at(-1)).toBe(BigInt(HOST_BASE + gpa) | LEAF);
    }
    expect(walkEpt(window, memory.root, 4, 0x3000).at(-1), "a page never mapped").toBe(0n);
  });

  it("counts a page mapped once however often its violation is serviced", () => {
    const { memory } = host();
    memory.map(0x5000);
    memory.map(0x5008);
    expect(memory.mappedPages).toBe(1);
    expect(memory.ensureMapped(0x5ff8)).toBe(false);
    expect(memory.ensureMapped(0x6000)).toBe(true);
    expect(memory.mappedPages).toBe(2);
  });

  it("maps all of guest memory up front, each page once", () => {
    const { window, memory } = host({ backing: "2M", guestBytes: 8 * MIB });
    memory.mapAll();
    expect(memory.mappedPages).toBe(4);
    for (let gpa = 0; gpa < 8 * MIB; gpa += 2 * MIB) {
      expect(walkEpt(window, memory.root, 4, gpa).at(-1)).toBe(
        BigInt(HOST_BASE + gpa) | LEAF | EPT.largePage,
      );
    }
    expect(walkEpt(window, memory.root, 4, 8 * MIB).at(-1), "past the guest").toBe(0n);
    memory.mapAll();
    expect(memory.mappedPages).toBe(4);
  });

  it("gives the EPTP the root, write-back, the walk length minus one and the A/D enable (SDM vol. 3C 25.6.11)", () => {
    for (const levels of [4, 5] as const) {
      for (const accessedDirty of [undefined, false, true]) {
        const { memory } = host({ levels, accessedDirty });
        const eptp = memory.eptp;
        expect(eptp & ADDRESS).toBe(BigInt(memory.root));
        expect(eptp & 7n).toBe(6n);
        expect((eptp >> 3n) & 7n).toBe(BigInt(levels - 1));
        expect((eptp >> 6n) & 1n).toBe(accessedDirty === true ? 1n : 0n);
      }
    }
  });
});

describe("the host's limits", () => {
  it("refuses guest memory that is not a whole number of host pages", () => {
    expect(() => host({ backing: "2M", guestBytes: 3 * MIB })).toThrow(
      new PagingError("guest memory (3145728 bytes) is not a whole number of 2M host pages"),
    );
    expect(() => host({ backing: "1G", guestBytes: GIB + 4096 })).toThrow(PagingError);
    expect(host({ backing: "2M", guestBytes: 4 * MIB }).memory.mappedPages).toBe(0);
  });

  it("translates the guest's last byte and refuses its end, negative and fractional addresses", () => {
    const { memory } = host({ guestBytes: 64 * 4096 });
    expect(memory.hpaOf(0)).toBe(HOST_BASE);
    expect(memory.hpaOf(64 * 4096 - 1)).toBe(HOST_BASE + 64 * 4096 - 1);
    expect(() => memory.hpaOf(64 * 4096)).toThrow(
      new PagingError("guest-physical 0x40000 is past the guest's memory (262144 bytes)"),
    );
    expect(() => memory.hpaOf(-1)).toThrow(PagingError);
    expect(() => memory.hpaOf(0.5)).toThrow(PagingError);
    expect(() => memory.map(64 * 4096)).toThrow(PagingError);
    expect(memory.mappedPages).toBe(0);
  });
});

describe("dirty logging through the EPT", () => {
  it("maps a first-touched page without W, then a write logs it and makes it writable", () => {
    const { window, memory } = host({ backing: "2M", dirtyLogging: true });
    expect(memory.service(0x40_1234)).toBe("ept-violation");
    expect(walkEpt(window, memory.root, 4, 0x40_1234).at(-1)).toBe(
      BigInt(HOST_BASE + 0x40_0000) | ((LEAF | EPT.largePage) & ~EPT.write),
    );
    expect(memory.dirtyLog.size).toBe(0);
    expect(memory.service(0x40_5678)).toBe("dirty-log");
    expect([...memory.dirtyLog], "logged at the leaf's size").toEqual([0x40_0000]);
    expect(walkEpt(window, memory.root, 4, 0x40_0000).at(-1)).toBe(
      BigInt(HOST_BASE + 0x40_0000) | LEAF | EPT.largePage,
    );
    expect(memory.mappedPages).toBe(1);
  });

  it("keeps a mapped page's W when its violation is serviced again, and its absence too", () => {
    const { window, memory } = host({ dirtyLogging: true });
    memory.map(0x7000);
    memory.service(0x7000);
    memory.map(0x7000);
    expect(walkEpt(window, memory.root, 4, 0x7000).at(-1), "writable stays writable").toBe(
      BigInt(HOST_BASE + 0x7000) | LEAF,
    );
    // A violation on a page mapped writable is spurious: nothing is logged.
    expect(memory.service(0x7000)).toBe("ept-violation");
    expect([...memory.dirtyLog]).toEqual([0x7000]);
    memory.map(0x8000);
    memory.map(0x8000);
    expect(walkEpt(window, memory.root, 4, 0x8000).at(-1), "read-only stays read-only").toBe(
      BigInt(HOST_BASE + 0x8000) | (LEAF & ~EPT.write),
    );
  });

  it("without dirty logging services a mapped page as a plain violation and logs nothing", () => {
    const { window, memory } = host();
    memory.map(0x9000);
    window.write(
      walkLeafAddress(window, memory.root, 0x9000),
      BigInt(HOST_BASE + 0x9000) | (LEAF & ~EPT.write),
    );
    expect(memory.service(0x9000)).toBe("ept-violation");
    expect(memory.dirtyLog.size).toBe(0);
    expect(walkEpt(window, memory.root, 4, 0x9000).at(-1)).toBe(BigInt(HOST_BASE + 0x9000) | LEAF);
  });

  it("a guest store exits for the violation, once for the log, then never", () => {
    const { memory } = host({ dirtyLogging: true });
    expect(memory.guestStore(0xa000)).toBe("ept-violation");
    expect(memory.guestStore(0xa008)).toBe("dirty-log");
    expect(memory.guestStore(0xa010)).toBeNull();
    expect([...memory.dirtyLog]).toEqual([0xa000]);
  });

  it("a guest store sets the leaf's A and D only with EPT A/D (SDM vol. 3C 29.3.5)", () => {
    for (const accessedDirty of [true, false]) {
      const { window, memory } = host({ accessedDirty });
      expect(memory.guestStore(0xb000)).toBe("ept-violation");
      const ad = accessedDirty ? EPT.accessed | EPT.dirty : 0n;
      expect(walkEpt(window, memory.root, 4, 0xb000).at(-1)).toBe(
        BigInt(HOST_BASE + 0xb000) | LEAF | ad,
      );
      // Mapped and writable already: no exit, and A/D still set.
      expect(memory.guestStore(0xb008)).toBeNull();
      expect(walkEpt(window, memory.root, 4, 0xb000).at(-1)).toBe(
        BigInt(HOST_BASE + 0xb000) | LEAF | ad,
      );
    }
  });

  it("clearing the log write-protects every writable leaf, across tables, and counts them", () => {
    const { window, memory } = host({ dirtyLogging: true, guestBytes: 1024 * GIB });
    const pages = [0x1000, 0x2000, 3 * MIB, 5 * GIB, 600 * GIB];
    for (const gpa of pages) memory.service(gpa);
    for (const gpa of pages.slice(0, 4)) expect(memory.service(gpa)).toBe("dirty-log");
    expect(memory.dirtyLog.size).toBe(4);
    expect(memory.clearDirtyLog(), "four leaves were writable").toBe(4);
    expect(memory.dirtyLog.size).toBe(0);
    for (const gpa of pages) {
      const entries = walkEpt(window, memory.root, 4, gpa);
      for (const table of entries.slice(0, -1)) expect(table & ~ADDRESS, "tables keep W").toBe(RWX);
      expect(entries.at(-1)).toBe(BigInt(HOST_BASE + gpa) | (LEAF & ~EPT.write));
    }
    expect(memory.clearDirtyLog(), "nothing writable is left").toBe(0);
    expect(memory.service(600 * GIB)).toBe("dirty-log");
    expect([...memory.dirtyLog]).toEqual([600 * GIB]);
  });
});

function walkLeafAddress(window: PhysicalWindow, root: number, gpa: number): number {
  let table = root;
  for (let level = 4; level > 1; level--) {
    table = Number(window.read(table + tableIndex(gpa, level) * 8) & ADDRESS);
  }
  return table + tableIndex(gpa, 1) * 8;
}
