import { describe, expect, it } from "vitest";
import { X86, X86_SOFTWARE_COW } from "../src/paging/entry.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { guestLeaf, testMachine, writeTrace } from "./support/paging.js";

/*
 * Two kinds of scheduled event in one run, each at its own interval
 * (docs/paging.md, "Workloads and traces"): the one due first runs first,
 * and neither is skipped. An event of a trace (no working set) acts on the
 * page of the record it follows, the last record at the end. Prefaulting
 * is for a working set; under agile paging (Gandhi et al., ISCA 2016), as
 * under SLAT, it touches every host page under a large guest page, so that
 * the EPT maps them all before the run.
 */

const RW = ACCESS.write | ACCESS.user;

function records(count: number) {
  return Array.from({ length: count }, (_, i) => ({ va: HEAP_BASE + (i % 16) * 4096, kind: RW }));
}

describe("two kinds of event in one run", () => {
  it("runs each at its own interval: switches every 7 records and a fork every 40", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      activity: {
        ...QUIET,
        processes: 2,
        contextSwitchesPerSecond: QUIET.accessesPerSecond / 7,
        forkExecPerSecond: QUIET.accessesPerSecond / 40,
      },
    });
    const before = machine.os.counters.contextSwitches;
    machine.runRecords(writeTrace(layout, records(100)).region, 100);
    expect(machine.os.counters.forks).toBe(2);
    // 14 scheduled switches (7, 14, ..., 98), and each fork's four CR3
    // loads: the parent's reload after fork (flush_tlb_mm), the child's,
    // the child's after its exec, and the parent's again.
    expect(machine.os.counters.contextSwitches - before).toBe(14 + 2 * 4);
  });
});

describe("an event of a trace", () => {
  it("write-protects the page of the record it follows, the last one at the end", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      workingSetBytes: null,
      activity: { ...QUIET, pageTableUpdatesPerSecond: QUIET.accessesPerSecond / 10 },
    });
    const trace = Array.from({ length: 10 }, (_, i) => ({ va: 0x40_0000 + i * 4096, kind: RW }));
    machine.runRecords(writeTrace(layout, trace).region, 10);
    const last = guestLeaf(machine, 0x40_0000 + 9 * 4096)?.entry ?? 0n;
    expect(last & (X86.writable | X86_SOFTWARE_TRACKED)).toBe(X86_SOFTWARE_TRACKED);
    const before = guestLeaf(machine, 0x40_0000 + 8 * 4096)?.entry ?? 0n;
    expect(before & (X86.writable | X86_SOFTWARE_TRACKED | X86_SOFTWARE_COW)).toBe(X86.writable);
  });
});

describe("prefaulting", () => {
  it("is only for a working set: a trace's machine keeps its first counts", () => {
    const { machine } = testMachine({ mode: "slat", workingSetBytes: null, prefault: true });
    // The first process's CR3 load, which a prefault would have zeroed.
    expect(machine.os.counters.contextSwitches).toBe(1);
  });

  it("under agile paging leaves no exit for the set's next pass", () => {
    for (const guestPageSize of ["4K", "2M"] as const) {
      const ws = 4 * 2 ** 20;
      const { machine, layout } = testMachine({
        mode: "agile",
        guestPageSize,
        hostBacking: "4K",
        prefault: true,
        workingSetBytes: ws,
      });
      const pass = Array.from({ length: ws / 4096 }, (_, i) => ({
        va: HEAP_BASE + i * 4096,
        kind: RW,
      }));
      machine.runRecords(writeTrace(layout, pass).region, pass.length);
      expect(machine.stats().totalExits, guestPageSize).toBe(0);
    }
  });
});
