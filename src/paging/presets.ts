import { PagingError } from "./errors.js";

/** A set-associative structure: `entries` in sets of `ways` (LRU within a set). */
export interface CacheGeometry {
  readonly entries: number;
  readonly ways: number;
}

/** The translation caches of one CPU. Absent (null) structures hold nothing. */
export interface TranslationCaches {
  /** First-level data TLBs, split by page size. */
  readonly l1: {
    readonly "4K": CacheGeometry;
    readonly "2M": CacheGeometry;
    /** null: no 1 GiB entries; 1 GiB pages are cached as 2 MiB fragments. */
    readonly "1G": CacheGeometry | null;
  };
  /**
   * First-level instruction TLBs (instruction fetches look them up instead of
   * the DTLBs; both back onto the second level). No 1 GiB entries: a 1 GiB
   * page is cached as 2 MiB fragments.
   */
  readonly l1i: {
    readonly "4K": CacheGeometry;
    readonly "2M": CacheGeometry;
  };
  /** The unified second-level TLB (4 KiB, and 2 MiB when `l2Holds2M`). */
  readonly l2: CacheGeometry;
  readonly l2Holds2M: boolean;
  /** A second-level TLB for 1 GiB pages (Ice Lake's shared 4K/1G STLB is modelled this way). */
  readonly l2OneGig: CacheGeometry | null;
  /** Paging-structure caches of the guest dimension, by the level of the entry cached (2 PDE .. 5 PML5E). */
  readonly pwcGuest: Readonly<Record<2 | 3 | 4 | 5, CacheGeometry | null>>;
  /** The same for the host (EPT) dimension. */
  readonly pwcHost: Readonly<Record<2 | 3 | 4 | 5, CacheGeometry | null>>;
  /** The nested TLB: guest-physical to host-physical. */
  readonly nestedTlb: CacheGeometry | null;
  /**
   * Whether the nested TLB caches a translation at the EPT leaf's size (one
   * entry covers a 2 MiB or 1 GiB host page), or splinters every leaf into
   * 4 KiB entries. Not published by Intel: assumed per preset.
   */
  readonly nestedTlbAtLeafSize: boolean;
  /** Address-space tags (PCID for guest processes): a CR3 load flushes nothing. Without them it flushes. */
  readonly tagged: boolean;
}

/** A cost-model parameter: its value and whether it is an assumption (docs/references.md, SLAT and shadow paging). */
export interface CostParameter {
  readonly value: number;
  readonly assumed: boolean;
  /** Where the value comes from, or why it was chosen. */
  readonly source: string;
}

/** Cycles charged for each event of a translation. */
export interface CostModel {
  /** Cycles per memory reference of a page walk (a fixed latency, used unless `referenceCyclesByLevel` is set). */
  readonly walkReferenceCycles: CostParameter;
  /**
   * Per cache level instead: cycles of a reference to an entry of each table
   * level (index 0 = PT .. 4 = PML5), the same in both dimensions. Upper
   * levels are few and stay in the L1 data cache; leaves miss to L2 or L3.
   */
  readonly referenceCyclesByLevel?: {
    readonly value: readonly number[];
    readonly assumed: boolean;
    readonly source: string;
  };
  /** Cycles of a second-level TLB hit. */
  readonly l2HitCycles: CostParameter;
  /** A VM exit round trip (exit + entry + dispatch). */
  readonly vmExitCycles: CostParameter;
  /** Emulating one guest write to a write-protected page table (beyond the exit). */
  readonly emulationCycles: CostParameter;
  /** Handling a hidden page fault: a software walk of the guest tables and a fill (beyond the exit). */
  readonly hiddenFaultCycles: CostParameter;
  /** Resynchronising one unsync shadow page (512 entries compared). */
  readonly resyncCycles: CostParameter;
  /** The guest kernel's own page-fault handler (the same in every mode). */
  readonly guestFaultCycles: CostParameter;
  /** The host's handling of an EPT violation (beyond the exit): finding and mapping the page. */
  readonly eptViolationCycles: CostParameter;
}

/** A CPU preset: translation caches and cost model. */
export interface CpuPreset {
  readonly name: string;
  readonly description: string;
  readonly caches: TranslationCaches;
  readonly cost: CostModel;
}

const g = (entries: number, ways: number): CacheGeometry => ({ entries, ways });
const assumed = (value: number, source: string): CostParameter => ({
  value,
  assumed: true,
  source,
});
const published = (value: number, source: string): CostParameter => ({
  value,
  assumed: false,
  source,
});

function costModel(exitCycles: CostParameter, l2Hit: CostParameter): CostModel {
  return {
    walkReferenceCycles: assumed(
      25,
      "(assumed) mean of L1/L2/L3 hits for page-table lines; no data-cache model",
    ),
    l2HitCycles: l2Hit,
    vmExitCycles: exitCycles,
    emulationCycles: assumed(2000, "(assumed) x86 instruction emulation of one PTE write in KVM"),
    hiddenFaultCycles: assumed(1500, "(assumed) KVM software walk of the guest tables and fill"),
    resyncCycles: assumed(4000, "(assumed) KVM sync_page over 512 entries"),
    guestFaultCycles: assumed(2000, "(assumed) guest kernel page-fault handler"),
    eptViolationCycles: assumed(2000, "(assumed) host lookup of the memslot and EPT fill"),
  };
}

/*
 * TLB geometries: Intel's optimization manual (248966) tables for Nehalem,
 * Skylake-SP and Sunny Cove (Ice Lake-SP). Page-walk-cache and nested-TLB
 * sizes are not published by Intel; the figures below are assumptions in the
 * range Bhargava et al. (ASPLOS 2008) evaluate.
 */
const NEHALEM: CpuPreset = {
  name: "nehalem",
  description:
    "Intel Nehalem (2009), the first EPT and VPID parts: 64-entry 4K and 32-entry 2M L1 DTLBs, 128-entry 4K and 7-entry 2M L1 ITLBs, 512-entry 4K STLB, no 1 GiB TLB, no PCID; nested TLB splinters large EPT leaves to 4 KiB (assumed)",
  caches: {
    l1: { "4K": g(64, 4), "2M": g(32, 4), "1G": null },
    // 7 large-page ITLB entries per thread, fully associative.
    l1i: { "4K": g(128, 4), "2M": g(7, 7) },
    l2: g(512, 4),
    l2Holds2M: false,
    l2OneGig: null,
    pwcGuest: { 2: g(32, 4), 3: g(4, 4), 4: g(2, 2), 5: null },
    pwcHost: { 2: g(32, 4), 3: g(4, 4), 4: g(2, 2), 5: null },
    nestedTlb: g(32, 4),
    nestedTlbAtLeafSize: false,
    tagged: false,
  },
  cost: costModel(
    assumed(1400, "(assumed) VM exit round trip on a 2009 core"),
    published(7, "Intel 248966: STLB hit"),
  ),
};

const SKYLAKE_SP: CpuPreset = {
  name: "skylake-sp",
  description:
    "Intel Skylake-SP (2017): 64-entry 4K, 32-entry 2M, 4-entry 1G L1 DTLBs, 128-entry 4K and 8-entry 2M L1 ITLBs, 1,536-entry 12-way 4K/2M STLB, 16-entry 1G STLB, PCID; nested TLB at the EPT leaf's size (assumed)",
  caches: {
    l1: { "4K": g(64, 4), "2M": g(32, 4), "1G": g(4, 4) },
    // 8 large-page ITLB entries per thread, fully associative.
    l1i: { "4K": g(128, 8), "2M": g(8, 8) },
    l2: g(1536, 12),
    l2Holds2M: true,
    l2OneGig: g(16, 4),
    pwcGuest: { 2: g(32, 4), 3: g(4, 4), 4: g(2, 2), 5: null },
    pwcHost: { 2: g(32, 4), 3: g(4, 4), 4: g(2, 2), 5: null },
    nestedTlb: g(64, 4),
    nestedTlbAtLeafSize: true,
    tagged: true,
  },
  cost: costModel(
    assumed(1200, "(assumed) hvlab default; 1,000-2,500 cycles (docs/references.md)"),
    published(9, "Intel 248966: STLB hit"),
  ),
};

const ICE_LAKE_SP: CpuPreset = {
  name: "icelake-sp",
  description:
    "Intel Ice Lake-SP (2021): 64-entry 4K, 32-entry 2M, 8-entry 1G L1 DTLBs, 128-entry 4K and 16-entry 2M L1 ITLBs, 2,048-entry 16-way 4K/2M STLB, 1,024-entry 4K/1G STLB, PCID, 5-level paging; nested TLB at the EPT leaf's size (assumed)",
  caches: {
    l1: { "4K": g(64, 4), "2M": g(32, 4), "1G": g(8, 8) },
    // 16 large-page ITLB entries, fully associative.
    l1i: { "4K": g(128, 8), "2M": g(16, 16) },
    l2: g(2048, 16),
    l2Holds2M: true,
    l2OneGig: g(1024, 8),
    pwcGuest: { 2: g(32, 4), 3: g(8, 4), 4: g(4, 4), 5: g(2, 2) },
    pwcHost: { 2: g(32, 4), 3: g(8, 4), 4: g(4, 4), 5: g(2, 2) },
    nestedTlb: g(128, 4),
    nestedTlbAtLeafSize: true,
    tagged: true,
  },
  cost: costModel(
    assumed(1100, "(assumed) VM exit round trip on a 2021 core"),
    published(9, "Intel 248966: STLB hit"),
  ),
};

/** The CPU presets, by name. */
export const CPU_PRESETS: Readonly<Record<string, CpuPreset>> = {
  nehalem: NEHALEM,
  "skylake-sp": SKYLAKE_SP,
  "icelake-sp": ICE_LAKE_SP,
};

/** The preset with this name. @throws PagingError naming the presets there are. */
export function cpuPreset(name: string): CpuPreset {
  const preset = CPU_PRESETS[name];
  if (!preset) {
    throw new PagingError(
      `unknown CPU preset '${name}' (one of ${Object.keys(CPU_PRESETS).join(", ")})`,
    );
  }
  return preset;
}

/**
 * Per-level reference latencies (assumed): PT entries from L3 (40 cycles),
 * PD entries from L2 (14), upper levels from L1 (5): the "per cache level"
 * alternative to a fixed latency.
 */
export const CACHE_LEVEL_REFERENCE_CYCLES = {
  value: [40, 14, 5, 5, 5],
  assumed: true,
  source: "(assumed) PT from L3, PD from L2, PDPT and above from L1",
} as const;

/** The same caches with nothing cached: every translation is a full walk. */
export function withoutCaches(caches: TranslationCaches): TranslationCaches {
  const none = { 2: null, 3: null, 4: null, 5: null };
  return {
    l1: { "4K": g(0, 1), "2M": g(0, 1), "1G": null },
    l1i: { "4K": g(0, 1), "2M": g(0, 1) },
    l2: g(0, 1),
    l2Holds2M: caches.l2Holds2M,
    l2OneGig: null,
    pwcGuest: none,
    pwcHost: none,
    nestedTlb: null,
    nestedTlbAtLeafSize: caches.nestedTlbAtLeafSize,
    tagged: caches.tagged,
  };
}

/**
 * Checks one geometry. @throws PagingError for impossible geometry: entries
 * not a whole number of sets, ways < 1, or sizes past 1 Mi entries.
 */
export function checkGeometry(what: string, geometry: CacheGeometry | null): void {
  if (geometry === null || geometry.entries === 0) return;
  const { entries, ways } = geometry;
  if (!Number.isSafeInteger(entries) || entries < 0 || entries > 2 ** 20) {
    throw new PagingError(`${what}: entries must be 0 to 1,048,576, not ${entries}`);
  }
  if (!Number.isSafeInteger(ways) || ways < 1 || ways > 64) {
    throw new PagingError(`${what}: ways must be 1 to 64, not ${ways}`);
  }
  if (entries % ways !== 0) {
    throw new PagingError(
      `${what}: ${entries} entries cannot be split into sets of ${ways} ways (impossible geometry)`,
    );
  }
}

/** Parses a geometry written `entries/ways` (e.g. `1536/12`). */
export function parseGeometry(what: string, text: string): CacheGeometry {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  if (!m) throw new PagingError(`${what}: write a geometry as entries/ways, not '${text}'`);
  const geometry = g(Number(m[1]), Number(m[2]));
  checkGeometry(what, geometry);
  return geometry;
}
