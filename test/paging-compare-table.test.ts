import { describe, expect, it } from "vitest";
import type { CompareResult, CompareRow } from "../src/paging/compare.js";
import { EXIT_REASONS, type ExitReason } from "../src/paging/exits.js";
import { compareSummaryTable, compareTable } from "../src/paging/report-table.js";
import { QUIET } from "../src/paging/workload.js";
import type { Table } from "../src/report/table.js";

/** A row whose every figure is different, so that each can be found under its column. */
function row(label: string, overrides: Partial<CompareRow> = {}): CompareRow {
  const exits = Object.fromEntries(EXIT_REASONS.map((r, i) => [r, 1000 + i])) as Record<
    ExitReason,
    number
  >;
  return {
    label,
    mode: "slat",
    guestPageSize: "4K",
    hostBacking: "2M",
    accesses: 1_000_000,
    l1Hits: 900_000,
    l2Hits: 50_000,
    l1HitRate: 0.123456,
    l1iHits: 10,
    l1iHitRate: 0.654321,
    dirtyAssists: 17,
    l2HitRate: 0.876543,
    walks: 4242,
    references: 101_000,
    referencesPerWalk: 23.8096,
    guestReferences: 20_000,
    hostReferences: 81_000,
    pwcGuestHits: 1234,
    pwcHostHits: 5678,
    nestedTlbHits: 91,
    exits,
    totalExits: 12_345,
    emulatedWrites: 3,
    dirtyLogged: 29,
    dirtyLoggedTables: 31,
    resyncs: 0,
    unshadowed: 0,
    shadowPages: 0,
    guestPageFaults: 37,
    copyOnWrite: 0,
    forks: 0,
    agileToNested: 0,
    agileToShadow: 0,
    contextSwitches: 0,
    cycles: {
      walks: 100.4,
      l2Hits: 200.4,
      exits: 300.3,
      hypervisor: 400.3,
      total: 1001.4,
      perAccess: 1.23456,
      guestFaults: 5,
    },
    checksum: "0",
    ratioToNative: 1.23456,
    ...overrides,
  };
}

function result(rows: CompareRow[]): CompareResult {
  return {
    cpu: "skylake-sp",
    source: "synthetic",
    trace: null,
    guestLevels: 4,
    hostLevels: 4,
    guestBytes: 2 ** 32,
    activity: QUIET,
    costModel: [],
    rows,
  };
}

/** The row as a map from column to cell. */
function cells(table: Table, i: number) {
  const r = table.rows[i] ?? [];
  expect(r.length, "one cell per column").toBe(table.columns.length);
  return Object.fromEntries(table.columns.map((c, j) => [c, r[j]]));
}

describe("the comparison's full table (terminal and CSV)", () => {
  it("puts every figure under its own column, rates to 4 places and ratios to 3", () => {
    const table = compareTable(result([row("slat-2m")]));
    expect(new Set(table.columns).size).toBe(table.columns.length);
    const c = cells(table, 0);
    expect(c).toEqual({
      config: "slat-2m",
      mode: "slat",
      "guest page": "4K",
      "host page": "2M",
      accesses: 1_000_000,
      "l1 dtlb hit rate": 0.1235,
      "l1 itlb hit rate": 0.6543,
      "l2 hit rate": 0.8765,
      walks: 4242,
      "refs/walk": 23.81,
      "pwc guest hits": 1234,
      "pwc host hits": 5678,
      "nested tlb hits": 91,
      "d assists": 17,
      "vm exits": 12_345,
      ...Object.fromEntries(EXIT_REASONS.map((r, i) => [`exits ${r}`, 1000 + i])),
      "dirty-log exits on page tables": 31,
      "guest page faults": 37,
      // Walks and L2 hits: 100.4 + 200.4; exits and the hypervisor's work: 300.3 + 400.3.
      "cycles walks": 301,
      "cycles exits+hypervisor": 701,
      "cycles total": 1001,
      "cycles/access": 1.23,
      "vs native": 1.235,
    });
  });

  it("leaves the host page empty natively, and the ITLB rate and ratio empty when unknown", () => {
    const table = compareTable(
      result([row("native", { hostBacking: null, l1iHitRate: null, ratioToNative: null })]),
    );
    const c = cells(table, 0);
    expect([c["host page"], c["l1 itlb hit rate"], c["vs native"]]).toEqual(["", null, null]);
  });
});

describe("the comparison's summary for the terminal", () => {
  it("gives rates in percent, both PWC counts, and only the exit reasons that occurred", () => {
    const exits = Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])) as Record<ExitReason, number>;
    exits["ept-violation"] = 12_345;
    exits["dirty-log"] = 7;
    const table = compareSummaryTable(result([row("slat-4k", { exits })]));
    expect(cells(table, 0)).toEqual({
      config: "slat-4k",
      accesses: 1_000_000,
      "L1 DTLB hit %": 12.35,
      "L1 ITLB hit %": 65.43,
      "L2 hit %": 87.65,
      walks: 4242,
      "refs/walk": 23.81,
      "PWC g/h hits": "1,234/5,678",
      "nTLB hits": 91,
      "VM exits": 12_345,
      "cycles/access": 1.23,
      "vs native": 1.235,
      "exits by reason": "ept-violation 12,345, dirty-log 7",
    });
  });

  it("shows '-' for no instruction fetches, nothing for no exits, one row per configuration", () => {
    const exits = Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])) as Record<ExitReason, number>;
    const table = compareSummaryTable(
      result([row("native", { l1iHitRate: null, ratioToNative: null, exits }), row("shadow")]),
    );
    expect(table.rows.map((r) => r[0])).toEqual(["native", "shadow"]);
    const c = cells(table, 0);
    expect([c["L1 ITLB hit %"], c["vs native"], c["exits by reason"]]).toEqual(["-", null, ""]);
  });
});
