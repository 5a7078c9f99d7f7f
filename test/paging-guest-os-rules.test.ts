import { describe, expect, it } from "vitest";
import { ADDRESS_MASK, tableIndex, X86, X86_SOFTWARE_COW } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { type GuestProcess, X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import { ACCESS } from "../src/paging/mmu.js";
import { fault, guestOsRig, vma, GUEST_OS_ZONE as ZONE } from "./support/guest-os-rig.js";

// The guest OS model's memory manager, as Linux's does it, seen through its
// page tables (Intel SDM vol. 3A 4.5: a table entry P, R/W and U/S; a leaf
// with its frame, R/W, U/S, XD in bit 63 and PS above level 1) and through
// what it tells the hypervisor: each table write and allocation, each CR3
// load and whether its PCID's entries are stale (switch_mm_irqs_off), each
// INVLPG. Copy-on-write keeps its mark in software bit 9, soft-dirty
// tracking in bit 10 (bits 9-11 are ignored by the processor, table 4-19).
const P = X86.present;
const W = X86.writable;
const U = X86.user;
const PS = X86.pageSize;
const NX = X86.noExecute;
const TABLE = P | W | U;
const MIB2 = 2 ** 21;

describe("processes", () => {
  it("get a zeroed top table, a PCID from their pid, and the first one runs", () => {
    const { os, events, window } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x2000)]);
    const b = os.createProcess([]);
    expect([a.pid, a.pcid, b.pid, b.pcid]).toEqual([1, 1, 2, 2]);
    expect([a.cr3, b.cr3]).toEqual([0, 4096]);
    expect(events).toEqual([
      ["allocated", 0],
      ["allocated", 4096],
    ]);
    expect(os.current).toBe(a);
    expect(os.processes.get(2)).toBe(b);
    expect(window.usage.guestTables).toBe(2);
  });

  it("tell the hypervisor a CR3 load is fresh when the PCID last served another address space", () => {
    const { os, events } = guestOsRig();
    const a = os.createProcess([]);
    const b = os.createProcess([]);
    events.length = 0;
    os.switchTo(a);
    os.switchTo(b);
    os.switchTo(a);
    os.switchTo(a);
    expect(events).toEqual([
      ["cr3", 1, true],
      ["cr3", 2, true],
      ["cr3", 1, false],
      ["cr3", 1, false],
    ]);
    expect(os.counters.contextSwitches).toBe(4);
    os.exec(a, []);
    expect(events.at(-1), "exec: a new address space under the same PCID").toEqual([
      "cr3",
      1,
      true,
    ]);
    expect(os.counters.execs).toBe(1);
  });

  it("wrap PCIDs at 4095", () => {
    const { os } = guestOsRig(2 ** 30, 4, 4096 * 4096);
    let last: GuestProcess | undefined;
    for (let i = 0; i < 4096; i++) last = os.createProcess([]);
    expect(last?.pcid).toBe(1);
    expect(os.processes.get(4095)?.pcid).toBe(4095);
  });
});

describe("demand paging", () => {
  it("maps a 4 KiB page: tables P, W and U, the leaf its VMA's rights, frames from above the table zone", () => {
    const { os, events, entry } = guestOsRig();
    const p = os.createProcess([
      vma(0x40_0000, 0x50_0000, "4K", true, false),
      vma(0x60_0000, 0x61_0000, "4K", false, true),
    ]);
    events.length = 0;
    os.handleFault(fault("guest-not-present", 0x40_1234));
    expect(events).toEqual([
      ["allocated", 4096],
      ["write", 0, tableIndex(0x40_1234, 4), 4],
      ["allocated", 8192],
      ["write", 4096, tableIndex(0x40_1234, 3), 3],
      ["allocated", 12288],
      ["write", 8192, tableIndex(0x40_1234, 2), 2],
      ["write", 12288, tableIndex(0x40_1234, 1), 1],
    ]);
    expect(entry(p, 0x40_1234, 4)).toBe(4096n | TABLE);
    expect(entry(p, 0x40_1234, 1)).toBe(BigInt(ZONE) | P | U | W | NX);
    os.handleFault(fault("guest-not-present", 0x60_0000, ACCESS.user | ACCESS.execute));
    expect(entry(p, 0x60_0000, 1), "read-only, executable").toBe(BigInt(ZONE + 4096) | P | U);
    expect(p.mapped).toBe(2);
    expect(os.counters.pageFaults).toBe(2);
    expect(os.counters.tableWrites, "a new page table for the second").toBe(6);
  });

  it("maps 2 MiB and 1 GiB pages with PS at their level, their frames aligned, the gap kept for 4 KiB pages", () => {
    const { os, entry } = guestOsRig(4 * 2 ** 30);
    const p = os.createProcess([
      vma(0x4000_0000, 0x8000_0000, "1G"),
      vma(0x20_0000, 0x60_0000, "2M"),
      vma(0x1000, 0x10_0000, "4K"),
    ]);
    os.handleFault(fault("guest-not-present", 0x20_5000));
    expect(entry(p, 0x20_5000, 2)).toBe(BigInt(MIB2) | P | U | W | NX | PS);
    os.handleFault(fault("guest-not-present", 0x1000));
    expect(entry(p, 0x1000, 1) & ADDRESS_MASK, "the last frame skipped below the 2 MiB one").toBe(
      BigInt(MIB2 - 4096),
    );
    os.handleFault(fault("guest-not-present", 0x4123_4567));
    expect(entry(p, 0x4000_0000, 3)).toBe(BigInt(2 ** 30) | P | U | W | NX | PS);
    os.handleFault(fault("guest-not-present", 0x2000));
    expect(entry(p, 0x2000, 1) & ADDRESS_MASK, "then the last one below the 1 GiB one").toBe(
      BigInt(2 ** 30 - 4096),
    );
  });

  it("takes the guest's last page and refuses one more, naming the size", () => {
    const { os, entry } = guestOsRig(ZONE + 2 * 4096);
    const p = os.createProcess([vma(0, 0x10_0000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.handleFault(fault("guest-not-present", 0x2000));
    expect(entry(p, 0x2000, 1) & ADDRESS_MASK).toBe(BigInt(ZONE + 4096));
    expect(() => os.handleFault(fault("guest-not-present", 0x3000))).toThrow(
      new PagingError(`guest memory (${ZONE + 2 * 4096} bytes) is exhausted allocating a 4K page`),
    );
  });

  it("is a segmentation fault outside every area, or for a fault that is not demand paging's", () => {
    const { os } = guestOsRig();
    os.createProcess([vma(0x1000, 0x3000, "4K", false)]);
    expect(() => os.handleFault(fault("guest-not-present", 0x3000))).toThrow(
      new PagingError("segmentation fault: pid 1 touched 0x3000, outside its areas"),
    );
    expect(() => os.handleFault(fault("guest-not-present", 0xfff))).toThrow(PagingError);
    os.handleFault(fault("guest-not-present", 0x2fff));
    expect(() =>
      os.handleFault(fault("guest-protection", 0x2000, ACCESS.user | ACCESS.write, 1)),
    ).toThrow(new PagingError("segmentation fault: pid 1 guest-protection at 0x2000 (level 1)"));
    expect(() => os.handleFault(fault("guest-reserved", 0x2000, ACCESS.user, 4))).toThrow(
      new PagingError("segmentation fault: pid 1 guest-reserved at 0x2000 (level 4)"),
    );
  });

  it("refuses a small page under a larger one", () => {
    const { os } = guestOsRig();
    const p = os.createProcess([vma(0x20_0000, 0x40_0000, "2M")]);
    os.handleFault(fault("guest-not-present", 0x20_0000));
    p.vmas = [vma(0x20_0000, 0x40_0000, "4K")];
    expect(() => os.handleFault(fault("guest-not-present", 0x20_1000))).toThrow(
      new PagingError("0x201000 is covered by a larger page"),
    );
  });
});

describe("unmapping", () => {
  it("clears each present leaf of the range, INVLPGs its page, and frees its frame for reuse", () => {
    const { os, events, entry } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x10_0000)]);
    for (const va of [0x1000, 0x2000, 0x4000]) os.handleFault(fault("guest-not-present", va));
    const frame = entry(p, 0x2000, 1) & ADDRESS_MASK;
    events.length = 0;
    expect(os.unmap(p, 0x1800, 0x2000), "pages 0x1000 to 0x3000: two present").toBe(2);
    expect(events.filter((e) => e[0] === "invlpg")).toEqual([
      ["invlpg", 0x1000],
      ["invlpg", 0x2000],
    ]);
    expect(events.filter((e) => e[0] === "write")).toHaveLength(2);
    expect(entry(p, 0x1000, 1)).toBe(0n);
    expect(entry(p, 0x4000, 1) & P).toBe(P);
    expect(p.mapped).toBe(1);
    expect(os.counters.invlpgs).toBe(2);
    os.handleFault(fault("guest-not-present", 0x8000));
    expect(entry(p, 0x8000, 1) & ADDRESS_MASK, "the last frame freed comes back first").toBe(frame);
  });

  it("steps by the area's page size and INVLPGs a large page at its start", () => {
    const { os, events } = guestOsRig();
    const p = os.createProcess([vma(0x20_0000, 0x80_0000, "2M")]);
    os.handleFault(fault("guest-not-present", 0x20_0000));
    os.handleFault(fault("guest-not-present", 0x60_0000));
    events.length = 0;
    expect(os.unmap(p, 0x20_1000, 0x60_0000)).toBe(2);
    expect(events.filter((e) => e[0] === "invlpg")).toEqual([
      ["invlpg", 0x20_0000],
      ["invlpg", 0x60_0000],
    ]);
  });

  it("of a process not running sends no INVLPG: its entries go when it is loaded", () => {
    const { os, events } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x2000)]);
    const b = os.createProcess([vma(0x1000, 0x2000)]);
    os.switchTo(b);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.switchTo(a);
    events.length = 0;
    expect(os.unmap(b, 0x1000, 0x1000)).toBe(1);
    expect(events.filter((e) => e[0] === "invlpg")).toEqual([]);
    expect(os.counters.invlpgs).toBe(0);
  });
});

describe("write tracking and copy-on-write", () => {
  it("write-protects a writable mapped page with the tracking bit; its write fault makes it writable again", () => {
    const { os, events, entry } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x3000), vma(0x5000, 0x6000, "4K", false)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.handleFault(fault("guest-not-present", 0x5000));
    const before = entry(p, 0x1000, 1);
    events.length = 0;
    expect(os.trackWrites(p, 0x1234)).toBe(true);
    expect(entry(p, 0x1000, 1)).toBe((before & ~W) | X86_SOFTWARE_TRACKED);
    expect(events.at(-1)).toEqual(["invlpg", 0x1234]);
    expect(os.trackWrites(p, 0x1234), "already read-only").toBe(false);
    expect(os.trackWrites(p, 0x2000), "not mapped").toBe(false);
    expect(os.trackWrites(p, 0x5000), "a read-only area").toBe(false);
    expect(os.trackWrites(p, 0x9000), "no area").toBe(false);
    os.handleFault(fault("guest-protection", 0x1234, ACCESS.user | ACCESS.write));
    expect(entry(p, 0x1000, 1)).toBe(before);
    expect(os.counters.copyOnWrite).toBe(0);
  });

  it("a read of a write-tracked page is still a segmentation fault", () => {
    const { os } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x2000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.trackWrites(p, 0x1000);
    expect(() => os.handleFault(fault("guest-protection", 0x1000, ACCESS.user))).toThrow(
      PagingError,
    );
  });

  it("fork shares every leaf read-only and copy-on-write, and flushes the parent's CR3", () => {
    const { os, events, entry } = guestOsRig();
    const parent = os.createProcess([vma(0x1000, 0x4000), vma(0x8000, 0x9000, "4K", false)]);
    os.switchTo(parent);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.handleFault(fault("guest-not-present", 0x2000));
    os.handleFault(fault("guest-not-present", 0x8000));
    os.trackWrites(parent, 0x2000);
    const frames = [0x1000, 0x2000, 0x8000].map((va) => entry(parent, va, 1) & ADDRESS_MASK);
    events.length = 0;
    const child = os.fork(parent);
    expect(os.counters.forks).toBe(1);
    expect(child.mapped).toBe(3);
    expect(child.vmas).toEqual(parent.vmas);
    for (const [i, va] of [0x1000, 0x2000].entries()) {
      const shared = (frames[i] ?? 0n) | P | U | NX | X86_SOFTWARE_COW;
      expect(entry(parent, va, 1), `parent 0x${va.toString(16)}`).toBe(shared);
      expect(entry(child, va, 1), `child 0x${va.toString(16)}`).toBe(shared);
    }
    expect(entry(parent, 0x8000, 1), "read-only stays as it was").toBe(
      (frames[2] ?? 0n) | P | U | NX,
    );
    expect(entry(child, 0x8000, 1)).toBe((frames[2] ?? 0n) | P | U | NX);
    // flush_tlb_mm: a reload that flushes the parent's PCID too (a plain
    // reload under its own PCID would keep its writable entries).
    expect(events.at(-1)).toEqual(["cr3", parent.pid, true]);

    // The child writes first: a copy. The parent then writes: the frame is its own again.
    os.switchTo(child);
    os.handleFault(fault("guest-protection", 0x1000, ACCESS.user | ACCESS.write));
    const copy = entry(child, 0x1000, 1);
    expect(copy & ADDRESS_MASK).not.toBe(frames[0]);
    expect(copy & ~ADDRESS_MASK).toBe(P | U | W | NX);
    os.switchTo(parent);
    os.handleFault(fault("guest-protection", 0x1000, ACCESS.user | ACCESS.write));
    expect(entry(parent, 0x1000, 1)).toBe((frames[0] ?? 0n) | P | U | W | NX);
    expect(os.counters.copyOnWrite).toBe(2);
  });

  it("a frame shared by three is copied for each writer but the last", () => {
    const { os, entry } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x2000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    const frame = entry(a, 0x1000, 1) & ADDRESS_MASK;
    const b = os.fork(a);
    const c = os.fork(a);
    const frames: bigint[] = [];
    for (const p of [c, b, a]) {
      os.switchTo(p);
      os.handleFault(fault("guest-protection", 0x1000, ACCESS.user | ACCESS.write));
      frames.push(entry(p, 0x1000, 1) & ADDRESS_MASK);
    }
    expect(frames[2], "the last writer keeps the frame").toBe(frame);
    expect(new Set(frames).size).toBe(3);
  });

  it("unmapping a shared frame frees it only when its last sharer lets go", () => {
    const { os, entry } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x3000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    const frame = entry(a, 0x1000, 1) & ADDRESS_MASK;
    const b = os.fork(a);
    os.unmap(a, 0x1000, 0x1000);
    os.handleFault(fault("guest-not-present", 0x2000));
    expect(entry(a, 0x2000, 1) & ADDRESS_MASK, "still the child's").not.toBe(frame);
    os.unmap(b, 0x1000, 0x1000);
    os.unmap(a, 0x2000, 0x1000);
    os.handleFault(fault("guest-not-present", 0x2000));
    os.handleFault(fault("guest-not-present", 0x1000));
    expect(entry(a, 0x1000, 1) & ADDRESS_MASK, "free again").toBe(frame);
  });
});

describe("exec and exit", () => {
  it("exec frees the old tables and frames and starts an empty address space", () => {
    const { os, window, entry } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x2000), vma(0x40_0000_0000, 0x40_0000_1000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.handleFault(fault("guest-not-present", 0x40_0000_0000));
    const lastFreed = entry(p, 0x40_0000_0000, 1) & ADDRESS_MASK;
    expect(window.usage.guestTables, "the root, 3 tables, and 2 under another PDPTE").toBe(6);
    const oldRoot = p.cr3;
    os.exec(p, [vma(0x9000, 0xa000)]);
    expect(window.usage.guestTables).toBe(1);
    expect(p.cr3, "the root frame came back first").toBe(oldRoot);
    expect(p.mapped).toBe(0);
    expect(p.vmas).toEqual([vma(0x9000, 0xa000)]);
    expect(entry(p, 0x1000, 4)).toBe(0n);
    os.handleFault(fault("guest-not-present", 0x9000));
    expect(entry(p, 0x9000, 1) & ADDRESS_MASK, "freed frames are reused, the last first").toBe(
      lastFreed,
    );
  });

  it("teardown clears the old top level's entries through the hooks", () => {
    const { os, events } = guestOsRig();
    const p = os.createProcess([vma(0x1000, 0x2000), vma(0x80_0000_0000, 0x80_0000_1000)]);
    os.handleFault(fault("guest-not-present", 0x1000));
    os.handleFault(fault("guest-not-present", 0x80_0000_0000));
    const root = p.cr3;
    events.length = 0;
    os.exec(p, []);
    expect(events.filter((e) => e[0] === "write")).toEqual([
      ["write", root, 0, 4],
      ["write", root, 1, 4],
    ]);
  });

  it("exit frees a process that is not running and refuses the running one", () => {
    const { os, window } = guestOsRig();
    const a = os.createProcess([vma(0x1000, 0x2000)]);
    const b = os.createProcess([vma(0x1000, 0x2000)]);
    os.switchTo(b);
    os.handleFault(fault("guest-not-present", 0x1000));
    expect(() => os.exit(b)).toThrow(new PagingError("a running process cannot exit here"));
    os.switchTo(a);
    const before = window.usage.guestTables;
    os.exit(b);
    expect(window.usage.guestTables).toBe(before - 4);
    expect(os.processes.has(b.pid)).toBe(false);
  });

  it("exec of a process not running loads no CR3", () => {
    const { os, events } = guestOsRig();
    os.createProcess([]);
    const b = os.createProcess([]);
    events.length = 0;
    os.exec(b, []);
    expect(events.filter((e) => e[0] === "cr3")).toEqual([]);
  });

  it("works the same with five levels", () => {
    const { os, entry } = guestOsRig(64 * 2 ** 20, 5);
    const p = os.createProcess([vma(2 ** 50, 2 ** 50 + 0x1000)]);
    os.handleFault(fault("guest-not-present", 2 ** 50));
    expect(entry(p, 2 ** 50, 5) & ~ADDRESS_MASK).toBe(TABLE);
    expect(entry(p, 2 ** 50, 1)).toBe(BigInt(ZONE) | P | U | W | NX);
  });
});
