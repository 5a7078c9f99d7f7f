import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MmuOracle } from "../src/oracle/paging.js";
import { ACCESS } from "../src/paging/mmu.js";
import { cpuPreset } from "../src/paging/presets.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine, writeTrace } from "./support/paging.js";

const small = {
  ...cpuPreset("skylake-sp").caches,
  // Small caches so that evictions and LRU order matter in short traces.
  l1: {
    "4K": { entries: 8, ways: 2 },
    "2M": { entries: 4, ways: 2 },
    "1G": { entries: 2, ways: 2 },
  },
  l1i: { "4K": { entries: 4, ways: 2 }, "2M": { entries: 2, ways: 2 } },
  l2: { entries: 24, ways: 3 },
  pwcGuest: {
    2: { entries: 4, ways: 2 },
    3: { entries: 2, ways: 1 },
    4: { entries: 1, ways: 1 },
    5: null,
  },
  pwcHost: {
    2: { entries: 4, ways: 4 },
    3: { entries: 2, ways: 2 },
    4: { entries: 1, ways: 1 },
    5: null,
  },
  nestedTlb: { entries: 6, ways: 3 },
};

type Kind = "read" | "write" | "fetch";

interface Case {
  readonly mode: "native" | "shadow" | "slat" | "agile";
  readonly guestPageSize: "4K" | "2M";
  readonly hostBacking: "4K" | "2M" | "1G";
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  readonly accesses: readonly { readonly page: number; readonly kind: Kind }[];
  readonly skip: number;
  readonly countByLevel: boolean;
  readonly eptAccessedDirty: boolean;
  readonly nestedTlbAtLeafSize: boolean;
}

/**
 * Twin machines prepared alike; the kernel runs the trace on one, the oracle
 * on the other, from cold caches: both must translate every record and agree
 * on every counter and the checksum.
 */
function kernelEqualsOracle(c: Case): void {
  const kinds = {
    read: ACCESS.user,
    write: ACCESS.user | ACCESS.write,
    fetch: ACCESS.user | ACCESS.execute,
  };
  const records = c.accesses.map((x) => ({ va: HEAP_BASE + x.page * 4096, kind: kinds[x.kind] }));
  const make = () => {
    // An executable area over the whole address space (as for a trace), mapped
    // by the guest first: every page of the run read, so that natively and under
    // SLAT a write may hit an entry filled by a read (a D assist).
    const m = testMachine({
      mode: c.mode,
      guestPageSize: c.guestPageSize,
      hostBacking: c.hostBacking,
      guestLevels: c.guestLevels,
      hostLevels: c.hostLevels,
      caches: { ...small, nestedTlbAtLeafSize: c.nestedTlbAtLeafSize },
      workingSetBytes: null,
      countByLevel: c.countByLevel,
      eptAccessedDirty: c.eptAccessedDirty,
    });
    for (const r of records) m.machine.touch(r.va, ACCESS.user);
    // Shadow paging maps a clean page read-only (its A/D emulation exits): written first.
    if (c.mode === "shadow" || c.mode === "agile") {
      for (const r of records) if (r.kind & ACCESS.write) m.machine.touch(r.va, r.kind);
    }
    // Agile: PTE writes move the leaf tables of the run's first pages to nested mode,
    // so walks start in the shadow tables and finish in the guest's.
    if (c.mode === "agile") {
      const os = m.machine.os;
      for (const r of records.slice(0, 3)) os.trackWrites(os.current, r.va);
      for (const r of records) m.machine.touch(r.va, r.kind);
    }
    return m;
  };
  const a = make();
  const b = make();
  const ta = writeTrace(a.layout, records);
  const tb = writeTrace(b.layout, records);
  // Both twins start with the same tables; the oracle gets cold caches like the kernel's after a flush.
  a.machine.mmu.flushAll();
  a.machine.mmu.flushNested();
  a.machine.mmu.resetCounters();
  const oracle = new MmuOracle(b.machine.mmu);
  // Start at any record (odd counts, ranges that begin mid-trace).
  const from = c.skip % records.length;
  const stop = a.machine.mmu.run(ta.region, from, records.length);
  const o = oracle.run(tb.words.subarray(2 * from), records.length - from);
  expect(stop).toBe(records.length);
  expect(o.fault).toBeNull();
  expect(o.done).toBe(records.length - from);
  const k = a.machine.mmu.counters();
  expect(k).toEqual(oracle.counters);
  expect(a.machine.mmu.checksum).toBe(oracle.checksum);
}

describe("walk kernel against its TypeScript oracle", () => {
  it("counts and translates the same on random traces, in every mode and page size", () => {
    fc.assert(
      fc.property(
        fc.record({
          mode: fc.constantFrom("native", "shadow", "slat", "agile" as const),
          guestPageSize: fc.constantFrom("4K", "2M" as const),
          hostBacking: fc.constantFrom("4K", "2M", "1G" as const),
          guestLevels: fc.constantFrom(4, 5 as const),
          hostLevels: fc.constantFrom(4, 5 as const),
          accesses: fc.array(
            fc.record({
              page: fc.nat(4095),
              kind: fc.constantFrom("read", "write", "fetch" as const),
            }),
            { minLength: 1, maxLength: 300 },
          ),
          skip: fc.nat(),
          countByLevel: fc.boolean(),
          eptAccessedDirty: fc.boolean(),
          nestedTlbAtLeafSize: fc.boolean(),
        }),
        kernelEqualsOracle,
      ),
      { numRuns: 60 },
    );
  });

  it("counts and translates the same on traces that repeat records, as real traces do (the kernel repeats an L1 hit without a lookup)", () => {
    // Few pages, each access repeated 1-4 times, fetches and data interleaved:
    // most records are their class's previous record again, and the small
    // TLBs evict, so a repeated hit that did not refresh its LRU stamp (or
    // that outlived an eviction) changes later counts.
    const access = fc.record({
      // 16 pages: four to a set of the small L1 (4 sets), so runs evict each other.
      page: fc.nat(15).map((p) => p * 4 + (p % 3 === 0 ? 1 : 0)),
      kind: fc.constantFrom("read", "write", "fetch" as const),
      times: fc.integer({ min: 1, max: 4 }),
    });
    fc.assert(
      fc.property(
        fc.record({
          mode: fc.constantFrom("native", "shadow", "slat", "agile" as const),
          guestPageSize: fc.constantFrom("4K", "2M" as const),
          hostBacking: fc.constantFrom("4K", "2M", "1G" as const),
          guestLevels: fc.constantFrom(4, 5 as const),
          hostLevels: fc.constantFrom(4, 5 as const),
          // Runs of one access, fetches and data mixed: a fetch between two
          // runs of a data page leaves that page its class's previous record.
          accesses: fc
            .array(access, { minLength: 1, maxLength: 200 })
            .map((runs) =>
              runs.flatMap((x) =>
                Array.from({ length: x.times }, () => ({ page: x.page, kind: x.kind })),
              ),
            ),
          skip: fc.nat(),
          countByLevel: fc.boolean(),
          eptAccessedDirty: fc.boolean(),
          nestedTlbAtLeafSize: fc.boolean(),
        }),
        kernelEqualsOracle,
      ),
      { numRuns: 60 },
    );
  });

  it("agile paging with 2 MiB guest pages over 4 KiB host pages: a write after INVLPG of its large page", () => {
    // Found by the property above: the guest write-protects the 2 MiB page that
    // holds pages 1024 and 1025 (tracking writes) and INVLPGs its first address;
    // the 4 KiB TLB entry cached for page 1025 (the smaller of the two page
    // sizes) must go too, or the write to it completes without the fault that
    // gives the page back its write permission.
    kernelEqualsOracle({
      mode: "agile",
      guestPageSize: "2M",
      hostBacking: "4K",
      guestLevels: 4,
      hostLevels: 4,
      accesses: [
        { page: 1024, kind: "read" },
        { page: 0, kind: "read" },
        { page: 1536, kind: "read" },
        { page: 1025, kind: "write" },
      ],
      skip: 0,
      countByLevel: false,
      eptAccessedDirty: false,
      nestedTlbAtLeafSize: false,
    });
  });
});
