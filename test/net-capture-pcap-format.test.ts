import { describe, expect, it } from "vitest";
import { type Capture, readCapture, writeCapture } from "../src/net/capture.js";
import { CaptureError } from "../src/net/errors.js";
import { expectSameBytes } from "./support/bytes.js";

/*
 * The pcap file format (draft-ietf-opsawg-pcap), read and written against
 * files assembled here byte by byte:
 *
 * - Section 4, file header (24 bytes): magic 0xA1B2C3D4 (microsecond
 *   timestamps) or 0xA1B23C4D (nanosecond), written in the writer's own
 *   byte order, so a reader tells the byte order from the magic; major
 *   version 2, minor 4; two reserved 32-bit fields; SnapLen; LinkType.
 * - Section 5, packet record: timestamp seconds, timestamp microseconds or
 *   nanoseconds (below 10^6 or 10^9), captured packet length, original
 *   packet length, then the captured bytes, unpadded.
 * - A record cut short by the end of the file is reported (offset of the
 *   record), every record before it read; a record that claims more than
 *   the reader takes (262,144 bytes, or more than the larger of SnapLen and
 *   65,535) is refused at its captured-length field.
 * - The writer refuses a packet over the snapshot length it writes.
 */

/** Integers in one byte order, as a capture's writer lays them out. */
class Sink {
  readonly bytes: number[] = [];
  constructor(private readonly le: boolean) {}
  u16(x: number): this {
    const b = [x & 0xff, (x >>> 8) & 0xff];
    this.bytes.push(...(this.le ? b : b.reverse()));
    return this;
  }
  u32(x: number): this {
    const b = [x & 0xff, (x >>> 8) & 0xff, (x >>> 16) & 0xff, (x >>> 24) & 0xff];
    this.bytes.push(...(this.le ? b : b.reverse()));
    return this;
  }
  raw(data: ArrayLike<number>): this {
    for (let i = 0; i < data.length; i++) this.bytes.push(data[i] ?? 0);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const US = 0xa1b2c3d4;
const NS = 0xa1b23c4d;

interface Header {
  magic?: number;
  major?: number;
  minor?: number;
  snaplen?: number;
  linkType?: number;
}

function header(le: boolean, h: Header = {}): Sink {
  return new Sink(le)
    .u32(h.magic ?? US)
    .u16(h.major ?? 2)
    .u16(h.minor ?? 4)
    .u32(0)
    .u32(0)
    .u32(h.snaplen ?? 65_535)
    .u32(h.linkType ?? 1);
}

/** A packet record: seconds, sub-second part, captured and original lengths, then `data`. */
function record(
  s: Sink,
  sec: number,
  frac: number,
  incl: number,
  orig: number,
  data: ArrayLike<number> = [],
) {
  return s.u32(sec).u32(frac).u32(incl).u32(orig).raw(data);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A capture with plain arrays for its packets' bytes. */
function plain(c: Capture) {
  return {
    format: c.format,
    linkType: c.linkType,
    snaplen: c.snaplen,
    truncated: c.truncated,
    packets: c.packets.map((p) => ({ ...p, data: Array.from(p.data) })),
  };
}

function refusal(bytes: Uint8Array): CaptureError {
  try {
    readCapture(bytes);
  } catch (error) {
    if (error instanceof CaptureError) return error;
    throw error;
  }
  return expect.fail("the file was read without a refusal");
}

function expectRefusal(
  bytes: Uint8Array,
  code: CaptureError["code"],
  offset: number,
  detail: string,
): void {
  const e = refusal(bytes);
  expect([e.code, e.offset]).toEqual([code, offset]);
  expect(e.message).toContain(detail);
}

function rangeError(f: () => unknown): RangeError {
  try {
    f();
  } catch (error) {
    if (error instanceof RangeError) return error;
    throw error;
  }
  return expect.fail("nothing was thrown");
}

const FIRST = { seconds: 1_700_000_000, data: [1, 2, 3, 4], original: 60 };

/** The same two records in a file of each byte order and timestamp unit. */
function twoRecords(le: boolean, ns: boolean): Uint8Array {
  const s = header(le, { magic: ns ? NS : US, snaplen: 65_535, linkType: 1 });
  record(s, FIRST.seconds, ns ? 999_999_999 : 999_999, 4, FIRST.original, FIRST.data);
  // A record with no captured bytes, ending exactly at the end of the file.
  record(s, 7, 0, 0, 0);
  return s.done();
}

function expectedTwo(ns: boolean) {
  return {
    format: "pcap",
    linkType: 1,
    snaplen: 65_535,
    truncated: null,
    packets: [
      {
        data: FIRST.data,
        linkType: 1,
        interfaceId: 0,
        originalLength: FIRST.original,
        seconds: FIRST.seconds,
        nanoseconds: ns ? 999_999_999 : 999_999_000,
      },
      { data: [], linkType: 1, interfaceId: 0, originalLength: 0, seconds: 7, nanoseconds: 0 },
    ],
  };
}

describe("pcap reading: magic, byte order and timestamp unit (section 4)", () => {
  it("reads a little-endian microsecond file", () => {
    const bytes = twoRecords(true, false);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0xd4, 0xc3, 0xb2, 0xa1]);
    expect(plain(readCapture(bytes))).toEqual(expectedTwo(false));
  });

  it("reads a little-endian nanosecond file", () => {
    expect(plain(readCapture(twoRecords(true, true)))).toEqual(expectedTwo(true));
  });

  it("reads a big-endian microsecond file", () => {
    const bytes = twoRecords(false, false);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([0xa1, 0xb2, 0xc3, 0xd4]);
    expect(plain(readCapture(bytes))).toEqual(expectedTwo(false));
  });

  it("reads a big-endian nanosecond file", () => {
    expect(plain(readCapture(twoRecords(false, true)))).toEqual(expectedTwo(true));
  });

  it("refuses a magic that is neither, naming it as read big-endian", () => {
    const bytes = new Uint8Array(24);
    bytes.set([0x00, 0x01, 0x02, 0x03]);
    expectRefusal(bytes, "bad-magic", 0, "magic 0x00010203 is neither pcap nor pcapng");
    const swapped = new Uint8Array(24);
    swapped.set([0xa1, 0xb2, 0xc3, 0xd5]);
    expectRefusal(swapped, "bad-magic", 0, "magic 0xa1b2c3d5 is neither pcap nor pcapng");
  });

  it("needs 4 bytes to tell the format and 24 for a pcap header", () => {
    expectRefusal(new Uint8Array(3), "truncated", 0, "file is shorter than any capture header");
    const magicOnly = new Sink(true).u32(US).done();
    expectRefusal(magicOnly, "truncated", 0, "pcap header needs 24 bytes");
    const short = header(true).done().subarray(0, 23);
    expectRefusal(short, "truncated", 0, "pcap header needs 24 bytes");
  });

  it("reads a file of just its header as no packets, not as a cut", () => {
    const c = readCapture(header(true, { snaplen: 1500, linkType: 113 }).done());
    expect(plain(c)).toEqual({
      format: "pcap",
      linkType: 113,
      snaplen: 1500,
      truncated: null,
      packets: [],
    });
  });

  it("refuses a major version other than 2 at its field", () => {
    const bytes = header(true, { major: 3, minor: 1 }).done();
    expectRefusal(bytes, "bad-version", 4, "pcap version 3.1 (expected 2.4)");
    const be = header(false, { major: 1, minor: 0 }).done();
    expectRefusal(be, "bad-version", 4, "pcap version 1.0 (expected 2.4)");
  });
});

describe("pcap reading: packet records (section 5)", () => {
  it("reports a record header cut short and keeps the records before it", () => {
    const s = header(true);
    record(s, 1, 2, 4, 4, [9, 8, 7, 6]);
    s.raw([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const c = readCapture(s.done());
    expect(c.packets.map((p) => Array.from(p.data))).toEqual([[9, 8, 7, 6]]);
    expect(c.truncated).toEqual({
      offset: 44,
      detail: "packet record header runs past the end of the file",
    });
  });

  it("reports a record whose bytes run past the end, with the bytes left", () => {
    const s = header(true);
    record(s, 1, 2, 100, 100, new Uint8Array(50));
    const c = readCapture(s.done());
    expect(c.packets).toEqual([]);
    expect(c.truncated).toEqual({
      offset: 24,
      detail: "packet of 100 bytes runs past the end of the file (50 bytes left)",
    });
    const two = header(false);
    record(two, 1, 2, 1, 1, [5]);
    record(two, 1, 2, 30, 30, new Uint8Array(29));
    const d = readCapture(two.done());
    expect(d.packets.length).toBe(1);
    expect(d.truncated).toEqual({
      offset: 41,
      detail: "packet of 30 bytes runs past the end of the file (29 bytes left)",
    });
  });

  it("keeps the original length when it is larger than the captured one", () => {
    const s = header(true, { snaplen: 8 });
    record(s, 3, 4, 8, 1514, [1, 2, 3, 4, 5, 6, 7, 8]);
    record(s, 3, 5, 2, 1, [1, 2]);
    const c = readCapture(s.done());
    expect(c.packets.map((p) => [p.originalLength, p.data.length, p.nanoseconds])).toEqual([
      [1514, 8, 4000],
      [2, 2, 5000],
    ]);
  });

  it("refuses a sub-second part out of its unit's range at its field", () => {
    const us = header(true);
    record(us, 1, 0, 0, 0);
    record(us, 1, 1_000_000, 0, 0);
    expectRefusal(us.done(), "bad-length", 44, "sub-second timestamp 1000000 is out of range");
    const ns = header(false, { magic: NS });
    record(ns, 1, 1_000_000_000, 0, 0);
    expectRefusal(ns.done(), "bad-length", 28, "sub-second timestamp 1000000000 is out of range");
    const nsOk = header(true, { magic: NS });
    record(nsOk, 1, 1_000_000, 0, 0);
    expect(readCapture(nsOk.done()).packets[0]?.nanoseconds).toBe(1_000_000);
  });

  it("refuses a captured length over the larger of SnapLen and 65,535", () => {
    const s = header(true, { snaplen: 100 });
    record(s, 0, 0, 70_000, 70_000);
    expectRefusal(s.done(), "too-large", 32, "captured length 70000 is over the limit (65535)");
    const big = header(false, { snaplen: 300_000 });
    record(big, 0, 0, 262_145, 262_145);
    expectRefusal(big.done(), "too-large", 32, "captured length 262145 is over the limit (262144)");
    const none = header(true, { snaplen: 0 });
    record(none, 0, 0, 0, 0);
    record(none, 0, 0, 262_145, 262_145);
    const e = refusal(none.done());
    expect([e.code, e.offset]).toEqual(["too-large", 48]);
    expect(e.message).toContain("captured length 262145 is over the limit");
  });

  it("takes records over a small SnapLen up to 65,535 bytes, and up to 262,144 with none", () => {
    const cases: [snaplen: number, incl: number][] = [
      [100, 200],
      [100, 65_535],
      [0, 70_000],
      [0, 262_144],
      [262_144, 262_144],
    ];
    for (const [snaplen, incl] of cases) {
      const data = new Uint8Array(incl).fill(0x5a);
      data[incl - 1] = 0xa5;
      const file = concat(record(header(true, { snaplen }), 9, 10, incl, incl).done(), data);
      const c = readCapture(file);
      expect(c.truncated).toBeNull();
      expect(c.packets.length).toBe(1);
      const p = c.packets[0];
      expect(p?.data.length).toBe(incl);
      expect(p?.data[0]).toBe(0x5a);
      expect(p?.data[incl - 1]).toBe(0xa5);
    }
  });
});

describe("pcap writing (sections 4 and 5)", () => {
  it("writes nanosecond little-endian records with the largest snapshot length by default", () => {
    const file = writeCapture(
      [
        {
          data: Uint8Array.from([1, 2, 3]),
          seconds: 1_700_000_000,
          nanoseconds: 123_456_789,
          originalLength: 60,
        },
        { data: new Uint8Array(0) },
      ],
      { format: "pcap" },
    );
    const expected = header(true, { magic: NS, snaplen: 262_144, linkType: 1 });
    record(expected, 1_700_000_000, 123_456_789, 3, 60, [1, 2, 3]);
    record(expected, 0, 0, 0, 0);
    expectSameBytes(file, expected.done(), "pcap file");
  });

  it("writes microseconds, a given snapshot length and link type", () => {
    const file = writeCapture(
      [
        { data: Uint8Array.from([7, 7]), seconds: 5, nanoseconds: 999_999_999 },
        { data: Uint8Array.from([1]), seconds: 6, nanoseconds: 1_999, originalLength: 9 },
      ],
      { format: "pcap", nanoseconds: false, snaplen: 100, linkType: 113 },
    );
    const expected = header(true, { magic: US, snaplen: 100, linkType: 113 });
    record(expected, 5, 999_999, 2, 2, [7, 7]);
    record(expected, 6, 1, 1, 9, [1]);
    expectSameBytes(file, expected.done(), "pcap file");
    const back = readCapture(file);
    expect(back.packets.map((p) => [p.seconds, p.nanoseconds])).toEqual([
      [5, 999_999_000],
      [6, 1_000],
    ]);
  });

  it("writes nanoseconds when asked in so many words", () => {
    const file = writeCapture([{ data: new Uint8Array(1), nanoseconds: 5 }], {
      format: "pcap",
      nanoseconds: true,
    });
    const expected = header(true, { magic: NS, snaplen: 262_144 });
    record(expected, 0, 5, 1, 1, [0]);
    expectSameBytes(file, expected.done(), "pcap file");
  });

  it("refuses a packet over the snapshot length it writes, and takes one of it", () => {
    const at = writeCapture([{ data: new Uint8Array(100) }], { format: "pcap", snaplen: 100 });
    expect(readCapture(at).packets[0]?.data.length).toBe(100);
    for (const format of ["pcap", "pcapng"] as const) {
      const e = rangeError(() =>
        writeCapture([{ data: new Uint8Array(10) }, { data: new Uint8Array(101) }], {
          format,
          snaplen: 100,
        }),
      );
      expect(e.message).toBe("a packet of 101 bytes is over the snapshot length 100");
    }
    const e = rangeError(() =>
      writeCapture([{ data: new Uint8Array(262_145) }], { format: "pcap" }),
    );
    expect(e.message).toBe("a packet of 262145 bytes is over the snapshot length 262144");
  });
});
