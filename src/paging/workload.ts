import { PagingError } from "./errors.js";
import { ACCESS } from "./mmu.js";
import { SeededRandom } from "./random.js";

/** Synthetic access patterns. */
export const ACCESS_PATTERNS = ["random", "sequential", "strided", "pointer-chase"] as const;
/** An access pattern name. */
export type AccessPatternKind = (typeof ACCESS_PATTERNS)[number];

/** Where synthetic working sets start in every process (1 GiB aligned, like a heap). */
export const HEAP_BASE = 0x10_0000_0000;

/** A synthetic access pattern over a working set. */
export interface AccessPattern {
  readonly kind: AccessPatternKind;
  /** Bytes of the working set, from {@link HEAP_BASE}. */
  readonly workingSetBytes: number;
  /** strided: bytes between accesses. */
  readonly strideBytes: number;
  /** Fraction of accesses that are writes. */
  readonly writeFraction: number;
}

/** Operating-system activity mixed into a run, in events per second of guest time. */
export interface OsActivity {
  /** Processes running the workload (each its own address space). */
  readonly processes: number;
  readonly contextSwitchesPerSecond: number;
  /** Leaf updates: a page write-protected to track its next write (then a fault restores it). */
  readonly pageTableUpdatesPerSecond: number;
  /** fork() of the running process followed by the child's exec() and exit. */
  readonly forkExecPerSecond: number;
  /** munmap/mmap churn: 64 KiB of the working set unmapped (then faulted back in). */
  readonly munmapPerSecond: number;
  /**
   * The part of the working set the churn falls in, from its start (an
   * allocator's arena that keeps returning memory); default the whole set.
   */
  readonly churnBytes?: number;
  /** Memory accesses per second of guest time (assumed), converting rates to accesses. */
  readonly accessesPerSecond: number;
}

/** No OS activity: one process, static page tables. */
export const QUIET: OsActivity = {
  processes: 1,
  contextSwitchesPerSecond: 0,
  pageTableUpdatesPerSecond: 0,
  forkExecPerSecond: 0,
  munmapPerSecond: 0,
  accessesPerSecond: 1e9,
};

/** Checks a pattern. @throws PagingError saying what is wrong. */
export function checkPattern(p: AccessPattern): void {
  if (!ACCESS_PATTERNS.includes(p.kind)) {
    throw new PagingError(
      `unknown access pattern '${p.kind}' (one of ${ACCESS_PATTERNS.join(", ")})`,
    );
  }
  if (
    !Number.isSafeInteger(p.workingSetBytes) ||
    p.workingSetBytes < 4096 ||
    p.workingSetBytes > 2 ** 40
  ) {
    throw new PagingError(`working set must be 4 KiB to 1 TiB, not ${p.workingSetBytes}`);
  }
  if (
    !Number.isSafeInteger(p.strideBytes) ||
    p.strideBytes < 1 ||
    p.strideBytes > p.workingSetBytes
  ) {
    throw new PagingError(`stride must be 1 byte to the working set, not ${p.strideBytes}`);
  }
  if (!(p.writeFraction >= 0 && p.writeFraction <= 1)) {
    throw new PagingError(`write fraction must be 0 to 1, not ${p.writeFraction}`);
  }
}

/**
 * Generates trace records (u64 as two u32: low word = address bits 12-31 |
 * access kind, high word = address bits 32-63) for a pattern, seeded.
 */
export class AccessGenerator {
  private readonly random: SeededRandom;
  private cursor = 0;
  private readonly pages: number;
  private readonly span: number;

  constructor(
    readonly pattern: AccessPattern,
    seed: number,
  ) {
    checkPattern(pattern);
    this.random = new SeededRandom(seed ^ 0x5eed);
    this.pages = Math.floor(pattern.workingSetBytes / 4096);
    this.span = 2 ** Math.ceil(Math.log2(this.pages));
  }

  /** Writes `count` records into `out` (2 words each) from word `at`. */
  fill(out: Uint32Array, at: number, count: number): void {
    const { kind, writeFraction, workingSetBytes, strideBytes } = this.pattern;
    const writeCut = writeFraction * 2 ** 32;
    for (let i = 0; i < count; i++) {
      let offset: number;
      if (kind === "random") {
        offset = this.random.below(this.pages) * 4096;
      } else if (kind === "pointer-chase") {
        // A full-period LCG over a power of two, walking past the working set's end:
        // each page once per cycle, in an order no prefetcher could guess.
        do {
          this.cursor = (this.cursor * 5 + 0x9e3779b1) % this.span;
        } while (this.cursor >= this.pages);
        offset = this.cursor * 4096;
      } else {
        offset = this.cursor;
        this.cursor = (this.cursor + (kind === "sequential" ? 64 : strideBytes)) % workingSetBytes;
      }
      const va = HEAP_BASE + offset;
      const write = writeFraction > 0 && this.random.next32() < writeCut ? ACCESS.write : 0;
      const low = va % 2 ** 32;
      out[at + 2 * i] = ((low - (low % 4096)) | write | ACCESS.user) >>> 0;
      out[at + 2 * i + 1] = Math.floor(va / 2 ** 32);
    }
  }
}
