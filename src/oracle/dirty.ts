/**
 * The plain TypeScript oracle for the dirty-tracking kernels: a bitmap kept
 * as one byte per page, doing every job one page at a time. Property tests
 * hold the kernels equal to it; benchmarks run it as the baseline.
 */
export class DirtyBitmapOracle {
  /** One byte per page: 1 dirty, 0 clean. */
  readonly dirty: Uint8Array;

  constructor(readonly pages: number) {
    this.dirty = new Uint8Array(pages);
  }

  /** Builds an oracle from a bitmap's bytes (little-endian u64 words). */
  static fromBitmapBytes(bytes: Uint8Array, pages: number): DirtyBitmapOracle {
    const oracle = new DirtyBitmapOracle(pages);
    for (let page = 0; page < pages; page++) {
      oracle.dirty[page] = ((bytes[page >>> 3] ?? 0) >>> (page & 7)) & 1;
    }
    return oracle;
  }

  /** The bitmap's bytes in the kernel's layout (bit p of byte p / 8, LSB first). */
  toBitmapBytes(): Uint8Array {
    const bytes = new Uint8Array(Math.ceil(this.pages / 64) * 8);
    for (let page = 0; page < this.pages; page++) {
      if (this.dirty[page]) bytes[page >>> 3] = (bytes[page >>> 3] ?? 0) | (1 << (page & 7));
    }
    return bytes;
  }

  /** Marks a page; true if it was clean. */
  markPage(page: number): boolean {
    const was = this.dirty[page] === 1;
    this.dirty[page] = 1;
    return !was;
  }

  /** Marks a range; returns how many were clean. */
  markRange(first: number, count: number): number {
    let newly = 0;
    for (let page = first; page < first + count; page++) if (this.markPage(page)) newly++;
    return newly;
  }

  /** Whether a page is dirty. */
  testPage(page: number): boolean {
    return this.dirty[page] === 1;
  }

  /** Dirty pages. */
  count(): number {
    let total = 0;
    for (let page = 0; page < this.pages; page++) total += this.dirty[page] ?? 0;
    return total;
  }

  /** Fetches and clears: returns the snapshot oracle and the count. */
  harvest(): { snapshot: DirtyBitmapOracle; count: number } {
    const snapshot = new DirtyBitmapOracle(this.pages);
    let count = 0;
    for (let page = 0; page < this.pages; page++) {
      if (this.dirty[page]) {
        snapshot.dirty[page] = 1;
        this.dirty[page] = 0;
        count++;
      }
    }
    return { snapshot, count };
  }

  /** ORs another oracle in; returns pages newly set. */
  merge(source: DirtyBitmapOracle): number {
    let newly = 0;
    for (let page = 0; page < this.pages; page++) {
      if (source.dirty[page] && this.markPage(page)) newly++;
    }
    return newly;
  }

  /** Every dirty page number in ascending order. */
  dirtyPages(): number[] {
    const pages: number[] = [];
    for (let page = 0; page < this.pages; page++) if (this.dirty[page]) pages.push(page);
    return pages;
  }
}

/**
 * The oracle's harvest over raw bitmap words, as the benchmark's baseline:
 * one page at a time, test the bit, copy it, clear it, count it.
 */
export function harvestOneByOne(bitmap: Uint8Array, snapshot: Uint8Array, pages: number): number {
  let count = 0;
  for (let page = 0; page < pages; page++) {
    const byte = page >>> 3;
    const bit = 1 << (page & 7);
    const value = bitmap[byte] ?? 0;
    if (value & bit) {
      snapshot[byte] = (snapshot[byte] ?? 0) | bit;
      bitmap[byte] = value & ~bit;
      count++;
    } else {
      snapshot[byte] = (snapshot[byte] ?? 0) & ~bit;
    }
  }
  return count;
}

/** The oracle's iteration: every dirty page of a snapshot into `out`, one page at a time. */
export function iterateOneByOne(snapshot: Uint8Array, pages: number, out: Uint32Array): number {
  let n = 0;
  for (let page = 0; page < pages; page++) {
    if (((snapshot[page >>> 3] ?? 0) >>> (page & 7)) & 1) out[n++] = page;
  }
  return n;
}

/**
 * The oracle's one-pass harvest: every dirty page of a bitmap's bytes, one
 * page at a time, cleared as it is read. Returns the page numbers in
 * ascending order.
 */
export function harvestPagesOneByOne(bitmap: Uint8Array, pages: number): number[] {
  const found: number[] = [];
  for (let page = 0; page < pages; page++) {
    const byte = page >>> 3;
    const bit = 1 << (page & 7);
    const value = bitmap[byte] ?? 0;
    if (value & bit) {
      found.push(page);
      bitmap[byte] = value & ~bit;
    }
  }
  return found;
}

/**
 * The oracle of an epoch-swapped dirty log: two one-byte-per-page bitmaps and
 * an epoch, one operation at a time. A mark lands in the active bitmap; a
 * flip retires it and hands back its pages, clearing it.
 */
export class DirtyPairOracle {
  /** Flips so far. */
  epoch = 0;
  readonly bitmaps: readonly [DirtyBitmapOracle, DirtyBitmapOracle];

  constructor(readonly pages: number) {
    this.bitmaps = [new DirtyBitmapOracle(pages), new DirtyBitmapOracle(pages)];
  }

  /** The bitmap marks land in. */
  get active(): DirtyBitmapOracle {
    return this.bitmaps[this.epoch & 1] as DirtyBitmapOracle;
  }

  /** Marks a page in the active bitmap; true if it was clean there. */
  markPage(page: number): boolean {
    return this.active.markPage(page);
  }

  /** Flips and harvests the retired bitmap: its dirty pages, ascending; it is left clean. */
  flipAndHarvest(): number[] {
    const retired = this.active;
    this.epoch++;
    const pages = retired.dirtyPages();
    retired.harvest();
    return pages;
  }
}

/**
 * The oracle's quiet harvest and merge: one page at a time, move the bit
 * into `snapshot`, clear it in `bitmap`, OR it into `distinct`; then count
 * the pages of `distinct`. Returns the pages harvested and the pages of
 * `distinct` afterwards (raw bitmap bytes, `pages` pages).
 */
export function harvestQuietMergeOneByOne(
  bitmap: Uint8Array,
  snapshot: Uint8Array,
  distinct: Uint8Array,
  pages: number,
): { harvested: number; distinct: number } {
  const harvested = harvestOneByOne(bitmap, snapshot, pages);
  let union = 0;
  for (let page = 0; page < pages; page++) {
    const byte = page >>> 3;
    const bit = 1 << (page & 7);
    if ((snapshot[byte] ?? 0) & bit) distinct[byte] = (distinct[byte] ?? 0) | bit;
    if ((distinct[byte] ?? 0) & bit) union++;
  }
  return { harvested, distinct: union };
}
