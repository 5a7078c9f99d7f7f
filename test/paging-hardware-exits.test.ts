import { describe, expect, it } from "vitest";
import { emptyExitCounters } from "../src/paging/exits.js";
import { HardwarePaging } from "../src/paging/hardware.js";
import { cpuPreset } from "../src/paging/presets.js";
import { testMachine } from "./support/paging.js";

// Under SLAT a guest page-table store is an ordinary store (Intel SDM vol. 3C
// 29.3: no exit for the write itself); it exits only as any other store
// does, through the EPT: an EPT violation where no leaf maps the frame, and a
// dirty-logging exit where the leaf is write-protected for the log (KVM's
// write-protection for dirty logging).
const FRAME = 0x3000_0000;
const OTHER = 0x3000_5000;

function slatWithDirtyLogging() {
  const { machine } = testMachine({ mode: "slat", dirtyLogHarvestsPerSecond: 1 });
  if (!machine.host) throw new Error("SLAT machine without a host");
  const counters = emptyExitCounters();
  const hooks = new HardwarePaging(machine.mmu, true, counters, machine.host);
  return { machine, host: machine.host, counters, hooks };
}

describe("guest page-table stores under SLAT", () => {
  it("exit as an EPT violation, then once for the dirty log, then not at all", () => {
    const { counters, hooks } = slatWithDirtyLogging();
    const expected = emptyExitCounters();

    hooks.tableWrite(FRAME);
    expected.exits["ept-violation"] = 1;
    expect(counters, "first store: the frame is unmapped").toEqual(expected);

    // Mapped read-only for the log: the next store is logged, as a table frame.
    hooks.tableWrite(FRAME);
    expected.exits["dirty-log"] = 1;
    expected.dirtyLogged = 1;
    expected.dirtyLoggedTables = 1;
    expect(counters, "second store: logged dirty").toEqual(expected);

    hooks.tableWrite(FRAME + 8);
    expect(counters, "third store: the leaf is writable now").toEqual(expected);
  });

  it("counts zeroing a fresh table as a store to its frame", () => {
    const { counters, hooks } = slatWithDirtyLogging();
    hooks.tableAllocated(OTHER);
    hooks.tableAllocated(OTHER);
    const expected = emptyExitCounters();
    expected.exits["ept-violation"] = 1;
    expected.exits["dirty-log"] = 1;
    expected.dirtyLogged = 1;
    expected.dirtyLoggedTables = 1;
    expect(counters).toEqual(expected);
  });

  it("logs the frame again after each harvest write-protects it", () => {
    const { host, counters, hooks } = slatWithDirtyLogging();
    hooks.tableWrite(FRAME);
    for (let harvest = 1; harvest <= 3; harvest++) {
      host.clearDirtyLog();
      hooks.tableWrite(FRAME);
      expect(counters.exits["dirty-log"], `harvest ${harvest}`).toBe(harvest);
      expect(counters.dirtyLogged, `harvest ${harvest}`).toBe(harvest);
      expect(counters.dirtyLoggedTables, `harvest ${harvest}`).toBe(harvest);
      expect([...host.dirtyLog]).toEqual([FRAME]);
    }
    expect(counters.exits["ept-violation"]).toBe(1);
  });

  it("natively never exits", () => {
    const { machine } = testMachine({ mode: "native" });
    const counters = emptyExitCounters();
    const hooks = new HardwarePaging(machine.mmu, true, counters, machine.host);
    hooks.tableWrite(FRAME);
    hooks.tableAllocated(OTHER);
    expect(counters).toEqual(emptyExitCounters());
  });
});

describe("CR3 loads (Intel SDM vol. 3A 4.10.1: PCIDs tag the TLBs)", () => {
  it("tag the TLBs with the process's PCID when the processor has PCIDs", () => {
    const { machine } = testMachine({ mode: "slat" });
    const hooks = new HardwarePaging(machine.mmu, true, emptyExitCounters(), machine.host);
    const process = { ...machine.os.current, pcid: 7 };
    hooks.cr3Load(process, false);
    expect(machine.mmu.root).toBe(process.cr3);
    expect(machine.mmu.asid).toBe(7);
  });

  it("leave the tag at 0 without PCIDs (Nehalem)", () => {
    const { machine } = testMachine({ mode: "slat", caches: cpuPreset("nehalem").caches });
    const hooks = new HardwarePaging(machine.mmu, false, emptyExitCounters(), machine.host);
    const before = machine.mmu.asid;
    hooks.cr3Load({ ...machine.os.current, pcid: 7 }, false);
    expect(before).toBe(0);
    expect(machine.mmu.asid).toBe(0);
  });
});
