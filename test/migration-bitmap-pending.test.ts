/*
 * The migration bitmap (QEMU's RAMBlock::bmap, migration/ram.c) over the
 * guest's epoch-swapped dirty log: it needs a double-buffered log, covers
 * the guest's pages, and `clear` empties both bitmaps and returns the pair
 * to epoch 0, so a second run on the same guest starts from nothing pending.
 */
import { describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { MigrationBitmap } from "../src/migration/migration-bitmap.js";

function guest(doubleBuffered: boolean): Guest {
  return new Guest(new MemoryLayout(), {
    bytes: 4 * 1024 ** 2,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 1,
    doubleBuffered,
  });
}

describe("the migration bitmap", () => {
  it("needs a guest with a double-buffered dirty log", () => {
    expect(() => new MigrationBitmap(guest(false))).toThrowError(
      new TypeError("a migration bitmap needs a guest with a double-buffered dirty log"),
    );
  });

  it("covers the guest's pages", () => {
    expect(new MigrationBitmap(guest(true)).pages).toBe(1024);
  });

  it("marks every page pending for the first pass, and a sync counts what was dirtied since", () => {
    const g = guest(true);
    const bitmap = new MigrationBitmap(g);
    expect(bitmap.markAll()).toBe(1024);
    const log = g.log;
    if (!log) throw new Error("no log");
    g.dirty.markPage(log.active, 7);
    g.dirty.markPage(log.active, 9);
    // The sync flips the pair: the two pages dirtied meanwhile are pending now.
    expect(bitmap.sync()).toBe(2);
    expect(log.epoch).toBe(1);
  });

  it("clear empties both bitmaps and returns the pair to epoch 0", () => {
    const g = guest(true);
    const log = g.log;
    if (!log) throw new Error("no log");
    const bitmap = new MigrationBitmap(g);
    bitmap.markAll();
    g.dirty.markPage(log.active, 3);
    expect(bitmap.sync()).toBe(1);
    g.dirty.markPage(log.active, 4);
    expect(log.epoch).toBe(1);
    bitmap.clear();
    expect(log.epoch).toBe(0);
    for (const b of log.pair.bitmaps) expect(g.dirty.count(b)).toBe(0);
    expect(bitmap.sync()).toBe(0);
  });
});
