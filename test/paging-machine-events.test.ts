import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { testMachine, writeTrace } from "./support/paging.js";

/*
 * The guest's scheduled activity between trace records (docs/paging.md,
 * "Workloads and traces"): each kind of event comes every
 * round(accesses per second / its rate) records, counted from the start,
 * and runs after the record that reaches it; a rate of 0 never comes.
 * Context switches need a second process; dirty-log harvests need a
 * hypervisor that logs (none in native paging).
 */

const RW = ACCESS.write | ACCESS.user;

/** `count` records over the first 16 pages of the working set, each written. */
function records(count: number) {
  return Array.from({ length: count }, (_, i) => ({ va: HEAP_BASE + (i % 16) * 4096, kind: RW }));
}

describe("scheduled events between records", () => {
  it("switch processes every accesses/rate records: 10 in 100 records at a tenth of the rate", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      activity: { ...QUIET, processes: 2, contextSwitchesPerSecond: QUIET.accessesPerSecond / 10 },
    });
    const before = machine.os.counters.contextSwitches;
    machine.runRecords(writeTrace(layout, records(100)).region, 100);
    expect(machine.os.counters.contextSwitches - before).toBe(10);
    expect(machine.accesses).toBe(100);
    // An even number of switches between two processes: the first runs again.
    expect(machine.os.current.pid).toBe(1);
  });

  it("never switch a single process, and never run an event of rate 0", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      activity: { ...QUIET, processes: 1, contextSwitchesPerSecond: QUIET.accessesPerSecond / 10 },
    });
    const before = machine.os.counters.contextSwitches;
    machine.runRecords(writeTrace(layout, records(50)).region, 50);
    expect(machine.os.counters.contextSwitches).toBe(before);
    expect(machine.os.counters.forks).toBe(0);
    expect(machine.accesses).toBe(50);
  });

  it("fork and exec a child every accesses/rate records, the parent running after", () => {
    const { machine, layout } = testMachine({
      mode: "native",
      activity: { ...QUIET, forkExecPerSecond: QUIET.accessesPerSecond / 40 },
    });
    machine.runRecords(writeTrace(layout, records(100)).region, 100);
    // At records 40 and 80.
    expect(machine.os.counters.forks).toBe(2);
    expect(machine.os.counters.execs).toBe(2);
    expect(machine.os.current.pid).toBe(1);
    expect(machine.os.processes.size).toBe(1);
  });

  it("counts each event's interval from the first record", () => {
    const activity = {
      ...QUIET,
      processes: 2,
      contextSwitchesPerSecond: QUIET.accessesPerSecond / 7,
    };
    for (const [count, switches] of [
      [6, 0],
      [7, 1],
      [30, 4],
      [70, 10],
    ] as const) {
      const { machine, layout } = testMachine({ mode: "native", activity });
      const before = machine.os.counters.contextSwitches;
      machine.runRecords(writeTrace(layout, records(count)).region, count);
      expect(machine.os.counters.contextSwitches - before, `${count} records`).toBe(switches);
    }
  });

  it("harvests the dirty log only where a hypervisor logs it", () => {
    const rate = QUIET.accessesPerSecond / 20;
    const slat = testMachine({ mode: "slat", dirtyLogHarvestsPerSecond: rate });
    slat.machine.runRecords(writeTrace(slat.layout, records(100)).region, 100);
    // Harvests after records 20, 40, 60 and 80 (and 100, with nothing after
    // it): the first write to each of the 16 pages exits as a dirty-log
    // exit at first and again after each of the four, beside the guest's
    // table frames, logged once by the walker's A/D writes.
    const stats = slat.machine.stats();
    expect(stats.exits["dirty-log"]).toBe(stats.dirtyLogged);
    expect(stats.dirtyLogged - stats.dirtyLoggedTables).toBe(16 * 5);
    expect(stats.dirtyLoggedTables).toBe(4);
    const native = testMachine({ mode: "native", dirtyLogHarvestsPerSecond: rate });
    native.machine.runRecords(writeTrace(native.layout, records(100)).region, 100);
    expect(native.machine.stats().totalExits).toBe(0);
    // Nor does it flush the TLBs as a harvest would: the walks are those of a run without.
    const quiet = testMachine({ mode: "native" });
    quiet.machine.runRecords(writeTrace(quiet.layout, records(100)).region, 100);
    expect(native.machine.stats().walks).toBe(quiet.machine.stats().walks);
  });
});
