import { describe, expect, it } from "vitest";
import { ADDRESS_MASK, X86, X86_SOFTWARE_COW } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import { ACCESS } from "../src/paging/mmu.js";
import { fault, guestOsRig, vma } from "./support/guest-os-rig.js";

/*
 * The guest OS model's memory manager where it only looks at tables, and
 * where large pages meet fork and teardown. Linux walks a process's tables
 * without allocating any for a lookup (mm/pagewalk.c, `walk_page_range`;
 * follow_page), and allocates them only to map (`__pte_alloc` under
 * handle_mm_fault); a large leaf (PS at level 2 or 3, Intel SDM vol. 3A
 * 4.5, tables 4-17 and 4-18) is a leaf, never a table to descend into, in
 * fork's copy (copy_page_range: copy_huge_pmd, copy_huge_pud) and in
 * teardown (zap_huge_pmd, zap_huge_pud), which frees its frame at its size.
 * A new address space in the same PCID is fresh at each exec
 * (switch_mm_irqs_off), however many execs came before.
 */

const W = X86.writable;
const PS = X86.pageSize;

const MIB2 = 2 ** 21;
const GIB = 2 ** 30;

describe("looking up a page builds no table", () => {
  it("write tracking of a page with no tables under it tracks nothing and allocates nothing", () => {
    const { os, events, window } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x10_0000)]);
    events.length = 0;
    expect(os.trackWrites(p, 0x5000)).toBe(false);
    expect(events).toEqual([]);
    expect(window.usage.guestTables, "the root only").toBe(1);
  });

  it("write tracking of an absent, a read-only or an already tracked page changes nothing", () => {
    const { os, events, entry } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x10_0000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    events.length = 0;
    // The next page's entry is in a table that exists, and is not present.
    expect(os.trackWrites(p, 0x2000)).toBe(false);
    expect(entry(p, 0x2000, 1)).toBe(0n);
    expect(os.trackWrites(p, 0x1000)).toBe(true);
    const tracked = entry(p, 0x1000, 1);
    expect(tracked & (W | X86_SOFTWARE_TRACKED)).toBe(X86_SOFTWARE_TRACKED);
    // One write, to the leaf's entry in its page table, and its INVLPG.
    const leafTable = Number(entry(p, 0x1000, 2) & ADDRESS_MASK);
    expect(events).toEqual([
      ["write", leafTable, 1, 1],
      ["invlpg", 0x1000],
    ]);
    events.length = 0;
    // Tracked already: read-only, so nothing more to do.
    expect(os.trackWrites(p, 0x1000)).toBe(false);
    expect(entry(p, 0x1000, 1)).toBe(tracked);
    expect(events).toEqual([]);
  });

  it("unmapping a range with no tables under it clears nothing and allocates nothing", () => {
    const { os, events, window } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x10_0000)]);
    events.length = 0;
    expect(os.unmap(p, 0x1000, 0x4000)).toBe(0);
    expect(events).toEqual([]);
    expect(window.usage.guestTables).toBe(1);
  });

  it("a protection fault where no table is, or one that is not a protection fault, is a segmentation fault, and builds nothing", () => {
    const { os, events, window, entry } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x10_0000)]);
    events.length = 0;
    expect(() =>
      os.handleFault(fault("guest-protection", 0x3000, ACCESS.write | ACCESS.user)),
    ).toThrow(new PagingError("segmentation fault: pid 1 guest-protection at 0x3000 (level 1)"));
    expect(events).toEqual([]);
    expect(window.usage.guestTables).toBe(1);
    // A write-tracked page: only a protection fault from a write makes it writable again.
    os.handleFault(fault("guest-not-present", 0x1000));
    expect(os.trackWrites(p, 0x1000)).toBe(true);
    const tracked = entry(p, 0x1000, 1);
    expect(() =>
      os.handleFault(fault("guest-reserved", 0x1000, ACCESS.write | ACCESS.user)),
    ).toThrow(new PagingError("segmentation fault: pid 1 guest-reserved at 0x1000 (level 1)"));
    expect(entry(p, 0x1000, 1)).toBe(tracked);
    os.handleFault(fault("guest-protection", 0x1000, ACCESS.write | ACCESS.user));
    expect(entry(p, 0x1000, 1) & (W | X86_SOFTWARE_TRACKED)).toBe(W);
  });
});

describe("large pages in fork and teardown", () => {
  it("fork shares a 2 MiB and a 1 GiB leaf as leaves, copy-on-write at their level", () => {
    const { os, entry } = guestOsRig(4 * GIB);
    const areas = [vma(0x20_0000, 0x60_0000, "2M"), vma(GIB, 2 * GIB, "1G")];
    const parent = os.createProcess(areas);
    os.handleFault(fault("guest-not-present", 0x20_0000));
    os.handleFault(fault("guest-not-present", GIB));
    const twoMeg = entry(parent, 0x20_0000, 2);
    const oneGig = entry(parent, GIB, 3);
    expect(twoMeg & PS).toBe(PS);
    expect(oneGig & PS).toBe(PS);
    const child = os.fork(parent);
    for (const process of [parent, child]) {
      expect(entry(process, 0x20_0000, 2)).toBe((twoMeg & ~W) | X86_SOFTWARE_COW);
      expect(entry(process, GIB, 3)).toBe((oneGig & ~W) | X86_SOFTWARE_COW);
    }
    expect(child.mapped).toBe(2);
    // The child's write copies into a new 2 MiB frame; the parent's then takes the old one back.
    os.switchTo(child);
    os.handleFault(fault("guest-protection", 0x20_0000, ACCESS.write | ACCESS.user, 2));
    const copied = entry(child, 0x20_0000, 2);
    expect(copied & ADDRESS_MASK).not.toBe(twoMeg & ADDRESS_MASK);
    expect(Number(copied & ADDRESS_MASK) % MIB2).toBe(0);
    expect(copied & (W | PS | X86_SOFTWARE_COW)).toBe(W | PS);
  });

  it("teardown frees a 2 MiB and a 1 GiB frame at their sizes, for the next such page", () => {
    const { os, entry } = guestOsRig(4 * GIB);
    const areas = [vma(0x20_0000, 0x60_0000, "2M"), vma(GIB, 2 * GIB, "1G")];
    const a = os.createProcess(areas);
    os.handleFault(fault("guest-not-present", 0x20_0000));
    os.handleFault(fault("guest-not-present", GIB));
    const twoMeg = entry(a, 0x20_0000, 2) & ADDRESS_MASK;
    const oneGig = entry(a, GIB, 3) & ADDRESS_MASK;
    os.exec(a, areas);
    // A new 2 MiB page elsewhere in the area and a 1 GiB one get the freed frames.
    os.handleFault(fault("guest-not-present", 0x40_0000));
    os.handleFault(fault("guest-not-present", GIB + 0x1000));
    expect(entry(a, 0x40_0000, 2) & ADDRESS_MASK).toBe(twoMeg);
    expect(entry(a, GIB, 3) & ADDRESS_MASK).toBe(oneGig);
  });
});

describe("fork and exec as CR3 loads", () => {
  it("fork of a process not running loads no CR3", () => {
    const { os, events } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x2000)]);
    const b = os.createProcess([vma(0x1000, 0x2000)]);
    os.switchTo(b);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.switchTo(a);
    events.length = 0;
    os.fork(b);
    expect(events.filter((e) => e[0] === "cr3")).toEqual([]);
    expect(os.current).toBe(a);
  });

  it("each exec of the running process loads a fresh address space, the second as the first", () => {
    const { os, events } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x2000)]);
    os.switchTo(p);
    for (let exec = 1; exec <= 3; exec++) {
      events.length = 0;
      os.exec(p, [vma(0x1000, 0x2000)]);
      expect(
        events.filter((e) => e[0] === "cr3"),
        `exec ${exec}`,
      ).toEqual([["cr3", 1, true]]);
      // Loaded again without an exec: the same address space, not fresh.
      events.length = 0;
      os.switchTo(p);
      expect(events.filter((e) => e[0] === "cr3")).toEqual([["cr3", 1, false]]);
    }
  });
});
