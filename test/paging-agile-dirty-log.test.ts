import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { testMachine, writeTrace } from "./support/paging.js";

/*
 * Dirty logging under agile paging (Gandhi et al., ISCA 2016): the
 * shadowed part's leaves map guest-virtual pages to host frames directly,
 * so its writes never reach the EPT and the EPT's write protection cannot
 * log them; they are logged as shadow paging logs them, by write-protecting
 * the shadow leaves at each harvest (KVM's shadow MMU:
 * kvm_mmu_slot_remove_write_access, and make_spte marking the page dirty).
 * The part that went nested is logged through the EPT, as under SLAT.
 */

const WRITE = ACCESS.write | ACCESS.user;

describe("dirty logging under agile paging", () => {
  it("logs the shadowed part's writes as shadow paging does", () => {
    const logged = (mode: "shadow" | "agile") => {
      const { machine, layout } = testMachine({
        mode,
        dirtyLogHarvestsPerSecond: QUIET.accessesPerSecond / 2,
      });
      // One page written six times, a harvest after every second write: the
      // third and the fifth write each follow a harvest, so two are logged.
      const records = Array.from({ length: 6 }, () => ({ va: HEAP_BASE, kind: WRITE }));
      machine.runRecords(writeTrace(layout, records).region, 6);
      const stats = machine.stats();
      expect(stats.agileToNested, mode).toBe(0);
      expect(machine.host?.dirtyLog.size ?? 0, mode).toBe(0);
      return stats.dirtyLogged;
    };
    expect(logged("shadow")).toBe(2);
    expect(logged("agile")).toBe(2);
  });

  it("logs the nested part's writes through the EPT once a table went nested", () => {
    const { machine, layout } = testMachine({
      mode: "agile",
      workingSetBytes: 4 * 4096,
      prefault: true,
      dirtyLogHarvestsPerSecond: QUIET.accessesPerSecond / 8,
      // A page-table update every other record: the leaf table is written
      // often enough to go nested.
      activity: { ...QUIET, pageTableUpdatesPerSecond: QUIET.accessesPerSecond / 2 },
    });
    const records = Array.from({ length: 32 }, (_, i) => ({
      va: HEAP_BASE + (i % 4) * 4096,
      kind: WRITE,
    }));
    machine.runRecords(writeTrace(layout, records).region, 32);
    const stats = machine.stats();
    expect(stats.agileToNested).toBeGreaterThan(0);
    expect(machine.host?.dirtyLog.size ?? 0).toBeGreaterThan(0);
    expect(stats.exits["dirty-log"]).toBeGreaterThan(0);
  });
});
