/*
 * The parts of QEMU's iteration in the model that tell a completion's
 * pages the destination never held from the ones it holds: the rate the
 * first kind goes at, the record of pages sent, and the scan that resumes
 * at the first page a pass left.
 */
import { describe, expect, it } from "vitest";
import { Guest } from "../src/guest/guest.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { MigrationBitmap } from "../src/migration/migration-bitmap.js";
import { firstTouchRate } from "../src/migration/qemu-iteration/iteration.js";
import { SentPages } from "../src/migration/sent-pages.js";
import { CURSOR_BYTES } from "../src/wasm/dirty.js";

const MiB = 1024 ** 2;

function guest(): Guest {
  return new Guest(new MemoryLayout(), {
    bytes: 4 * MiB,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 1,
    doubleBuffered: true,
  });
}

let lists = 0;
/** A list region holding `pages` from slot 0 on. */
function listOf(g: Guest, pages: readonly number[], slots = pages.length + 4) {
  const list = g.layout.allocate(`list-${++lists}`, slots * 4);
  new Uint32Array(g.layout.memory.buffer, list.offset, slots).set(pages);
  return list;
}

describe("the rate of pages the destination never held", () => {
  it("is the first pass's with no rate limit where the destination's was not measured, or the completion's where that is lower", () => {
    const base = { hostRate: 30 * MiB, completionRate: 400 * MiB, startMs: 0, stopMs: 0 };
    // The host's rate stands for the unthrottled one where none was measured.
    expect(firstTouchRate(base)).toBe(30 * MiB);
    // A run's first pass paced at 30 MiB/s by max-bandwidth says nothing of
    // how fast the destination takes pages: the probe's unthrottled pass does.
    expect(firstTouchRate({ ...base, unthrottledRate: 200 * MiB })).toBe(200 * MiB);
    expect(firstTouchRate({ ...base, unthrottledRate: 500 * MiB })).toBe(400 * MiB);
    expect(firstTouchRate({ ...base, completionRate: 20 * MiB })).toBe(20 * MiB);
  });

  it("is the destination's measured rate for them where there is one, no faster than the completion", () => {
    const base = {
      hostRate: 30 * MiB,
      unthrottledRate: 200 * MiB,
      completionRate: 400 * MiB,
      startMs: 0,
      stopMs: 0,
    };
    // Huge pages free on the destination: pages never held go faster than
    // the first pass did with the guest running.
    expect(firstTouchRate({ ...base, freshRate: 300 * MiB })).toBe(300 * MiB);
    // A fault and a zeroed page each: slower than that pass.
    expect(firstTouchRate({ ...base, freshRate: 100 * MiB })).toBe(100 * MiB);
    expect(firstTouchRate({ ...base, freshRate: 900 * MiB })).toBe(400 * MiB);
  });
});

describe("the pages a run has sent", () => {
  it("counts a page the first time it is recorded, reading only the slots asked for", () => {
    const g = guest();
    const sent = new SentPages(g);
    // Slot 3 holds page 900, past the slots recorded.
    const list = listOf(g, [5, 6, 700, 900]);
    expect(sent.record(list, 0, 3)).toBe(3);
    expect(sent.record(list, 1, 3)).toBe(0);
    expect(sent.record(list, 3, 4)).toBe(1);
    // A page listed twice in one record is sent once.
    expect(sent.record(listOf(g, [8, 8, 5]), 0, 3)).toBe(1);
    // From a slot past the first.
    expect(sent.record(listOf(g, [1, 2, 3]), 2, 3)).toBe(1);
    expect(sent.record(listOf(g, [1, 2, 3]), 0, 3)).toBe(2);
  });

  it("forgets every page when cleared, for the next run", () => {
    const g = guest();
    const sent = new SentPages(g);
    const list = listOf(g, [0, 1023, 512]);
    expect(sent.record(list, 0, 3)).toBe(3);
    sent.clear();
    expect(sent.record(list, 0, 3)).toBe(3);
  });
});

describe("a scan that resumes where a pass left pages", () => {
  it("starts its next batch at the first page put back and goes on to the end; pages behind it wait for the wrap", () => {
    const g = guest();
    const pending = new MigrationBitmap(g);
    const cursor = g.layout.allocate("cursor", CURSOR_BYTES);
    // Room for every page in one batch (the harvest's hot loop wants 1,026 slots spare).
    const list = g.layout.allocate("list", 4096 * 4);
    expect(pending.markAll()).toBe(1024);
    pending.resetCursor(cursor);
    const n = pending.next(cursor, list);
    expect(n).toBe(1024);
    // The pass sent the first 300 pages of the batch and left the rest.
    pending.putBack(list, 300, n);
    pending.resumeAt(cursor, list, 300);
    // Page 10, sent, is dirtied again and merged in by a sync.
    pending.putBack(listOf(g, [10]), 0, 1);
    expect(pending.next(cursor, list)).toBe(724);
    expect(new Uint32Array(g.layout.memory.buffer, list.offset, 2)).toEqual(
      new Uint32Array([300, 301]),
    );
    expect(pending.next(cursor, list)).toBe(0);
    pending.resetCursor(cursor);
    expect(pending.next(cursor, list)).toBe(1);
    expect(new Uint32Array(g.layout.memory.buffer, list.offset, 1)[0]).toBe(10);
  });
});
