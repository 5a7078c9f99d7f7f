import { describe, expect, it } from "vitest";
import { X86, X86_SOFTWARE_COW } from "../src/paging/entry.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import { ACCESS } from "../src/paging/mmu.js";
import { cpuPreset } from "../src/paging/presets.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { guestLeaf, testMachine } from "./support/paging.js";

/*
 * With PCIDs a CR3 load keeps what the TLB cached under the new PCID
 * (Intel SDM vol. 3A 4.10.4.1, CR3 bit 63), so a change to an address
 * space's tables must still reach its cached translations. Linux's
 * flush_tlb_mm (after fork write-protects the parent, kernel/fork.c
 * dup_mmap) flushes the running mm at once and, for an mm not running,
 * bumps its tlb_gen so that switch_mm_irqs_off flushes its PCID at the next
 * load (arch/x86/mm/tlb.c). Without that, a write through a stale writable
 * entry takes no fault: no copy-on-write, no soft-dirty tracking.
 */

const RW = ACCESS.write | ACCESS.user;

function caches(tagged: boolean) {
  return { ...cpuPreset("skylake-sp").caches, tagged };
}

describe("fork flushes the parent's cached translations", () => {
  it.each([true, false])(
    "PCID %s: the parent's next write to a shared page faults and copies",
    (tagged) => {
      const { machine } = testMachine({
        mode: "native",
        caches: caches(tagged),
        workingSetBytes: 8 * 4096,
        prefault: true,
      });
      // The parent's write caches a writable translation of the page.
      machine.touch(HEAP_BASE, RW);
      const parent = machine.os.current;
      const child = machine.os.fork(parent);
      expect(machine.os.current).toBe(parent);
      const shared = guestLeaf(machine, HEAP_BASE)?.entry ?? 0n;
      expect(shared & (X86.writable | X86_SOFTWARE_COW)).toBe(X86_SOFTWARE_COW);
      const faults = machine.os.counters.copyOnWrite;
      machine.touch(HEAP_BASE, RW);
      expect(machine.os.counters.copyOnWrite).toBe(faults + 1);
      // The child still shares the frame, so the parent's page is a copy.
      const own = guestLeaf(machine, HEAP_BASE)?.entry ?? 0n;
      expect(own & (X86.writable | X86_SOFTWARE_COW)).toBe(X86.writable);
      expect(own & 0x000f_ffff_ffff_f000n).not.toBe(shared & 0x000f_ffff_ffff_f000n);
      machine.os.exit(child);
    },
  );
});

describe("a change to an address space that is not running", () => {
  it.each([true, false])("PCID %s: reaches its cached translations at its next load", (tagged) => {
    const { machine } = testMachine({
      mode: "native",
      caches: caches(tagged),
      workingSetBytes: 8 * 4096,
      prefault: true,
      activity: { ...QUIET, processes: 2 },
    });
    const [first, second] = [...machine.os.processes.values()];
    if (!first || !second) throw new Error("two processes expected");
    machine.os.switchTo(second);
    machine.touch(HEAP_BASE + 4096, RW);
    machine.os.switchTo(first);
    // Write-track the second process's page while the first runs.
    expect(machine.os.trackWrites(second, HEAP_BASE + 4096)).toBe(true);
    machine.os.switchTo(second);
    const faults = machine.os.counters.pageFaults;
    machine.touch(HEAP_BASE + 4096, RW);
    expect(machine.os.counters.pageFaults).toBe(faults + 1);
    const leaf = guestLeaf(machine, HEAP_BASE + 4096)?.entry ?? 0n;
    expect(leaf & (X86.writable | X86_SOFTWARE_TRACKED)).toBe(X86.writable);
  });

  it("keeps the PCID's entries across a plain switch back and forth", () => {
    const { machine } = testMachine({
      mode: "native",
      caches: caches(true),
      workingSetBytes: 8 * 4096,
      prefault: true,
      activity: { ...QUIET, processes: 2 },
    });
    const [first, second] = [...machine.os.processes.values()];
    if (!first || !second) throw new Error("two processes expected");
    machine.touch(HEAP_BASE, RW);
    const walks = machine.counters().walks;
    machine.os.switchTo(second);
    machine.os.switchTo(first);
    // Nothing changed: the translation is still cached under the first PCID.
    machine.touch(HEAP_BASE, RW);
    expect(machine.counters().walks).toBe(walks);
  });
});
