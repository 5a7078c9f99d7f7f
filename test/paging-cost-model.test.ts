import { describe, expect, it } from "vitest";
import { costModelRows, priceRun } from "../src/paging/cost.js";
import { EXIT_REASONS, emptyExitCounters } from "../src/paging/exits.js";
import type { MmuCounters } from "../src/paging/mmu.js";
import { type CostModel, cpuPreset } from "../src/paging/presets.js";

/*
 * docs/paging.md, "Cost model": translation cycles = references x
 * walkReferenceCycles + L2 hits x l2HitCycles + exits x vmExitCycles +
 * hypervisor work (emulated writes, hidden faults and A/D emulation, resyncs,
 * EPT fills); the guest's own page-fault handling is reported beside it,
 * not in the total. Each price and count below is a different prime, so a
 * count priced at the wrong rate, or left out, changes the sum.
 */
const p = (value: number, assumed = true) => ({ value, assumed, source: `s${value}` });
const COST: CostModel = {
  walkReferenceCycles: p(3),
  l2HitCycles: p(5, false),
  vmExitCycles: p(7),
  emulationCycles: p(11),
  hiddenFaultCycles: p(13),
  resyncCycles: p(17),
  guestFaultCycles: p(19),
  eptViolationCycles: p(23),
};

function counters(over: Partial<MmuCounters> = {}): MmuCounters {
  return {
    accesses: 1000,
    l1Hits: 0,
    l2Hits: 29,
    walks: 0,
    references: 31,
    guestReferences: 0,
    hostReferences: 0,
    pwcGuestHits: 0,
    pwcHostHits: 0,
    nestedTlbHits: 0,
    nestedTlbLookups: 0,
    pwcGuestLookups: 0,
    pwcHostLookups: 0,
    itlbHits: 0,
    itlbLookups: 0,
    dtlbLookups: 0,
    dirtyAssists: 0,
    guestReferencesByLevel: [0, 0, 0, 0, 0],
    hostReferencesByLevel: [0, 0, 0, 0, 0],
    ...over,
  };
}

/** Exits: each reason a different count (1, 2, 4, ... 256), and the hypervisor's work. */
function exits() {
  const e = emptyExitCounters();
  for (const [i, reason] of EXIT_REASONS.entries()) e.exits[reason] = 2 ** i;
  e.emulatedWrites = 37;
  e.resyncs = 41;
  return e;
}

describe("the cost model prices a run's counters (docs/paging.md, Cost model)", () => {
  it("starts every exit count and the hypervisor's work at zero", () => {
    const e = emptyExitCounters();
    expect(Object.keys(e.exits)).toEqual([...EXIT_REASONS]);
    expect(Object.values(e.exits).every((n) => n === 0)).toBe(true);
    expect(e).toMatchObject({
      emulatedWrites: 0,
      resyncs: 0,
      unshadowed: 0,
      shadowPages: 0,
      agileToNested: 0,
      agileToShadow: 0,
      dirtyLogged: 0,
      dirtyLoggedTables: 0,
    });
  });

  it("sums references, L2 hits, exits and the hypervisor's work, each at its own price", () => {
    const e = exits();
    const c = priceRun(counters(), e, 43, COST);
    const n = (reason: (typeof EXIT_REASONS)[number]) => e.exits[reason];
    expect(c.walks).toBe(31 * 3);
    expect(c.l2Hits).toBe(29 * 5);
    // Every reason is an exit: 1 + 2 + ... + 256.
    expect(c.exits).toBe(511 * 7);
    // Hidden faults, A/D emulation and dirty-log faults are each a software walk and fill.
    const fills = n("hidden-page-fault") + n("ad-emulation") + n("dirty-log");
    expect(c.hypervisor).toBe(37 * 11 + fills * 13 + 41 * 17 + n("ept-violation") * 23);
    expect(c.total).toBe(c.walks + c.l2Hits + c.exits + c.hypervisor);
    expect(c.perAccess).toBe(c.total / 1000);
    // The guest's own fault handling is the same in every mode: beside the total, not in it.
    expect(c.guestFaults).toBe(43 * 19);
  });

  it("prices references by table level and dimension when the model has per-level cycles", () => {
    const byLevel: CostModel = {
      ...COST,
      referenceCyclesByLevel: { value: [40, 14, 5, 3, 2], assumed: true, source: "levels" },
    };
    const c = priceRun(
      counters({
        references: 1_000_000, // ignored: the per-level counts are priced instead
        guestReferencesByLevel: [1, 10, 100, 1000, 10000],
        hostReferencesByLevel: [2, 20, 200, 2000, 20000],
      }),
      emptyExitCounters(),
      0,
      byLevel,
    );
    // The same price in both dimensions, by level: PT, PD, PDPT, PML4, PML5.
    expect(c.walks).toBe(3 * 40 + 30 * 14 + 300 * 5 + 3000 * 3 + 30000 * 2);
    expect(c.total).toBe(c.walks + 29 * 5);
  });

  it("gives 0 cycles per access to a run of no accesses rather than dividing by zero", () => {
    const c = priceRun(counters({ accesses: 0 }), emptyExitCounters(), 0, COST);
    expect(c.total).toBe(31 * 3 + 29 * 5);
    expect(c.perAccess).toBe(0);
  });

  it("lists every parameter with its value, assumed or published, and its source", () => {
    expect(costModelRows(COST)).toEqual([
      ["walkReferenceCycles", 3, "assumed", "s3"],
      ["l2HitCycles", 5, "published", "s5"],
      ["vmExitCycles", 7, "assumed", "s7"],
      ["emulationCycles", 11, "assumed", "s11"],
      ["hiddenFaultCycles", 13, "assumed", "s13"],
      ["resyncCycles", 17, "assumed", "s17"],
      ["guestFaultCycles", 19, "assumed", "s19"],
      ["eptViolationCycles", 23, "assumed", "s23"],
    ]);
    // Per-level cycles replace the single latency, which is then not listed.
    const skylake = cpuPreset("skylake-sp").cost;
    const rows = costModelRows({
      ...skylake,
      referenceCyclesByLevel: { value: [40, 14, 5, 5, 5], assumed: true, source: "levels" },
    });
    expect(rows.map((r) => r[0])).not.toContain("walkReferenceCycles");
    expect(rows).toContainEqual(["referenceCyclesByLevel", "40/14/5/5/5", "assumed", "levels"]);
    expect(costModelRows(skylake).map((r) => r[0])).toContain("walkReferenceCycles");
  });
});
