import type { RegionDescriptor } from "../memory/region.js";
import type { EncodeCounts } from "../wasm/page.js";
import type { MigrationOptions } from "./options.js";
import type { MigrationSummary } from "./stats.js";

/** A multifd channel: encode a slice of a round's page list into the channel's packet. */
export interface EncodeChannelTask {
  readonly type: "migration.encode-channel";
  readonly ram: RegionDescriptor;
  readonly pageShift: number;
  readonly list: RegionDescriptor;
  readonly listStart: number;
  readonly count: number;
  readonly packet: RegionDescriptor;
  readonly stats: RegionDescriptor;
  readonly scratch: RegionDescriptor;
  readonly zeroPages: boolean;
  /** The source's page hash table: each encoded page's XXH64 goes to its slot. */
  readonly hashes?: RegionDescriptor;
}

/** Verification: XXH64 of pages [0, count) of guest RAM into a table. */
export interface HashPagesTask {
  readonly type: "migration.hash-pages";
  readonly ram: RegionDescriptor;
  readonly pageShift: number;
  readonly count: number;
  readonly out: RegionDescriptor;
  readonly scratch: RegionDescriptor;
}

/** What a channel encoded: pages consumed from its slice and the packet's counts. */
export interface EncodeChannelResult {
  readonly consumed: number;
  readonly counts: EncodeCounts;
}

/** One point of a sweep: a whole migration run on a worker, in its own memory; only its summary comes back. */
export interface SweepPointTask {
  readonly type: "migration.sweep-point";
  /** Options without callbacks (they cannot cross threads). */
  readonly options: Omit<MigrationOptions, "onRound" | "beforeVerify">;
}

/** The migration domain's task types and their results. */
export interface MigrationTaskResults {
  "migration.encode-channel": EncodeChannelResult;
  "migration.sweep-point": { readonly summary: MigrationSummary };
  "migration.hash-pages": undefined;
}
