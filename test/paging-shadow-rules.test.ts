import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ADDRESS_MASK, tableIndex, X86 } from "../src/paging/entry.js";
import { emptyExitCounters } from "../src/paging/exits.js";
import type { GuestProcess } from "../src/paging/guest-os.js";
import { ACCESS, type Fault, MmuContext } from "../src/paging/mmu.js";
import { HOST_BASE, PhysicalWindow } from "../src/paging/physical.js";
import { cpuPreset } from "../src/paging/presets.js";
import { ShadowMmu, type ShadowOptions } from "../src/paging/shadow.js";
import { WalkKernel } from "../src/wasm/walk.js";

// Shadow paging's rules, one at a time, on guest tables written by hand
// (KVM's semantics: Linux arch/x86/kvm/mmu/mmu.c, paging_tmpl.h, and
// Documentation/virt/kvm/x86/mmu.rst). The hardware walks the shadow tables
// natively (Intel SDM vol. 3A 4.5), so a shadow leaf maps a guest-virtual
// page straight to its host-physical frame; the hypervisor fills it on a
// hidden page fault, sets the guest's own A and D bits (SDM vol. 3A 4.8) by
// mapping a clean page read-only until the first write, and reflects a fault
// the guest's tables would take as a guest #PF (SDM vol. 3A 4.7).
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const A = X86.accessed;
const D = X86.dirty;
const PS = X86.pageSize;
const NX = X86.noExecute;
/** Bit 9 of a shadow leaf: write-protected by a dirty-log harvest. */
const DIRTY_LOG_PROTECTED = 1n << 9n;
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
const DATA = 0x8000_0000; // guest-physical frames the guest's pages map

function setUp(options: Partial<ShadowOptions> = {}) {
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "tables", {
    hostTableBytes: 64 * 4096,
    guestTableBytes: 32 * 4096,
  });
  const caches = cpuPreset("skylake-sp").caches;
  const mmu = new MmuContext(
    layout.memory,
    WalkKernel.on(layout.memory),
    MmuContext.regions(layout, "mmu", caches),
    window,
    { mode: "shadow", guestLevels: 4, hostLevels: 4, caches },
  );
  const counters = emptyExitCounters();
  const shadow = new ShadowMmu(
    window,
    mmu,
    { levels: 4, unsync: false, floodThreshold: 3, tagged: true, ...options },
    counters,
  );
  const guest = new GuestTables(window);
  const process: GuestProcess = { pid: 1, cr3: guest.root, pcid: 7, vmas: [], mapped: 0 };
  return { window, mmu, counters, shadow, guest, process };
}

/** The guest's page tables, written as the guest kernel would. */
class GuestTables {
  readonly root: number;
  constructor(private readonly window: PhysicalWindow) {
    this.root = window.allocateGuestTable();
  }

  /** Guest-physical address of the entry for `va` at `level`, making the tables above it. */
  entryAt(va: number, level: number, flags = P | W | U): number {
    let table = this.root;
    for (let l = 4; l > level; l--) {
      const at = table + tableIndex(va, l) * 8;
      let entry = this.read(at);
      if ((entry & P) === 0n) {
        entry = BigInt(this.window.allocateGuestTable()) | flags;
        this.write(at, entry);
      }
      table = Number(entry & ADDRESS_MASK);
    }
    return table + tableIndex(va, level) * 8;
  }

  /** The guest table (guest-physical) that holds `va`'s entry at `level`. */
  tableOf(va: number, level: number): number {
    return this.entryAt(va, level) - tableIndex(va, level) * 8;
  }

  map(va: number, frame: number, flags: bigint, level = 1): number {
    const at = this.entryAt(va, level);
    this.write(at, BigInt(frame) | flags | (level > 1 ? PS : 0n));
    return at;
  }

  read(gpa: number): bigint {
    return this.window.read(HOST_BASE + gpa);
  }

  write(gpa: number, entry: bigint): void {
    this.window.write(HOST_BASE + gpa, entry);
  }
}

/** The shadow entries the hardware walks for `va`, top level first. */
function shadowPath(window: PhysicalWindow, mmu: MmuContext, va: number): bigint[] {
  const path: bigint[] = [];
  let table = mmu.root;
  for (let level = 4; level >= 1; level--) {
    const entry = window.read(table + tableIndex(va, level) * 8);
    path.push(entry);
    if ((entry & P) === 0n || (level > 1 && (entry & PS) !== 0n)) break;
    table = Number(entry & ADDRESS_MASK);
  }
  return path;
}

/** Translates; on a fault, hands it to the shadow MMU and returns what it injects (or null). */
function access(
  s: ReturnType<typeof setUp>,
  va: number,
  kind: number,
): { hpa: number } | { handled: Fault | null } {
  const outcome = s.mmu.translate(va, kind);
  if ("hpa" in outcome) return outcome;
  return { handled: s.shadow.handleFault(s.process, outcome.fault) };
}

describe("a hidden page fault", () => {
  it("fills the shadow with the guest's translation to host-physical, read-only until the guest's D", () => {
    const s = setUp();
    const va = 0x1234_5000;
    const pte = s.guest.map(va, DATA, P | W | U);
    s.shadow.cr3Load(s.process, true);
    expect(s.counters.exits["cr3-write"]).toBe(1);
    expect(s.counters.shadowPages, "the root's shadow page").toBe(1);

    expect(access(s, va + 0x10, READ)).toEqual({ handled: null });
    expect(s.counters.exits["hidden-page-fault"]).toBe(1);
    expect(s.counters.shadowPages, "one shadow page per guest table").toBe(4);
    // The hypervisor set A in every guest entry it used, and no D on a read.
    for (let level = 4; level >= 2; level--) {
      expect(s.guest.read(s.guest.entryAt(va, level)) & (A | D)).toBe(A);
    }
    expect(s.guest.read(pte)).toBe(BigInt(DATA) | P | W | U | A);
    const path = shadowPath(s.window, s.mmu, va);
    expect(path).toHaveLength(4);
    for (const entry of path.slice(0, 3)) {
      expect(entry & ~ADDRESS_MASK, "a shadow table entry: the guest's W and U, P and A").toBe(
        P | W | U | A,
      );
    }
    expect(path[3], "clean: mapped without W").toBe(BigInt(HOST_BASE + DATA) | P | A | U);
    expect(access(s, va + 0x10, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x10 });

    // The first write faults on the read-only shadow leaf: A/D emulation.
    expect(access(s, va + 0x18, WRITE)).toEqual({ handled: null });
    expect(s.counters.exits["ad-emulation"]).toBe(1);
    expect(s.counters.exits["hidden-page-fault"]).toBe(1);
    expect(s.guest.read(pte)).toBe(BigInt(DATA) | P | W | U | A | D);
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(BigInt(HOST_BASE + DATA) | P | A | U | W | D);
    expect(access(s, va + 0x18, WRITE)).toEqual({ hpa: HOST_BASE + DATA + 0x18 });
    expect(s.counters.exits["guest-page-fault"]).toBe(0);
  });

  it("maps a page the guest wrote first writable at once, and keeps the guest's NX", () => {
    const s = setUp();
    const va = 0x4000_0000;
    const pte = s.guest.map(va, DATA, P | W | U | NX);
    s.shadow.cr3Load(s.process, true);
    expect(access(s, va, WRITE)).toEqual({ handled: null });
    expect(s.counters.exits["hidden-page-fault"]).toBe(1);
    expect(s.guest.read(pte)).toBe(BigInt(DATA) | P | W | U | A | D | NX);
    expect(shadowPath(s.window, s.mmu, va)[3]).toBe(
      BigInt(HOST_BASE + DATA) | P | A | U | W | D | NX,
    );
  });

  it("shadows a guest page at the guest's page size, PAT bit 12 not taken as address", () => {
    for (const { level, bytes } of [
      { level: 2, bytes: 2 ** 21 },
      { level: 3, bytes: 2 ** 30 },
    ]) {
      const s = setUp();
      const va = 3 * 2 ** 30 + 5 * bytes * (level === 2 ? 1 : 0) + 0x1_2345;
      const base = 2 * 2 ** 30;
      s.guest.map(va, base, P | W | U | X86.largePat, level);
      s.shadow.cr3Load(s.process, true);
      expect(access(s, va, READ)).toEqual({ handled: null });
      const path = shadowPath(s.window, s.mmu, va);
      expect(path).toHaveLength(5 - level);
      expect(path.at(-1)).toBe(BigInt(HOST_BASE + base) | P | A | U | PS);
      expect(access(s, va, READ)).toEqual({ hpa: HOST_BASE + base + (va % bytes) });
    }
  });
});

describe("a fault the guest's own tables take", () => {
  const cases: {
    what: string;
    build: (g: GuestTables, va: number) => void;
    kind: number;
    code: Fault["code"];
    level: number;
  }[] = [
    {
      what: "no page directory entry",
      build: (g, va) => g.entryAt(va, 2),
      kind: READ,
      code: "guest-not-present",
      level: 2,
    },
    {
      what: "a write to a read-only page",
      build: (g, va) => g.map(va, DATA, P | U),
      kind: WRITE,
      code: "guest-protection",
      level: 1,
    },
    {
      what: "a write under a read-only directory",
      build: (g, va) => {
        g.map(va, DATA, P | W | U);
        const pde = g.entryAt(va, 2);
        g.write(pde, g.read(pde) & ~W);
      },
      kind: WRITE,
      code: "guest-protection",
      level: 1,
    },
    {
      what: "a user access to a supervisor page",
      build: (g, va) => g.map(va, DATA, P | W),
      kind: READ,
      code: "guest-protection",
      level: 1,
    },
    {
      what: "a user access under a supervisor PDPTE",
      build: (g, va) => {
        g.map(va, DATA, P | W | U);
        const pdpte = g.entryAt(va, 3);
        g.write(pdpte, g.read(pdpte) & ~U);
      },
      kind: READ,
      code: "guest-protection",
      level: 1,
    },
    {
      what: "a fetch from a page NX in its PML4E",
      build: (g, va) => {
        g.map(va, DATA, P | W | U);
        const pml4e = g.entryAt(va, 4);
        g.write(pml4e, g.read(pml4e) | NX);
      },
      kind: ACCESS.user | ACCESS.execute,
      code: "guest-protection",
      level: 1,
    },
    {
      what: "a fetch from a large page NX in its leaf",
      build: (g, va) => g.map(va, DATA, P | W | U | NX, 2),
      kind: ACCESS.user | ACCESS.execute,
      code: "guest-protection",
      level: 2,
    },
    {
      what: "PS in a PML4E (SDM vol. 3A 4.5: reserved)",
      build: (g, va) => g.write(g.entryAt(va, 4), BigInt(DATA) | P | W | U | PS),
      kind: READ,
      code: "guest-reserved",
      level: 4,
    },
  ];
  for (const { what, build, kind, code, level } of cases) {
    it(`is reflected to the guest as a #PF: ${what}`, () => {
      const s = setUp();
      const va = 0x7f00_1234_5000;
      build(s.guest, va);
      s.shadow.cr3Load(s.process, true);
      const outcome = s.mmu.translate(va, kind);
      if (!("fault" in outcome)) throw new Error("the empty shadow translated");
      expect(s.shadow.handleFault(s.process, outcome.fault)).toEqual({
        ...outcome.fault,
        code,
        level,
      });
      expect(s.counters.exits["guest-page-fault"]).toBe(1);
      expect(s.counters.exits["hidden-page-fault"]).toBe(0);
      expect(s.counters.exits["ad-emulation"]).toBe(0);
    });
  }

  it("is not taken where the access is allowed: a supervisor write, a fetch without NX", () => {
    const s = setUp();
    const va = 0x5000_0000;
    s.guest.map(va, DATA, P | W);
    s.guest.map(va + 0x1000, DATA + 0x1000, P | U);
    s.shadow.cr3Load(s.process, true);
    expect(access(s, va, ACCESS.write)).toEqual({ handled: null });
    expect(access(s, va + 0x1000, ACCESS.user | ACCESS.execute)).toEqual({ handled: null });
    expect(s.counters.exits["guest-page-fault"]).toBe(0);
    expect(s.counters.exits["hidden-page-fault"]).toBe(2);
  });
});

describe("guest writes to shadowed tables", () => {
  it("exit and are emulated, dropping the shadow entry the write changed", () => {
    const s = setUp();
    const va = 0x1000_0000;
    const pte = s.guest.map(va, DATA, P | W | U | A | D);
    s.guest.map(va + 0x1000, DATA + 0x1000, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    access(s, va + 0x1000, READ);
    s.guest.write(pte, BigInt(DATA + 0x5000) | P | W | U | A | D);
    s.shadow.tableWrite(s.guest.tableOf(va, 1), tableIndex(va, 1));
    expect(s.counters.exits["page-table-write"]).toBe(1);
    expect(s.counters.emulatedWrites).toBe(1);
    expect(shadowPath(s.window, s.mmu, va)[3], "zapped").toBe(0n);
    expect((shadowPath(s.window, s.mmu, va + 0x1000)[3] ?? 0n) & P, "its neighbour kept").toBe(P);
    s.mmu.invalidatePage(va);
    expect(access(s, va, READ)).toEqual({ handled: null });
    expect(access(s, va, READ)).toEqual({ hpa: HOST_BASE + DATA + 0x5000 });
  });

  it("to a table that is not shadowed do not exit", () => {
    const s = setUp();
    s.shadow.cr3Load(s.process, true);
    s.shadow.tableWrite(s.window.allocateGuestTable(), 3);
    expect(s.counters.exits["page-table-write"]).toBe(0);
    expect(s.counters.emulatedWrites).toBe(0);
  });

  it("unshadow a table written three times without use (write flooding), never the root", () => {
    const s = setUp();
    const va = 0x2000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    const pt = s.guest.tableOf(va, 1);
    s.shadow.tableWrite(pt, 1);
    s.shadow.tableWrite(pt, 2);
    expect(s.counters.unshadowed).toBe(0);
    expect(s.shadow.size).toBe(4);
    s.shadow.tableWrite(pt, 3);
    expect(s.counters.unshadowed).toBe(1);
    expect(s.shadow.size).toBe(3);
    expect(shadowPath(s.window, s.mmu, va)[2], "the PDE that pointed at it cleared").toBe(0n);
    expect(s.counters.exits["page-table-write"]).toBe(3);

    for (let i = 0; i < 5; i++) s.shadow.tableWrite(s.process.cr3, 100 + i);
    expect(s.counters.unshadowed, "the root stays shadowed").toBe(1);
    expect(s.counters.exits["page-table-write"]).toBe(8);
  });

  it("count flooding only since the table was last used in a walk", () => {
    const s = setUp();
    const va = 0x2000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    const pt = s.guest.tableOf(va, 1);
    s.shadow.tableWrite(pt, 1);
    s.shadow.tableWrite(pt, 2);
    s.mmu.flushAll();
    s.shadow.tableWrite(pt, tableIndex(va, 1));
    expect(s.counters.unshadowed).toBe(1);

    const t = setUp();
    t.guest.map(va, DATA, P | W | U | A | D);
    t.shadow.cr3Load(t.process, true);
    access(t, va, READ);
    const pt2 = t.guest.tableOf(va, 1);
    t.shadow.tableWrite(pt2, 1);
    t.shadow.tableWrite(pt2, tableIndex(va, 1));
    expect(access(t, va, READ), "a walk through the table").toEqual({ handled: null });
    t.shadow.tableWrite(pt2, 2);
    t.shadow.tableWrite(pt2, 3);
    expect(t.counters.unshadowed, "two writes since its use").toBe(0);
  });

  it("under unsync exit once per leaf table, INVLPG syncs one entry and a CR3 load the page", () => {
    const s = setUp({ unsync: true });
    const va = 0x3000_0000;
    const pte = s.guest.map(va, DATA, P | W | U | A | D);
    const pte2 = s.guest.map(va + 0x1000, DATA + 0x1000, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    access(s, va + 0x1000, READ);
    const pt = s.guest.tableOf(va, 1);
    s.guest.write(pte, 0n);
    s.shadow.tableWrite(pt, tableIndex(va, 1));
    s.guest.write(pte2, BigInt(DATA + 0x7000) | P | W | U | A | D);
    s.shadow.tableWrite(pt, tableIndex(va + 0x1000, 1));
    expect(s.counters.exits["unsync-write"]).toBe(1);
    expect(s.counters.exits["page-table-write"]).toBe(0);
    expect(s.counters.emulatedWrites).toBe(0);
    // Upper tables are never unsync.
    s.shadow.tableWrite(s.guest.tableOf(va, 2), 7);
    expect(s.counters.exits["page-table-write"]).toBe(1);

    s.shadow.invlpg(va);
    expect(s.counters.exits.invlpg).toBe(1);
    expect(shadowPath(s.window, s.mmu, va)[3], "synced: not present").toBe(0n);
    expect(shadowPath(s.window, s.mmu, va + 0x1000)[3], "not synced yet").toBe(
      BigInt(HOST_BASE + DATA + 0x1000) | P | A | U | W | D,
    );
    expect(s.counters.resyncs).toBe(0);

    s.shadow.cr3Load(s.process, false);
    expect(s.counters.resyncs).toBe(1);
    expect(shadowPath(s.window, s.mmu, va + 0x1000)[3]).toBe(
      BigInt(HOST_BASE + DATA + 0x7000) | P | A | U | W | D,
    );
    s.shadow.tableWrite(pt, 9);
    expect(s.counters.exits["unsync-write"], "write-protected again").toBe(2);
  });

  it("zeroing a freed table still shadowed exits until flooding unshadows it", () => {
    const s = setUp();
    const va = 0x2000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    const pt = s.guest.tableOf(va, 1);
    s.shadow.tableWrite(pt, 1);
    s.shadow.tableAllocated(pt);
    expect(s.counters.exits["page-table-write"], "one write, then two to reach 3").toBe(3);
    expect(s.counters.emulatedWrites).toBe(3);
    expect(s.counters.unshadowed).toBe(1);
    expect(s.shadow.size).toBe(3);
    s.shadow.tableAllocated(pt);
    s.shadow.tableAllocated(s.window.allocateGuestTable());
    expect(s.counters.exits["page-table-write"], "no longer shadowed").toBe(3);
  });

  it("zeroing counts at least one write even past the flooding threshold", () => {
    const s = setUp({ floodThreshold: 1 });
    const va = 0x2000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    s.shadow.tableAllocated(s.guest.tableOf(va, 1));
    expect(s.counters.exits["page-table-write"]).toBe(1);
  });
});

describe("CR3 loads under shadow paging", () => {
  it("with tags select the process's tag and keep its TLB entries unless the address space is fresh", () => {
    const s = setUp({ tagged: true });
    const va = 0x1000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    s.shadow.cr3Load(s.process, true);
    expect(s.mmu.asid).toBe(7);
    access(s, va, READ);
    access(s, va, READ);
    s.mmu.resetCounters();
    s.shadow.cr3Load(s.process, false);
    access(s, va, READ);
    expect(s.mmu.counters().walks, "the TLB kept the entry").toBe(0);
    s.shadow.cr3Load(s.process, true);
    access(s, va, READ);
    expect(s.mmu.counters().walks, "a fresh address space: flushed").toBe(1);
  });

  it("without tags flush on every load and leave the tag alone", () => {
    const s = setUp({ tagged: false });
    const va = 0x1000_0000;
    s.guest.map(va, DATA, P | W | U | A | D);
    const before = s.mmu.asid;
    s.shadow.cr3Load(s.process, false);
    expect(s.mmu.asid).toBe(before);
    access(s, va, READ);
    access(s, va, READ);
    s.mmu.resetCounters();
    s.shadow.cr3Load(s.process, false);
    access(s, va, READ);
    expect(s.mmu.counters().walks).toBe(1);
    expect(s.counters.exits["cr3-write"]).toBe(2);
  });

  it("point the hardware at the process's own shadow root", () => {
    const s = setUp();
    const other = new GuestTables(s.window);
    s.shadow.cr3Load(s.process, true);
    const first = s.mmu.root;
    s.shadow.cr3Load({ ...s.process, pid: 2, cr3: other.root, pcid: 8 }, true);
    expect(s.mmu.root).not.toBe(first);
    expect(s.counters.shadowPages).toBe(2);
    s.shadow.cr3Load(s.process, false);
    expect(s.mmu.root).toBe(first);
    expect(s.counters.shadowPages, "the root's shadow page kept").toBe(2);
  });
});

describe("dirty logging under shadow paging", () => {
  it("write-protects every writable shadow leaf, and the next write to each is logged", () => {
    const s = setUp();
    const small = 0x1000_0000;
    const clean = 0x1000_1000;
    const large = 0x4000_0000;
    s.guest.map(small, DATA, P | W | U);
    s.guest.map(clean, DATA + 0x1000, P | W | U);
    s.guest.map(large, 2 ** 30, P | W | U, 2);
    s.shadow.cr3Load(s.process, true);
    access(s, small, WRITE);
    access(s, clean, READ);
    access(s, large, WRITE);
    expect(s.shadow.clearDirtyLog(), "the two written pages").toBe(2);
    expect(shadowPath(s.window, s.mmu, small)[3]).toBe(
      BigInt(HOST_BASE + DATA) | P | A | U | D | DIRTY_LOG_PROTECTED,
    );
    expect(shadowPath(s.window, s.mmu, large)[2]).toBe(
      BigInt(HOST_BASE + 2 ** 30) | P | A | U | D | PS | DIRTY_LOG_PROTECTED,
    );
    expect((shadowPath(s.window, s.mmu, clean)[3] ?? W) & W).toBe(0n);
    expect(s.shadow.clearDirtyLog(), "nothing writable left").toBe(0);

    s.mmu.flushAll();
    expect(access(s, small, WRITE)).toEqual({ handled: null });
    expect(s.counters.exits["dirty-log"]).toBe(1);
    expect(s.counters.dirtyLogged).toBe(1);
    expect(access(s, small, WRITE)).toEqual({ hpa: HOST_BASE + DATA });
    // A page first written after the harvest exits for A/D emulation, and
    // the writable leaf that exit makes logs it (KVM's make_spte).
    expect(access(s, clean, WRITE)).toEqual({ handled: null });
    expect(s.counters.exits["ad-emulation"]).toBe(1);
    expect(s.counters.dirtyLogged).toBe(2);
    expect(access(s, large, WRITE)).toEqual({ handled: null });
    expect(s.counters.exits["dirty-log"]).toBe(2);
  });
});
