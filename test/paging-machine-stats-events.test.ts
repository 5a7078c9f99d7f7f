/*
 * What a paging machine reports, and what its scheduled guest activity does
 * (docs/paging.md, "Workloads and traces" and "Dirty logging").
 *
 * The comparison (`hvlab paging compare`) runs five configurations in a
 * fixed order: native, shadow paging with unsync leaves (KVM's shadow MMU),
 * SLAT over 4 KiB and 2 MiB EPT leaves, and large guest pages over the
 * largest host page asked for. A run's results are its counters as they
 * are, so that configurations compare on the same footing: hit rates are
 * hits over the lookups that could hit (a rate over nothing is 0, and the
 * ITLB's is absent when nothing was fetched), the STLB's rate is over the
 * lookups that reached it (its hits and the walks), the exit total is the
 * sum over the reasons, the cycles are the same counters priced by the cost
 * model, and the checksum is the sum of every host-physical address
 * translated (the same guest translates alike everywhere). A host page size
 * is reported only where an EPT backs the guest.
 *
 * The guest's activity acts on the running process, at the page of the
 * trace record at the event when there is no working set: a page-table
 * update write-protects one mapped page to track its next write (Linux's
 * soft-dirty tracking, Documentation/admin-guide/mm/soft-dirty.rst); a
 * munmap drops an aligned 64 KiB range (an allocator returning memory,
 * within its arena); a fork runs a child that first writes 8 pages it shares
 * with its parent, each a copy-on-write fault (Linux: copy_page_range
 * write-protects both sides at fork, do_wp_page copies on the first write),
 * then execs, touches 32 pages of its own (one write in four) and exits, the
 * parent running again; a context switch moves to the next process round
 * robin. A dirty-log harvest clears the log and then flushes the cached
 * translations, as KVM flushes the TLBs after write-protecting the pages it
 * harvested (virt/kvm/kvm_main.c, kvm_get_dirty_log_protect): otherwise a
 * cached writable translation would let the next write go unlogged.
 */
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { priceRun } from "../src/paging/cost.js";
import { ADDRESS_MASK, EPT, X86, X86_SOFTWARE_COW } from "../src/paging/entry.js";
import { EXIT_REASONS } from "../src/paging/exits.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import {
  type PagingConfig,
  PagingMachine,
  type PagingModeName,
  standardConfigs,
} from "../src/paging/machine.js";
import { ACCESS, MmuContext } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { cpuPreset } from "../src/paging/presets.js";
import { SeededRandom } from "../src/paging/random.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { WalkKernel } from "../src/wasm/walk.js";
import { eptLeaf, guestLeaf, testMachine, writeTrace } from "./support/paging.js";

const PAGE = 4096;
const READ = ACCESS.user;
const WRITE = ACCESS.write | ACCESS.user;
const FETCH = ACCESS.execute | ACCESS.user;
/** The guest-physical bytes below the first data frame (testMachine's table zone). */
const TABLE_ZONE = 4 * 2 ** 20;

/** A rate that brings its event once every `k` records. */
function everyRecords(k: number): number {
  return QUIET.accessesPerSecond / k;
}

function records(vas: readonly number[], kind: number) {
  return vas.map((va) => ({ va, kind }));
}

/** The guest leaf of `va` in the running process (0 when unmapped). */
function leaf(machine: PagingMachine, va: number): bigint {
  return guestLeaf(machine, va)?.entry ?? 0n;
}

function mapped(machine: PagingMachine, va: number): boolean {
  return (leaf(machine, va) & X86.present) !== 0n;
}

/** Write-protected to track its next write, and nothing else. */
function tracked(machine: PagingMachine, va: number): boolean {
  const entry = leaf(machine, va);
  const bits = X86.present | X86.writable | X86_SOFTWARE_TRACKED;
  return (entry & bits) === (X86.present | X86_SOFTWARE_TRACKED);
}

/** `count` records of one page. */
function repeat(va: number, count: number, kind: number) {
  return Array.from({ length: count }, () => ({ va, kind }));
}

/** A machine of the comparison's own configuration (as testMachine, with the config given whole). */
function configMachine(config: PagingConfig): PagingMachine {
  const layout = new MemoryLayout();
  const preset = cpuPreset("skylake-sp");
  const tables = 4 * 2 ** 20;
  return new PagingMachine(
    layout.memory,
    WalkKernel.on(layout.memory),
    {
      arena: layout.allocate("arena", tables * 3, 4096).toDescriptor(),
      mmu: MmuContext.regions(layout, "mmu", preset.caches),
    },
    {
      config,
      caches: preset.caches,
      cost: preset.cost,
      guestLevels: 4,
      hostLevels: 4,
      guestBytes: 4 * 2 ** 30,
      guestTableBytes: tables,
      hostTableBytes: tables * 2,
      workingSetBytes: 4 * 2 ** 20,
      activity: QUIET,
      seed: 1,
    },
  );
}

describe("the comparison's configurations", () => {
  it("are native, shadow with unsync leaves, SLAT on 4K and 2M host pages, and 2M guest pages on the large host page (1G unless asked)", () => {
    const expected = (large: "2M" | "1G") => [
      { label: "native", mode: "native", guestPageSize: "4K", hostBacking: "4K", unsync: false },
      { label: "shadow", mode: "shadow", guestPageSize: "4K", hostBacking: "4K", unsync: true },
      { label: "slat-4k", mode: "slat", guestPageSize: "4K", hostBacking: "4K", unsync: false },
      { label: "slat-2m", mode: "slat", guestPageSize: "4K", hostBacking: "2M", unsync: false },
      { label: "slat-large", mode: "slat", guestPageSize: "2M", hostBacking: large, unsync: false },
    ];
    // toStrictEqual: no other field (agile paging is not among them).
    expect(standardConfigs()).toStrictEqual(expected("1G"));
    expect(standardConfigs("1G")).toStrictEqual(expected("1G"));
    expect(standardConfigs("2M")).toStrictEqual(expected("2M"));
  });

  it("each report its label, mode and guest page size, and a host page size only where an EPT backs the guest", () => {
    const reported = standardConfigs("2M").map((config) => {
      const { label, mode, guestPageSize, hostBacking } = configMachine(config).stats();
      return { label, mode, guestPageSize, hostBacking };
    });
    expect(reported).toStrictEqual([
      { label: "native", mode: "native", guestPageSize: "4K", hostBacking: null },
      { label: "shadow", mode: "shadow", guestPageSize: "4K", hostBacking: null },
      { label: "slat-4k", mode: "slat", guestPageSize: "4K", hostBacking: "4K" },
      { label: "slat-2m", mode: "slat", guestPageSize: "4K", hostBacking: "2M" },
      { label: "slat-large", mode: "slat", guestPageSize: "2M", hostBacking: "2M" },
    ]);
    // A 2M backing asked of every mode shows where an EPT exists: SLAT and agile paging.
    const backing = (["native", "shadow", "slat", "agile"] as const).map(
      (mode) => testMachine({ mode, hostBacking: "2M" }).machine.stats().hostBacking,
    );
    expect(backing).toStrictEqual([null, null, "2M", "2M"]);
  });
});

describe("a run's results", () => {
  it("rates are hits over lookups: L1 over data lookups, STLB over its hits and the walks, references over walks", () => {
    // One L1 DTLB entry: two pages in turn miss the L1 and hit the STLB.
    const base = cpuPreset("skylake-sp").caches;
    const caches = { ...base, l1: { ...base.l1, "4K": { entries: 1, ways: 1 } } };
    const { machine, layout } = testMachine({
      mode: "native",
      caches,
      workingSetBytes: 2 * PAGE,
      prefault: true,
    });
    const p0 = HEAP_BASE;
    const p1 = HEAP_BASE + PAGE;
    machine.runRecords(writeTrace(layout, records([p0, p1, p0, p1], READ)).region, 4);
    let stats = machine.stats();
    // 4 lookups, 4 STLB hits, no walk.
    expect(stats).toMatchObject({ accesses: 4, l1Hits: 0, l2Hits: 4, walks: 0 });
    expect(stats.l1HitRate).toBe(0);
    expect(stats.l2HitRate).toBe(1);
    expect(stats.referencesPerWalk).toBe(0);

    // Flushed: the first of three reads of one page walks (4 levels, no
    // page-walk cache), the other two hit the L1.
    machine.mmu.flushAll();
    machine.runRecords(writeTrace(layout, records([p0, p0, p0], READ)).region, 3);
    stats = machine.stats();
    expect(stats).toMatchObject({ accesses: 7, l1Hits: 2, l2Hits: 4, walks: 1, references: 4 });
    expect(stats.l1HitRate).toBeCloseTo(2 / 7, 12);
    expect(stats.l2HitRate).toBeCloseTo(4 / 5, 12);
    expect(stats.referencesPerWalk).toBe(4);
    // The same rates from the hardware counters.
    const c = machine.counters();
    expect(c.dtlbLookups).toBe(7);
    expect(stats.l1HitRate).toBe(c.l1Hits / c.dtlbLookups);
    expect(stats.l2HitRate).toBe(c.l2Hits / (c.l2Hits + c.walks));
    expect(stats.referencesPerWalk).toBe(c.references / c.walks);

    // Fewer STLB hits than walks: a second machine, flushed. p0 walks (4
    // references), p1 walks (1: the page-walk cache holds the PDE above its
    // PTE), p0 misses the L1 and hits the STLB, then hits the L1 twice.
    const second = testMachine({
      mode: "native",
      caches,
      workingSetBytes: 2 * PAGE,
      prefault: true,
    });
    second.machine.mmu.flushAll();
    const trace = writeTrace(second.layout, records([p0, p1, p0, p0, p0], READ));
    second.machine.runRecords(trace.region, 5);
    stats = second.machine.stats();
    expect(stats).toMatchObject({ accesses: 5, l1Hits: 2, l2Hits: 1, walks: 2, references: 5 });
    expect(stats.l1HitRate).toBe(2 / 5);
    expect(stats.l2HitRate).toBeCloseTo(1 / 3, 12);
    expect(stats.referencesPerWalk).toBe(2.5);
  });

  it("with nothing looked up, every rate is 0 and the ITLB's is absent", () => {
    const { machine } = testMachine({ mode: "slat", workingSetBytes: 4 * PAGE, prefault: true });
    const stats = machine.stats();
    expect(machine.counters()).toMatchObject({ dtlbLookups: 0, itlbLookups: 0, walks: 0 });
    expect(stats.l1HitRate).toBe(0);
    expect(stats.l1iHitRate).toBeNull();
    expect(stats.l1iHits).toBe(0);
    expect(stats.l2HitRate).toBe(0);
    expect(stats.referencesPerWalk).toBe(0);
  });

  it("the ITLB's rate is fetch hits over fetches, apart from the data TLB's", () => {
    const { machine, layout } = testMachine({ mode: "native", workingSetBytes: null });
    const code = 0x40_0000;
    machine.runRecords(writeTrace(layout, records([code, code, code], FETCH)).region, 3);
    const stats = machine.stats();
    // The first fetch misses, faults (a walk stopped at the empty top
    // table: 1 reference) and misses again after the guest maps the page
    // (a full walk: 4); the next two hit the L1 ITLB.
    expect(machine.counters()).toMatchObject({ itlbLookups: 4, itlbHits: 2, dtlbLookups: 0 });
    expect(stats.l1iHits).toBe(2);
    expect(stats.l1iHitRate).toBe(0.5);
    expect(stats.l1HitRate).toBe(0);
    expect(stats).toMatchObject({ walks: 2, references: 5, accesses: 3, guestPageFaults: 1 });
    expect(stats.referencesPerWalk).toBe(2.5);
  });

  it("the checksum is the sum of the host-physical addresses translated, in hex", () => {
    for (const mode of ["native", "slat"] as const) {
      const { machine, layout } = testMachine({ mode, workingSetBytes: 2 * PAGE, prefault: true });
      const p0 = HEAP_BASE;
      const p1 = HEAP_BASE + PAGE;
      machine.runRecords(writeTrace(layout, records([p0, p1, p0, p0, p1], READ)).region, 5);
      // Native: the guest's frame is the host's; SLAT: the host backs gPA at HOST_BASE + gPA.
      const hpa = (va: number) =>
        BigInt(Number(leaf(machine, va) & ADDRESS_MASK) + (mode === "slat" ? HOST_BASE : 0));
      const sum = 3n * hpa(p0) + 2n * hpa(p1);
      expect(hpa(p0)).not.toBe(hpa(p1));
      expect(machine.stats().checksum, mode).toBe(sum.toString(16));
    }
  });

  it("cycles are the run's counters priced by the cost model", () => {
    const { machine, layout } = testMachine({ mode: "slat", countByLevel: true });
    const vas = Array.from({ length: 24 }, (_, i) => HEAP_BASE + (i % 6) * PAGE);
    machine.runRecords(writeTrace(layout, records(vas, WRITE)).region, vas.length);
    const stats = machine.stats();
    const priced = priceRun(
      machine.counters(),
      machine.exits,
      machine.os.counters.pageFaults,
      machine.options.cost,
    );
    expect(stats.guestPageFaults).toBe(6);
    expect(stats.cycles).toStrictEqual(priced);
    expect(stats.cycles.guestFaults).toBe(6 * machine.options.cost.guestFaultCycles.value);
    expect(stats.cycles.exits).toBeGreaterThan(0);
    expect(stats.cycles.walks).toBeGreaterThan(0);
  });

  it("every field is its counter, the exit total is the sum over the reasons, and the exits returned are a copy", () => {
    const cases: { mode: PagingModeName; nonzero: string[] }[] = [
      { mode: "slat", nonzero: ["hostReferences", "dirtyLogged", "dirtyLoggedTables"] },
      { mode: "shadow", nonzero: ["shadowPages", "emulatedWrites", "resyncs"] },
      { mode: "agile", nonzero: ["hostReferences", "shadowPages", "agileToNested"] },
    ];
    for (const { mode, nonzero } of cases) {
      const { machine, layout } = testMachine({
        mode,
        dirtyLogHarvestsPerSecond: everyRecords(25),
        activity: {
          ...QUIET,
          processes: 2,
          contextSwitchesPerSecond: everyRecords(30),
          pageTableUpdatesPerSecond: everyRecords(5),
          forkExecPerSecond: everyRecords(65),
          munmapPerSecond: everyRecords(45),
        },
      });
      const vas = Array.from({ length: 140 }, (_, i) => HEAP_BASE + (i % 20) * PAGE);
      machine.runRecords(writeTrace(layout, records(vas, WRITE)).region, vas.length);
      const s = machine.stats();
      const c = machine.counters();
      const e = machine.exits;
      const os = machine.os.counters;
      expect(s, mode).toMatchObject({
        accesses: c.accesses,
        l1Hits: c.l1Hits,
        l2Hits: c.l2Hits,
        l1iHits: c.itlbHits,
        dirtyAssists: c.dirtyAssists,
        walks: c.walks,
        references: c.references,
        guestReferences: c.guestReferences,
        hostReferences: c.hostReferences,
        pwcGuestHits: c.pwcGuestHits,
        pwcHostHits: c.pwcHostHits,
        nestedTlbHits: c.nestedTlbHits,
        emulatedWrites: e.emulatedWrites,
        dirtyLogged: e.dirtyLogged,
        dirtyLoggedTables: e.dirtyLoggedTables,
        resyncs: e.resyncs,
        unshadowed: e.unshadowed,
        shadowPages: e.shadowPages,
        agileToNested: e.agileToNested,
        agileToShadow: e.agileToShadow,
        guestPageFaults: os.pageFaults,
        copyOnWrite: os.copyOnWrite,
        forks: os.forks,
        contextSwitches: os.contextSwitches,
      });
      expect(s.accesses, mode).toBe(140);
      expect(s.forks, mode).toBe(2);
      expect(s.copyOnWrite, mode).toBeGreaterThan(0);
      const fields = s as unknown as Record<string, number>;
      for (const name of nonzero) expect(fields[name], `${mode} ${name}`).toBeGreaterThan(0);

      // The exits by reason, and their total.
      expect(s.exits, mode).toStrictEqual(e.exits);
      const reasons = Object.values(s.exits).filter((n) => n > 0);
      expect(reasons.length, mode).toBeGreaterThan(1);
      let total = 0;
      for (const reason of EXIT_REASONS) total += e.exits[reason];
      expect(s.totalExits, mode).toBe(total);
      expect(s.totalExits, mode).toBe(reasons.reduce((a, b) => a + b, 0));

      // Changing the returned exits changes neither the machine's nor the next results.
      const before = { ...e.exits };
      for (const reason of EXIT_REASONS) s.exits[reason] += 1000;
      expect(machine.exits.exits, mode).toStrictEqual(before);
      expect(machine.stats().exits, mode).toStrictEqual(before);
      expect(machine.stats().totalExits, mode).toBe(total);
    }
  });
});

describe("scheduled guest activity", () => {
  it("context switches go round robin: after k switches process k mod n runs", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      activity: { ...QUIET, processes: 3, contextSwitchesPerSecond: everyRecords(2) },
    });
    const trace = writeTrace(layout, records([HEAP_BASE, HEAP_BASE + PAGE], READ)).region;
    const running: number[] = [machine.os.current.pid];
    // Each call runs two more records, and the switch after them.
    for (let k = 1; k <= 7; k++) {
      machine.runRecords(trace, 2);
      running.push(machine.os.current.pid);
    }
    expect(running).toStrictEqual([0, 1, 2, 3, 4, 5, 6, 7].map((k) => (k % 3) + 1));
  });

  it("a page-table update of a working set write-protects one of its pages, any of them, to track its next write", () => {
    const ws = 8 * PAGE;
    const { machine, layout } = testMachine({
      mode: "native",
      workingSetBytes: ws,
      prefault: true,
      activity: { ...QUIET, pageTableUpdatesPerSecond: everyRecords(1) },
    });
    // 100 reads of the page just past the set (its area goes on): 100 updates.
    const past = HEAP_BASE + ws;
    machine.runRecords(writeTrace(layout, repeat(past, 100, READ)).region, 100);
    const inside = Array.from({ length: 8 }, (_, i) => tracked(machine, HEAP_BASE + i * PAGE));
    // A uniform choice among 8 pages, 100 times, comes to each of them.
    expect(inside).toStrictEqual(Array(8).fill(true));
    expect(mapped(machine, past)).toBe(true);
    expect(tracked(machine, past)).toBe(false);
    expect(leaf(machine, past) & X86.writable).toBe(X86.writable);
  });

  it("a page-table update of a trace write-protects the page of the record at the event, above 4 GiB too", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      workingSetBytes: null,
      activity: { ...QUIET, pageTableUpdatesPerSecond: everyRecords(3) },
    });
    // An odd page above 4 GiB, and its even neighbour below, both mapped first.
    const page = 0x1_2345_7000;
    const below = page - PAGE;
    // The low 12 bits of a record are its kind, never part of the page:
    // set every bit the access kinds leave free.
    const free = 0xfff & ~(ACCESS.write | ACCESS.execute | ACCESS.user);
    const trace = [
      { va: below, kind: WRITE },
      { va: page, kind: WRITE },
      { va: page, kind: WRITE | free },
      { va: page, kind: READ | free },
    ];
    machine.runRecords(writeTrace(layout, trace).region, trace.length);
    expect(tracked(machine, page)).toBe(true);
    expect(tracked(machine, below)).toBe(false);
    expect(leaf(machine, below) & X86.writable).toBe(X86.writable);
    // The low word alone names a page nobody touched.
    expect(mapped(machine, page % 2 ** 32)).toBe(false);
  });

  it("a munmap of a trace drops the 64 KiB-aligned range holding the record's page, and nothing around it", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      workingSetBytes: null,
      activity: { ...QUIET, munmapPerSecond: everyRecords(6) },
    });
    const range = 0x1_2345_0000;
    const at = range + 7 * PAGE;
    const vas = [range - PAGE, range, range + 0xf000, range + 0x1_0000, range + 0x8000, at];
    const process = machine.os.current;
    machine.runRecords(writeTrace(layout, records(vas, WRITE)).region, vas.length);
    expect(vas.map((va) => mapped(machine, va))).toStrictEqual([
      true,
      false,
      false,
      true,
      false,
      false,
    ]);
    expect(process.mapped).toBe(2);
  });

  it("a munmap of a working set stays within the churn's first bytes of the heap, and within the set", () => {
    // 1 MiB, churn in its first 128 KiB (two 64 KiB ranges): 20 munmaps.
    const ws = 2 ** 20;
    const inChurn = testMachine({
      mode: "native",
      workingSetBytes: ws,
      prefault: true,
      activity: { ...QUIET, munmapPerSecond: everyRecords(1), churnBytes: 128 * 1024 },
    });
    const read = HEAP_BASE + ws / 2;
    inChurn.machine.runRecords(writeTrace(inChurn.layout, repeat(read, 20, READ)).region, 20);
    const pages = ws / PAGE;
    const left = Array.from({ length: pages }, (_, i) =>
      mapped(inChurn.machine, HEAP_BASE + i * PAGE),
    );
    expect(left).toStrictEqual(Array.from({ length: pages }, (_, i) => i >= 32));
    expect(inChurn.machine.os.current.mapped).toBe(pages - 32);

    // Without a churn, or with one past the set: anywhere in the set, never past it.
    for (const churnBytes of [undefined, 4 * 2 ** 20]) {
      const small = 4 * 64 * 1024;
      const { machine, layout } = testMachine({
        mode: "native",
        workingSetBytes: small,
        prefault: true,
        activity: {
          ...QUIET,
          munmapPerSecond: everyRecords(1),
          ...(churnBytes === undefined ? {} : { churnBytes }),
        },
      });
      // Reads of the page past the set: mapped, and never unmapped.
      const past = HEAP_BASE + small;
      machine.runRecords(writeTrace(layout, repeat(past, 30, READ)).region, 30);
      expect(machine.os.current.mapped, String(churnBytes)).toBe(1);
      expect(mapped(machine, past), String(churnBytes)).toBe(true);
    }
  });

  it("a fork runs a child that writes 8 pages it shares (copy-on-write) from a page of the set, touches 32 of its own after exec, and the parent runs on", () => {
    const ws = 64 * PAGE;
    const seed = 1;
    // The machine's seeded generator picks the child's first page in the set.
    const first = new SeededRandom(seed).below(ws / PAGE);
    expect(first).toBeGreaterThanOrEqual(8);
    expect(first).toBeLessThanOrEqual(56);
    const { machine, layout } = testMachine({
      mode: "native",
      seed,
      workingSetBytes: ws,
      activity: { ...QUIET, forkExecPerSecond: everyRecords(8) },
    });
    // The parent writes exactly the 8 pages the child will write.
    const vas = Array.from({ length: 8 }, (_, i) => HEAP_BASE + (first + i) * PAGE);
    const parent = machine.os.current;
    machine.runRecords(writeTrace(layout, records(vas, WRITE)).region, vas.length);
    const stats = machine.stats();
    expect(stats.forks).toBe(1);
    expect(machine.os.counters.execs).toBe(1);
    // The child's 8 writes are copy-on-write faults; its 32 pages after exec are demand faults.
    expect(stats.copyOnWrite).toBe(8);
    expect(stats.guestPageFaults).toBe(8 + 8 + 32);
    // The first CR3 load, then the parent's reload at fork, the child's, its reload at exec, the parent's.
    expect(stats.contextSwitches).toBe(1 + 4);
    expect(machine.os.current).toBe(parent);
    expect([...machine.os.processes.keys()]).toStrictEqual([parent.pid]);
    // The parent's pages stay copy-on-write, read-only, for its own next write.
    for (const va of vas) {
      expect(leaf(machine, va) & (X86.writable | X86_SOFTWARE_COW)).toBe(X86_SOFTWARE_COW);
    }
  });

  it("a fork's child writes one page in four of the 32 it touches after exec", () => {
    // EPT A/D flags show which guest frames were ever written.
    const ws = 64 * PAGE;
    const first = new SeededRandom(1).below(ws / PAGE);
    const { machine, layout } = testMachine({
      mode: "slat",
      eptAccessedDirty: true,
      workingSetBytes: ws,
      activity: { ...QUIET, forkExecPerSecond: everyRecords(8) },
    });
    const vas = Array.from({ length: 8 }, (_, i) => HEAP_BASE + (first + i) * PAGE);
    machine.runRecords(writeTrace(layout, records(vas, WRITE)).region, vas.length);
    let written = 0;
    let readOnly = 0;
    for (let frame = TABLE_ZONE; frame < TABLE_ZONE + 256 * PAGE; frame += PAGE) {
      const entry = eptLeaf(machine, frame);
      if (entry === null) continue;
      if ((entry & EPT.dirty) !== 0n) written++;
      else if ((entry & EPT.accessed) !== 0n) readOnly++;
    }
    // Written: the parent's 8 frames and the child's 8 copies. After exec the
    // child's 32 pages take those 8 copies (freed at exec) and 24 new frames,
    // of which one in four is written (6) and the rest only read (18).
    expect(written).toBe(8 + 8 + 6);
    expect(readOnly).toBe(18);
  });

  it("a fork of a trace starts the child at the record's page, but never past the area's end less 32 pages", () => {
    const top = 2 ** 47;
    const high = 0x3_0000_5000;
    for (const [from, at] of [
      // The record's own page, above 4 GiB.
      [high, high],
      // The last page of the address space: the child starts 32 pages below the end.
      [top - 32 * PAGE, top - PAGE],
    ] as const) {
      const { machine, layout } = testMachine({
        mode: "native",
        workingSetBytes: null,
        activity: { ...QUIET, forkExecPerSecond: everyRecords(9) },
      });
      // The parent writes the 8 pages from `from`; the fork comes at the 9th record.
      const vas = [...Array.from({ length: 8 }, (_, i) => from + i * PAGE), at];
      const trace = vas.map((va, i) => ({ va, kind: i < 8 ? WRITE : READ }));
      machine.runRecords(writeTrace(layout, trace).region, trace.length);
      const label = `0x${at.toString(16)}`;
      expect(machine.stats().forks, label).toBe(1);
      expect(machine.stats().copyOnWrite, label).toBe(8);
      // Distinct parent pages (8, or 9 when the record is past them), 8 copies, 32 demand faults.
      const parentPages = new Set(vas).size;
      expect(machine.stats().guestPageFaults, label).toBe(parentPages + 8 + 32);
      expect(machine.os.current.pid, label).toBe(1);
    }
  });

  it("a dirty-log harvest clears the log and flushes, so the next write to a cached page is logged again", () => {
    for (const mode of ["slat", "shadow"] as const) {
      const { machine, layout } = testMachine({
        mode,
        dirtyLogHarvestsPerSecond: everyRecords(2),
      });
      const page = HEAP_BASE;
      // Harvests after the 2nd, 4th and 6th records: the 3rd and 5th writes each follow one.
      machine.runRecords(writeTrace(layout, repeat(page, 6, WRITE)).region, 6);
      const stats = machine.stats();
      if (machine.host) {
        // The host logs from the start: the first write too.
        expect(stats.dirtyLogged - stats.dirtyLoggedTables, mode).toBe(3);
        expect(machine.host.dirtyLog.size, mode).toBe(0);
      } else {
        // The shadow MMU logs from its first harvest on.
        expect(stats.dirtyLogged, mode).toBe(2);
      }
      // Each page logged took a dirty-log exit.
      expect(stats.exits["dirty-log"], mode).toBe(stats.dirtyLogged);
    }
  });

  it("a dirty-log harvest flushes the translations: a page read from the TLB before it is walked again after", () => {
    for (const mode of ["slat", "shadow", "agile"] as const) {
      const run = (harvestsPerSecond: number) => {
        // Dirty logging on in both runs; the second's first harvest would come after 10^9 records.
        const { machine, layout } = testMachine({
          mode,
          dirtyLogHarvestsPerSecond: harvestsPerSecond,
        });
        machine.runRecords(writeTrace(layout, repeat(HEAP_BASE, 4, READ)).region, 4);
        return machine.stats();
      };
      const harvested = run(everyRecords(2));
      const quiet = run(1);
      expect(harvested.walks - quiet.walks, mode).toBe(1);
      expect(quiet.l1Hits - harvested.l1Hits, mode).toBe(1);
      expect(harvested.accesses, mode).toBe(4);
    }
  });
});
