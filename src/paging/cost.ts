import { EXIT_REASONS, type ExitCounters } from "./exits.js";
import type { MmuCounters } from "./mmu.js";
import type { CostModel } from "./presets.js";

/** Translation cycles of a run, by where they went. */
export interface TranslationCycles {
  /** Page-walk memory references x cycles per reference. */
  readonly walks: number;
  /** Second-level TLB hits x their latency. */
  readonly l2Hits: number;
  /** VM exits x the round trip. */
  readonly exits: number;
  /** The hypervisor's work inside exits: emulation, hidden-fault fills, resyncs, EPT fills. */
  readonly hypervisor: number;
  /** Everything above: what translation cost the guest. */
  readonly total: number;
  /** total / accesses. */
  readonly perAccess: number;
  /** The guest kernel's own page-fault handling (the same work in every mode; not in total). */
  readonly guestFaults: number;
}

/** Prices a run's counters with a cost model. */
export function priceRun(
  mmu: MmuCounters,
  exits: ExitCounters,
  guestPageFaults: number,
  cost: CostModel,
): TranslationCycles {
  const byLevel = cost.referenceCyclesByLevel?.value;
  const walks = byLevel
    ? [...mmu.guestReferencesByLevel, ...mmu.hostReferencesByLevel].reduce(
        (sum, n, i) => sum + n * (byLevel[i % 5] ?? 0),
        0,
      )
    : mmu.references * cost.walkReferenceCycles.value;
  const l2Hits = mmu.l2Hits * cost.l2HitCycles.value;
  const exitCount = EXIT_REASONS.reduce((sum, r) => sum + exits.exits[r], 0);
  const exitCycles = exitCount * cost.vmExitCycles.value;
  const hypervisor =
    exits.emulatedWrites * cost.emulationCycles.value +
    (exits.exits["hidden-page-fault"] + exits.exits["ad-emulation"] + exits.exits["dirty-log"]) *
      cost.hiddenFaultCycles.value +
    exits.resyncs * cost.resyncCycles.value +
    exits.exits["ept-violation"] * cost.eptViolationCycles.value;
  const total = walks + l2Hits + exitCycles + hypervisor;
  return {
    walks,
    l2Hits,
    exits: exitCycles,
    hypervisor,
    total,
    perAccess: mmu.accesses > 0 ? total / mmu.accesses : 0,
    guestFaults: guestPageFaults * cost.guestFaultCycles.value,
  };
}

/** The cost model as printable rows: parameter, value, assumed or published, source. */
export function costModelRows(cost: CostModel): (string | number)[][] {
  return Object.entries(cost)
    .filter(([name]) => !(name === "walkReferenceCycles" && cost.referenceCyclesByLevel))
    .map(([name, p]) => [
      name,
      Array.isArray(p.value) ? p.value.join("/") : p.value,
      p.assumed ? "assumed" : "published",
      p.source,
    ]);
}
