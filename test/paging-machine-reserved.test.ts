/*
 * Edges of a paging machine that its guest OS never makes: a PS bit in a
 * PML4 entry, where it is reserved, is a segmentation fault of the guest;
 * a page-table update of a 5-level trace acts on the record's page past
 * 2^53 too, without the record's access bits.
 */
import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { guestLeaf, testMachine, writeTrace } from "./support/paging.js";

describe("a PS bit in a PML4 entry (reserved there: Intel SDM vol. 3A 4.5)", () => {
  for (const mode of ["native", "slat"] as const) {
    it(`is a segmentation fault of the guest (${mode}), counted as its page fault`, () => {
      const { machine } = testMachine({ mode });
      machine.touch(HEAP_BASE, ACCESS.user);
      expect(machine.stats().guestPageFaults).toBe(1);
      const at = HOST_BASE + machine.os.current.cr3 + (Math.floor(HEAP_BASE / 2 ** 39) % 512) * 8;
      machine.window.write(at, machine.window.read(at) | X86.pageSize);
      // The cached translation would hide the corrupted entry.
      machine.mmu.flushAll();
      let error: unknown = null;
      try {
        machine.touch(HEAP_BASE, ACCESS.user);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PagingError);
      expect((error as Error).message).toBe(
        "segmentation fault: pid 1 guest-reserved at 0x1000000000 (level 4)",
      );
      // The guest OS took the fault, and found nothing to map.
      expect(machine.stats().guestPageFaults).toBe(2);
    });
  }
});

describe("a page-table update of a 5-level trace past 2^53", () => {
  it("write-protects the record's page, whatever the record's access bits", () => {
    const page = 2 ** 53 + 4096;
    // An update every record: the first after record 0, at record 1.
    const { machine, layout } = testMachine({
      mode: "native",
      guestLevels: 5,
      workingSetBytes: null,
      activity: { ...QUIET, pageTableUpdatesPerSecond: QUIET.accessesPerSecond },
    });
    // A write maps the page writable; the second record (a read) is where the update acts.
    const trace = writeTrace(layout, [
      { va: page, kind: ACCESS.write | ACCESS.user },
      { va: page, kind: ACCESS.user },
    ]);
    // The record's low word holds its access bits beside the page address.
    expect((trace.words[2] ?? 0) % 4096).toBe(ACCESS.user);
    machine.runRecords(trace.region, 2);
    expect(machine.accesses).toBe(2);
    const entry = guestLeaf(machine, page)?.entry ?? 0n;
    // Present, read-only, and marked to track its next write.
    const bits = X86.present | X86.writable | X86_SOFTWARE_TRACKED;
    expect(entry & bits).toBe(X86.present | X86_SOFTWARE_TRACKED);
    expect(machine.os.counters.invlpgs).toBe(1);
  });
});
