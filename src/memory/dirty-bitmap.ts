import { RegionAllocationError, RegionBoundsError } from "./errors.js";
import type { MemoryLayout } from "./layout.js";
import { Region, type RegionDescriptor } from "./region.js";

/** Guest page sizes a dirty bitmap can track: 4 KiB and 2 MiB. */
export type PageShift = 12 | 21;

/** Most pages one bitmap tracks: page numbers are u32 (16 TiB of 4 KiB pages). */
export const MAX_BITMAP_PAGES = 2 ** 32;

/** What crosses threads to name a bitmap in a task message. */
export interface DirtyBitmapDescriptor {
  readonly region: RegionDescriptor;
  readonly pages: number;
  readonly pageShift: PageShift;
}

/**
 * A dirty bitmap: one bit per guest page in little-endian u64 words (the
 * layout is drawn in assembly/dirty.ts), held in a region of the shared memory.
 */
export class DirtyBitmap {
  /** Bitmap words (u64). */
  readonly words: number;

  /**
   * @param region - where the bitmap lives; at least {@link DirtyBitmap.bytesFor} bytes
   * @param pages - guest pages tracked
   * @param pageShift - log2 of the page size
   */
  constructor(
    readonly region: Region,
    readonly pages: number,
    readonly pageShift: PageShift = 12,
  ) {
    checkPages(pages, region.name);
    this.words = Math.ceil(pages / 64);
    if (region.byteLength < this.words * 8) {
      throw new RegionAllocationError(
        `region '${region.name}' holds ${region.byteLength} bytes but a bitmap of ${pages} pages needs ${this.words * 8}`,
      );
    }
  }

  /** Bytes of bitmap needed for `pages` pages (whole u64 words). */
  static bytesFor(pages: number): number {
    checkPages(pages, "bitmap");
    return Math.ceil(pages / 64) * 8;
  }

  /** Lays out a zeroed bitmap for `pages` pages in `layout`. */
  static allocate(
    layout: MemoryLayout,
    name: string,
    pages: number,
    pageShift: PageShift = 12,
  ): DirtyBitmap {
    return new DirtyBitmap(layout.allocate(name, DirtyBitmap.bytesFor(pages)), pages, pageShift);
  }

  /** Size of the tracked guest memory in bytes. */
  get guestBytes(): number {
    return this.pages * 2 ** this.pageShift;
  }

  /**
   * Words `firstWord` to `firstWord + words` as a bitmap of their own, over
   * the same bytes: its page p is page `firstWord * 64 + p` of this one (the
   * last word may be partial). How a harvest is split between workers.
   */
  slice(firstWord: number, words: number): DirtyBitmap {
    if (
      !Number.isSafeInteger(firstWord) ||
      !Number.isSafeInteger(words) ||
      firstWord < 0 ||
      words < 1 ||
      firstWord + words > this.words
    ) {
      throw new RegionBoundsError(
        this.region.name,
        `slice of ${words} words from word ${firstWord}`,
        `is not inside the bitmap's ${this.words} words`,
      );
    }
    const region = new Region({
      name: `${this.region.name}[${firstWord}+${words}]`,
      offset: this.region.offset + firstWord * 8,
      byteLength: words * 8,
    });
    return new DirtyBitmap(
      region,
      Math.min(words * 64, this.pages - firstWord * 64),
      this.pageShift,
    );
  }

  /** The descriptor for task messages. */
  toDescriptor(): DirtyBitmapDescriptor {
    return { region: this.region.toDescriptor(), pages: this.pages, pageShift: this.pageShift };
  }
}

function checkPages(pages: number, name: string): void {
  if (!Number.isSafeInteger(pages) || pages <= 0 || pages > MAX_BITMAP_PAGES) {
    throw new RegionAllocationError(
      `${name}: page count must be a whole number from 1 to 2^32, not ${pages}`,
    );
  }
}
