import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FrameError } from "../src/migration/live/frame.js";
import {
  decodeDiscard,
  decodePageRequest,
  decodePostcopyDone,
  decodePostcopyEnd,
  decodePostcopyRun,
  encodeDiscard,
  encodePageRequest,
  encodePostcopyDone,
  encodePostcopyEnd,
  encodePostcopyRun,
  MAX_DISCARD_PAGES,
  MAX_PAGES_PER_FRAME,
  MAX_POSTCOPY_VCPUS,
  postcopyDoneBytes,
} from "../src/migration/live/messages.js";

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

describe("post-copy frames", () => {
  it("fuzz: every post-copy decoder takes any bytes and throws only FrameError", () => {
    const decoders = [
      (v: DataView, pages: number) => decodeDiscard(v, pages),
      (v: DataView) => decodePostcopyRun(v),
      (v: DataView, pages: number) => decodePageRequest(v, pages),
      (v: DataView) => decodePageRequest(v),
      (v: DataView) => decodePostcopyEnd(v),
      (v: DataView) => decodePostcopyDone(v),
    ];
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.nat(decoders.length - 1),
        fc.integer({ min: 1, max: 2 ** 19 }),
        (bytes, which, pages) => {
          try {
            decoders[which]?.(view(bytes), pages);
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });

  it("fuzz: a postcopy-done with one bit flipped is refused or keeps every time within its phase", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: MAX_POSTCOPY_VCPUS }),
        fc.nat(postcopyDoneBytes(MAX_POSTCOPY_VCPUS) * 8),
        (vcpus, flip) => {
          const phaseMs = 1000;
          const done = {
            requests: 12,
            dropped: 3,
            phaseMs,
            blocktime: 5,
            vcpuBlocktime: Array.from({ length: vcpus }, (_, i) => 10 + i),
          };
          const bytes = new Uint8Array(postcopyDoneBytes(vcpus));
          encodePostcopyDone(view(bytes), done);
          const at = flip % bytes.length;
          bytes[at] = (bytes[at] ?? 0) ^ (1 << (flip % 8));
          try {
            const got = decodePostcopyDone(view(bytes));
            // Whatever decodes keeps every time within its phase.
            for (const ms of got.vcpuBlocktime) expect(ms).toBeLessThanOrEqual(got.phaseMs);
            expect(got.blocktime).toBeLessThanOrEqual(got.phaseMs);
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("round-trip: discard, postcopy-run, page-request, postcopy-end, postcopy-done", () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 2 ** 19 })
          .chain((pages) =>
            fc.tuple(
              fc.constant(pages),
              fc.array(fc.nat(pages - 1), { minLength: 1, maxLength: 300 }),
              fc.nat(pages - 1),
            ),
          ),
        fc.integer({ min: 1, max: MAX_POSTCOPY_VCPUS }),
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.nat(2 ** 32 - 1),
        ([pages, list, first], vcpus, rate, seed) => {
          const discard = new Uint8Array(8 + list.length * 4);
          encodeDiscard(view(discard), list);
          expect([...decodeDiscard(view(discard), pages)]).toEqual(list);

          const run = new Uint8Array(16);
          encodePostcopyRun(view(run), { vcpus, seed, writesPerSecond: rate });
          expect(decodePostcopyRun(view(run))).toEqual({ vcpus, seed, writesPerSecond: rate });

          const count = Math.min(MAX_PAGES_PER_FRAME, pages - first);
          const request = new Uint8Array(8);
          encodePageRequest(view(request), first, count);
          expect(decodePageRequest(view(request), pages)).toEqual({ first, count });

          const end = new Uint8Array(8);
          encodePostcopyEnd(view(end), seed);
          expect(decodePostcopyEnd(view(end))).toBe(seed);

          const done = {
            requests: seed,
            dropped: 7,
            phaseMs: 100 + rate,
            blocktime: rate / 2,
            vcpuBlocktime: Array.from({ length: vcpus }, () => rate),
          };
          const doneBytes = new Uint8Array(postcopyDoneBytes(vcpus));
          encodePostcopyDone(view(doneBytes), done);
          expect(decodePostcopyDone(view(doneBytes))).toEqual(done);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("refuses what no sane peer sends, saying what and where", () => {
    const request = new Uint8Array(8);
    encodePageRequest(view(request), 4096, 1);
    expect(() => decodePageRequest(view(request), 4096)).toThrow(
      /page-request frame: pages 4096 to 4096 are outside the guest's 4096 pages/,
    );
    encodePageRequest(view(request), 0, MAX_PAGES_PER_FRAME + 1);
    expect(() => decodePageRequest(view(request))).toThrow(/count 257 is not from 1 to 256/);

    const discard = new Uint8Array(12);
    encodeDiscard(view(discard), [9]);
    expect(() => decodeDiscard(view(discard), 9)).toThrow(/page 9 is outside the guest's 9 pages/);
    new DataView(discard.buffer).setUint32(0, MAX_DISCARD_PAGES + 1, true);
    expect(() => decodeDiscard(view(discard), 100)).toThrow(/page count 65537/);

    const run = new Uint8Array(16);
    encodePostcopyRun(view(run), { vcpus: MAX_POSTCOPY_VCPUS + 1, seed: 1, writesPerSecond: 1 });
    expect(() => decodePostcopyRun(view(run))).toThrow(/65 vCPUs is not from 1 to 64/);
    encodePostcopyRun(view(run), { vcpus: 1, seed: 1, writesPerSecond: Number.NaN });
    expect(() => decodePostcopyRun(view(run))).toThrow(/NaN writes per second/);

    const done = new Uint8Array(postcopyDoneBytes(2));
    encodePostcopyDone(view(done), {
      requests: 1,
      dropped: 0,
      phaseMs: 10,
      blocktime: 1,
      vcpuBlocktime: [2, 11],
    });
    expect(() => decodePostcopyDone(view(done))).toThrow(
      /vCPU 1 blocktime of 11 ms in a phase of 10 ms/,
    );
  });
});
