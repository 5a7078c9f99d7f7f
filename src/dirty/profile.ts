import { Guest, type GuestOptions } from "../guest/guest.js";
import { DirtyBitmap } from "../memory/dirty-bitmap.js";
import { MemoryLayout } from "../memory/layout.js";
import { KernelPool } from "../pool/pool.js";

/** Options of a dirty-rate profile (QEMU's calc-dirty-rate, period by period). */
export interface DirtyProfileOptions extends GuestOptions {
  /** Guest writes per second of virtual time, all vCPUs together. */
  readonly writesPerSecond: number;
  /** Length of one measuring period in virtual milliseconds. */
  readonly periodMs: number;
  /** Periods to run. */
  readonly periods: number;
  /** Pool workers for the vCPUs (0: run them on this thread). */
  readonly threads: number;
  /** Called after each period (progress). */
  readonly onPeriod?: (record: DirtyPeriodRecord, periods: number) => void;
}

/** What one period did, counted from the bitmap and rings. */
export interface DirtyPeriodRecord {
  readonly period: number;
  /** Virtual time at the end of the period, ms. */
  readonly virtualTimeMs: number;
  /** Guest writes executed in the period. */
  readonly writes: number;
  /** Distinct pages dirtied in the period (harvested from the bitmap). */
  readonly dirtyPages: number;
  /** dirtyPages per second of virtual time. */
  readonly dirtyPagesRate: number;
  /** Dirty bytes per second of virtual time. */
  readonly dirtyBytesRate: number;
  /** Distinct pages dirtied since the start. */
  readonly distinctPages: number;
  /** Ring entries drained into the bitmap in the period (ring tracking). */
  readonly ringEntries: number;
  /** Ring pushes that found the ring full and fell back to the bitmap, cumulative. */
  readonly ringOverflow: number;
  /** Wall time of the harvest, ns. */
  readonly harvestNs: number;
  /** Wall time of the period's writes, ns. */
  readonly writeNs: number;
}

/** A dirty-rate profile: the periods and a summary. */
export interface DirtyProfile {
  readonly periods: readonly DirtyPeriodRecord[];
  readonly summary: {
    readonly mode: "content" | "metadata";
    readonly guestBytes: number;
    readonly guestPages: number;
    readonly pageBytes: number;
    readonly totalWrites: number;
    readonly distinctPages: number;
    readonly meanDirtyPagesRate: number;
    readonly peakDirtyPagesRate: number;
    /**
     * For uniform writes: N (1 - exp(-w t / N)) distinct pages expected over
     * the whole run (the occupancy of N bins by w t balls; docs/references.md); null for other workloads.
     */
    readonly expectedDistinctPages: number | null;
  };
}

/** Thrown for profile options that cannot run. */
export class DirtyProfileError extends RangeError {
  override name = "DirtyProfileError";
}

/**
 * Runs a guest workload period by period of virtual time: each period
 * executes rate x period writes for real, then harvests the bitmap (draining
 * rings first), counts it and merges it into the distinct pages in one pass.
 */
export async function profileDirtyRate(options: DirtyProfileOptions): Promise<DirtyProfile> {
  if (!(options.writesPerSecond >= 0) || !Number.isFinite(options.writesPerSecond)) {
    throw new DirtyProfileError(`write rate must be >= 0, not ${options.writesPerSecond}`);
  }
  if (!(options.periodMs > 0) || !Number.isFinite(options.periodMs)) {
    throw new DirtyProfileError(`period must be > 0 ms, not ${options.periodMs}`);
  }
  if (!Number.isSafeInteger(options.periods) || options.periods < 1 || options.periods > 100_000) {
    throw new DirtyProfileError(`periods must be from 1 to 100000, not ${options.periods}`);
  }
  const writesPerPeriod = Math.round((options.writesPerSecond * options.periodMs) / 1000);
  if (writesPerPeriod > 2 ** 40) {
    throw new DirtyProfileError(`${writesPerPeriod} writes per period is too many to execute`);
  }
  const layout = new MemoryLayout();
  const guest = new Guest(layout, options);
  const snapshot = DirtyBitmap.allocate(layout, "dirty-snapshot", guest.pages, guest.pageShift);
  const distinct = DirtyBitmap.allocate(layout, "dirty-distinct", guest.pages, guest.pageShift);
  const pool =
    options.threads > 0
      ? new KernelPool(layout, { threads: options.threads, domains: ["guest"] })
      : undefined;
  const pageBytes = 2 ** guest.pageShift;
  const periods: DirtyPeriodRecord[] = [];
  let distinctPages = 0;
  try {
    for (let period = 1; period <= options.periods; period++) {
      const writeStart = process.hrtime.bigint();
      await guest.write(writesPerPeriod, pool);
      const harvestStart = process.hrtime.bigint();
      const ringEntries = guest.drainRings();
      // The period's writes are done (awaited): the bitmap is harvested as
      // with the vCPUs paused, with plain loads and stores, and merged into
      // the distinct set in the same pass.
      const counts = guest.dirty.harvestQuietMerge(guest.bitmap, snapshot, distinct);
      const harvestEnd = process.hrtime.bigint();
      const dirtyPages = counts.harvested;
      distinctPages = counts.distinct;
      const seconds = options.periodMs / 1000;
      const record: DirtyPeriodRecord = {
        period,
        virtualTimeMs: period * options.periodMs,
        writes: writesPerPeriod,
        dirtyPages,
        dirtyPagesRate: dirtyPages / seconds,
        dirtyBytesRate: (dirtyPages * pageBytes) / seconds,
        distinctPages,
        ringEntries,
        ringOverflow: guest.ringOverflow(),
        harvestNs: Number(harvestEnd - harvestStart),
        writeNs: Number(harvestStart - writeStart),
      };
      periods.push(record);
      options.onPeriod?.(record, options.periods);
    }
  } finally {
    await pool?.close();
  }
  const rates = periods.map((p) => p.dirtyPagesRate);
  const totalWrites = writesPerPeriod * options.periods;
  const n = guest.pages;
  return {
    periods,
    summary: {
      mode: options.content ? "content" : "metadata",
      guestBytes: guest.bytes,
      guestPages: n,
      pageBytes,
      totalWrites,
      distinctPages,
      meanDirtyPagesRate: rates.reduce((a, b) => a + b, 0) / rates.length,
      peakDirtyPagesRate: Math.max(...rates),
      expectedDistinctPages:
        guest.workload.kind === "uniform" ? n * (1 - Math.exp(-totalWrites / n)) : null,
    },
  };
}
