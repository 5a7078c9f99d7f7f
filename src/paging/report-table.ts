import type { Table } from "../report/table.js";
import type { CompareResult } from "./compare.js";
import { EXIT_REASONS } from "./exits.js";

/** The comparison as a table: one row per configuration (terminal and CSV). */
export function compareTable(result: CompareResult): Table {
  const columns = [
    "config",
    "mode",
    "guest page",
    "host page",
    "accesses",
    "l1 dtlb hit rate",
    "l1 itlb hit rate",
    "l2 hit rate",
    "walks",
    "refs/walk",
    "pwc guest hits",
    "pwc host hits",
    "nested tlb hits",
    "d assists",
    "vm exits",
    ...EXIT_REASONS.map((r) => `exits ${r}`),
    "dirty-log exits on page tables",
    "guest page faults",
    "cycles walks",
    "cycles exits+hypervisor",
    "cycles total",
    "cycles/access",
    "vs native",
  ];
  const rows = result.rows.map((r) => [
    r.label,
    r.mode,
    r.guestPageSize,
    r.hostBacking ?? "",
    r.accesses,
    Number(r.l1HitRate.toFixed(4)),
    r.l1iHitRate === null ? null : Number(r.l1iHitRate.toFixed(4)),
    Number(r.l2HitRate.toFixed(4)),
    r.walks,
    Number(r.referencesPerWalk.toFixed(2)),
    r.pwcGuestHits,
    r.pwcHostHits,
    r.nestedTlbHits,
    r.dirtyAssists,
    r.totalExits,
    ...EXIT_REASONS.map((reason) => r.exits[reason]),
    r.dirtyLoggedTables,
    r.guestPageFaults,
    Math.round(r.cycles.walks + r.cycles.l2Hits),
    Math.round(r.cycles.exits + r.cycles.hypervisor),
    Math.round(r.cycles.total),
    Number(r.cycles.perAccess.toFixed(2)),
    r.ratioToNative === null ? null : Number(r.ratioToNative.toFixed(3)),
  ]);
  return { columns, rows };
}

/** The short table for the terminal. */
export function compareSummaryTable(result: CompareResult): Table {
  const exitText = (r: CompareResult["rows"][number]) =>
    EXIT_REASONS.filter((reason) => r.exits[reason] > 0)
      .map((reason) => `${reason} ${r.exits[reason].toLocaleString("en-US")}`)
      .join(", ");
  return {
    columns: [
      "config",
      "accesses",
      "L1 DTLB hit %",
      "L1 ITLB hit %",
      "L2 hit %",
      "walks",
      "refs/walk",
      "PWC g/h hits",
      "nTLB hits",
      "VM exits",
      "cycles/access",
      "vs native",
      "exits by reason",
    ],
    rows: result.rows.map((r) => [
      r.label,
      r.accesses,
      Number((r.l1HitRate * 100).toFixed(2)),
      r.l1iHitRate === null ? "-" : Number((r.l1iHitRate * 100).toFixed(2)),
      Number((r.l2HitRate * 100).toFixed(2)),
      r.walks,
      Number(r.referencesPerWalk.toFixed(2)),
      `${r.pwcGuestHits.toLocaleString("en-US")}/${r.pwcHostHits.toLocaleString("en-US")}`,
      r.nestedTlbHits,
      r.totalExits,
      Number(r.cycles.perAccess.toFixed(2)),
      r.ratioToNative === null ? null : Number(r.ratioToNative.toFixed(3)),
      exitText(r),
    ]),
  };
}
