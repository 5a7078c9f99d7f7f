import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import type { PostcopyRun } from "../src/migration/live/messages.js";
import { PostcopyGuest } from "../src/migration/live/postcopy-guest.js";
import { xxh64Oracle } from "../src/oracle/stream.js";
import { StreamKernel } from "../src/wasm/stream.js";
import { mix64, step64, vcpuState } from "../src/workload/splitmix.js";

// The destination's guest during post-copy, driven on this thread with
// scripted dependencies and a hand-moved clock (performance.now): which pages
// are missing, the page request a fault sends (once per page, as QEMU's
// postcopy_request_page in migration/postcopy-ram.c), the pages landing,
// the blocktime accounting (postcopy-vcpu-blocktime per vCPU,
// postcopy-blocktime while every vCPU waits at once, as the blocktime
// context of migration/postcopy-ram.c), the pacing of the vCPUs' writes and
// the digests kept for verification.

const PAGE_SHIFT = 8;
const PAGE_BYTES = 2 ** PAGE_SHIFT;

const layout = new MemoryLayout();
const kernel = StreamKernel.on(layout.memory);
const digest = layout.allocate("pcg-digest", 8);
/** Too small for one digest: hashing into it is a kernel error. */
const shortDigest = layout.allocate("pcg-short-digest", 4);
const source = layout.allocate("pcg-source", 16 * PAGE_BYTES, 4096);

let clock = 0;
beforeEach(() => {
  clock = 0;
  vi.spyOn(performance, "now").mockImplementation(() => clock);
});
/** Every guest a test built: stopped after each test, even one that failed midway. */
const guests: PostcopyGuest[] = [];
afterEach(async () => {
  await Promise.all(guests.splice(0).map((guest) => guest.stop()));
  vi.restoreAllMocks();
});

interface Rig {
  readonly guest: PostcopyGuest;
  readonly ram: Region;
  readonly requested: number[];
  readonly failures: Error[];
}

let ramCount = 0;

/** A guest of `pages` pages whose RAM holds a known pattern, with its requests and failures recorded. */
function rig(pages: number, run: PostcopyRun, digestRegion: Region = digest): Rig {
  const ram = layout.allocate(`pcg-ram-${ramCount++}`, pages * PAGE_BYTES, 4096);
  ram.bytes(layout.memory).set(pattern(pages * PAGE_BYTES, 11));
  const requested: number[] = [];
  const failures: Error[] = [];
  const guest = new PostcopyGuest(
    {
      memory: layout.memory,
      ram: { region: ram, pageShift: PAGE_SHIFT },
      kernel,
      digest: digestRegion,
      request: (page) => requested.push(page),
      failed: (error) => failures.push(error),
    },
    pages,
    run,
  );
  guests.push(guest);
  return { guest, ram, requested, failures };
}

function pattern(length: number, salt: number): Uint8Array {
  return new Uint8Array(length).map((_, i) => (i * 31 + salt) & 0xff);
}

/** Puts `page`'s contents from the source (a page of pattern `salt`) in the source area; returns where. */
function sourcePage(salt: number): number {
  source.bytes(layout.memory).set(pattern(PAGE_BYTES, salt));
  return source.offset;
}

/** The draws vCPU `vcpu` makes: splitmix64 from its own state, one step per write. */
function draws(seed: number, vcpu: number, count: number): bigint[] {
  let state = vcpuState(seed, vcpu);
  const out: bigint[] = [];
  for (let i = 0; i < count; i++) {
    state = step64(state);
    out.push(mix64(state));
  }
  return out;
}

const pageOf = (draw: bigint, pages: number) => Number(draw % BigInt(pages));

/** Lets the vCPUs' 2 ms ticks run a few times at the current clock. */
const ticks = () => new Promise((resolve) => setTimeout(resolve, 15));

describe("missing pages: the discard list and landing", () => {
  // Every page is present at the switch; the source's discard list marks the
  // stale or never-sent ones missing, each counted once.
  it("discard marks each listed page missing once, duplicates and all", () => {
    const { guest } = rig(8, { vcpus: 1, seed: 1, writesPerSecond: 0 });
    expect(guest.missing).toBe(0);
    for (let page = 0; page < 8; page++) expect(guest.has(page)).toBe(true);
    guest.discard(Uint32Array.of(2, 5, 2));
    guest.discard(Uint32Array.of(5, 7));
    expect(guest.missing).toBe(3);
    expect([...Array(8).keys()].filter((page) => !guest.has(page))).toEqual([2, 5, 7]);
    expect(guest.awaitedPages()).toEqual([]);
  });

  // The discard list comes before the guest runs; afterwards it is refused.
  it("refuses a discard once the guest started", async () => {
    const { guest } = rig(4, { vcpus: 1, seed: 1, writesPerSecond: 0 });
    guest.start();
    expect(() => guest.discard(Uint32Array.of(1))).toThrow(/^discard after the guest started$/);
    expect(guest.has(1)).toBe(true);
    await guest.stop();
  });

  // A page that arrives where one is missing is copied in whole, from where
  // the frame holds it, into its own slot and nowhere else.
  it("lands a missing page's bytes at its slot and nowhere else", () => {
    const { guest, ram } = rig(4, { vcpus: 1, seed: 1, writesPerSecond: 0 });
    const before = ram.bytes(layout.memory).slice();
    guest.discard(Uint32Array.of(1, 2));
    expect(guest.land(2, sourcePage(99))).toBe(true);
    expect(guest.has(2)).toBe(true);
    expect(guest.has(1)).toBe(false);
    expect(guest.missing).toBe(1);
    expect(guest.dropped).toBe(0);
    const after = ram.bytes(layout.memory);
    expect(after.subarray(2 * PAGE_BYTES, 3 * PAGE_BYTES)).toEqual(pattern(PAGE_BYTES, 99));
    expect(after.subarray(0, 2 * PAGE_BYTES)).toEqual(before.subarray(0, 2 * PAGE_BYTES));
    expect(after.subarray(3 * PAGE_BYTES)).toEqual(before.subarray(3 * PAGE_BYTES));
  });

  // A page that arrives where the destination already has it (never
  // discarded, or landed before) is dropped: a late copy never overwrites.
  it("drops a page that is already here, leaving its bytes alone", () => {
    const { guest, ram } = rig(4, { vcpus: 1, seed: 1, writesPerSecond: 0 });
    guest.discard(Uint32Array.of(3));
    expect(guest.land(3, sourcePage(40))).toBe(true);
    expect(guest.land(3, sourcePage(41))).toBe(false);
    expect(guest.land(0, sourcePage(42))).toBe(false);
    expect(guest.dropped).toBe(2);
    expect(guest.missing).toBe(0);
    const bytes = ram.bytes(layout.memory);
    expect(bytes.subarray(3 * PAGE_BYTES, 4 * PAGE_BYTES)).toEqual(pattern(PAGE_BYTES, 40));
    expect(bytes.subarray(0, PAGE_BYTES)).toEqual(
      pattern(4 * PAGE_BYTES, 11).subarray(0, PAGE_BYTES),
    );
  });
});

describe("a guest that is stopped before or without running", () => {
  // Nothing ran: no requests, no drops, no time, a zero blocktime per vCPU.
  it("reports an empty post-copy when stopped without starting", async () => {
    const { guest } = rig(4, { vcpus: 3, seed: 1, writesPerSecond: 0 });
    clock = 500;
    expect(await guest.stop()).toEqual({
      requests: 0,
      dropped: 0,
      phaseMs: 0,
      blocktime: 0,
      vcpuBlocktime: [0, 0, 0],
    });
  });

  // The phase runs from the vCPUs' start to their stop; a second stop
  // measures nothing new. An idle guest (0 writes per second) writes nothing.
  it("measures the phase from start to the first stop", async () => {
    const { guest, requested } = rig(4, { vcpus: 2, seed: 1, writesPerSecond: 0 });
    clock = 100;
    guest.start();
    clock = 5000;
    await ticks();
    clock = 5150;
    const done = await guest.stop();
    expect(done.phaseMs).toBe(5050);
    clock = 9000;
    expect((await guest.stop()).phaseMs).toBe(5050);
    expect(guest.writes).toBe(0);
    expect(requested).toEqual([]);
    expect(guest.requestsSent).toBe(0);
  });
});

describe("vCPU pacing", () => {
  // Each vCPU writes its share of the rate: credit builds with the time
  // passed, one write per whole credit.
  it("writes the rate's share per vCPU for the time passed", async () => {
    const { guest } = rig(16, { vcpus: 2, seed: 3, writesPerSecond: 2000 });
    guest.start();
    clock = 16;
    await ticks();
    // 16 ms at 1000 writes per second per vCPU: 16 each.
    expect(guest.writes).toBe(32);
    await guest.stop();
  });

  // Credit carried across a stall is capped at 50 ms of writes: a vCPU back
  // from a long wait does not burst.
  it("caps the credit after a stall at 50 ms of writes", async () => {
    const { guest } = rig(16, { vcpus: 2, seed: 3, writesPerSecond: 2000 });
    guest.start();
    clock = 10_000;
    await ticks();
    expect(guest.writes).toBe(100);
    await guest.stop();
  });

  // At a rate under 20 writes per second the cap is still one whole write.
  it("caps a slow vCPU's credit at one write", async () => {
    const { guest } = rig(16, { vcpus: 1, seed: 3, writesPerSecond: 2 });
    guest.start();
    clock = 60_000;
    await ticks();
    expect(guest.writes).toBe(1);
    await guest.stop();
  });
});

describe("guest writes and their digests", () => {
  // Each write stores its 64-bit draw (little-endian) in the word the draw
  // picks: page = draw mod pages, word = (draw >> 40) mod words per page.
  // The page's digest as first touched and after its last write are kept.
  it("stamps the drawn word and keeps the first-touch and last-write digests", async () => {
    const seed = 7;
    const { guest, ram } = rig(4, { vcpus: 1, seed, writesPerSecond: 20 });
    const original = ram.bytes(layout.memory).slice();
    const [draw] = draws(seed, 0, 1) as [bigint];
    const page = pageOf(draw, 4);
    const word = Number((draw >> 40n) % BigInt(PAGE_BYTES / 8));
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(guest.writes).toBe(1));
    await guest.stop();

    const expected = original.slice();
    new DataView(expected.buffer).setBigUint64(page * PAGE_BYTES + word * 8, draw, true);
    const now = ram.bytes(layout.memory);
    expect(now).toEqual(expected);
    const slot = (bytes: Uint8Array) => bytes.subarray(page * PAGE_BYTES, (page + 1) * PAGE_BYTES);
    expect(guest.touched[page]).toBe(xxh64Oracle(slot(original)));
    expect(guest.written[page]).toBe(xxh64Oracle(slot(expected)));
    for (let p = 0; p < 4; p++) expect(guest.wrote(p)).toBe(p === page);
  });

  // A page written twice keeps the digest it had when first touched and the
  // one after the second write.
  it("keeps the first-touch digest across later writes", async () => {
    const seed = 9;
    const { guest, ram } = rig(1, { vcpus: 1, seed, writesPerSecond: 20 });
    const original = ram.bytes(layout.memory).slice();
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(guest.writes).toBe(1));
    clock = 2000;
    await vi.waitFor(() => expect(guest.writes).toBe(2));
    await guest.stop();
    const expected = original.slice();
    const view = new DataView(expected.buffer);
    for (const draw of draws(seed, 0, 2)) {
      view.setBigUint64(Number((draw >> 40n) % BigInt(PAGE_BYTES / 8)) * 8, draw, true);
    }
    expect(guest.touched[0]).toBe(xxh64Oracle(original));
    expect(guest.written[0]).toBe(xxh64Oracle(expected));
    expect(ram.bytes(layout.memory)).toEqual(expected);
  });

  // A vCPU that fails (a kernel error) hands the error to the session and ends.
  it("hands a vCPU's kernel error to the session", async () => {
    const { guest, failures } = rig(2, { vcpus: 1, seed: 1, writesPerSecond: 20 }, shortDigest);
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(failures).toHaveLength(1));
    expect(failures[0]).toBeInstanceOf(RegionBoundsError);
    expect(failures[0]?.message).toMatch(/digest/);
    expect(guest.writes).toBe(0);
    await guest.stop();
  });
});

describe("faults, page requests and blocktime", () => {
  // Two vCPUs fault on the one missing page: one page request goes out on
  // the return path (postcopy_request_page asks once per page), both wait,
  // every vCPU is blocked at once, and the page landing wakes both.
  it("requests a page once for every vCPU waiting on it and wakes them all", async () => {
    const { guest, requested } = rig(1, { vcpus: 2, seed: 5, writesPerSecond: 40 });
    guest.discard(Uint32Array.of(0));
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(requested).toEqual([0]));
    await ticks();
    expect(guest.requestsSent).toBe(1);
    expect(guest.awaitedPages()).toEqual([0]);
    expect(guest.writes).toBe(0);
    clock = 1030;
    expect(guest.land(0, sourcePage(77))).toBe(true);
    await vi.waitFor(() => expect(guest.writes).toBe(2));
    expect(guest.awaitedPages()).toEqual([]);
    clock = 1040;
    const done = await guest.stop();
    expect(done).toEqual({
      requests: 1,
      dropped: 0,
      phaseMs: 1040,
      blocktime: 30,
      vcpuBlocktime: [30, 30],
    });
    expect(guest.touched[0]).toBe(xxh64Oracle(pattern(PAGE_BYTES, 77)));
  });

  // Only one of two vCPUs waits: its blocktime grows, postcopy-blocktime
  // (every vCPU blocked at once) does not.
  it("counts no all-vCPU blocktime while another vCPU runs", async () => {
    const pages = 16;
    const seed = 21;
    const [first0] = draws(seed, 0, 1) as [bigint];
    const [first1] = draws(seed, 1, 1) as [bigint];
    const faulting = pageOf(first0, pages);
    expect(pageOf(first1, pages)).not.toBe(faulting);
    const { guest, requested } = rig(pages, { vcpus: 2, seed, writesPerSecond: 40 });
    guest.discard(Uint32Array.of(faulting));
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(requested).toEqual([faulting]));
    await vi.waitFor(() => expect(guest.writes).toBe(1));
    expect(guest.wrote(pageOf(first1, pages))).toBe(true);
    clock = 1030;
    guest.land(faulting, sourcePage(3));
    await vi.waitFor(() => expect(guest.writes).toBe(2));
    clock = 1035;
    const done = await guest.stop();
    expect(done.blocktime).toBe(0);
    expect(done.vcpuBlocktime).toEqual([30, 0]);
  });

  // A vCPU's blocktime sums all its waits (the pages land 30 ms and 40 ms
  // after its faults); with one vCPU each wait is also postcopy-blocktime.
  it("sums a vCPU's waits across faults", async () => {
    const pages = 2;
    let seed = 1;
    while (new Set(draws(seed, 0, 2).map((d) => pageOf(d, pages))).size < 2) seed++;
    const [a, b] = draws(seed, 0, 2).map((d) => pageOf(d, pages)) as [number, number];
    const { guest, requested } = rig(pages, { vcpus: 1, seed, writesPerSecond: 20 });
    guest.discard(Uint32Array.of(0, 1));
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(requested).toEqual([a]));
    expect(guest.awaitedPages()).toEqual([a]);
    clock = 1030;
    guest.land(a, sourcePage(1));
    await vi.waitFor(() => expect(guest.writes).toBe(1));
    clock = 2000;
    await vi.waitFor(() => expect(requested).toEqual([a, b]));
    expect(guest.awaitedPages()).toEqual([b]);
    clock = 2040;
    guest.land(b, sourcePage(2));
    await vi.waitFor(() => expect(guest.writes).toBe(2));
    const done = await guest.stop();
    expect(done.vcpuBlocktime).toEqual([70]);
    expect(done.blocktime).toBe(70);
    expect(done.requests).toBe(2);
  });

  // Pages awaited are those requested and not yet here, in page order; a
  // missing page no vCPU asked for is not awaited.
  it("lists only requested pages still missing as awaited", async () => {
    const pages = 16;
    const seed = 4;
    const [draw] = draws(seed, 0, 1) as [bigint];
    const faulting = pageOf(draw, pages);
    const other = (faulting + 1) % pages;
    const { guest } = rig(pages, { vcpus: 1, seed, writesPerSecond: 20 });
    guest.discard(Uint32Array.from({ length: pages }, (_, i) => i));
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(guest.awaitedPages()).toEqual([faulting]));
    expect(guest.land(other, sourcePage(5))).toBe(true);
    expect(guest.awaitedPages()).toEqual([faulting]);
    expect(guest.missing).toBe(pages - 1);
    guest.land(faulting, sourcePage(6));
    expect(guest.awaitedPages()).toEqual([]);
    await guest.stop();
  });

  // Stopping the guest ends every wait at the stop: the waiting vCPUs write
  // nothing more, and each wait is charged up to the stop, not beyond.
  it("ends every wait at the stop without writing the missing page", async () => {
    const { guest, requested } = rig(1, { vcpus: 2, seed: 8, writesPerSecond: 40 });
    guest.discard(Uint32Array.of(0));
    clock = 200;
    guest.start();
    clock = 1000;
    await vi.waitFor(() => expect(requested).toEqual([0]));
    await ticks();
    clock = 1050;
    const stopping = guest.stop();
    clock = 9999;
    const done = await stopping;
    expect(done).toEqual({
      requests: 1,
      dropped: 0,
      phaseMs: 850,
      blocktime: 50,
      vcpuBlocktime: [50, 50],
    });
    expect(guest.writes).toBe(0);
    expect(guest.wrote(0)).toBe(false);
    expect(guest.has(0)).toBe(false);
    expect(guest.awaitedPages()).toEqual([0]);
  });
});
