import { describe, expect, it } from "vitest";
import { ADDRESS_MASK, EPT, X86 } from "../src/paging/entry.js";
import { explainWalk } from "../src/paging/explain.js";
import type { PagingMachine } from "../src/paging/machine.js";
import { ACCESS } from "../src/paging/mmu.js";
import { cpuPreset } from "../src/paging/presets.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { eptLeaf, guestLeaf, testMachine, writeTrace } from "./support/paging.js";

const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
const FETCH = ACCESS.user | ACCESS.execute;
const skylake = cpuPreset("skylake-sp");

function leafOf(machine: PagingMachine, va: number) {
  const leaf = guestLeaf(machine, va);
  if (!leaf) throw new Error(`0x${va.toString(16)} is not mapped`);
  return leaf;
}

/** Guest-physical addresses of the tables a walk of `va` reads, top level first. */
function tableFrames(machine: PagingMachine, va: number): number[] {
  const frames: number[] = [];
  let table = machine.os.current.cr3;
  for (let level: number = machine.options.guestLevels; level >= 1; level--) {
    frames.push(table);
    const entry = machine.window.read(
      2 ** 32 + table + (Math.floor(va / 2 ** (12 + 9 * (level - 1))) % 512) * 8,
    );
    if (level === 1 || (entry & X86.pageSize) !== 0n) break;
    table = Number(entry & ADDRESS_MASK);
  }
  return frames;
}

describe("the L1 ITLB beside the L1 DTLB (Intel 248966, TLB tables)", () => {
  it("a fetch looks up the ITLB, a load the DTLB: a code page stays hot while data misses", () => {
    // One code page fetched between loads of 512 data pages (a pointer chase past the DTLB's reach).
    const { machine, layout } = testMachine({ mode: "native", workingSetBytes: null });
    const code = 0x40_0000;
    const records: { va: number; kind: number }[] = [];
    for (let round = 0; round < 4; round++) {
      for (let i = 0; i < 512; i++) {
        records.push({ va: code, kind: FETCH });
        records.push({ va: HEAP_BASE + ((i * 167) % 512) * 4096, kind: READ });
      }
    }
    for (const r of records) machine.touch(r.va, r.kind);
    machine.mmu.flushAll();
    machine.mmu.resetCounters();
    const trace = writeTrace(layout, records);
    machine.runRecords(trace.region, records.length);
    const s = machine.stats();
    expect(s.l1iHits).toBe(2048 - 1);
    expect(s.l1iHitRate).toBeCloseTo(2047 / 2048, 6);
    // 512 data pages cycle through a 64-entry DTLB: every data lookup misses the L1.
    expect(s.l1HitRate).toBe(0);
  });

  it("drops ITLB entries on INVLPG and on a flush", () => {
    const { machine } = testMachine({ mode: "native", workingSetBytes: null });
    machine.touch(0x40_0000, FETCH);
    machine.mmu.resetCounters();
    machine.touch(0x40_0000, FETCH);
    expect(machine.counters().itlbHits).toBe(1);
    machine.mmu.invalidatePage(0x40_0000);
    machine.touch(0x40_0000, FETCH);
    expect(machine.counters().itlbHits).toBe(1);
    machine.mmu.flushTlbs();
    machine.touch(0x40_0000, FETCH);
    expect(machine.counters().itlbHits).toBe(1);
    expect(machine.counters().walks).toBe(2);
  });
});

describe("a write that hits a TLB entry filled by a read (Intel SDM vol. 3A 4.8)", () => {
  it("natively and under SLAT walks again and sets D in the guest PTE and, with EPT A/D, in the EPT leaf", () => {
    for (const mode of ["native", "slat"] as const) {
      const { machine } = testMachine({ mode, eptAccessedDirty: true });
      machine.touch(HEAP_BASE, READ);
      const walks = machine.counters().walks;
      machine.touch(HEAP_BASE, WRITE);
      expect(machine.counters().dirtyAssists, mode).toBe(1);
      expect(machine.counters().walks, mode).toBe(walks + 1);
      const leaf = leafOf(machine, HEAP_BASE);
      expect(leaf.entry & X86.dirty, mode).toBe(X86.dirty);
      if (mode === "slat") {
        const ept = eptLeaf(machine, Number(leaf.entry & ADDRESS_MASK)) ?? 0n;
        expect(ept & EPT.dirty).toBe(EPT.dirty);
      }
      // Now dirty: the next write hits the TLB.
      machine.touch(HEAP_BASE, WRITE);
      expect(machine.counters().dirtyAssists, mode).toBe(1);
      expect(machine.counters().walks, mode).toBe(walks + 1);
    }
  });

  it("under shadow paging takes an A/D-emulation exit and sets D in the guest PTE", () => {
    const { machine } = testMachine({ mode: "shadow" });
    machine.touch(HEAP_BASE, READ);
    const before = machine.exits.exits["ad-emulation"];
    machine.touch(HEAP_BASE, WRITE);
    expect(machine.exits.exits["ad-emulation"]).toBe(before + 1);
    expect(leafOf(machine, HEAP_BASE).entry & X86.dirty).toBe(X86.dirty);
  });
});

describe("EPT A/D and the guest's paging structures (Intel SDM vol. 3C 29.3.5)", () => {
  it("sets A and D on the EPT leaves of the guest tables a walk reads, with EPT A/D on", () => {
    for (const ad of [true, false]) {
      const { machine } = testMachine({ mode: "slat", eptAccessedDirty: ad });
      machine.touch(HEAP_BASE, READ);
      const frames = tableFrames(machine, HEAP_BASE);
      expect(frames).toHaveLength(4);
      for (const gpa of frames) {
        const bits = (eptLeaf(machine, gpa) ?? 0n) & (EPT.accessed | EPT.dirty);
        expect(bits, `table 0x${gpa.toString(16)}`).toBe(ad ? EPT.accessed | EPT.dirty : 0n);
      }
    }
  });

  it("`paging walk --ept-ad` shows D on every table page's EPT leaf", () => {
    const w = explainWalk({
      address: 0x7f00_1234_5678,
      mode: "slat",
      guestLevels: 4,
      hostLevels: 4,
      guestPageSize: "4K",
      hostBacking: "4K",
      guestBytes: 16 * 2 ** 30,
      write: false,
      eptAccessedDirty: true,
      warm: false,
      cpu: skylake,
    });
    // Host references come in runs of four (PML4 .. PT); the PT entry of each run is the leaf.
    const leaves = w.references.filter((r) => r.dimension === "host" && r.level === 1);
    expect(leaves).toHaveLength(5);
    // The four table pages' leaves are dirty; the data page, only read, is not.
    for (const leaf of leaves.slice(0, 4)) expect(leaf.entry & EPT.dirty).toBe(EPT.dirty);
    expect((leaves[4]?.entry ?? 0n) & EPT.dirty).toBe(0n);
  });
});

describe("dirty logging under SLAT sees page-table frames (KVM: every write to a write-protected frame exits)", () => {
  function harvested() {
    const { machine } = testMachine({
      mode: "slat",
      workingSetBytes: 16 * 2 ** 20,
      prefault: true,
      dirtyLogHarvestsPerSecond: 1,
    });
    const host = machine.host;
    if (!host) throw new Error("no host");
    host.clearDirtyLog();
    machine.mmu.flushNested();
    machine.mmu.flushAll();
    return { machine, host };
  }

  it("logs the table frame a new-page fault writes a PTE into", () => {
    const { machine, host } = harvested();
    const pt = tableFrames(machine, HEAP_BASE).at(-1) ?? -1;
    // munmap'ed before the harvest, so touching it again faults and the guest writes its PTE.
    machine.os.unmap(machine.os.current, HEAP_BASE, 4096);
    host.clearDirtyLog();
    machine.mmu.flushNested();
    machine.mmu.flushAll();
    const tables = machine.exits.dirtyLoggedTables;
    // The guest's fault handler alone (no walk after it): its PTE store is what must exit.
    machine.os.handleFault({
      code: "guest-not-present",
      level: 1,
      address: HEAP_BASE,
      index: 0,
      kind: READ,
    });
    expect(machine.os.counters.pageFaults).toBe(1);
    expect(host.dirtyLog.has(pt)).toBe(true);
    expect(machine.exits.dirtyLoggedTables).toBe(tables + 1);
  });

  it("logs the table frame whose entry the walker sets A in", () => {
    const { machine, host } = harvested();
    // A PTE the guest wrote but nothing has used yet: its A bit is clear.
    const va = HEAP_BASE + 4096;
    const leaf = leafOf(machine, va);
    machine.window.write(2 ** 32 + leaf.gpa, leaf.entry & ~X86.accessed);
    const pt = leaf.gpa - (leaf.gpa % 4096);
    expect(host.dirtyLog.has(pt)).toBe(false);
    machine.touch(va, READ);
    expect(leafOf(machine, va).entry & X86.accessed).toBe(X86.accessed);
    expect(host.dirtyLog.has(pt)).toBe(true);
    expect(machine.exits.dirtyLoggedTables).toBe(1);
  });

  it("logs a write to a data page that a read cached as writable before the harvest", () => {
    const { machine, host } = harvested();
    machine.touch(HEAP_BASE, READ);
    const gpa = Number(leafOf(machine, HEAP_BASE).entry & ADDRESS_MASK);
    expect(host.dirtyLog.has(gpa)).toBe(false);
    machine.touch(HEAP_BASE, WRITE);
    expect(host.dirtyLog.has(gpa)).toBe(true);
  });
});

describe("the nested TLB over large EPT leaves", () => {
  it("caches at the EPT leaf's size where the preset says so, and splinters to 4 KiB otherwise", () => {
    const hits = (atLeafSize: boolean) => {
      const { machine } = testMachine({
        mode: "slat",
        hostBacking: "2M",
        caches: { ...skylake.caches, nestedTlbAtLeafSize: atLeafSize },
        workingSetBytes: 2 * 2 ** 20,
        prefault: true,
      });
      machine.mmu.flushAll();
      machine.mmu.flushNested();
      machine.mmu.resetCounters();
      // 16 data pages in one 2 MiB host page, each its own first walk.
      for (let i = 0; i < 16; i++) machine.touch(HEAP_BASE + i * 4096, READ);
      return machine.counters().nestedTlbHits;
    };
    const leaf = hits(true);
    const splintered = hits(false);
    // At the leaf's size the 15 data pages after the first hit the one 2 MiB entry, and so do
    // three of the four table pages (all in the first 2 MiB of guest-physical memory).
    expect(leaf - splintered).toBe(15 + 3);
  });
});

describe("INVLPG and the nested TLB (Intel SDM vol. 3C 28.3.3.1)", () => {
  it("drops the linear and combined mappings of the address, never the guest-physical ones: a walk right after finds every gPA in the nested TLB", () => {
    // Either order of INVLPG and a CR3 load: whichever comes first walks
    // after the guest page-walk caches served the upper levels for a while,
    // so the table pages' gPAs had aged out of the nested TLB; the second
    // walk finds all five (four table pages and the data page).
    for (const invlpgFirst of [true, false]) {
      const { machine } = testMachine({ mode: "slat", workingSetBytes: 2 ** 20, prefault: true });
      const va = HEAP_BASE + 5 * 4096;
      machine.touch(va, READ);
      const invlpg = () => machine.mmu.invalidatePage(va);
      const cr3 = () => machine.mmu.flushAddressSpace();
      (invlpgFirst ? invlpg : cr3)();
      machine.touch(va, READ);
      const before = machine.counters();
      (invlpgFirst ? cr3 : invlpg)();
      machine.touch(va, READ);
      const after = machine.counters();
      expect(after.walks - before.walks).toBe(1);
      expect(after.nestedTlbLookups - before.nestedTlbLookups).toBe(5);
      expect(after.nestedTlbHits - before.nestedTlbHits).toBe(5);
      expect(after.hostReferences - before.hostReferences).toBe(0);
    }
  });
});

describe("fork and exec run the child", () => {
  it("switches the child in, takes its copy-on-write and demand faults, and switches back", () => {
    for (const mode of ["shadow", "slat"] as const) {
      // One fork in 20,000 accesses (50,000 forks per 1e9 accesses per second).
      const { machine, layout } = testMachine({
        mode,
        workingSetBytes: 4 * 2 ** 20,
        prefault: true,
        activity: {
          processes: 1,
          contextSwitchesPerSecond: 0,
          pageTableUpdatesPerSecond: 0,
          forkExecPerSecond: 50_000,
          munmapPerSecond: 0,
          accessesPerSecond: 1e9,
        },
      });
      const records = Array.from({ length: 20_000 }, (_, i) => ({
        va: HEAP_BASE + (i % 1024) * 4096,
        kind: READ,
      }));
      const trace = writeTrace(layout, records);
      machine.runRecords(trace.region, records.length);
      const s = machine.stats();
      expect(machine.os.counters.forks, mode).toBe(1);
      // The fork's flush, the switch into the child, exec's new CR3, and the switch back.
      expect(s.contextSwitches, mode).toBe(4);
      // The child's first writes to pages it shares with the parent copy them.
      expect(s.copyOnWrite, mode).toBeGreaterThanOrEqual(8);
      // After exec it demand-pages its own 32 pages.
      expect(s.guestPageFaults, mode).toBeGreaterThanOrEqual(8 + 32);
      if (mode === "shadow") expect(s.exits["cr3-write"]).toBe(4);
      expect(machine.os.processes.size, mode).toBe(1);
      expect(machine.os.current.pid, mode).toBe(1);
    }
  });
});
