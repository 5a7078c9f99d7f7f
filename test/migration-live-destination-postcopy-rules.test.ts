import { afterEach, describe, expect, it } from "vitest";
import type { DestinationReport } from "../src/migration/live/destination.js";
import { FrameType } from "../src/migration/live/frame.js";
import {
  decodePostcopyDone,
  decodeResult,
  encodeDiscard,
  encodePostcopyEnd,
  encodePostcopyRun,
  type Hello,
} from "../src/migration/live/messages.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";
import { RawSource } from "./support/live-raw-source.js";

// A destination's post-copy, driven frame by frame by a source written by
// hand (test/support/live-raw-source.ts): the pages a discard list leaves
// on the source land here once, post-copy's end needs every one of them,
// verification waits for that end and holds a page the guest wrote here to
// the source's copy it began from, and the frames post-copy cannot take are
// refused with the guest's loss named.

const PAGES = 256;

const rig = new LivePostcopyRig();
const peers: RawSource[] = [];

// A close that hangs fails at once rather than at the runner's 10 s.
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.close();
  await rig.close();
}, 2_000);

/** Writes a recognisable page: its number and a byte pattern. */
function stamp(p: RawSource, page: number): void {
  const at = page * 4096;
  p.ram.fill((page * 29 + 5) & 0xff, at, at + 4096);
  new DataView(p.ram.buffer, p.ram.byteOffset).setUint32(at, page, true);
}

interface Started {
  readonly p: RawSource;
  readonly nextReport: () => Promise<DestinationReport>;
}

/**
 * Hello, every page but `left` sent in pre-copy, the discard list naming
 * `left`, the device state, then post-copy with one vCPU writing
 * `writesPerSecond`: waits for the destination's resumed (frame 1).
 */
async function postcopy(
  left: readonly number[],
  options: { writesPerSecond?: number; hello?: Partial<Hello> } = {},
): Promise<Started> {
  const { port, nextReport } = await rig.destination();
  const p = await RawSource.connect(port);
  peers.push(p);
  for (let page = 0; page < PAGES; page++) stamp(p, page);
  p.hello(options.hello);
  expect((await p.frame(0))?.type).toBe(FrameType.accept);
  const sent = Array.from({ length: PAGES }, (_, page) => page).filter((n) => !left.includes(n));
  for (let i = 0; i < sent.length; i += 64) p.pages(sent.slice(i, i + 64));
  if (left.length > 0) p.send(FrameType.discard, (view) => encodeDiscard(view, left));
  p.deviceState();
  p.send(FrameType.postcopyRun, (view) =>
    encodePostcopyRun(view, { vcpus: 1, seed: 9, writesPerSecond: options.writesPerSecond ?? 0 }),
  );
  expect((await p.frame(1))?.type).toBe(FrameType.resumed);
  return { p, nextReport };
}

/** Answers every page request so far with the page, until none is left unanswered. */
function answerRequests(p: RawSource, from: number): number {
  let seen = from;
  while (seen < p.received.length) {
    const frame = p.received[seen++];
    if (frame?.type === FrameType.pageRequest) p.pages([frame.payload.getUint32(0, true)]);
  }
  return seen;
}

/** The frame after `seen` that is not a page request, answering page requests on the way. */
async function nextNonRequest(p: RawSource, seen: number): Promise<{ index: number }> {
  let at = seen;
  for (;;) {
    const frame = await p.frame(at);
    if (frame === undefined) return { index: at };
    if (frame.type !== FrameType.pageRequest) return { index: at };
    answerRequests(p, at);
    at++;
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// A session here takes well under a second; a destination that stops
// answering fails its test at the deadline instead of the runner's 10 s.
const DEADLINE = { timeout: 4_000 };

describe("a destination's post-copy, frame by frame", DEADLINE, () => {
  it("lands the pages left on the source once, ends post-copy with all of them, then verifies", async () => {
    const { p, nextReport } = await postcopy([3, 7, 200]);
    p.pages([3, 7]);
    // A page sent twice (a request racing the background push): dropped.
    p.pages([3]);
    p.pages([200]);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, 3));
    const done = await p.frame(2);
    expect(done?.type).toBe(FrameType.postcopyDone);
    const measured = decodePostcopyDone(done?.payload as DataView);
    expect(measured.requests).toBe(0);
    expect(measured.dropped).toBe(1);
    expect(measured.vcpuBlocktime).toEqual([0]);
    p.verify(0, PAGES);
    p.verifyEnd(PAGES, p.deviceDigest());
    const result = await p.frame(3);
    expect(result?.type).toBe(FrameType.result);
    expect(decodeResult(result?.payload as DataView)).toEqual({
      mismatches: 0,
      firstMismatch: null,
      pagesReceived: PAGES,
      deviceStateGood: true,
    });
    expect(await nextReport()).toMatchObject({
      status: "completed",
      reason: null,
      verified: true,
      pagesReceived: PAGES,
      postcopy: { requests: 0, writes: 0, dropped: 1 },
    });
  });

  it("without verification, post-copy's end completes the session: done, then the connection ends", async () => {
    const { p, nextReport } = await postcopy([10], { hello: { verify: false } });
    p.pages([10]);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, 1));
    expect((await p.frame(2))?.type).toBe(FrameType.postcopyDone);
    await p.closed;
    expect(p.received).toHaveLength(3);
    expect(await nextReport()).toMatchObject({
      status: "completed",
      reason: null,
      verified: null,
      pagesReceived: PAGES,
      postcopy: { requests: 0, writes: 0, dropped: 0 },
    });
  });

  it("a guest that wrote here is held to the source's copy it began from, page by page", async () => {
    const { p, nextReport } = await postcopy([4, 5], { writesPerSecond: 20_000 });
    p.pages([4, 5]);
    // Some 2,000 writes over 256 pages: nearly every page is written here.
    await sleep(100);
    let seen = answerRequests(p, 2);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, 2));
    const done = await nextNonRequest(p, seen);
    expect(p.received[done.index]?.type).toBe(FrameType.postcopyDone);
    seen = done.index + 1;
    // The source's digests are of what it sent: the copies the guest began from.
    p.verify(0, PAGES);
    p.verifyEnd(PAGES, p.deviceDigest());
    const result = await p.frame(seen);
    expect(decodeResult(result?.payload as DataView)).toMatchObject({ mismatches: 0 });
    const report = await nextReport();
    expect(report).toMatchObject({ status: "completed", verified: true });
    expect(report.postcopy?.writes).toBeGreaterThan(PAGES);
  });

  it("a vCPU that faults on a page still on the source asks for it on the return path, and waits for it", async () => {
    const left = Array.from({ length: 128 }, (_, i) => i * 2);
    const { p, nextReport } = await postcopy(left, { writesPerSecond: 20_000 });
    const request = await p.frame(2);
    expect(request?.type).toBe(FrameType.pageRequest);
    const page = request?.payload.getUint32(0, true) ?? -1;
    expect(left).toContain(page);
    expect(request?.payload.getUint32(4, true)).toBe(1);
    p.pages([page]);
    p.pages(left.filter((n) => n !== page).slice(0, 64));
    p.pages(left.filter((n) => n !== page).slice(64));
    const seen = answerRequests(p, 3);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, left.length));
    const done = await nextNonRequest(p, seen);
    const measured = decodePostcopyDone(p.received[done.index]?.payload as DataView);
    expect(measured.requests).toBeGreaterThanOrEqual(1);
    expect(measured.blocktime).toBeGreaterThan(0);
    const report = await nextReport();
    expect(report.postcopy?.requests).toBe(measured.requests);
  });

  it("a written page whose source copy differs from what landed is a mismatch, as is every unwritten one", async () => {
    const { p, nextReport } = await postcopy([4], { writesPerSecond: 20_000 });
    p.pages([4]);
    await sleep(100);
    const seen = answerRequests(p, 2);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, 1));
    const done = await nextNonRequest(p, seen);
    expect(p.received[done.index]?.type).toBe(FrameType.postcopyDone);
    // Every page of the source changes after it was sent: no digest can match.
    for (let page = 0; page < PAGES; page++) {
      const at = page * 4096 + 100;
      p.ram[at] = (p.ram[at] ?? 0) ^ 0xff;
    }
    p.verify(0, 100);
    p.verify(100, PAGES - 100);
    p.verifyEnd(PAGES, p.deviceDigest());
    const result = await p.frame(done.index + 1);
    expect(decodeResult(result?.payload as DataView)).toEqual({
      mismatches: PAGES,
      firstMismatch: 0,
      pagesReceived: PAGES,
      deviceStateGood: true,
    });
    expect(await nextReport()).toMatchObject({ status: "failed", verified: false });
  });
});

describe("what post-copy refuses, and the loss it names", DEADLINE, () => {
  const lostGuest =
    /post-copy broke with \d+ pages still on the source: the guest ran here since the switch and is lost/;

  it("a records frame: post-copy takes whole pages only", async () => {
    const { p, nextReport } = await postcopy([3]);
    p.send(FrameType.records, () => 0);
    expect(RawSource.text(await p.frame(2))).toMatch(/^records frame during post-copy; /);
    const report = await nextReport();
    expect(report.status).toBe("failed");
    expect(report.reason).toMatch(lostGuest);
    expect(report.reason).toContain("with 1 pages still on the source");
  });

  it("a page just past the guest's last", async () => {
    const { p, nextReport } = await postcopy([3]);
    p.pages([PAGES]);
    expect(RawSource.text(await p.frame(2))).toMatch(
      /^pages frame \d+: page 256 is outside the guest's 256 pages; /,
    );
    expect((await nextReport()).reason).toMatch(lostGuest);
  });

  it("post-copy's end while pages are still on the source", async () => {
    const { p, nextReport } = await postcopy([3, 8]);
    p.pages([8]);
    p.send(FrameType.postcopyEnd, (view) => encodePostcopyEnd(view, 1));
    expect(RawSource.text(await p.frame(2))).toMatch(
      /^the source ended post-copy with 1 pages never sent; post-copy broke with 1 pages/,
    );
    expect((await nextReport()).status).toBe("failed");
  });

  it("verification before post-copy's end", async () => {
    const { p } = await postcopy([3]);
    p.verify(0, 8);
    expect(RawSource.text(await p.frame(2))).toMatch(/^verify frame before post-copy ended; /);
  });

  it("a discard list naming a page past the guest, before any post-copy", async () => {
    const { port, nextReport } = await rig.destination();
    const p = await RawSource.connect(port);
    peers.push(p);
    p.hello();
    expect((await p.frame(0))?.type).toBe(FrameType.accept);
    p.send(FrameType.discard, (view) => encodeDiscard(view, [2, PAGES]));
    expect(RawSource.text(await p.frame(1))).toContain("page 256 is outside the guest's 256 pages");
    const report = await nextReport();
    expect(report.status).toBe("failed");
    expect(report).not.toHaveProperty("postcopy");
  });
});
