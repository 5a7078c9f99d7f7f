import type { DirtyBitmap } from "../memory/dirty-bitmap.js";
import type { MemoryLayout } from "../memory/layout.js";
import type { Region } from "../memory/region.js";
import type { KernelPool } from "../pool/pool.js";
import { CURSOR_BYTES, DirtyKernel, MIN_HARVEST_BATCH } from "../wasm/dirty.js";
import type { BatchConsumer, HarvestPagesResult } from "./task-types.js";
import { harvestShare } from "./tasks.js";

/** Page numbers a worker's batch buffer holds by default: 64 KiB, well inside its L2. */
export const DEFAULT_HARVEST_BATCH_PAGES = 16_384;

/** Shares start on multiples of this many words: the harvest kernel's step. */
const SHARE_ALIGN_WORDS = 16;

/** Options for a {@link ParallelHarvester}. */
export interface ParallelHarvesterOptions {
  /** Shares a harvest is split into, one task each (default: the pool's threads). */
  readonly shares?: number;
  /** Page numbers in each share's batch buffer (default {@link DEFAULT_HARVEST_BATCH_PAGES}). */
  readonly batchPages?: number;
  /** Name prefix of its regions. */
  readonly name?: string;
  /**
   * Harvest the first share on the calling thread while the pool takes the
   * others (default false: every share on the pool). The caller is running
   * already, so one worker fewer has to be woken.
   */
  readonly onCaller?: boolean;
}

/** A harvest split over the pool's workers. */
export interface ParallelHarvest {
  /** Page numbers harvested, over all shares. */
  readonly pages: number;
  /** The shares' checksums combined (sums added mod 2^32; last-page folds XORed). */
  readonly checksum: number;
  /** Each share's report, in bitmap order. */
  readonly shares: readonly HarvestPagesResult[];
}

/**
 * Harvests a quiet bitmap (the retired bitmap of a pair after a flip, or any
 * bitmap while the vCPUs are paused) on several pool workers at once: the
 * bitmap is cut into contiguous shares of whole 16-word steps, and each
 * worker harvests its share into its own batch buffer and consumes the
 * batches there, as each multifd channel would send its own pages.
 */
export class ParallelHarvester {
  /** Shares a harvest is split into. */
  readonly shares: number;
  private readonly cursors: readonly Region[];
  private readonly batches: readonly Region[];
  private readonly caller: DirtyKernel | undefined;
  private readonly memory: WebAssembly.Memory;

  constructor(
    layout: MemoryLayout,
    private readonly pool: KernelPool,
    options: ParallelHarvesterOptions = {},
  ) {
    const shares = options.shares ?? pool.threads;
    if (!Number.isSafeInteger(shares) || shares < 1 || shares > 256) {
      throw new RangeError(`harvest shares must be a whole number from 1 to 256, not ${shares}`);
    }
    const batchPages = options.batchPages ?? DEFAULT_HARVEST_BATCH_PAGES;
    if (
      !Number.isSafeInteger(batchPages) ||
      batchPages < MIN_HARVEST_BATCH ||
      batchPages > 2 ** 24
    ) {
      throw new RangeError(
        `harvest batch must hold from ${MIN_HARVEST_BATCH} to 2^24 page numbers, not ${batchPages}`,
      );
    }
    const name = options.name ?? "parallel-harvest";
    this.shares = shares;
    this.memory = layout.memory;
    this.caller = options.onCaller ? DirtyKernel.on(layout.memory) : undefined;
    this.cursors = Array.from({ length: shares }, (_, i) =>
      layout.allocate(`${name}-cursor-${i}`, CURSOR_BYTES),
    );
    // Each batch buffer on its own pages, so that no two workers write one cache line.
    this.batches = Array.from({ length: shares }, (_, i) =>
      layout.allocate(`${name}-batch-${i}`, batchPages * 4, 4096),
    );
  }

  /**
   * Harvests every page of `bitmap`, which no writer may mark meanwhile, on
   * the pool, clearing it. `consume` says what each worker does with its
   * batches (see {@link BatchConsumer}).
   */
  async harvest(bitmap: DirtyBitmap, consume: BatchConsumer = "sum"): Promise<ParallelHarvest> {
    const cuts = shareBounds(bitmap.words, this.shares);
    const jobs = cuts.map(([first, words], i) => {
      const share = bitmap.slice(first, words);
      const cursor = this.cursors[i];
      const out = this.batches[i];
      if (!cursor || !out) throw new Error(`harvest share ${i} has no buffers`);
      return { share, firstPage: first * 64, cursor, out };
    });
    // The pool's shares are sent first, so that the workers wake while the
    // caller harvests its own.
    const own = this.caller ? jobs.shift() : undefined;
    const pending = jobs.map((job) =>
      this.pool.run({
        type: "bench.harvest-pages",
        bitmap: job.share.toDescriptor(),
        firstPage: job.firstPage,
        cursor: job.cursor.toDescriptor(),
        out: job.out.toDescriptor(),
        consume,
      }),
    );
    const mine =
      own && this.caller
        ? [
            harvestShare(
              this.caller,
              this.memory,
              own.share,
              own.firstPage,
              own.cursor,
              own.out,
              consume,
            ),
          ]
        : [];
    const results = [...mine, ...(await Promise.all(pending))];
    let pages = 0;
    let checksum = 0;
    for (const result of results) {
      pages += result.pages;
      checksum =
        consume === "sum" ? (checksum + result.checksum) >>> 0 : checksum ^ result.checksum;
    }
    return { pages, checksum: checksum >>> 0, shares: results };
  }
}

/**
 * Cuts `words` bitmap words into at most `shares` contiguous shares of whole
 * 16-word steps (the last takes the rest): [first word, words] each.
 */
export function shareBounds(words: number, shares: number): [number, number][] {
  const steps = Math.ceil(words / SHARE_ALIGN_WORDS);
  const count = Math.max(1, Math.min(shares, steps));
  const bounds: [number, number][] = [];
  let first = 0;
  for (let i = 0; i < count; i++) {
    const end =
      i === count - 1
        ? words
        : Math.min(words, Math.round((steps * (i + 1)) / count) * SHARE_ALIGN_WORDS);
    if (end > first) bounds.push([first, end - first]);
    first = end;
  }
  return bounds;
}
