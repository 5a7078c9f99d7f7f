import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  FRAME_HEADER_BYTES,
  FrameError,
  FrameHeader,
  FrameType,
  type FrameTypeCode,
  MAX_FRAME_PAYLOAD,
} from "../src/migration/live/frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "../src/migration/live/frame-codec.js";
import {
  checkRecordsPayload,
  decodeAccept,
  decodeChannelHello,
  decodeEpoch,
  decodeError,
  decodeHello,
  decodePagesHeader,
  decodeResult,
  decodeVerifyEnd,
  decodeVerifyHeader,
  encodeChannelHello,
  encodeEpoch,
  encodeHello,
  encodeResult,
} from "../src/migration/live/messages.js";
import { StreamKernel } from "../src/wasm/stream.js";

const MAX_TEST_PAYLOAD = 64 * 1024;
const layout = new MemoryLayout();
const kernel = StreamKernel.on(layout.memory, layout.allocate("scratch", 64));
const sendStaging = layout.allocate("send", stagingBytes(MAX_TEST_PAYLOAD));
const receiveStaging = layout.allocate("receive", stagingBytes(MAX_TEST_PAYLOAD));

interface Seen {
  type: number;
  sequence: number;
  payload: Uint8Array;
}

function writer(): FrameWriter {
  return new FrameWriter(layout.memory, kernel, sendStaging, MAX_TEST_PAYLOAD);
}

function reader(seen: Seen[]): FrameReader {
  return new FrameReader(
    layout.memory,
    kernel,
    receiveStaging,
    (frame) =>
      seen.push({
        type: frame.type,
        sequence: frame.sequence,
        payload: new Uint8Array(
          frame.payload.buffer,
          frame.payload.byteOffset,
          frame.length,
        ).slice(),
      }),
    MAX_TEST_PAYLOAD,
  );
}

const TYPES: FrameTypeCode[] = [FrameType.pages, FrameType.verify, FrameType.deviceState];

/** A stream of frames and what they carried. */
function stream(payloads: Uint8Array[]): { wire: Uint8Array; frames: Seen[] } {
  const w = writer();
  const parts: Uint8Array[] = [];
  const frames: Seen[] = [];
  payloads.forEach((payload, i) => {
    const type = TYPES[i % TYPES.length] as FrameTypeCode;
    parts.push(w.frame(type, payload));
    frames.push({ type, sequence: i, payload });
  });
  return { wire: Buffer.concat(parts), frames };
}

/** Feeds `wire` in pieces cut at `cuts`. */
function feed(r: FrameReader, wire: Uint8Array, cuts: number[]): void {
  let at = 0;
  for (const cut of [...cuts.map((c) => c % (wire.length + 1))].sort((a, b) => a - b)) {
    r.push(wire.subarray(at, Math.max(at, cut)));
    at = Math.max(at, cut);
  }
  r.push(wire.subarray(at));
}

const payloadArb = fc.uint8Array({ maxLength: 3000 });

describe("frames", () => {
  it("round-trip through the reader however the stream is cut", () => {
    fc.assert(
      fc.property(
        fc.array(payloadArb, { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (payloads, cuts) => {
          const { wire, frames } = stream(payloads);
          const seen: Seen[] = [];
          feed(reader(seen), wire, cuts);
          expect(seen).toEqual(frames);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a corrupted byte anywhere fails the frame before it is handed on", () => {
    fc.assert(
      fc.property(
        fc.array(payloadArb, { minLength: 1, maxLength: 4 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (payloads, where, mask) => {
          const { wire, frames } = stream(payloads);
          const bad = Uint8Array.from(wire);
          const at = where % bad.length;
          bad[at] = (bad[at] ?? 0) ^ mask;
          const seen: Seen[] = [];
          const r = reader(seen);
          let error: unknown;
          try {
            r.push(bad);
          } catch (caught) {
            error = caught;
          }
          // Every frame before the damaged one arrives intact; the damaged one never does.
          expect(error).toBeInstanceOf(FrameError);
          expect(seen.length).toBeLessThan(frames.length);
          expect(seen).toEqual(frames.slice(0, seen.length));
          // And the reader stays failed.
          expect(() => r.push(new Uint8Array(1))).toThrowError(FrameError);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("fuzz: random mutations and truncations never throw anything but FrameError", () => {
    const { wire } = stream([
      new Uint8Array(100).fill(1),
      new Uint8Array(2000).fill(2),
      new Uint8Array(0),
    ]);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 10 }),
        fc.nat(),
        (edits, cut) => {
          const bad = Uint8Array.from(wire);
          for (const [where, value] of edits) bad[where % bad.length] = value;
          const seen: Seen[] = [];
          try {
            reader(seen).push(bad.subarray(0, cut % (bad.length + 1)));
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
          for (const frame of seen) expect(frame.payload.length).toBeLessThanOrEqual(2000);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("refuses a foreign peer on its first bytes, naming what it sent", () => {
    const r = reader([]);
    expect(() => r.push(new TextEncoder().encode("SSH-2.0-OpenSSH_9.6\r\n"))).toThrowError(
      /does not speak hvlab's migration protocol \(it sent "SSH-/,
    );
    expect(() => reader([]).push(new TextEncoder().encode("G"))).toThrowError(FrameError);
  });

  it("refuses another protocol version with one clear line", () => {
    const wire = Uint8Array.from(writer().frame(FrameType.hello, new Uint8Array(32)));
    wire[FrameHeader.version] = 2;
    expect(() => reader([]).push(wire)).toThrowError(
      "the peer speaks hvlab migration protocol version 2; this hvlab speaks version 1",
    );
  });

  it("refuses a length over the limit before waiting for its payload", () => {
    const wire = Uint8Array.from(writer().frame(FrameType.pages, new Uint8Array(8)));
    new DataView(wire.buffer).setUint32(FrameHeader.length, MAX_FRAME_PAYLOAD + 1, true);
    const error = (() => {
      try {
        reader([]).push(wire.subarray(0, FRAME_HEADER_BYTES));
      } catch (caught) {
        return caught as FrameError;
      }
      return undefined;
    })();
    expect(error?.kind).toBe("length");
  });

  it("refuses frames out of sequence", () => {
    const a = writer().frame(FrameType.pages, new Uint8Array(4));
    const b = writer().frame(FrameType.pages, new Uint8Array(4));
    const r = reader([]);
    r.push(a);
    expect(() => r.push(b)).toThrowError("frame 0 arrived where frame 1 was due");
  });
});

describe("payload decoders", () => {
  const view = (bytes: Uint8Array) =>
    new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

  it("hello and result round-trip", () => {
    const bytes = new Uint8Array(32);
    encodeHello(view(bytes), {
      guestBytes: 64 * 1024 ** 2,
      pageShift: 12,
      sessionId: 77,
      deviceStateBytes: 4096,
      verify: false,
      channels: 3,
    });
    expect(decodeHello(view(bytes))).toEqual({
      guestBytes: 64 * 1024 ** 2,
      pageShift: 12,
      sessionId: 77,
      deviceStateBytes: 4096,
      verify: false,
      channels: 3,
    });
    const result = new Uint8Array(16);
    encodeResult(view(result), {
      mismatches: 2,
      firstMismatch: 9,
      pagesReceived: 10,
      deviceStateGood: true,
    });
    expect(decodeResult(view(result))).toEqual({
      mismatches: 2,
      firstMismatch: 9,
      pagesReceived: 10,
      deviceStateGood: true,
    });
  });

  it("fuzz: every decoder takes any bytes and throws only FrameError", () => {
    const decoders = [
      decodeHello,
      decodeAccept,
      (v: DataView) => decodePagesHeader(v, 4096),
      decodeVerifyEnd,
      decodeVerifyHeader,
      decodeResult,
      decodeError,
      decodeChannelHello,
      (v: DataView) => decodeEpoch(v, "sync"),
      checkRecordsPayload,
    ];
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2048 }),
        fc.nat(decoders.length - 1),
        (bytes, which) => {
          try {
            decoders[which]?.(view(bytes));
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("channel hello and sync round-trip; a channel past the count, or too many channels, is refused", () => {
    const bytes = new Uint8Array(16);
    encodeChannelHello(view(bytes), { sessionId: 5, index: 1, channels: 2 });
    expect(decodeChannelHello(view(bytes))).toEqual({ sessionId: 5, index: 1, channels: 2 });
    encodeChannelHello(view(bytes), { sessionId: 5, index: 2, channels: 2 });
    expect(() => decodeChannelHello(view(bytes))).toThrowError(/channel 2 of 2/);
    encodeChannelHello(view(bytes), { sessionId: 5, index: 0, channels: 17 });
    expect(() => decodeChannelHello(view(bytes))).toThrowError(/channel 0 of 17/);
    const hello = new Uint8Array(32);
    encodeHello(view(hello), {
      guestBytes: 4096,
      pageShift: 12,
      sessionId: 1,
      deviceStateBytes: 0,
      verify: true,
      channels: 17,
    });
    expect(() => decodeHello(view(hello))).toThrowError(/17 multifd channels/);
    const epoch = new Uint8Array(8);
    encodeEpoch(view(epoch), 9);
    expect(decodeEpoch(view(epoch), "synced")).toBe(9);
  });

  it("pages header: count and length must agree", () => {
    const bytes = new Uint8Array(8 + 2 * (4 + 4096));
    new DataView(bytes.buffer).setUint32(0, 2, true);
    expect(decodePagesHeader(view(bytes), 4096)).toBe(2);
    new DataView(bytes.buffer).setUint32(0, 3, true);
    expect(() => decodePagesHeader(view(bytes), 4096)).toThrowError(/3 pages need/);
  });

  it("error reasons come out as one line", () => {
    const bytes = new TextEncoder().encode("bad\nthing\u001b[31m");
    expect(decodeError(view(bytes))).toBe("bad thing [31m");
  });
});
