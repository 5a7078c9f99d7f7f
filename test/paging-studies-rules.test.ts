/*
 * The rules of the paging studies (src/paging/studies.ts), fast enough for
 * mutation testing: the workloads the studies stand on (the VMware MMU-intensive mix,
 * the Agile Paging churn, the sweep's churn rates, the 200-cycle data
 * access); the shadow/SLAT crossover sweep; and the published results, each
 * recomputed here from comparePaging runs of the workloads the studies
 * document: Bhargava et al., ASPLOS 2008 (2D page-walk cache, nested TLB,
 * large host pages), VMware's EPT study, 2009 (SLAT against shadow on
 * MMU-intensive work; references per walk), and Gandhi et al., Agile Paging,
 * ISCA 2016 (agile paging against native and the best single mode).
 */
import { describe, expect, it } from "vitest";
import { type CompareResult, type CompareRow, comparePaging } from "../src/paging/compare.js";
import type { PagingConfig } from "../src/paging/machine.js";
import { type CpuPreset, cpuPreset, type TranslationCaches } from "../src/paging/presets.js";
import {
  agileChurn,
  CHURN_RATES,
  crossoverSweep,
  DATA_ACCESS_CYCLES,
  mmuIntensive,
  publishedResults,
  rangeVerdict,
} from "../src/paging/studies.js";
import { type AccessPattern, type OsActivity, QUIET } from "../src/paging/workload.js";

const MiB = 2 ** 20;
const GiB = 2 ** 30;
const SEED = 3;
/** Small runs: the cost is the prefault of the working set, not the accesses. */
const ACCESSES = 2000;

/** The studies' TLB-miss-heavy pattern: random over 128 MiB (or the size given), 4 KiB apart, a fifth writes. */
function missHeavy(workingSetBytes = 128 * MiB): AccessPattern {
  return { kind: "random", workingSetBytes, strideBytes: 4096, writeFraction: 0.2 };
}

const slat4k: PagingConfig = {
  label: "slat-4k",
  mode: "slat",
  guestPageSize: "4K",
  hostBacking: "4K",
  unsync: false,
};
const slat2m: PagingConfig = { ...slat4k, label: "slat-2m", hostBacking: "2M" };
const shadow: PagingConfig = { ...slat4k, label: "shadow", mode: "shadow", unsync: true };
const native: PagingConfig = { ...slat4k, label: "native", mode: "native" };
const agile: PagingConfig = {
  ...slat4k,
  label: "agile",
  mode: "agile",
  agileNestedFaultsToGuest: true,
};
const noPwc = { 2: null, 3: null, 4: null, 5: null };

/**
 * One comparison as the studies document theirs: a 16 GiB guest, 4 levels in
 * each dimension, the working set prefaulted, on this thread, with the
 * preset's caches (unless others are given) and cost model.
 */
function study(
  preset: CpuPreset,
  activity: OsActivity,
  extra: { caches?: TranslationCaches; configs?: PagingConfig[]; pattern?: AccessPattern } = {},
): Promise<CompareResult> {
  return comparePaging({
    source: { kind: "synthetic", pattern: extra.pattern ?? missHeavy(), accesses: ACCESSES },
    cpu: preset.name,
    caches: extra.caches ?? preset.caches,
    cost: preset.cost,
    ...(extra.configs ? { configs: extra.configs } : {}),
    guestLevels: 4,
    hostLevels: 4,
    guestBytes: 16 * GiB,
    activity,
    seed: SEED,
    prefault: true,
    threads: 0,
  });
}

function rowOf(result: CompareResult, label: string): CompareRow {
  const row = result.rows.find((r) => r.label === label);
  if (!row) throw new Error(`no ${label} row`);
  return row;
}

/** Run time: translation cycles, a 200-cycle DRAM access per access, and the guest's own fault handling. */
function runTime(result: CompareResult, label: string): number {
  const row = rowOf(result, label);
  return row.cycles.total + row.accesses * 200 + row.cycles.guestFaults;
}

const percent = (x: number) => `${(x * 100).toFixed(1)} %`;

const dataCostText = "each access's own data costs 200 cycles (a DRAM access, assumed)";
const walkCostText = (p: CpuPreset) =>
  `walk reference ${p.cost.walkReferenceCycles.value} cycles (assumed, no data-cache model); ${dataCostText}`;
const exitCostText = (p: CpuPreset) =>
  `VM exit ${p.cost.vmExitCycles.value} cycles, PTE-write emulation ${p.cost.emulationCycles.value}, hidden fault ${p.cost.hiddenFaultCycles.value}, resync ${p.cost.resyncCycles.value}, guest page-fault handler ${p.cost.guestFaultCycles.value} (assumed); ${dataCostText}`;

describe("the workloads the studies stand on", () => {
  it("the VMware MMU-intensive mix: 4 processes, 2,000 switches, 20,000 PTE updates, 100 fork+exec and 5,000 munmaps per second, the run standing for 50 ms", () => {
    // 300,000 accesses in 50 ms: 6e6 per second.
    expect(mmuIntensive(300_000)).toStrictEqual({
      guestSeconds: 0.05,
      activity: {
        processes: 4,
        contextSwitchesPerSecond: 2000,
        pageTableUpdatesPerSecond: 20_000,
        forkExecPerSecond: 100,
        munmapPerSecond: 5000,
        accessesPerSecond: 6_000_000,
      },
    });
    // 2,000 accesses in 50 ms: 40,000 per second.
    const small = mmuIntensive(2000);
    expect(small.guestSeconds).toBe(0.05);
    expect(small.activity.accessesPerSecond).toBeCloseTo(40_000, 9);
    expect(small.activity.processes).toBe(4);
    expect(small.activity.munmapPerSecond).toBe(5000);
    expect(small.activity.churnBytes).toBeUndefined();
  });

  it("the Agile Paging churn: a quiet guest with 5,000 munmaps per second confined to a 16 MiB arena, the run standing for 50 ms", () => {
    expect(agileChurn(300_000)).toStrictEqual({
      guestSeconds: 0.05,
      arenaBytes: 16_777_216,
      activity: {
        processes: 1,
        contextSwitchesPerSecond: 0,
        pageTableUpdatesPerSecond: 0,
        forkExecPerSecond: 0,
        munmapPerSecond: 5000,
        churnBytes: 16_777_216,
        accessesPerSecond: 6_000_000,
      },
    });
    const small = agileChurn(2000);
    expect(small.activity.accessesPerSecond).toBeCloseTo(40_000, 9);
    expect(small.guestSeconds).toBe(0.05);
    expect(small.arenaBytes).toBe(16 * 1024 * 1024);
    expect(small.activity.churnBytes).toBe(small.arenaBytes);
    // The rest is the quiet guest's.
    expect(small.activity.processes).toBe(QUIET.processes);
    expect(small.activity.contextSwitchesPerSecond).toBe(QUIET.contextSwitchesPerSecond);
    expect(small.activity.forkExecPerSecond).toBe(QUIET.forkExecPerSecond);
  });

  it("the sweep's churn rates run from static tables to a million munmaps per second; a data access costs 200 cycles", () => {
    expect(CHURN_RATES).toEqual([0, 30_000, 100_000, 300_000, 1_000_000]);
    expect(DATA_ACCESS_CYCLES).toBe(200);
  });
});

describe("the shadow/SLAT crossover sweep", () => {
  it("measures every configuration at every churn rate, in order, on the miss-heavy workload, and finds the crossover at the first rate where SLAT beats shadow", async () => {
    const preset = cpuPreset("skylake-sp");
    // 500,000 munmaps/s: shadow pays more than native but still leads SLAT;
    // from 5,000,000 on SLAT leads (two such rates: the first is the crossover).
    const rates = [500_000, 5_000_000, 20_000_000];
    const { points, crossover } = await crossoverSweep(
      { accesses: ACCESSES, threads: 0, seed: SEED },
      rates,
    );
    const expected: {
      churnPerSecond: number;
      config: string;
      cyclesPerAccess: number;
      exits: number;
    }[] = [];
    const slatAhead: number[] = [];
    for (const rate of rates) {
      const result = await study(preset, { ...QUIET, munmapPerSecond: rate });
      expect(result.rows.map((r) => r.label)).toEqual([
        "native",
        "shadow",
        "slat-4k",
        "slat-2m",
        "slat-large",
      ]);
      for (const row of result.rows) {
        expected.push({
          churnPerSecond: rate,
          config: row.label,
          cyclesPerAccess: row.cycles.perAccess,
          exits: row.totalExits,
        });
      }
      if (rowOf(result, "slat-4k").cycles.total < rowOf(result, "shadow").cycles.total) {
        slatAhead.push(rate);
      }
      if (rate === 500_000) {
        // Churn costs shadow paging, not native: a lookup by label matters.
        expect(rowOf(result, "native").cycles.total).toBeLessThan(
          rowOf(result, "shadow").cycles.total,
        );
        expect(rowOf(result, "shadow").totalExits).toBeGreaterThan(0);
      }
    }
    expect(points).toEqual(expected);
    expect(points).toHaveLength(15);
    expect(slatAhead).toEqual([5_000_000, 20_000_000]);
    expect(crossover).toBe(slatAhead[0]);
  });

  it("with static tables shadow paging keeps its lead (no crossover), measured on the CPU preset asked for", async () => {
    const preset = cpuPreset("nehalem");
    const { points, crossover } = await crossoverSweep(
      { accesses: ACCESSES, threads: 0, seed: SEED, cpu: "nehalem" },
      [0],
    );
    const result = await study(preset, { ...QUIET, munmapPerSecond: 0 });
    expect(points).toEqual(
      result.rows.map((row) => ({
        churnPerSecond: 0,
        config: row.label,
        cyclesPerAccess: row.cycles.perAccess,
        exits: row.totalExits,
      })),
    );
    // Static tables: shadow walks like native, SLAT walks two dimensions.
    expect(rowOf(result, "shadow").cycles.total).toBeLessThan(
      rowOf(result, "slat-4k").cycles.total,
    );
    expect(crossover).toBeNull();
  });
});

describe("the published results beside hvlab's measurements", () => {
  it("reproduces Bhargava's three gains, VMware's two comparisons and agile paging from comparePaging runs of the documented workloads, each with its range, verdict and assumptions", async () => {
    const preset = cpuPreset("skylake-sp");
    const results = await publishedResults({ accesses: ACCESSES, threads: 0, seed: SEED });

    // Bhargava et al.: guest-dimension page-walk cache only, then both dimensions, then a nested TLB, then 2 MiB EPT leaves.
    const base = await study(preset, QUIET, {
      caches: { ...preset.caches, pwcHost: noPwc, nestedTlb: null },
      configs: [slat4k],
    });
    const pwc2d = await study(preset, QUIET, {
      caches: { ...preset.caches, nestedTlb: null },
      configs: [slat4k],
    });
    // All caches on, static tables: the nested-TLB and large-page runs, and agile paging's static phase.
    const quiet = await study(preset, QUIET, { configs: [native, shadow, slat4k, slat2m, agile] });
    const gainPwc = 1 - runTime(pwc2d, "slat-4k") / runTime(base, "slat-4k");
    const gainNtlb = 1 - runTime(quiet, "slat-4k") / runTime(pwc2d, "slat-4k");
    const gainLarge = 1 - runTime(quiet, "slat-2m") / runTime(quiet, "slat-4k");

    // VMware: the MMU-intensive mix over 32 MiB, 50 ms of guest time.
    const mix: OsActivity = {
      processes: 4,
      contextSwitchesPerSecond: 2000,
      pageTableUpdatesPerSecond: 20_000,
      forkExecPerSecond: 100,
      munmapPerSecond: 5000,
      accessesPerSecond: ACCESSES / 0.05,
    };
    const mmuHeavy = await study(preset, mix, {
      pattern: missHeavy(32 * MiB),
      configs: [shadow, slat4k],
    });
    const shadowMore = runTime(mmuHeavy, "shadow") / runTime(mmuHeavy, "slat-4k") - 1;
    const slatRpw = rowOf(quiet, "slat-4k").referencesPerWalk;
    const nativeRpw = rowOf(quiet, "native").referencesPerWalk;

    // Agile paging: the static phase above, and churn in a 16 MiB arena at 5,000 munmaps/s.
    const churn = await study(
      preset,
      {
        ...QUIET,
        munmapPerSecond: 5000,
        churnBytes: 16 * MiB,
        accessesPerSecond: ACCESSES / 0.05,
      },
      { configs: [native, shadow, slat4k, agile] },
    );
    const both = (label: string) => runTime(quiet, label) + runTime(churn, label);
    const agileVsNative = both("agile") / both("native") - 1;
    const agileGain = 1 - both("agile") / Math.min(both("shadow"), both("slat-4k"));
    const agileRow = rowOf(churn, "agile");
    const mixShadow = rowOf(mmuHeavy, "shadow");

    expect(results.map((r) => r.source)).toEqual([
      "Bhargava et al., ASPLOS 2008",
      "Bhargava et al., ASPLOS 2008",
      "Bhargava et al., ASPLOS 2008",
      "VMware, Intel EPT (2009)",
      "VMware, Intel EPT (2009)",
      "Gandhi et al., Agile Paging, ISCA 2016",
    ]);
    expect(results.map((r) => r.claim)).toEqual([
      "a page-walk cache extended to the nested dimension improves guests",
      "a nested TLB adds a further gain",
      "large host pages add a further gain",
      "EPT is faster than shadow paging on MMU-intensive workloads",
      "TLB-miss latency is higher under EPT",
      "agile paging (shadow where tables are static, nested where they change) runs within 4 % of native",
    ]);
    expect(results.map((r) => r.published)).toEqual([
      "15-38 %",
      "3-7 %",
      "3-22 %",
      "up to 48 % (600 % on MMU microbenchmarks)",
      "higher (up to 24 references per walk)",
      "within 4 % of native (> 12 % better than the best single mode)",
    ]);
    expect(results.map((r) => r.range)).toEqual([
      [0.15, 0.38],
      [0.03, 0.07],
      [0.03, 0.22],
      [0, 0.48],
      null,
      [0, 0.04],
    ]);

    const expectedValues = [
      gainPwc,
      gainNtlb,
      gainLarge,
      shadowMore,
      slatRpw - nativeRpw,
      agileVsNative,
    ];
    expect(results).toHaveLength(6);
    results.forEach((r, i) => {
      const value = expectedValues[i] ?? Number.NaN;
      expect(r.value, r.claim).toBeCloseTo(value, 9);
      expect(r.verdict, r.claim).toBe(rangeVerdict(r.value, r.range));
      expect(r.verdict, r.claim).toBe(rangeVerdict(value, r.range));
    });
    // Each cache adds a gain; SLAT walks more references than native.
    expect(gainPwc).toBeGreaterThan(0);
    expect(gainNtlb).toBeGreaterThan(0);
    expect(gainLarge).toBeGreaterThan(0);
    expect(slatRpw).toBeGreaterThan(nativeRpw);

    const [pwc, ntlb, large, vmware, latency, agilePaging] = results;
    expect(pwc?.measured).toBe(`${percent(gainPwc)} less run time`);
    expect(ntlb?.measured).toBe(`${percent(gainNtlb)} less run time`);
    expect(large?.measured).toBe(`${percent(gainLarge)} less run time`);
    expect(vmware?.measured).toBe(`shadow spends ${percent(shadowMore)} more run time than SLAT`);
    expect(latency?.measured).toBe(
      `${slatRpw.toFixed(2)} references per walk under SLAT vs ${nativeRpw.toFixed(2)} native`,
    );
    expect(agilePaging?.measured).toBe(
      `${percent(agileVsNative)} above native; ${percent(agileGain)} better than the best single mode`,
    );

    // Assumptions name the preset's cost figures and the 200-cycle data access.
    const walkCost = walkCostText(preset);
    expect(walkCost).toContain("walk reference 25 cycles");
    const exitCost = exitCostText(preset);
    expect(exitCost).toContain(
      "VM exit 1200 cycles, PTE-write emulation 2000, hidden fault 1500, resync 4000, guest page-fault handler 2000",
    );
    expect(pwc?.assumption).toBe(
      `${walkCost}; every access misses the TLB reach (random over 128 MiB)`,
    );
    expect(ntlb?.assumption).toBe(
      `nested TLB 64 entries at the EPT leaf's size (assumed); ${walkCost}`,
    );
    expect(large?.assumption).toBe(walkCost);
    // 2,000 accesses standing for 50 ms: 4.0e+4 accesses per second.
    expect(vmware?.assumption).toBe(
      `${exitCost}; workload mix: the run stands for 50 ms of guest time (4.0e+4 accesses/s, assumed)`,
    );
    expect(latency?.assumption).toBe(
      "page-walk cache and nested TLB sizes of the preset (assumed)",
    );
    expect(agilePaging?.assumption).toContain(
      `${exitCost}; churn confined to a 16 MiB arena of the working set at 5,000 munmaps/s, the run standing for 50 ms of guest time (4.0e+4 accesses/s, assumed;`,
    );
    for (const r of results) expect(r.assumption).toMatch(/assumed/);

    // Notes: what was compared, and what happened in the runs.
    expect(pwc?.note).toBe(
      "SLAT 4K/4K, random over 128 MiB; guest-dimension PWC only vs both dimensions",
    );
    expect(ntlb?.note).toBe("2D page-walk caches with and without the nested TLB");
    expect(large?.note).toBe("2 MiB EPT leaves against 4 KiB, all caches on");
    expect(vmware?.note).toBe(
      `4 processes, 2,000 switches/s, 100 fork+exec/s, 20,000 PTE updates/s, 5,000 munmaps/s; ${mixShadow.contextSwitches} context switches, ${mixShadow.forks} forks and ${mixShadow.copyOnWrite} copy-on-write faults in the run`,
    );
    expect(mixShadow.contextSwitches).toBeGreaterThan(0);
    expect(latency?.note).toBe("static tables, random over 128 MiB, page-walk caches on");
    expect(agilePaging?.note).toBe(
      `simulated over a static phase and a churning phase (5,000 munmaps/s in a 16 MiB arena); ${agileRow.agileToNested} tables switched to nested in the churn, ${agileRow.agileToShadow} back; ${agileRow.exits.invlpg} INVLPG exits`,
    );
    expect(agileRow.agileToNested).toBeGreaterThan(0);
  });

  it("names the cost figures of the CPU preset asked for, and a nested TLB that splinters large leaves to 4 KiB", async () => {
    const preset = cpuPreset("nehalem");
    const results = await publishedResults({
      accesses: ACCESSES,
      threads: 0,
      seed: SEED,
      cpu: "nehalem",
    });
    const walkCost = walkCostText(preset);
    const exitCost = exitCostText(preset);
    expect(exitCost).toContain("VM exit 1400 cycles");
    expect(results[0]?.assumption).toBe(
      `${walkCost}; every access misses the TLB reach (random over 128 MiB)`,
    );
    expect(results[1]?.assumption).toBe(`nested TLB 32 entries at 4 KiB (assumed); ${walkCost}`);
    expect(results[3]?.assumption).toBe(
      `${exitCost}; workload mix: the run stands for 50 ms of guest time (4.0e+4 accesses/s, assumed)`,
    );
    expect(results[5]?.assumption).toContain(`${exitCost}; churn confined to a 16 MiB arena`);
  });
});
