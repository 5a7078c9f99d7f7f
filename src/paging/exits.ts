/** Why the guest left for the hypervisor (VM exit reasons of the paging modes). */
export const EXIT_REASONS = [
  "cr3-write",
  "invlpg",
  "page-table-write",
  "unsync-write",
  "hidden-page-fault",
  "ad-emulation",
  "guest-page-fault",
  "ept-violation",
  "dirty-log",
] as const;
/** A VM exit reason. */
export type ExitReason = (typeof EXIT_REASONS)[number];

/** Exits counted by reason, and the hypervisor's work beyond the exits. */
export interface ExitCounters {
  readonly exits: Record<ExitReason, number>;
  /** Guest page-table writes emulated. */
  emulatedWrites: number;
  /** Unsync shadow pages resynchronised. */
  resyncs: number;
  /** Shadow pages dropped for write flooding. */
  unshadowed: number;
  /** Shadow pages built. */
  shadowPages: number;
  /** Agile paging: guest tables switched from shadow to nested mode, and back. */
  agileToNested: number;
  agileToShadow: number;
  /** Pages logged dirty (dirty logging on). */
  dirtyLogged: number;
  /** Of those, page-table frames: written by the guest kernel or by the walker's A/D updates. */
  dirtyLoggedTables: number;
}

/** Zeroed exit counters. */
export function emptyExitCounters(): ExitCounters {
  return {
    exits: Object.fromEntries(EXIT_REASONS.map((r) => [r, 0])) as Record<ExitReason, number>,
    emulatedWrites: 0,
    resyncs: 0,
    unshadowed: 0,
    shadowPages: 0,
    agileToNested: 0,
    agileToShadow: 0,
    dirtyLogged: 0,
    dirtyLoggedTables: 0,
  };
}
