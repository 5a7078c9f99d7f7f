import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ADDRESS_MASK, X86 } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { guestLeaf, testMachine, writeTrace } from "./support/paging.js";

/*
 * What each paging mode builds: native paging walks the guest's tables
 * alone; shadow paging (KVM's shadow MMU, arch/x86/kvm/mmu/mmu.c) keeps
 * shadow tables and no EPT; SLAT (Intel SDM vol. 3C 29.3, EPT) walks
 * both dimensions in hardware with an EPT the hypervisor fills; agile
 * paging (Gandhi et al., ISCA 2016) has both, its changing tables moved to
 * nested mode. And the address space a machine's process gets: the whole
 * user space for a trace (47 bits with 4 levels, 56 with 5, Intel SDM vol.
 * 3A 4.5), or the working set at HEAP_BASE in whole GiB, not executable.
 */

const RW = ACCESS.write | ACCESS.user;

describe("the parts each mode builds", () => {
  it("native: no EPT and no shadow MMU; the guest's own tables give the address", () => {
    const { machine } = testMachine({ mode: "native" });
    expect(machine.host).toBeNull();
    expect(machine.shadow).toBeNull();
    expect(machine.mmu.options.mode).toBe("native");
    const hpa = machine.touch(HEAP_BASE + 0x1234, RW);
    const leaf = guestLeaf(machine, HEAP_BASE + 0x1234);
    const frame = Number((leaf?.entry ?? 0n) & ADDRESS_MASK);
    expect(frame).toBeGreaterThan(0);
    expect(hpa).toBe(frame + 0x234);
    expect(machine.exits.exits["ept-violation"]).toBe(0);
  });

  it("shadow: a shadow MMU that unsyncs leaf tables when asked, and no EPT", () => {
    for (const unsync of [true, false]) {
      const { machine } = testMachine({ mode: "shadow", unsync });
      expect(machine.host).toBeNull();
      expect(machine.mmu.options.mode).toBe("shadow");
      expect(machine.shadow?.options).toMatchObject({ levels: 4, unsync, floodThreshold: 3 });
      expect(machine.shadow?.options.host).toBeUndefined();
      expect(machine.shadow?.options.agileSwitchWrites).toBeUndefined();
    }
  });

  it("SLAT: a nested walk over the host's EPT, and no shadow MMU", () => {
    const { machine } = testMachine({ mode: "slat", hostLevels: 5, hostBacking: "2M" });
    expect(machine.shadow).toBeNull();
    expect(machine.mmu.options.mode).toBe("nested");
    expect(machine.host?.options).toMatchObject({
      levels: 5,
      backing: "2M",
      guestBytes: 4 * 2 ** 30,
      dirtyLogging: false,
      accessedDirty: false,
    });
    // The first touch takes an EPT violation the host services.
    machine.touch(HEAP_BASE, RW);
    expect(machine.exits.exits["ept-violation"]).toBeGreaterThan(0);
  });

  it("agile: the shadow MMU with the host's EPT beside it, never unsync, switching after two writes", () => {
    for (const nested of [false, true]) {
      const { machine } = testMachine({
        mode: "agile",
        unsync: true,
        agileNestedFaultsToGuest: nested,
      });
      expect(machine.host).not.toBeNull();
      expect(machine.mmu.options.mode).toBe("agile");
      expect(machine.shadow?.options).toMatchObject({
        unsync: false,
        agileSwitchWrites: 2,
        nestedFaultsToGuest: nested,
      });
      expect(machine.shadow?.options.host).toBe(machine.host);
    }
  });

  it("dirty logging, EPT A/D and counts by level reach the parts that keep them", () => {
    const { machine } = testMachine({
      mode: "slat",
      dirtyLogHarvestsPerSecond: 10,
      eptAccessedDirty: true,
      countByLevel: true,
    });
    expect(machine.host?.options).toMatchObject({ dirtyLogging: true, accessedDirty: true });
    expect(machine.mmu.options).toMatchObject({ eptAccessedDirty: true, countByLevel: true });
    const plain = testMachine({ mode: "slat" }).machine;
    expect(plain.mmu.options).toMatchObject({ eptAccessedDirty: false, countByLevel: false });
  });
});

describe("the address space of a machine's processes", () => {
  it("for a trace, is the whole user space, writable and executable", () => {
    for (const [levels, top] of [
      [4, 2 ** 47],
      [5, 2 ** 56],
    ] as const) {
      const { machine } = testMachine({
        mode: "native",
        workingSetBytes: null,
        guestLevels: levels,
      });
      machine.touch(top - 4096, ACCESS.execute | ACCESS.user);
      const leaf = guestLeaf(machine, top - 4096);
      expect(leaf?.entry ?? 0n).not.toBe(0n);
      expect((leaf?.entry ?? 0n) & (X86.writable | X86.noExecute)).toBe(X86.writable);
      expect(() => machine.touch(top, ACCESS.user)).toThrow(PagingError);
    }
  });

  it("for a working set, is HEAP_BASE up to the next whole GiB, not executable", () => {
    const { machine } = testMachine({ mode: "native", workingSetBytes: 16 * 2 ** 20 });
    machine.touch(HEAP_BASE + 2 ** 30 - 4096, RW);
    expect((guestLeaf(machine, HEAP_BASE + 2 ** 30 - 4096)?.entry ?? 0n) & X86.noExecute).toBe(
      X86.noExecute,
    );
    expect(() => machine.touch(HEAP_BASE + 2 ** 30, RW)).toThrow(/segmentation fault/);
    expect(() => machine.touch(HEAP_BASE - 4096, RW)).toThrow(/segmentation fault/);
    const twoGiB = testMachine({ mode: "native", workingSetBytes: 2 ** 30 + 1 }).machine;
    expect(() => twoGiB.touch(HEAP_BASE + 2 * 2 ** 30 - 4096, RW)).not.toThrow();
  });

  it("holds as many processes as asked, at least one, the first running", () => {
    for (const [asked, held] of [
      [0, 1],
      [1, 1],
      [3, 3],
    ] as const) {
      const { machine } = testMachine({ activity: { ...QUIET, processes: asked } });
      expect(machine.os.processes.size).toBe(held);
      expect(machine.os.current.pid).toBe(1);
    }
  });
});

describe("prefaulting", () => {
  it("maps every page of the working set in every process, then counts from zero", () => {
    const ws = 2 * 2 ** 20;
    const { machine, layout } = testMachine({
      mode: "slat",
      prefault: true,
      workingSetBytes: ws,
      activity: { ...QUIET, processes: 2 },
    });
    const stats = machine.stats();
    expect(stats.accesses).toBe(0);
    expect(stats.totalExits).toBe(0);
    expect(stats.guestPageFaults).toBe(0);
    expect(stats.walks).toBe(0);
    expect(machine.os.current.pid).toBe(1);
    for (const process of machine.os.processes.values()) expect(process.mapped).toBe(ws / 4096);
    // Running over the whole set again faults nowhere.
    const records = Array.from({ length: ws / 4096 }, (_, i) => ({
      va: HEAP_BASE + i * 4096,
      kind: RW,
    }));
    const trace = writeTrace(layout, records);
    machine.runRecords(trace.region, records.length);
    expect(machine.stats().guestPageFaults).toBe(0);
    expect(machine.stats().totalExits).toBe(0);
  });

  it("under SLAT, touches each host page under a large guest page", () => {
    const ws = 4 * 2 ** 20;
    const { machine, layout } = testMachine({
      mode: "slat",
      guestPageSize: "2M",
      hostBacking: "4K",
      prefault: true,
      workingSetBytes: ws,
    });
    const records = Array.from({ length: ws / 4096 }, (_, i) => ({
      va: HEAP_BASE + i * 4096,
      kind: RW,
    }));
    machine.runRecords(writeTrace(layout, records).region, records.length);
    expect(machine.stats().totalExits).toBe(0);
  });
});

describe("a touch that keeps faulting", () => {
  it("is refused with the address once the guest cannot map it", () => {
    const { machine } = testMachine({ mode: "native", workingSetBytes: null }, new MemoryLayout());
    expect(() => machine.touch(2 ** 47, ACCESS.user)).toThrow(PagingError);
  });
});
