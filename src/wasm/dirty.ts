import { type DirtyBitmap, MAX_BITMAP_PAGES } from "../memory/dirty-bitmap.js";
import { type DirtyBitmapPair, EPOCH_IDLE, EpochControl } from "../memory/dirty-bitmap-pair.js";
import {
  type DirtyRing,
  RING_ENTRY_BYTES,
  RING_HEADER_BYTES,
  RingHeader,
} from "../memory/dirty-ring.js";
import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/dirty.ts. All numbers are u32 passed as i32. */
export interface DirtyExports {
  markPage(bitmap: number, page: number): number;
  markRange(bitmap: number, first: number, count: number): number;
  testPage(bitmap: number, page: number): number;
  countDirty(bitmap: number, words: number): number;
  harvest(bitmap: number, snapshot: number, words: number): number;
  iterateDirty(
    snapshot: number,
    bits: number,
    cursor: number,
    out: number,
    capacity: number,
    basePage: number,
  ): number;
  mergeBitmap(dst: number, src: number, words: number): number;
  harvestPages(
    bitmap: number,
    bits: number,
    cursor: number,
    out: number,
    capacity: number,
    basePage: number,
  ): number;
  harvestPagesQuiet(
    bitmap: number,
    bits: number,
    cursor: number,
    out: number,
    capacity: number,
    basePage: number,
  ): number;
  harvestQuiet(bitmap: number, snapshot: number, words: number): number;
  /** Low 32 bits: pages harvested; high 32 bits: pages set in `distinct` after the OR. */
  harvestQuietMerge(bitmap: number, snapshot: number, distinct: number, words: number): bigint;
  epochEnter(control: number, slot: number): number;
  epochFollow(control: number, slot: number, epoch: number): number;
  epochLeave(control: number, slot: number): void;
  markPagesInPair(
    control: number,
    slot: number,
    bitmapA: number,
    bitmapB: number,
    first: number,
    count: number,
    step: number,
    batch: number,
  ): number;
  ringInit(ring: number, size: number, slot: number): void;
  ringPush(ring: number, size: number, page: number, bitmap: number): number;
  ringHarvest(ring: number, size: number, out: number, capacity: number): number;
  ringDrainToBitmap(ring: number, size: number, bitmap: number, lastPage: number): number;
}

/**
 * Kernel calls pass at most this many bitmap words (2^30 pages), so every
 * count a kernel returns fits in a u32 even for a 16 TiB guest.
 */
export const CHUNK_WORDS = 2 ** 24;
const CHUNK_PAGES = CHUNK_WORDS * 64;

/** Bytes of an iteration cursor: u32 bit within the chunk (kernel's), u32 chunk (ours). */
export const CURSOR_BYTES = 8;

/**
 * Fewest page numbers a {@link DirtyKernel.harvestPages} batch may hold: the
 * slots one bitmap word may need (64 pages and two junk slots: the kernel's
 * WORD_SLOTS).
 */
export const MIN_HARVEST_BATCH = 66;

/** What {@link DirtyKernel.harvestQuietMerge} counted. */
export interface QuietMergeCounts {
  /** Pages the bitmap held (moved into the snapshot). */
  readonly harvested: number;
  /** Pages set in the distinct set after the bitmap was ORed in. */
  readonly distinct: number;
}

/** The layouts assembly/dirty.ts exports (as LAYOUT_ globals), checked at load. */
const DIRTY_LAYOUT = {
  RING_HEAD: RingHeader.head,
  RING_TAIL: RingHeader.tail,
  RING_SIZE: RingHeader.size,
  RING_OVERFLOW: RingHeader.overflow,
  RING_SLOT: RingHeader.slot,
  RING_ENTRIES: RING_HEADER_BYTES,
  ENTRY_BYTES: RING_ENTRY_BYTES,
  WORD_SLOTS: MIN_HARVEST_BATCH,
  EPOCH: EpochControl.epoch,
  EPOCH_ACKS: EpochControl.acks,
  EPOCH_IDLE,
};

/**
 * Calls a counting kernel over a bitmap of `words` words in chunks of at most
 * {@link CHUNK_WORDS}, passing each chunk's byte offset and word count, and
 * adds up the u32 counts it returns.
 */
function sumOverChunks(words: number, call: (byteOffset: number, words: number) => number): number {
  let total = 0;
  for (let word = 0; word < words; word += CHUNK_WORDS) {
    total += call(word * 8, Math.min(CHUNK_WORDS, words - word)) >>> 0;
  }
  return total;
}

/** Checks a page number against a bitmap. */
function checkPage(bitmap: DirtyBitmap, page: number, what = "page"): void {
  if (!Number.isSafeInteger(page) || page < 0 || page >= bitmap.pages) {
    throw new RegionBoundsError(
      bitmap.region.name,
      `${what} ${page}`,
      `is not a page of this bitmap (0 to ${bitmap.pages - 1})`,
    );
  }
}

/**
 * Page numbers a harvest batch region holds, checked to hold one word's
 * pages (plus the kernel's slack) at least.
 */
function harvestCapacity(out: Region): number {
  const capacity = Math.floor(out.byteLength / 4);
  if (capacity < MIN_HARVEST_BATCH) {
    throw new RegionBoundsError(
      out.name,
      "harvest batch",
      `holds ${capacity} page numbers; it needs at least ${MIN_HARVEST_BATCH}`,
    );
  }
  return capacity;
}

/** Checks that a snapshot tracks as many pages as the bitmap it receives. */
function checkSamePages(bitmap: DirtyBitmap, snapshot: DirtyBitmap, what: string): void {
  if (snapshot.pages !== bitmap.pages) {
    throw new RegionBoundsError(
      snapshot.region.name,
      what,
      `tracks ${snapshot.pages} pages but the bitmap '${bitmap.region.name}' tracks ${bitmap.pages}`,
    );
  }
}

/** Checks a writer slot of a pair. */
function checkSlot(pair: DirtyBitmapPair, slot: number): void {
  if (!Number.isSafeInteger(slot) || slot < 0 || slot >= pair.writers) {
    throw new RegionBoundsError(
      pair.control.name,
      `writer slot ${slot}`,
      `is not a slot of this pair (0 to ${pair.writers - 1})`,
    );
  }
}

/**
 * Checks a marking job for {@link DirtyKernel.markPagesInPair}: the writer
 * slot, a whole count, step and batch, and every page inside the pair.
 *
 * @throws RangeError (a RegionBoundsError for slots and pages) saying what is wrong.
 */
export function checkMarkingInPair(
  pair: DirtyBitmapPair,
  slot: number,
  first: number,
  count: number,
  step = 1,
  batch = 256,
): void {
  checkSlot(pair, slot);
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`page count must be a whole number >= 0, not ${count}`);
  }
  if (!Number.isSafeInteger(step) || step < 1) {
    throw new RangeError(`page step must be a whole number >= 1, not ${step}`);
  }
  if (!Number.isSafeInteger(batch) || batch < 1 || batch > 2 ** 31) {
    throw new RangeError(`marking batch must be a whole number from 1 to 2^31, not ${batch}`);
  }
  if (count === 0) return;
  checkPage(pair.bitmaps[0], first, "first page");
  checkPage(pair.bitmaps[0], first + (count - 1) * step, "last page");
}

/**
 * Typed, bounds-checked calls into the dirty-tracking kernels. Every offset
 * and page number is checked against its region before wasm runs.
 */
export class DirtyKernel {
  constructor(
    private readonly memory: WebAssembly.Memory,
    private readonly k: DirtyExports,
  ) {
    checkKernelLayout("dirty", k, DIRTY_LAYOUT);
  }

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): DirtyKernel {
    return new DirtyKernel(memory, instantiateKernel<DirtyExports>(compileKernel("dirty"), memory));
  }

  /** Marks a page dirty (atomic). Returns true if it was clean. */
  markPage(bitmap: DirtyBitmap, page: number): boolean {
    checkPage(bitmap, page);
    return this.k.markPage(bitmap.region.offset, page) === 1;
  }

  /** Marks `count` pages from `first` dirty (atomic). Returns how many were clean. */
  markRange(bitmap: DirtyBitmap, first: number, count: number): number {
    if (count === 0) return 0;
    checkPage(bitmap, first, "first page");
    if (!Number.isSafeInteger(count) || count < 0 || first + count > bitmap.pages) {
      throw new RegionBoundsError(
        bitmap.region.name,
        `range of ${count} pages from ${first}`,
        `passes the end (${bitmap.pages} pages)`,
      );
    }
    let newly = 0;
    for (let done = 0; done < count; done += CHUNK_PAGES) {
      const take = Math.min(CHUNK_PAGES, count - done);
      newly += this.k.markRange(bitmap.region.offset, first + done, take) >>> 0;
    }
    return newly;
  }

  /** Whether a page is dirty. */
  testPage(bitmap: DirtyBitmap, page: number): boolean {
    checkPage(bitmap, page);
    return this.k.testPage(bitmap.region.offset, page) === 1;
  }

  /** Dirty pages in the bitmap (popcount). */
  count(bitmap: DirtyBitmap): number {
    return sumOverChunks(bitmap.words, (bytes, take) =>
      this.k.countDirty(bitmap.region.offset + bytes, take),
    );
  }

  /**
   * Atomically fetches and clears the bitmap into `snapshot` (a bitmap of the
   * same page count), as KVM's get-and-clear dirty log. Returns pages harvested.
   */
  harvest(bitmap: DirtyBitmap, snapshot: DirtyBitmap): number {
    checkSamePages(bitmap, snapshot, "snapshot");
    return sumOverChunks(bitmap.words, (bytes, take) =>
      this.k.harvest(bitmap.region.offset + bytes, snapshot.region.offset + bytes, take),
    );
  }

  /** ORs `source` into `target` (same page count). Returns pages newly set in `target`. */
  merge(target: DirtyBitmap, source: DirtyBitmap): number {
    if (source.pages !== target.pages) {
      throw new RegionBoundsError(
        source.region.name,
        "merge source",
        `tracks ${source.pages} pages but '${target.region.name}' tracks ${target.pages}`,
      );
    }
    return sumOverChunks(target.words, (bytes, take) =>
      this.k.mergeBitmap(target.region.offset + bytes, source.region.offset + bytes, take),
    );
  }

  /** Sets an iteration cursor (8 bytes) back to the first page. */
  resetCursor(cursor: Region): void {
    const at = cursor.check(0, CURSOR_BYTES, "iteration cursor");
    new Uint32Array(this.memory.buffer, at, 2).fill(0);
  }

  /**
   * Sets an iteration cursor (8 bytes) to the 64-page word that holds
   * `page`: the next batch starts there.
   */
  seekCursor(cursor: Region, page: number): void {
    const at = cursor.check(0, CURSOR_BYTES, "iteration cursor");
    if (!Number.isSafeInteger(page) || page < 0 || page >= MAX_BITMAP_PAGES)
      throw new RangeError(`cursor page ${page} is outside 0 to ${MAX_BITMAP_PAGES - 1}`);
    const chunk = Math.floor(page / CHUNK_PAGES);
    new Uint32Array(this.memory.buffer, at, 2).set([
      Math.floor((page - chunk * CHUNK_PAGES) / 64),
      chunk,
    ]);
  }

  /**
   * Writes the next batch of dirty page numbers of `snapshot` into `out` (u32
   * each, as many as fit) and advances `cursor`. Returns how many were
   * written; 0 when the snapshot is exhausted. Reset the cursor to start over.
   */
  iterate(snapshot: DirtyBitmap, cursor: Region, out: Region): number {
    const at = cursor.check(0, CURSOR_BYTES, "iteration cursor");
    const capacity = Math.floor(out.byteLength / 4);
    if (capacity === 0)
      throw new RegionBoundsError(out.name, "output", "cannot hold one page number");
    return this.walkChunks(snapshot, at, (offset, bits, base) =>
      this.k.iterateDirty(offset, bits, at, out.offset, capacity, base),
    );
  }

  /**
   * Harvest and iterate in one pass: atomically fetches and clears the next
   * dirty words of `bitmap` and writes their page numbers into `out` (u32
   * each; it must hold at least {@link MIN_HARVEST_BATCH}). Returns how many
   * were written; 0 when the whole bitmap has been harvested. Reset the
   * cursor to start a new harvest. Slots past the returned count may be
   * overwritten. A bitmap no writer marks meanwhile takes
   * {@link harvestPagesQuiet} instead, without locked instructions.
   */
  harvestPages(bitmap: DirtyBitmap, cursor: Region, out: Region): number {
    const at = cursor.check(0, CURSOR_BYTES, "harvest cursor");
    const capacity = harvestCapacity(out);
    return this.walkChunks(bitmap, at, (offset, bits, base) =>
      this.k.harvestPages(offset, bits, at, out.offset, capacity, base),
    );
  }

  /**
   * Harvest and iterate in one pass over a bitmap that no writer marks
   * meanwhile (the retired bitmap of a {@link DirtyBitmapPair} after a flip,
   * or any bitmap while the vCPUs are paused): writes the page numbers of the
   * next dirty words into `out` (u32 each; it must hold at least
   * {@link MIN_HARVEST_BATCH}, and batches of 1,026 or more take the
   * 16-word hot loop) and clears them with plain stores. Returns how many
   * were written; 0 when the whole bitmap has been harvested. Reset the
   * cursor to start a new harvest. Slots past the returned count may be
   * overwritten. Page numbers are `firstPage` plus the page's number in
   * `bitmap` (a slice of a larger bitmap passes where it starts).
   */
  harvestPagesQuiet(bitmap: DirtyBitmap, cursor: Region, out: Region, firstPage = 0): number {
    const at = cursor.check(0, CURSOR_BYTES, "harvest cursor");
    const capacity = harvestCapacity(out);
    if (
      !Number.isSafeInteger(firstPage) ||
      firstPage < 0 ||
      firstPage + bitmap.pages > MAX_BITMAP_PAGES
    ) {
      throw new RegionBoundsError(
        bitmap.region.name,
        `first page ${firstPage}`,
        `puts the bitmap's ${bitmap.pages} pages past page 2^32`,
      );
    }
    return this.walkChunks(bitmap, at, (offset, bits, base) =>
      this.k.harvestPagesQuiet(offset, bits, at, out.offset, capacity, firstPage + base),
    );
  }

  /**
   * Moves a bitmap that no writer marks meanwhile into `snapshot` (same page
   * count) with plain loads and stores, and clears it: `harvest` without the
   * locked exchanges. Returns the pages moved.
   */
  harvestQuiet(bitmap: DirtyBitmap, snapshot: DirtyBitmap): number {
    checkSamePages(bitmap, snapshot, "snapshot");
    return sumOverChunks(bitmap.words, (bytes, take) =>
      this.k.harvestQuiet(bitmap.region.offset + bytes, snapshot.region.offset + bytes, take),
    );
  }

  /**
   * {@link harvestQuiet} and {@link merge} in one pass over a bitmap that no
   * writer marks meanwhile: moves `bitmap` into `snapshot`, clears it, and ORs
   * it into `distinct` (all three of the same page count), reading each word
   * once. Returns the pages harvested and the pages of `distinct` afterwards.
   */
  harvestQuietMerge(
    bitmap: DirtyBitmap,
    snapshot: DirtyBitmap,
    distinct: DirtyBitmap,
  ): QuietMergeCounts {
    checkSamePages(bitmap, snapshot, "snapshot");
    checkSamePages(bitmap, distinct, "distinct set");
    let harvested = 0;
    let union = 0;
    for (let word = 0; word < bitmap.words; word += CHUNK_WORDS) {
      const bytes = word * 8;
      const packed = this.k.harvestQuietMerge(
        bitmap.region.offset + bytes,
        snapshot.region.offset + bytes,
        distinct.region.offset + bytes,
        Math.min(CHUNK_WORDS, bitmap.words - word),
      );
      harvested += Number(BigInt.asUintN(32, packed));
      union += Number(BigInt.asUintN(32, packed >> 32n));
    }
    return { harvested, distinct: union };
  }

  /**
   * Writer `slot` of a pair enters its current epoch (see
   * {@link DirtyBitmapPair}); returns the epoch, whose bitmap (epoch & 1) the
   * writer marks until it follows a flip or leaves.
   */
  epochEnter(pair: DirtyBitmapPair, slot: number): number {
    checkSlot(pair, slot);
    return this.k.epochEnter(pair.control.offset, slot) >>> 0;
  }

  /** Writer `slot`, in `epoch`, between batches: acknowledges a flip if one came; returns the epoch to mark in. */
  epochFollow(pair: DirtyBitmapPair, slot: number, epoch: number): number {
    checkSlot(pair, slot);
    return this.k.epochFollow(pair.control.offset, slot, epoch) >>> 0;
  }

  /** Writer `slot` leaves: it marks nothing until it enters again. */
  epochLeave(pair: DirtyBitmapPair, slot: number): void {
    checkSlot(pair, slot);
    this.k.epochLeave(pair.control.offset, slot);
  }

  /**
   * Marks pages `first, first + step, ...` (`count` of them) in the active
   * bitmap of a pair as writer `slot`: enters, re-reads the epoch every
   * `batch` pages (so a harvest waits for at most one batch) and leaves.
   * Returns how many were clean in the bitmap they were marked in.
   */
  markPagesInPair(
    pair: DirtyBitmapPair,
    slot: number,
    first: number,
    count: number,
    step = 1,
    batch = 256,
  ): number {
    checkMarkingInPair(pair, slot, first, count, step, batch);
    if (count === 0) return 0;
    const [a, b] = pair.bitmaps;
    let newly = 0;
    // Calls of at most 2^30 pages keep the kernel's u32 count and page sums in range.
    for (let done = 0; done < count; done += CHUNK_PAGES) {
      const take = Math.min(CHUNK_PAGES, count - done);
      newly +=
        this.k.markPagesInPair(
          pair.control.offset,
          slot,
          a.region.offset,
          b.region.offset,
          first + done * step,
          take,
          step,
          batch,
        ) >>> 0;
    }
    return newly;
  }

  /**
   * Drives a resumable batch kernel over a bitmap chunk by chunk: the cursor
   * at `at` holds the kernel's position within the chunk (u32) and the chunk
   * (u32). Returns the first non-zero batch, or 0 when every chunk is done.
   */
  private walkChunks(
    bitmap: DirtyBitmap,
    at: number,
    batch: (chunkOffset: number, bits: number, basePage: number) => number,
  ): number {
    const state = new Uint32Array(this.memory.buffer, at, 2);
    for (;;) {
      const chunk = state[1] ?? 0;
      const base = chunk * CHUNK_PAGES;
      if (base >= bitmap.pages) return 0;
      const written =
        batch(
          bitmap.region.offset + chunk * CHUNK_WORDS * 8,
          Math.min(CHUNK_PAGES, bitmap.pages - base),
          base,
        ) >>> 0;
      if (written > 0) return written;
      // This chunk is exhausted: move to the next.
      state[0] = 0;
      state[1] = chunk + 1;
    }
  }

  /** Empties a ring and names its memory slot. */
  ringInit(ring: DirtyRing, slot = 0): void {
    this.k.ringInit(ring.region.offset, ring.entries, slot);
  }

  /** Logs a page in a ring, falling back to `bitmap` when full. Returns true if logged in the ring. */
  ringPush(ring: DirtyRing, page: number, bitmap: DirtyBitmap): boolean {
    checkPage(bitmap, page);
    return this.k.ringPush(ring.region.offset, ring.entries, page, bitmap.region.offset) === 1;
  }

  /** Takes up to `out`'s capacity of page numbers from a ring. Returns how many. */
  ringHarvest(ring: DirtyRing, out: Region): number {
    const capacity = Math.floor(out.byteLength / 4);
    return this.k.ringHarvest(ring.region.offset, ring.entries, out.offset, capacity) >>> 0;
  }

  /**
   * Moves a ring's entries into a bitmap. Returns how many entries it held.
   * Entries naming a page past the bitmap are dropped, never written.
   */
  ringDrain(ring: DirtyRing, bitmap: DirtyBitmap): number {
    return (
      this.k.ringDrainToBitmap(
        ring.region.offset,
        ring.entries,
        bitmap.region.offset,
        bitmap.pages - 1,
      ) >>> 0
    );
  }

  /** Pushes that found the ring full and fell back to the bitmap. */
  ringOverflow(ring: DirtyRing): number {
    return (
      new Uint32Array(this.memory.buffer, ring.region.offset, 16)[RingHeader.overflow / 4] ?? 0
    );
  }
}
