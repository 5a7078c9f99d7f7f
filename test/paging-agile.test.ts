import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";
import { cpuPreset } from "../src/paging/presets.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

const READ = ACCESS.user;
const pages = [0, 1, 2, 3].map((i) => HEAP_BASE + i * 4096);

/**
 * An agile machine with `pages` mapped and every table back in shadow mode:
 * demand paging wrote the leaf table (which may have moved it to nested
 * mode), then two CR3 loads without table writes move everything back.
 */
function settled() {
  // No host page-walk caches or nested TLB: every EPT reference of a walk counts.
  const preset = cpuPreset("skylake-sp").caches;
  const caches = { ...preset, pwcHost: { 2: null, 3: null, 4: null, 5: null }, nestedTlb: null };
  const { machine } = testMachine({ mode: "agile", caches });
  for (const va of pages) machine.touch(va, READ);
  machine.os.switchTo(machine.os.current);
  machine.os.switchTo(machine.os.current);
  for (const va of pages) machine.touch(va, READ);
  return machine;
}

/** A walk of `va` from cold caches: its references in each dimension. */
function coldWalk(machine: ReturnType<typeof testMachine>["machine"], va: number) {
  machine.mmu.flushAll();
  machine.mmu.flushNested();
  const before = machine.counters();
  const got = machine.mmu.translate(va, READ);
  const after = machine.counters();
  return {
    got,
    guest: after.guestReferences - before.guestReferences,
    host: after.hostReferences - before.hostReferences,
  };
}

/*
 * Agile paging (Gandhi et al., ISCA 2016): walks start in the shadow tables
 * and switch to nested mode at the tables the guest changes.
 */
describe("agile paging", () => {
  it("starts in shadow mode: a walk over static tables is a native walk of the shadow tables", () => {
    const machine = settled();
    const w = coldWalk(machine, pages[0] ?? 0);
    expect("hpa" in w.got).toBe(true);
    expect(w.guest).toBe(4);
    expect(w.host).toBe(0);
  });

  it("switches a table the guest keeps writing to nested mode: no more exits, and walks finish nested", () => {
    const machine = settled();
    const exits = machine.exits.exits["page-table-write"];
    const switched = machine.exits.agileToNested;
    const shadowHpa = machine.mmu.translate(pages[3] ?? 0, READ);
    const os = machine.os;
    // Two PTE writes to the same leaf table: each exits and is emulated; the second switches it.
    os.trackWrites(os.current, pages[0] ?? 0);
    os.trackWrites(os.current, pages[1] ?? 0);
    expect(machine.exits.exits["page-table-write"]).toBe(exits + 2);
    expect(machine.exits.agileToNested).toBe(switched + 1);
    // The guest now writes the table freely.
    os.trackWrites(os.current, pages[2] ?? 0);
    expect(machine.exits.exits["page-table-write"]).toBe(exits + 2);
    // Three shadow levels, then the leaf table read through the EPT (4 references), then
    // the data page's gPA through the EPT (4): 4 guest-dimension and 8 host references.
    machine.touch(pages[3] ?? 0, READ);
    const w = coldWalk(machine, pages[3] ?? 0);
    expect(w.got).toEqual(shadowHpa);
    expect(w.guest).toBe(4);
    expect(w.host).toBe(8);
    // The shadow entry above the table holds the guest table's address, marked.
    expect(machine.stats().agileToNested).toBe(switched + 1);
  });

  it("moves a nested table back to shadow mode once the guest leaves it alone across a CR3 load", () => {
    const machine = settled();
    const os = machine.os;
    os.trackWrites(os.current, pages[0] ?? 0);
    os.trackWrites(os.current, pages[1] ?? 0);
    const back = machine.exits.agileToShadow;
    // Written in the interval that ends at this load: stays nested.
    os.switchTo(os.current);
    expect(machine.exits.agileToShadow).toBe(back);
    // Not written since: back to shadow at the next load, and walks are shadow walks again.
    os.switchTo(os.current);
    expect(machine.exits.agileToShadow).toBe(back + 1);
    machine.touch(pages[3] ?? 0, READ);
    const w = coldWalk(machine, pages[3] ?? 0);
    expect(w.host).toBe(0);
    expect(w.guest).toBe(4);
    // Shadowed again: the next PTE write exits.
    const exits = machine.exits.exits["page-table-write"];
    os.trackWrites(os.current, pages[2] ?? 0);
    expect(machine.exits.exits["page-table-write"]).toBe(exits + 1);
  });
});

describe("agile paging's guest page faults", () => {
  /** Exits for guest page faults when a page of a leaf table in nested mode is unmapped and touched again. */
  function faultExits(agileNestedFaultsToGuest: boolean): number {
    const { machine } = testMachine({ mode: "agile", agileNestedFaultsToGuest });
    for (const va of pages) machine.touch(va, ACCESS.user | ACCESS.write);
    const os = machine.os;
    // Two PTE writes to the leaf table: it goes nested.
    os.trackWrites(os.current, pages[0] ?? 0);
    os.trackWrites(os.current, pages[1] ?? 0);
    expect(machine.exits.agileToNested).toBeGreaterThan(0);
    os.unmap(os.current, pages[2] ?? 0, 4096);
    const before = machine.exits.exits["guest-page-fault"];
    machine.touch(pages[2] ?? 0, READ);
    return machine.exits.exits["guest-page-fault"] - before;
  }

  it("exit on today's hardware, and reach the guest directly in the nested part with the paper's support", () => {
    // VT-x's exception bitmap cannot tell where the walk was: every #PF exits.
    expect(faultExits(false)).toBe(1);
    // Gandhi et al.'s hardware knows the walk switched: the fault is the guest's, as under SLAT.
    expect(faultExits(true)).toBe(0);
  });
});

/*
 * 2 MiB guest pages over 4 KiB host pages: the hypervisor cannot map a large
 * guest page with one shadow entry when the host backs it with small pages
 * (KVM's direct shadow pages, role.direct), and the TLB holds the smaller page
 * whichever dimension the walk ends in, so INVLPG of the large page must drop
 * every 4 KiB piece of it (Intel SDM vol. 3A 4.10.4.1).
 */
describe("agile paging with 2 MiB guest pages over 4 KiB host pages", () => {
  const big = HEAP_BASE;
  const WRITE = ACCESS.user | ACCESS.write;

  it("shadows the large guest page at the host's 4 KiB: neighbouring pages walk apart", () => {
    const { machine } = testMachine({ mode: "agile", guestPageSize: "2M", hostBacking: "4K" });
    machine.touch(big, READ);
    machine.touch(big + 4096, READ);
    machine.mmu.flushAll();
    machine.mmu.resetCounters();
    machine.touch(big, READ);
    machine.touch(big + 4096, READ);
    // Two walks: a 2 MiB shadow leaf would have served the second from the TLB.
    expect(machine.counters().walks).toBe(2);
    // With 2 MiB host pages the shadow leaf is 2 MiB: one walk, one TLB hit.
    const two = testMachine({ mode: "agile", guestPageSize: "2M", hostBacking: "2M" }).machine;
    two.touch(big, READ);
    two.mmu.flushAll();
    two.mmu.resetCounters();
    two.touch(big, READ);
    two.touch(big + 4096, READ);
    expect(two.counters().walks).toBe(1);
  });

  it("backs in the EPT what a shadow fill mapped: the page needs no EPT violation once its table is nested", () => {
    const { machine } = testMachine({ mode: "agile", guestPageSize: "2M", hostBacking: "4K" });
    const next = big + 2 * 2 ** 20;
    machine.touch(big, WRITE);
    machine.touch(next, WRITE);
    const os = machine.os;
    // Two PDE writes to the same guest page directory switch it to nested mode.
    os.trackWrites(os.current, big);
    os.trackWrites(os.current, next);
    expect(machine.exits.agileToNested).toBe(1);
    const violations = machine.exits.exits["ept-violation"];
    // The first nested walk reads the directory and the data page through the EPT.
    const r = machine.mmu.translate(big, READ);
    expect("hpa" in r).toBe(true);
    expect(machine.exits.exits["ept-violation"]).toBe(violations);
  });

  it("INVLPG of the large page drops the 4 KiB TLB entries of all its pieces", () => {
    const { machine } = testMachine({ mode: "slat", guestPageSize: "2M", hostBacking: "4K" });
    machine.touch(big + 4096, WRITE);
    const os = machine.os;
    // The guest write-protects the 2 MiB page and INVLPGs its first address only.
    expect(os.trackWrites(os.current, big)).toBe(true);
    const r = machine.mmu.translate(big + 4096, WRITE);
    expect("fault" in r && r.fault.code).toBe("guest-protection");
  });
});
