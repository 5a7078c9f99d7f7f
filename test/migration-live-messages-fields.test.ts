/*
 * The live-migration payloads field by field (src/migration/live/messages.ts
 * gives each layout): every field at its offset, little-endian, reserved
 * words written as zero and refused when not, and each count and size taken
 * at its bound and refused one past it, the refusal naming the frame type
 * and the figure.
 */
import { describe, expect, it } from "vitest";
import { FrameError } from "../src/migration/live/frame.js";
import {
  checkRecordsPayload,
  decodeAccept,
  decodeChannelHello,
  decodeDiscard,
  decodeEpoch,
  decodeError,
  decodeHello,
  decodePageRequest,
  decodePagesHeader,
  decodePostcopyDone,
  decodePostcopyEnd,
  decodePostcopyRun,
  decodeResult,
  decodeVerifyEnd,
  decodeVerifyHeader,
  encodeAccept,
  encodeChannelHello,
  encodeDiscard,
  encodeEpoch,
  encodeError,
  encodeHello,
  encodePageRequest,
  encodePostcopyDone,
  encodePostcopyEnd,
  encodePostcopyRun,
  encodeResult,
  encodeVerifyEnd,
  type Hello,
  MAX_DEVICE_STATE_BYTES,
  MAX_DIGESTS_PER_FRAME,
  MAX_DISCARD_PAGES,
  MAX_ERROR_BYTES,
  MAX_MULTIFD_CHANNELS,
  MAX_PAGES_PER_FRAME,
  MAX_POSTCOPY_VCPUS,
  MAX_POSTCOPY_WRITE_RATE,
  MAX_RECORDS_PAYLOAD,
  NO_MISMATCH,
  postcopyDoneBytes,
} from "../src/migration/live/messages.js";

/** A view of `n` bytes, filled with 0xee so that a field left unwritten shows. */
function bytes(n: number): { raw: Uint8Array; view: DataView } {
  const raw = new Uint8Array(n).fill(0xee);
  return { raw, view: new DataView(raw.buffer) };
}

/** The FrameError `decode` throws: its kind is always "payload". */
function refusal(decode: () => unknown): string {
  try {
    decode();
  } catch (error) {
    if (!(error instanceof FrameError)) throw error;
    expect(error.kind).toBe("payload");
    return error.message;
  }
  throw new Error("not refused");
}

const HELLO: Hello = {
  guestBytes: 64 * 1024 ** 2,
  pageShift: 12,
  sessionId: 0x0a0b0c0d,
  deviceStateBytes: 4096,
  verify: true,
  channels: 2,
};

function hello(change: (view: DataView) => void = () => undefined): DataView {
  const { view } = bytes(32);
  encodeHello(view, HELLO);
  change(view);
  return view;
}

describe("the limits", () => {
  it("are as documented", () => {
    expect(MAX_PAGES_PER_FRAME).toBe(256);
    expect(MAX_DIGESTS_PER_FRAME).toBe(65_536);
    expect(MAX_ERROR_BYTES).toBe(1024);
    expect(MAX_DEVICE_STATE_BYTES).toBe(4 * 1024 ** 2);
    expect(MAX_RECORDS_PAYLOAD).toBe(1024 * 1024 + 64 * 1024);
    expect(MAX_MULTIFD_CHANNELS).toBe(16);
    expect(MAX_DISCARD_PAGES).toBe(65_536);
    expect(MAX_POSTCOPY_VCPUS).toBe(64);
    expect(MAX_POSTCOPY_WRITE_RATE).toBe(1_000_000);
    expect(NO_MISMATCH).toBe(0xffff_ffff);
  });
});

describe("hello", () => {
  it("puts each field at its offset", () => {
    const { raw, view } = bytes(32);
    expect(encodeHello(view, { ...HELLO, verify: false, sessionId: 2 ** 32 + 3 })).toBe(32);
    expect(view.getFloat64(0, true)).toBe(64 * 1024 ** 2);
    expect(view.getUint32(8, true)).toBe(12);
    expect(view.getUint32(12, true)).toBe(3);
    expect(view.getUint32(16, true)).toBe(4096);
    expect(view.getUint32(20, true)).toBe(1);
    expect(view.getUint32(24, true)).toBe(2);
    expect([...raw.subarray(28)]).toEqual([0, 0, 0, 0]);
    expect(decodeHello(view)).toEqual({ ...HELLO, verify: false, sessionId: 3 });
    encodeHello(view, HELLO);
    expect(view.getUint32(20, true)).toBe(0);
    expect(decodeHello(view)).toEqual(HELLO);
  });

  it("is exactly 32 bytes", () => {
    const { view } = bytes(33);
    encodeHello(view, HELLO);
    expect(refusal(() => decodeHello(view))).toBe("hello frame: payload of 33 bytes, expected 32");
    expect(refusal(() => decodeHello(new DataView(view.buffer, 0, 31)))).toBe(
      "hello frame: payload of 31 bytes, expected 32",
    );
  });

  it("refuses unknown flags and a reserved word not zero", () => {
    expect(refusal(() => decodeHello(hello((v) => v.setUint32(20, 2, true))))).toBe(
      "hello frame: unknown flags 2",
    );
    expect(refusal(() => decodeHello(hello((v) => v.setUint32(20, 3, true))))).toBe(
      "hello frame: unknown flags 3",
    );
    expect(refusal(() => decodeHello(hello((v) => v.setUint32(28, 1 << 31, true))))).toBe(
      "hello frame: reserved field is not zero",
    );
  });

  it("takes 0 to 16 channels and refuses 17", () => {
    expect(decodeHello(hello((v) => v.setUint32(24, 0, true))).channels).toBe(0);
    expect(decodeHello(hello((v) => v.setUint32(24, 16, true))).channels).toBe(16);
    expect(refusal(() => decodeHello(hello((v) => v.setUint32(24, 17, true))))).toBe(
      "hello frame: 17 multifd channels is over the limit of 16",
    );
  });

  it("takes a guest of one page, refuses 0, a fraction, 2^53 and a part page", () => {
    expect(decodeHello(hello((v) => v.setFloat64(0, 4096, true))).guestBytes).toBe(4096);
    for (const size of [0, -4096, 4096.5, 2 ** 53, Number.NaN]) {
      expect(refusal(() => decodeHello(hello((v) => v.setFloat64(0, size, true))))).toBe(
        `hello frame: guest size ${size} is not a positive whole number of bytes`,
      );
    }
    expect(refusal(() => decodeHello(hello((v) => v.setFloat64(0, 4097, true))))).toBe(
      "hello frame: guest size 4097 is not a whole number of pages",
    );
    expect(refusal(() => decodeHello(hello((v) => v.setFloat64(0, 2048, true))))).toBe(
      "hello frame: guest size 2048 is not a whole number of pages",
    );
  });

  it("takes only 4 KiB pages", () => {
    for (const shift of [11, 13, 21]) {
      expect(refusal(() => decodeHello(hello((v) => v.setUint32(8, shift, true))))).toBe(
        `hello frame: page shift ${shift} (only 4 KiB pages: 12)`,
      );
    }
  });

  it("takes device state up to 4 MiB, refuses a byte more", () => {
    const max = MAX_DEVICE_STATE_BYTES;
    expect(decodeHello(hello((v) => v.setUint32(16, max, true))).deviceStateBytes).toBe(max);
    expect(refusal(() => decodeHello(hello((v) => v.setUint32(16, max + 1, true))))).toBe(
      "hello frame: device state of 4194305 bytes is over 4194304",
    );
  });
});

describe("channel hello, sync, synced, accept", () => {
  it("channel hello: each field at its offset; channels 1 to 16, the index below them", () => {
    const { raw, view } = bytes(16);
    expect(encodeChannelHello(view, { sessionId: 2 ** 32 + 7, index: 15, channels: 16 })).toBe(16);
    expect(view.getUint32(0, true)).toBe(7);
    expect(view.getUint32(4, true)).toBe(15);
    expect(view.getUint32(8, true)).toBe(16);
    expect([...raw.subarray(12)]).toEqual([0, 0, 0, 0]);
    expect(decodeChannelHello(view)).toEqual({ sessionId: 7, index: 15, channels: 16 });
    encodeChannelHello(view, { sessionId: 1, index: 0, channels: 1 });
    expect(decodeChannelHello(view)).toEqual({ sessionId: 1, index: 0, channels: 1 });
    encodeChannelHello(view, { sessionId: 1, index: 0, channels: 0 });
    expect(refusal(() => decodeChannelHello(view))).toBe(
      "channel-hello frame: channel 0 of 0 (channels from 1 to 16)",
    );
    encodeChannelHello(view, { sessionId: 1, index: 1, channels: 1 });
    expect(refusal(() => decodeChannelHello(view))).toBe(
      "channel-hello frame: channel 1 of 1 (channels from 1 to 16)",
    );
    view.setUint32(4, 0, true);
    view.setUint32(12, 1, true);
    expect(refusal(() => decodeChannelHello(view))).toBe(
      "channel-hello frame: reserved field is not zero",
    );
    expect(refusal(() => decodeChannelHello(new DataView(raw.buffer, 0, 12)))).toBe(
      "channel-hello frame: payload of 12 bytes, expected 16",
    );
  });

  it("sync and synced: the epoch as a u32, a reserved word", () => {
    const { raw, view } = bytes(8);
    expect(encodeEpoch(view, 2 ** 32 + 9)).toBe(8);
    expect([...raw]).toEqual([9, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeEpoch(view, "sync")).toBe(9);
    view.setUint32(4, 1, true);
    expect(refusal(() => decodeEpoch(view, "synced"))).toBe(
      "synced frame: reserved field is not zero",
    );
    expect(refusal(() => decodeEpoch(new DataView(raw.buffer, 0, 4), "sync"))).toBe(
      "sync frame: payload of 4 bytes, expected 8",
    );
  });

  it("accept: the session id as a u32, a reserved word", () => {
    const { raw, view } = bytes(8);
    expect(encodeAccept(view, 2 ** 32 + 0x01020304)).toBe(8);
    expect([...raw]).toEqual([4, 3, 2, 1, 0, 0, 0, 0]);
    expect(decodeAccept(view)).toBe(0x01020304);
    view.setUint32(4, 1, true);
    expect(refusal(() => decodeAccept(view))).toBe("accept frame: reserved field is not zero");
    expect(refusal(() => decodeAccept(new DataView(raw.buffer, 0, 7)))).toBe(
      "accept frame: payload of 7 bytes, expected 8",
    );
  });

  it("records: 1 byte to the limit", () => {
    checkRecordsPayload(new DataView(new ArrayBuffer(1)));
    checkRecordsPayload(new DataView(new ArrayBuffer(MAX_RECORDS_PAYLOAD)));
    for (const n of [0, MAX_RECORDS_PAYLOAD + 1]) {
      expect(refusal(() => checkRecordsPayload(new DataView(new ArrayBuffer(n))))).toBe(
        `records frame: payload of ${n} bytes is not from 1 to 1114112`,
      );
    }
  });
});

describe("pages and verification", () => {
  function pages(count: number, pageBytes: number, extra = 0): DataView {
    const view = new DataView(new ArrayBuffer(8 + count * (4 + pageBytes) + extra));
    view.setUint32(0, count, true);
    return view;
  }

  it("pages: 1 to 256 pages, each a number and its bytes", () => {
    expect(decodePagesHeader(pages(1, 16), 16)).toBe(1);
    expect(decodePagesHeader(pages(256, 16), 16)).toBe(256);
    expect(refusal(() => decodePagesHeader(pages(0, 16), 16))).toBe(
      "pages frame: page count 0 is not from 1 to 256",
    );
    expect(refusal(() => decodePagesHeader(pages(257, 16), 16))).toBe(
      "pages frame: page count 257 is not from 1 to 256",
    );
    expect(refusal(() => decodePagesHeader(pages(2, 16, 1), 16))).toBe(
      "pages frame: 2 pages need 48 bytes, the payload has 49",
    );
    expect(refusal(() => decodePagesHeader(new DataView(new ArrayBuffer(7)), 16))).toBe(
      "pages frame: payload of 7 bytes",
    );
    const reserved = pages(1, 16);
    reserved.setUint32(4, 1, true);
    expect(refusal(() => decodePagesHeader(reserved, 16))).toBe(
      "pages frame: reserved field is not zero",
    );
  });

  it("verify: 1 to 65,536 digests after the first page and the count", () => {
    const verify = (first: number, count: number, extra = 0) => {
      const view = new DataView(new ArrayBuffer(8 + count * 8 + extra));
      view.setUint32(0, first, true);
      view.setUint32(4, count, true);
      return view;
    };
    expect(decodeVerifyHeader(verify(0xfffffff0, 1))).toEqual({ first: 0xfffffff0, count: 1 });
    expect(decodeVerifyHeader(verify(3, 65_536))).toEqual({ first: 3, count: 65_536 });
    expect(refusal(() => decodeVerifyHeader(verify(0, 0)))).toBe(
      "verify frame: digest count 0 is not from 1 to 65536",
    );
    expect(refusal(() => decodeVerifyHeader(verify(0, 65_537)))).toBe(
      "verify frame: digest count 65537 is not from 1 to 65536",
    );
    expect(refusal(() => decodeVerifyHeader(verify(0, 2, -1)))).toBe(
      "verify frame: 2 digests need 24 bytes, the payload has 23",
    );
    expect(refusal(() => decodeVerifyHeader(new DataView(new ArrayBuffer(7))))).toBe(
      "verify frame: payload of 7 bytes",
    );
  });

  it("verify-end: pages as a u32, a reserved word, the device digest as a u64", () => {
    const { raw, view } = bytes(16);
    expect(encodeVerifyEnd(view, 2 ** 32 + 5, 0x0102030405060708n)).toBe(16);
    expect([...raw]).toEqual([5, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(decodeVerifyEnd(view)).toEqual({ pages: 5, deviceDigest: 0x0102030405060708n });
    view.setUint32(4, 1, true);
    expect(refusal(() => decodeVerifyEnd(view))).toBe(
      "verify-end frame: reserved field is not zero",
    );
    expect(refusal(() => decodeVerifyEnd(new DataView(raw.buffer, 0, 15)))).toBe(
      "verify-end frame: payload of 15 bytes, expected 16",
    );
  });

  it("result: each field at its offset, no mismatch as 2^32 - 1, the device flag 0 or 1", () => {
    const { raw, view } = bytes(16);
    expect(
      encodeResult(view, {
        mismatches: 2 ** 32 + 1,
        firstMismatch: null,
        pagesReceived: 2 ** 32 + 2,
        deviceStateGood: false,
      }),
    ).toBe(16);
    expect([...raw]).toEqual([1, 0, 0, 0, 255, 255, 255, 255, 2, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeResult(view)).toEqual({
      mismatches: 1,
      firstMismatch: null,
      pagesReceived: 2,
      deviceStateGood: false,
    });
    encodeResult(view, {
      mismatches: 1,
      firstMismatch: 0xfffffffe,
      pagesReceived: 3,
      deviceStateGood: true,
    });
    expect(view.getUint32(12, true)).toBe(1);
    expect(decodeResult(view)).toMatchObject({ firstMismatch: 0xfffffffe, deviceStateGood: true });
    view.setUint32(12, 2, true);
    expect(refusal(() => decodeResult(view))).toBe(
      "result frame: device-state flag 2 is not 0 or 1",
    );
    expect(refusal(() => decodeResult(new DataView(raw.buffer, 0, 12)))).toBe(
      "result frame: payload of 12 bytes, expected 16",
    );
  });
});

describe("error reasons", () => {
  it("are cut to 1,024 bytes when sent, and refused past them when read", () => {
    expect(encodeError("x".repeat(2000)).length).toBe(1024);
    expect(new TextDecoder().decode(encodeError("why"))).toBe("why");
    expect(decodeError(new DataView(new Uint8Array(1024).fill(0x61).buffer))).toBe(
      "a".repeat(1024),
    );
    expect(refusal(() => decodeError(new DataView(new ArrayBuffer(1025))))).toBe(
      "error frame: reason of 1025 bytes is over 1024",
    );
  });

  it("read as one line: control characters and DEL become spaces, the rest is kept", () => {
    const raw = new TextEncoder().encode("a\tb\u001fc\u007fd e~\u00e9");
    expect(decodeError(new DataView(raw.buffer))).toBe("a b c d e~\u00e9");
    // Invalid UTF-8 is replaced, not refused.
    expect(decodeError(new DataView(Uint8Array.of(0x61, 0xff, 0x62).buffer))).toBe("a\ufffdb");
  });

  it("read from where the view starts", () => {
    const raw = new TextEncoder().encode("xxhello");
    expect(decodeError(new DataView(raw.buffer, 2, 5))).toBe("hello");
  });
});

describe("post-copy", () => {
  it("discard: 1 to 65,536 page numbers, each inside the guest", () => {
    const view = new DataView(new ArrayBuffer(8 + 3 * 4));
    expect(encodeDiscard(view, [0, 9, 2])).toBe(20);
    expect(view.getUint32(0, true)).toBe(3);
    expect(view.getUint32(4, true)).toBe(0);
    expect([...decodeDiscard(view, 10)]).toEqual([0, 9, 2]);
    expect(refusal(() => decodeDiscard(view, 9))).toBe(
      "discard frame: page 9 is outside the guest's 9 pages",
    );
    const most = new DataView(new ArrayBuffer(8 + MAX_DISCARD_PAGES * 4));
    encodeDiscard(most, new Uint32Array(MAX_DISCARD_PAGES));
    expect(decodeDiscard(most, 1).length).toBe(MAX_DISCARD_PAGES);
    most.setUint32(0, MAX_DISCARD_PAGES + 1, true);
    expect(refusal(() => decodeDiscard(most, 1))).toBe(
      "discard frame: page count 65537 is not from 1 to 65536",
    );
    most.setUint32(0, 0, true);
    expect(refusal(() => decodeDiscard(most, 1))).toBe(
      "discard frame: page count 0 is not from 1 to 65536",
    );
    view.setUint32(4, 1, true);
    expect(refusal(() => decodeDiscard(view, 10))).toBe(
      "discard frame: reserved field is not zero",
    );
    view.setUint32(4, 0, true);
    view.setUint32(0, 4, true);
    expect(refusal(() => decodeDiscard(view, 10))).toBe(
      "discard frame: 4 pages need 24 bytes, the payload has 20",
    );
    expect(refusal(() => decodeDiscard(new DataView(new ArrayBuffer(7)), 10))).toBe(
      "discard frame: payload of 7 bytes",
    );
  });

  it("postcopy-run: 1 to 64 vCPUs, the seed, 0 to 1e6 writes a second", () => {
    const { raw, view } = bytes(16);
    expect(encodePostcopyRun(view, { vcpus: 64, seed: 2 ** 32 + 3, writesPerSecond: 1e6 })).toBe(
      16,
    );
    expect([...raw.subarray(0, 8)]).toEqual([64, 0, 0, 0, 3, 0, 0, 0]);
    expect(view.getFloat64(8, true)).toBe(1e6);
    expect(decodePostcopyRun(view)).toEqual({ vcpus: 64, seed: 3, writesPerSecond: 1e6 });
    encodePostcopyRun(view, { vcpus: 1, seed: 0, writesPerSecond: 0 });
    expect(decodePostcopyRun(view)).toEqual({ vcpus: 1, seed: 0, writesPerSecond: 0 });
    for (const vcpus of [0, 65]) {
      encodePostcopyRun(view, { vcpus, seed: 0, writesPerSecond: 0 });
      expect(refusal(() => decodePostcopyRun(view))).toBe(
        `postcopy-run frame: ${vcpus} vCPUs is not from 1 to 64`,
      );
    }
    for (const rate of [-1, 1_000_001, Number.NaN]) {
      encodePostcopyRun(view, { vcpus: 1, seed: 0, writesPerSecond: rate });
      expect(refusal(() => decodePostcopyRun(view))).toBe(
        `postcopy-run frame: ${rate} writes per second is not from 0 to 1000000`,
      );
    }
    expect(refusal(() => decodePostcopyRun(new DataView(raw.buffer, 0, 8)))).toBe(
      "postcopy-run frame: payload of 8 bytes, expected 16",
    );
  });

  it("page-request: first page and a count of 1 to 256, inside the guest when it is known", () => {
    const { raw, view } = bytes(8);
    expect(encodePageRequest(view, 2 ** 32 + 4, 2 ** 32 + 2)).toBe(8);
    expect([...raw]).toEqual([4, 0, 0, 0, 2, 0, 0, 0]);
    expect(decodePageRequest(view)).toEqual({ first: 4, count: 2 });
    // Pages 4 and 5: inside 6 pages, not inside 5.
    expect(decodePageRequest(view, 6)).toEqual({ first: 4, count: 2 });
    expect(refusal(() => decodePageRequest(view, 5))).toBe(
      "page-request frame: pages 4 to 5 are outside the guest's 5 pages",
    );
    encodePageRequest(view, 0, 256);
    expect(decodePageRequest(view)).toEqual({ first: 0, count: 256 });
    for (const count of [0, 257]) {
      encodePageRequest(view, 0, count);
      expect(refusal(() => decodePageRequest(view))).toBe(
        `page-request frame: count ${count} is not from 1 to 256`,
      );
    }
    expect(refusal(() => decodePageRequest(new DataView(raw.buffer, 0, 4)))).toBe(
      "page-request frame: payload of 4 bytes, expected 8",
    );
  });

  it("postcopy-end: the pages pushed as a u32, a reserved word", () => {
    const { raw, view } = bytes(8);
    expect(encodePostcopyEnd(view, 2 ** 32 + 6)).toBe(8);
    expect([...raw]).toEqual([6, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodePostcopyEnd(view)).toBe(6);
    view.setUint32(4, 1, true);
    expect(refusal(() => decodePostcopyEnd(view))).toBe(
      "postcopy-end frame: reserved field is not zero",
    );
    expect(refusal(() => decodePostcopyEnd(new DataView(raw.buffer, 0, 4)))).toBe(
      "postcopy-end frame: payload of 4 bytes, expected 8",
    );
  });

  describe("postcopy-done", () => {
    const done = {
      requests: 2 ** 32 + 11,
      dropped: 2 ** 32 + 3,
      phaseMs: 500,
      blocktime: 20,
      vcpuBlocktime: [100, 500],
    };

    function encoded(change: (view: DataView) => void = () => undefined): DataView {
      const { view } = bytes(postcopyDoneBytes(2));
      encodePostcopyDone(view, done);
      change(view);
      return view;
    }

    it("puts each field at its offset, 32 bytes and 8 per vCPU", () => {
      expect(postcopyDoneBytes(1)).toBe(40);
      expect(postcopyDoneBytes(64)).toBe(32 + 64 * 8);
      const { raw, view } = bytes(48);
      expect(encodePostcopyDone(view, done)).toBe(48);
      expect(view.getUint32(0, true)).toBe(11);
      expect(view.getUint32(4, true)).toBe(2);
      expect(view.getUint32(8, true)).toBe(3);
      expect([...raw.subarray(12, 16)]).toEqual([0, 0, 0, 0]);
      expect(view.getFloat64(16, true)).toBe(500);
      expect(view.getFloat64(24, true)).toBe(20);
      expect(view.getFloat64(32, true)).toBe(100);
      expect(view.getFloat64(40, true)).toBe(500);
      expect(decodePostcopyDone(view)).toEqual({ ...done, requests: 11, dropped: 3 });
    });

    it("takes times from 0 to the phase, refuses one past it, negative or not finite", () => {
      expect(decodePostcopyDone(encoded((v) => v.setFloat64(24, 0, true))).blocktime).toBe(0);
      expect(decodePostcopyDone(encoded((v) => v.setFloat64(24, 500, true))).blocktime).toBe(500);
      for (const ms of [500.001, -0.001, Number.POSITIVE_INFINITY, Number.NaN]) {
        expect(refusal(() => decodePostcopyDone(encoded((v) => v.setFloat64(24, ms, true))))).toBe(
          `postcopy-done frame: blocktime of ${ms} ms in a phase of 500 ms`,
        );
      }
      expect(refusal(() => decodePostcopyDone(encoded((v) => v.setFloat64(40, 501, true))))).toBe(
        "postcopy-done frame: vCPU 1 blocktime of 501 ms in a phase of 500 ms",
      );
      expect(refusal(() => decodePostcopyDone(encoded((v) => v.setFloat64(32, -1, true))))).toBe(
        "postcopy-done frame: vCPU 0 blocktime of -1 ms in a phase of 500 ms",
      );
    });

    it("takes a phase of 0 ms, refuses a negative or infinite one", () => {
      const zero = encoded((v) => {
        v.setFloat64(16, 0, true);
        for (const at of [24, 32, 40]) v.setFloat64(at, 0, true);
      });
      expect(decodePostcopyDone(zero).phaseMs).toBe(0);
      for (const ms of [-1, Number.POSITIVE_INFINITY, Number.NaN]) {
        expect(refusal(() => decodePostcopyDone(encoded((v) => v.setFloat64(16, ms, true))))).toBe(
          `postcopy-done frame: phase of ${ms} ms`,
        );
      }
    });

    it("takes 1 to 64 vCPUs, each with its time, and refuses the rest", () => {
      const one = bytes(40);
      encodePostcopyDone(one.view, { ...done, vcpuBlocktime: [7] });
      expect(decodePostcopyDone(one.view).vcpuBlocktime).toEqual([7]);
      const most = bytes(postcopyDoneBytes(64));
      encodePostcopyDone(most.view, { ...done, vcpuBlocktime: new Array(64).fill(1) });
      expect(decodePostcopyDone(most.view).vcpuBlocktime.length).toBe(64);
      for (const vcpus of [0, 65]) {
        expect(refusal(() => decodePostcopyDone(encoded((v) => v.setUint32(4, vcpus, true))))).toBe(
          `postcopy-done frame: ${vcpus} vCPUs is not from 1 to 64`,
        );
      }
      expect(refusal(() => decodePostcopyDone(encoded((v) => v.setUint32(4, 1, true))))).toBe(
        "postcopy-done frame: payload of 48 bytes, expected 40",
      );
      expect(refusal(() => decodePostcopyDone(new DataView(new ArrayBuffer(31))))).toBe(
        "postcopy-done frame: payload of 31 bytes",
      );
      expect(refusal(() => decodePostcopyDone(encoded((v) => v.setUint32(12, 1, true))))).toBe(
        "postcopy-done frame: reserved field is not zero",
      );
    });
  });
});
