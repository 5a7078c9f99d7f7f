import { describe, expect, it } from "vitest";
import { DirtyBitmap, MAX_BITMAP_PAGES } from "../src/memory/dirty-bitmap.js";
import {
  DirtyBitmapPair,
  EPOCH_IDLE,
  EpochControl,
  MAX_EPOCH_WRITERS,
} from "../src/memory/dirty-bitmap-pair.js";
import {
  DirtyRing,
  MAX_RING_ENTRIES,
  RING_ENTRY_BYTES,
  RING_HEADER_BYTES,
} from "../src/memory/dirty-ring.js";
import { RegionAllocationError, RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";

/*
 * The rules of the dirty logs' places in the shared memory, as the kernels
 * (assembly/dirty.ts) and the pool's workers rely on them: a bitmap is one
 * bit per page in whole u64 words; a slice of it is the same bytes with its
 * pages renumbered; a ring is a 64-byte header and 16-byte KVM dirty-gfn
 * entries, a power of two of them; a bitmap pair is two bitmaps of the same
 * pages and an epoch control block, none of the three overlapping.
 */

const layout = new MemoryLayout();
const region = (name: string, offset: number, byteLength: number) =>
  new Region({ name, offset, byteLength });

describe("dirty bitmap", () => {
  it("takes one bit per page, rounded up to whole u64 words", () => {
    expect(DirtyBitmap.bytesFor(1)).toBe(8);
    expect(DirtyBitmap.bytesFor(64)).toBe(8);
    expect(DirtyBitmap.bytesFor(65)).toBe(16);
    expect(DirtyBitmap.bytesFor(1000)).toBe(128);
    // 2^32 pages (16 TiB of 4 KiB pages): 512 MiB of bitmap.
    expect(DirtyBitmap.bytesFor(MAX_BITMAP_PAGES)).toBe(2 ** 29);
    const bitmap = new DirtyBitmap(region("bm", 4096, 16), 65);
    expect(bitmap.words).toBe(2);
    expect(bitmap.pageShift).toBe(12);
  });

  it.each([0, -1, 1.5, Number.NaN, MAX_BITMAP_PAGES + 1])("refuses %s pages", (pages) => {
    expect(() => DirtyBitmap.bytesFor(pages)).toThrow(
      new RegionAllocationError(
        `bitmap: page count must be a whole number from 1 to 2^32, not ${pages}`,
      ),
    );
    expect(() => new DirtyBitmap(region("bm", 0, 1 << 20), pages)).toThrow(
      `bm: page count must be a whole number from 1 to 2^32, not ${pages}`,
    );
  });

  it("refuses a region one word too small, and takes one exactly large enough", () => {
    expect(() => new DirtyBitmap(region("small", 0, 15), 65)).toThrow(
      new RegionAllocationError("region 'small' holds 15 bytes but a bitmap of 65 pages needs 16"),
    );
    expect(new DirtyBitmap(region("exact", 0, 16), 65).words).toBe(2);
  });

  it("tracks pages of 4 KiB or 2 MiB: guest bytes are pages times the page size", () => {
    expect(new DirtyBitmap(region("a", 0, 8), 10).guestBytes).toBe(10 * 4096);
    expect(new DirtyBitmap(region("b", 0, 8), 10, 21).guestBytes).toBe(10 * 2 * 1024 ** 2);
  });

  it("is laid out zeroed in the shared memory, under its name", () => {
    const bitmap = DirtyBitmap.allocate(layout, "allocated bitmap", 130, 21);
    expect(bitmap.region).toBe(layout.get("allocated bitmap"));
    expect(bitmap.region.byteLength).toBe(24);
    expect(bitmap.pages).toBe(130);
    expect(bitmap.pageShift).toBe(21);
    expect(bitmap.region.bytes(layout.memory).every((b) => b === 0)).toBe(true);
  });

  it("slices into bitmaps over the same bytes, the last word partial", () => {
    // 200 pages: words 0-3, the last holding pages 192-199.
    const bitmap = new DirtyBitmap(region("whole", 8192, 32), 200, 21);
    const head = bitmap.slice(0, 1);
    expect(head.region.toDescriptor()).toEqual({ name: "whole[0+1]", offset: 8192, byteLength: 8 });
    expect(head.pages).toBe(64);
    expect(head.pageShift).toBe(21);
    const tail = bitmap.slice(1, 3);
    expect(tail.region.toDescriptor()).toEqual({
      name: "whole[1+3]",
      offset: 8192 + 8,
      byteLength: 24,
    });
    // Pages 64-199 of the whole: 136, not 3 x 64.
    expect(tail.pages).toBe(136);
    expect(bitmap.slice(3, 1).pages).toBe(8);
    expect(bitmap.slice(0, 4).pages).toBe(200);
  });

  it.each([
    [-1, 1],
    [0, 0],
    [0, 5],
    [4, 1],
    [3, 2],
    [0.5, 1],
    [0, 1.5],
  ])("refuses a slice of %s words from word %s outside the bitmap", (firstWord, words) => {
    const bitmap = new DirtyBitmap(region("whole", 0, 32), 200);
    expect(() => bitmap.slice(firstWord, words)).toThrow(
      new RegionBoundsError(
        "whole",
        `slice of ${words} words from word ${firstWord}`,
        "is not inside the bitmap's 4 words",
      ),
    );
  });

  it("crosses threads as a descriptor", () => {
    const bitmap = new DirtyBitmap(region("d", 64, 16), 100, 21);
    expect(bitmap.toDescriptor()).toEqual({
      region: { name: "d", offset: 64, byteLength: 16 },
      pages: 100,
      pageShift: 21,
    });
  });
});

describe("dirty ring", () => {
  it("is a 64-byte header and 16-byte entries (KVM's struct kvm_dirty_gfn)", () => {
    expect(RING_HEADER_BYTES).toBe(64);
    expect(RING_ENTRY_BYTES).toBe(16);
    expect(DirtyRing.bytesFor(1)).toBe(80);
    expect(DirtyRing.bytesFor(4096)).toBe(64 + 4096 * 16);
    expect(DirtyRing.bytesFor(MAX_RING_ENTRIES)).toBe(64 + 65_536 * 16);
    const ring = DirtyRing.allocate(layout, "ring", 512);
    expect(ring.region).toBe(layout.get("ring"));
    expect(ring.region.byteLength).toBe(64 + 512 * 16);
    expect(ring.toDescriptor()).toEqual({ region: ring.region.toDescriptor(), entries: 512 });
  });

  it.each([0, -2, 3, 96, 1.5, Number.NaN, MAX_RING_ENTRIES * 2])(
    "refuses %s entries: a power of two from 1 to 65,536",
    (entries) => {
      const message = `a dirty ring needs a power-of-two entry count from 1 to 65536, not ${entries}`;
      expect(() => DirtyRing.bytesFor(entries)).toThrow(new RegionAllocationError(message));
      expect(() => new DirtyRing(region("r", 0, 1 << 22), entries)).toThrow(message);
    },
  );

  it("refuses a region too small by one byte, and takes one exactly large enough", () => {
    expect(() => new DirtyRing(region("short", 0, 64 + 8 * 16 - 1), 8)).toThrow(
      new RegionAllocationError("region 'short' is too small for a ring of 8 entries"),
    );
    expect(new DirtyRing(region("exact", 0, 64 + 8 * 16), 8).entries).toBe(8);
  });
});

describe("dirty bitmap pair", () => {
  it("lays out two zeroed bitmaps and a control block at epoch 0 with every writer idle", () => {
    const pair = DirtyBitmapPair.allocate(layout, "pair", 100, 3);
    expect(pair.pages).toBe(100);
    expect(pair.writers).toBe(3);
    expect(pair.control).toBe(layout.get("pair-epoch"));
    expect(pair.bitmaps[0].region).toBe(layout.get("pair-0"));
    expect(pair.bitmaps[1].region).toBe(layout.get("pair-1"));
    // The control block on a cache line of its own, the epoch first, the acks from byte 64.
    expect(pair.control.offset % 64).toBe(0);
    expect(pair.control.byteLength).toBe(64 + 3 * 4);
    const slots = pair.slots(layout.memory);
    expect(slots.byteOffset).toBe(pair.control.offset);
    expect([...slots]).toEqual([...new Array(16).fill(0), -1, -1, -1]);
    expect(EPOCH_IDLE | 0).toBe(-1);
  });

  it("reset sets epoch 0 and every writer idle again, and touches nothing past the last slot", () => {
    const pair = DirtyBitmapPair.allocate(layout, "reset pair", 64, 2);
    const after = layout.allocate("after reset pair", 4, 4);
    const slots = pair.slots(layout.memory);
    slots[EpochControl.epoch / 4] = 5;
    slots[16] = 4;
    slots[17] = 5;
    const next = new Int32Array(layout.memory.buffer, after.offset, 1);
    next[0] = 1234;
    pair.reset(layout.memory);
    expect([...slots.subarray(16)]).toEqual([-1, -1]);
    expect(slots[0]).toBe(0);
    expect(next[0]).toBe(1234);
  });

  it("takes 64 bytes then one u32 ack per writer, 1 to 256 writers", () => {
    expect(DirtyBitmapPair.controlBytes(1)).toBe(68);
    expect(DirtyBitmapPair.controlBytes(MAX_EPOCH_WRITERS)).toBe(64 + 256 * 4);
    for (const writers of [0, -1, 257, 1.5, Number.NaN]) {
      expect(() => DirtyBitmapPair.controlBytes(writers)).toThrow(
        new RegionAllocationError(
          `epoch control block: writers must be a whole number from 1 to 256, not ${writers}`,
        ),
      );
    }
  });

  /** Two 64-page bitmaps at 0 and 8 and a control block at 16, in a layout of its own making. */
  const parts = (control = region("ctl", 64, 68), b = region("b1", 8, 8), writers = 1) =>
    [
      [new DirtyBitmap(region("b0", 0, 8), 64), new DirtyBitmap(b, 64)] as const,
      control,
      writers,
    ] as const;

  it("takes regions that touch but do not overlap", () => {
    const [bitmaps, control, writers] = parts(region("ctl", 16, 68));
    expect(new DirtyBitmapPair(bitmaps, control, writers).pages).toBe(64);
    // The control block first, the bitmaps right after it.
    const after = [
      new DirtyBitmap(region("b0", 68, 8), 64),
      new DirtyBitmap(region("b1", 76, 8), 64),
    ] as const;
    expect(new DirtyBitmapPair(after, region("ctl", 0, 68), 1).pages).toBe(64);
  });

  it.each([
    ["the two bitmaps", region("ctl", 64, 68), region("b1", 7, 8)],
    ["the first bitmap and the control block", region("ctl", 4, 68), region("b1", 200, 8)],
    ["the second bitmap and the control block", region("ctl", 12, 68), region("b1", 8, 8)],
    ["the control block inside a bitmap", region("ctl", 200, 68), region("b1", 192, 280)],
  ])("refuses overlapping regions: %s", (_what, control, b) => {
    const bitmaps = [new DirtyBitmap(region("b0", 0, 8), 64), new DirtyBitmap(b, 64)] as const;
    expect(() => new DirtyBitmapPair(bitmaps, control, 1)).toThrow(
      new RegionBoundsError("ctl", "bitmap pair", "has overlapping regions"),
    );
  });

  it("refuses bitmaps of different pages or page sizes, naming both", () => {
    const a = new DirtyBitmap(region("a", 0, 8), 64);
    expect(
      () =>
        new DirtyBitmapPair([a, new DirtyBitmap(region("b", 8, 8), 63)], region("c", 64, 68), 1),
    ).toThrow(
      "region 'b': second bitmap of a pair tracks 63 pages of 2^12 bytes but 'a' tracks 64 of 2^12",
    );
    expect(
      () =>
        new DirtyBitmapPair(
          [a, new DirtyBitmap(region("b", 8, 8), 64, 21)],
          region("c", 64, 68),
          1,
        ),
    ).toThrow("tracks 64 pages of 2^21 bytes but 'a' tracks 64 of 2^12");
  });

  it("refuses a control block that is unaligned, too small, or for a bad writer count", () => {
    const [bitmaps] = parts();
    expect(() => new DirtyBitmapPair(bitmaps, region("ctl", 66, 68), 1)).toThrow(
      new RegionBoundsError("ctl", "epoch control block", "is not 4-byte aligned"),
    );
    expect(() => new DirtyBitmapPair(bitmaps, region("ctl", 64, 71), 2)).toThrow(
      "region 'ctl': epoch control block at [0, 72) is past the end (71 bytes)",
    );
    expect(new DirtyBitmapPair(bitmaps, region("ctl", 64, 72), 2).writers).toBe(2);
    expect(() => new DirtyBitmapPair(bitmaps, region("ctl", 64, 2000), 257)).toThrow(
      "ctl: writers must be a whole number from 1 to 256, not 257",
    );
  });

  it("crosses threads as a descriptor and comes back the same", () => {
    const pair = DirtyBitmapPair.allocate(layout, "sent pair", 130, 4, 21);
    const back = DirtyBitmapPair.fromDescriptor(
      JSON.parse(JSON.stringify(pair.toDescriptor())) as ReturnType<
        DirtyBitmapPair["toDescriptor"]
      >,
    );
    expect(back.toDescriptor()).toEqual(pair.toDescriptor());
    expect(back.pages).toBe(130);
    expect(back.bitmaps[1].pageShift).toBe(21);
    expect(back.bitmaps[0].region.offset).toBe(pair.bitmaps[0].region.offset);
    expect(back.control.offset).toBe(pair.control.offset);
    expect(back.writers).toBe(4);
  });
});
