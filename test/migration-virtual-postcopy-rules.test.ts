/*
 * Post-copy on virtual time (src/migration/virtual-postcopy.ts) on a
 * scripted context whose every figure is known: the guest's touched pages
 * are chosen per window, the link carries a fixed number of RAM records per
 * 100 ms window, and the missing set is laid out by hand. The rules are
 * docs/migration.md's "post-copy" bullet, in QEMU's names: each touched
 * missing page is a remote fault (ram.postcopy-requests) waiting a round trip
 * plus the page; a window's faults are shared evenly by the vCPUs, each
 * blocked for its share, at most the window (postcopy-vcpu-blocktime, and
 * postcopy-blocktime for all of them at once); the next window writes only
 * for the time they ran; the rest of the link's window pushes the missing
 * pages in page order.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Guest } from "../src/guest/guest.js";
import type { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { Region } from "../src/memory/region.js";
import type { Destination } from "../src/migration/destination.js";
import { LIST_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationBitmap } from "../src/migration/migration-bitmap.js";
import { type MigrationOptions, resolveMigrationOptions } from "../src/migration/options.js";
import type { Pass, PostcopyOutcome } from "../src/migration/precopy/types.js";
import { runVirtualPostcopy } from "../src/migration/virtual-postcopy.js";
import { VirtualRunState } from "../src/migration/virtual-run-state.js";

const MiB = 1024 ** 2;
const PAGE = 4096;
/** A RAM record on the wire: the page and QEMU's 8-byte offset|flags header. */
const RECORD = PAGE + 8;
const WINDOW_MS = 100;
/** A link that carries `records` RAM records per 100 ms window. */
const carrying = (records: number) => (records * RECORD * 1000) / WINDOW_MS;

/** What the guest saw at the start of a window, when it wrote. */
interface WindowStart {
  readonly clockMs: number;
  readonly writes: number;
  /** The pages still missing on the destination. */
  readonly missing: readonly number[];
  /** Pages counted as sent so far (metadata mode's count). */
  readonly normal: number;
}

interface Script {
  readonly options: Partial<MigrationOptions>;
  /** Pages pending at the switch, which post-copy takes as missing ("all": every page). */
  readonly missing: readonly number[] | "all";
  /** Pages the guest writes in window `w` (1-based); none when absent. */
  readonly touches?: (w: number) => readonly number[];
  /** Page numbers a harvest batch lists at most. */
  readonly batch?: number;
  /** A destination to mirror the guest's own writes to (default: in content mode). */
  readonly destination?: boolean;
  /** Whether the source guest has RAM (default: in content mode). */
  readonly ram?: boolean;
  readonly untilMs?: number;
}

interface Run {
  readonly outcome: PostcopyOutcome;
  readonly s: VirtualRunState;
  readonly windows: readonly WindowStart[];
  /** Page numbers of each send of listed pages (content mode), in order. */
  readonly sends: readonly (readonly number[])[];
  /** Pages written to the destination by the guest itself, and whether each carried the source page. */
  readonly mirrored: readonly { readonly page: number; readonly sameAsSource: boolean }[];
}

function pagesOf(bits: Uint8Array, pages: number): number[] {
  const out: number[] = [];
  for (let p = 0; p < pages; p++) if ((((bits[p >>> 3] ?? 0) >>> (p & 7)) & 1) === 1) out.push(p);
  return out;
}

/** Runs post-copy over a scripted guest, dirty log and link; the link's time is bytes over max-bandwidth. */
async function runScript(script: Script): Promise<Run> {
  const o = resolveMigrationOptions({
    guestBytes: MiB,
    content: false,
    workload: { kind: "uniform" },
    writesPerSecond: 1000,
    windowMs: WINDOW_MS,
    ...script.options,
  });
  const pages = o.guestBytes / PAGE;
  const bitmapBytes = Math.ceil(pages / 64) * 8;
  const withRam = script.ram ?? o.content;
  const listBytes = LIST_PAGES * 4;
  const ramOffset = listBytes + Math.ceil(bitmapBytes / PAGE) * PAGE;
  const total = ramOffset + (withRam ? o.guestBytes : 0);
  const memory = new WebAssembly.Memory({ initial: Math.ceil(total / 65536) });
  const list = new Region({ name: "list", offset: 0, byteLength: listBytes });
  const missingRegion = new Region({ name: "missing", offset: listBytes, byteLength: bitmapBytes });
  const ram = withRam
    ? new Region({ name: "ram", offset: ramOffset, byteLength: o.guestBytes })
    : undefined;
  const source = ram?.bytes(memory);
  // Each source page holds its own number, so a mirrored write can be checked.
  for (let p = 0; source && p < pages; p++) source.fill(p & 0xff, p * PAGE, (p + 1) * PAGE);
  const listed = new Uint32Array(memory.buffer, 0, LIST_PAGES);
  const bits = missingRegion.bytes(memory);
  const s = new VirtualRunState(o);
  const windows: WindowStart[] = [];
  const sends: number[][] = [];
  const mirrored: { page: number; sameAsSource: boolean }[] = [];
  const batch = script.batch ?? LIST_PAGES;
  let logged: number[] = [];
  let pending: number[] = [];

  const guest = {
    pages,
    ram,
    dirty: {
      count: (bitmap: DirtyBitmap) => pagesOf(bitmap.region.bytes(memory), pages).length,
    },
    write: async (writes: number) => {
      windows.push({
        clockMs: s.clockMs,
        writes,
        missing: pagesOf(bits, pages),
        normal: s.counts.normal,
      });
      logged = [...(script.touches?.(windows.length) ?? [])];
      return logged.length;
    },
  };
  const pendingSet = {
    moveInto: (target: DirtyBitmap) => {
      const into = target.region.bytes(memory);
      const start = script.missing === "all" ? null : script.missing;
      for (let p = 0; p < pages; p++) {
        if (start === null || start.includes(p))
          into[p >>> 3] = (into[p >>> 3] ?? 0) | (1 << (p & 7));
      }
      return start === null ? pages : start.length;
    },
    resetCursor: () => {},
    next: () => {
      const n = Math.min(batch, pending.length);
      listed.set(pending.slice(0, n));
      pending = pending.slice(n);
      return n;
    },
  };
  const destination =
    (script.destination ?? o.content)
      ? {
          writePage: (page: number, bytes: Uint8Array) => {
            mirrored.push({ page, sameAsSource: bytes.every((b) => b === (page & 0xff)) });
          },
        }
      : undefined;
  const outcome = await runVirtualPostcopy(
    {
      o,
      guest: guest as unknown as Guest,
      memory,
      pending: pendingSet as unknown as MigrationBitmap,
      cursor: new Region({ name: "cursor", offset: 0, byteLength: 8 }),
      list,
      missing: { region: missingRegion } as unknown as DirtyBitmap,
      s,
      destination: destination as unknown as Destination | undefined,
      sync: () => {
        pending = logged;
        logged = [];
        return pending.length;
      },
      linkMs: (bytes) => (Number.isFinite(o.maxBandwidth) ? (bytes / o.maxBandwidth) * 1000 : 0),
      sendListed: async (count): Promise<Pass> => {
        // As the engine's: only content mode sends listed pages.
        if (!o.content) throw new Error("content mode not set up");
        sends.push([...listed.subarray(0, count)]);
        s.counts.normal += count;
        return { pages: count, bytes: count * RECORD, cut: false };
      },
    },
    script.untilMs ?? 3_600_000,
  );
  return { outcome, s, windows, sends, mirrored };
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe("post-copy's remote faults, blocktime and windows (metadata mode)", () => {
  // Two vCPUs, 1000 writes a second (100 a window), a round trip of 2 x 3 ms
  // and a link of 10 records a window (a record takes 10 ms). Pages 0..23 are
  // missing; in window 1 the guest touches 20..23 (remote faults) and 40
  // (already on the destination), then nothing.
  const LATENCY = 3;
  const VCPUS = 2;
  const PER_WINDOW = 10;
  const script: Script = {
    options: { vcpus: VCPUS, latencyMs: LATENCY, maxBandwidth: carrying(PER_WINDOW) },
    missing: range(0, 24),
    touches: (w) => (w === 1 ? [20, 21, 22, 23, 40] : []),
  };
  const faultMs = 2 * LATENCY + (RECORD / carrying(PER_WINDOW)) * 1000;
  const perVcpuMs = Math.min(WINDOW_MS, (4 / VCPUS) * faultMs);

  it("counts each touched missing page as one request, waiting a round trip plus the page", async () => {
    const { outcome } = await runScript(script);
    expect(faultMs).toBe(16);
    expect(outcome.requests).toBe(4);
    // Each request's own wait, summed.
    expect(outcome.faultWaitMs).toBe(4 * faultMs);
    // The faults are shared evenly by the vCPUs: each is blocked for its share, all at once.
    expect(outcome.vcpuBlocktime).toEqual([perVcpuMs, perVcpuMs]);
    expect(outcome.blocktime).toBe(perVcpuMs);
  });

  it("writes the next window only for the time the vCPUs ran, and at least once", async () => {
    const { windows, s } = await runScript(script);
    const full = (1000 * WINDOW_MS) / 1000;
    expect(windows.map((w) => w.writes)).toEqual([
      full,
      Math.floor(full * (1 - perVcpuMs / WINDOW_MS)),
      full,
    ]);
    expect(s.guestWrote).toBe(true);
  });

  it("pushes the link's window less the faults, in page order, and each window lasts the rate window", async () => {
    const { windows, outcome, s } = await runScript(script);
    expect(windows.map((w) => w.clockMs)).toEqual([0, 100, 200]);
    // Window 1: 4 faults and 6 pushed (0..5); window 2: 10 pushed; window 3: the last 4.
    expect(windows.map((w) => w.missing)).toEqual([range(0, 24), range(6, 20), range(16, 20)]);
    expect(windows.map((w) => w.normal)).toEqual([0, PER_WINDOW, 2 * PER_WINDOW]);
    expect(outcome.windows).toBe(3);
    // The last window carried 4 records (40 ms on the link) but lasts the window.
    expect(s.clockMs).toBe(300);
  });

  it("sends every missing page once as a whole record, and counts it in the run's totals", async () => {
    const { outcome, s, sends } = await runScript(script);
    expect(sends).toEqual([]);
    expect(outcome.pages).toBe(24);
    expect(outcome.bytes).toBe(24 * RECORD);
    expect(s.counts.normal).toBe(24);
    expect(s.transferred).toBe(24 * RECORD);
    expect(outcome.missing).toBe(0);
    expect(s.destinationWritten).toBe(false);
  });

  it("is not a timeout when the last window ends exactly at the time limit (the clock must pass it)", async () => {
    const { outcome } = await runScript({ ...script, untilMs: 300 });
    expect(outcome.failure).toBeNull();
    expect(outcome.missing).toBe(0);
  });

  it("fails with the pages still on the source once the clock passes the time limit", async () => {
    const { outcome } = await runScript({ ...script, untilMs: 150 });
    expect(outcome.windows).toBe(2);
    expect(outcome.missing).toBe(4);
    expect(outcome.pages).toBe(20);
    expect(outcome.bytes).toBe(20 * RECORD);
    expect(outcome.requests).toBe(4);
    expect(outcome.vcpuBlocktime).toEqual([perVcpuMs, perVcpuMs]);
    expect(outcome.failure).toMatch(/^timeout during post-copy with 4 pages still on the source/);
  });

  it("ends when its last page lands: a limit after that, inside the last window, is met", async () => {
    // Window 3 (200 to 300 ms) carries the last 4 records, 40 ms on the link:
    // every page is on the destination at 240 ms, before a limit at 250.
    const { outcome } = await runScript({ ...script, untilMs: 250 });
    expect(outcome.failure).toBeNull();
    expect(outcome.missing).toBe(0);
    expect(outcome.pages).toBe(24);
    // A limit exactly when the last page lands is met too: the clock must pass it.
    const atLanding = await runScript({ ...script, untilMs: 240 });
    expect(atLanding.outcome.failure).toBeNull();
  });

  it("counts a last window's pages the link had not delivered by the limit as still on the source", async () => {
    // The same 4 records land evenly over 200 to 240 ms: at 230 ms the last
    // of them (10 ms of the link's 40) has not arrived.
    const { outcome } = await runScript({ ...script, untilMs: 230 });
    expect(outcome.windows).toBe(3);
    expect(outcome.missing).toBe(1);
    expect(outcome.failure).toMatch(/^timeout during post-copy with 1 pages still on the source/);
    // At 200 ms, none of them had.
    const atStart = await runScript({ ...script, untilMs: 200.5 });
    expect(atStart.outcome.missing).toBe(4);
  });

  it("without missing pages runs no window, and reports a zero blocktime for every vCPU", async () => {
    // QEMU's postcopy-vcpu-blocktime is one entry per vCPU.
    const { outcome, windows } = await runScript({
      options: { vcpus: 3, maxBandwidth: carrying(PER_WINDOW) },
      missing: [],
    });
    expect(windows).toEqual([]);
    expect(outcome).toMatchObject({ pages: 0, bytes: 0, requests: 0, windows: 0, failure: null });
    expect(outcome.vcpuBlocktime).toEqual([0, 0, 0]);
    expect(outcome.blocktime).toBe(0);
  });

  it("blocks a vCPU at most the window, and the next window still writes once", async () => {
    // One vCPU, a round trip of 2 x 50 ms: 2 faults wait 2 x 110 ms, more than the window.
    const { outcome, windows } = await runScript({
      options: { vcpus: 1, latencyMs: 50, maxBandwidth: carrying(PER_WINDOW) },
      missing: range(0, 12),
      touches: (w) => (w === 1 ? [10, 11] : []),
    });
    expect(outcome.vcpuBlocktime).toEqual([WINDOW_MS]);
    expect(outcome.blocktime).toBe(WINDOW_MS);
    // Requests overlap no more: their waits summed pass the phase.
    expect(outcome.faultWaitMs).toBe(2 * 110);
    expect(windows.map((w) => w.writes)).toEqual([100, 1]);
  });

  it("lasts as long as the link takes when a window's faults pass what it carries, pushing one page beside them", async () => {
    const touched = range(20, 32);
    const { windows, s, outcome } = await runScript({
      options: { vcpus: 4, maxBandwidth: carrying(PER_WINDOW) },
      missing: range(0, 32),
      touches: (w) => (w === 1 ? touched : []),
    });
    // 12 faults and 1 pushed: 13 records, 130 ms on the link.
    expect(windows[1]).toMatchObject({ clockMs: 130, missing: range(1, 20), normal: 13 });
    expect(outcome.requests).toBe(12);
    expect(outcome.windows).toBe(3);
    expect(s.clockMs).toBe(130 + 100 + 100);
  });

  it("sends a push larger than the page list in parts, each page once", async () => {
    // A metadata guest one page-list and 8 pages large, all missing, on an unthrottled link.
    const pages = LIST_PAGES + 8;
    const { outcome, s } = await runScript({
      options: { guestBytes: pages * PAGE, maxBandwidth: Number.POSITIVE_INFINITY },
      missing: "all",
    });
    expect(outcome.windows).toBe(1);
    expect(outcome.pages).toBe(pages);
    expect(outcome.bytes).toBe(pages * RECORD);
    expect(s.counts.normal).toBe(pages);
  });

  it("mirrors nothing without the guest's RAM, even with a destination", async () => {
    const { outcome, s, mirrored } = await runScript({
      ...script,
      destination: true,
      ram: false,
    });
    expect(outcome.failure).toBeNull();
    expect(mirrored).toEqual([]);
    expect(s.destinationWritten).toBe(false);
  });
});

describe("post-copy in content mode: faulted pages first, then the push; the guest's own writes mirrored", () => {
  it("sends the faults, then the missing pages in page order, and mirrors pages already there", async () => {
    // Pages 0..15 missing, 10 records a window. Window 1 touches 3 and 12
    // (faults) and 100, 101 (there already); window 2 touches 0 (pushed in
    // window 1) and 200. Harvest batches of 3 page numbers.
    const { sends, mirrored, outcome, s } = await runScript({
      options: { content: true, maxBandwidth: carrying(10) },
      missing: range(0, 16),
      touches: (w) => (w === 1 ? [3, 100, 101, 12] : w === 2 ? [0, 200] : []),
      batch: 3,
    });
    // Window 2 faulted nothing: the link is not asked to send an empty list.
    expect(sends).toEqual([
      [3, 12],
      [0, 1, 2, 4, 5, 6, 7, 8],
      [9, 10, 11, 13, 14, 15],
    ]);
    expect(mirrored).toEqual([100, 101, 0, 200].map((page) => ({ page, sameAsSource: true })));
    expect(s.destinationWritten).toBe(true);
    expect(outcome).toMatchObject({ pages: 16, bytes: 16 * RECORD, requests: 2, windows: 2 });
    expect(s.transferred).toBe(16 * RECORD);
  });

  it("leaves the destination to the decoder when the guest touched only missing pages", async () => {
    const { mirrored, s, outcome } = await runScript({
      options: { content: true, maxBandwidth: carrying(10) },
      missing: range(0, 4),
      touches: (w) => (w === 1 ? [1, 2] : []),
    });
    expect(outcome.requests).toBe(2);
    expect(mirrored).toEqual([]);
    expect(s.destinationWritten).toBe(false);
  });

  // The background push walks the missing bitmap in page order, a link
  // window's worth at a time, wherever the missing pages lie (the walk skips
  // whole empty bytes, which must never skip a missing page).
  const pushed = async (missing: readonly number[], perWindow: number) => {
    const { sends, outcome } = await runScript({
      options: { content: true, maxBandwidth: carrying(perWindow) },
      missing,
      untilMs: 100 * (missing.length + 1),
    });
    const sorted = [...missing].sort((a, b) => a - b);
    const chunks: number[][] = [];
    for (let i = 0; i < sorted.length; i += perWindow) chunks.push(sorted.slice(i, i + perWindow));
    expect(outcome.failure).toBeNull();
    expect(outcome.windows).toBe(chunks.length);
    expect(sends).toEqual(chunks);
  };

  it("pushes a page that follows a byte the push just emptied", async () => {
    await pushed([0, 8], 10);
    await pushed([5, 6, 7, 8, 9, 17], 3);
  });

  it("pushes any missing set in page order, a window's worth at a time", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.integer({ min: 0, max: 255 }), { maxLength: 80 }),
        fc.integer({ min: 1, max: 20 }),
        pushed,
      ),
      { numRuns: 60 },
    );
  });
});
