import { describe, expect, it } from "vitest";
import { type Capture, readCapture, writeCapture } from "../src/net/capture.js";
import { CaptureError } from "../src/net/errors.js";
import { expectSameBytes } from "./support/bytes.js";

/*
 * The pcapng format (draft-ietf-opsawg-pcapng), read and written against
 * files assembled here byte by byte:
 *
 * - Section 3.1, general block structure: type, total length, body, total
 *   length again; the length a multiple of 4 and at least 12. A block that
 *   does not repeat its length, or has one that cannot be, is refused at the
 *   block's first byte; a block of a type the reader does not know is
 *   skipped; a block cut short by the end of the file is reported (its
 *   offset and the bytes left), every packet before it read.
 * - Section 3.5, options: code, length, value padded to 32 bits; the list
 *   ends with opt_endofopt or with the end of the block, and what follows
 *   opt_endofopt is not an option. An option running past its block is
 *   refused.
 * - Section 4.1, Section Header Block: type 0x0A0D0D0A, byte-order magic
 *   0x1A2B3C4D in the writer's byte order (either is read), major version 1,
 *   minor 0, section length -1. A new section numbers its interfaces afresh.
 * - Section 4.2, Interface Description Block: link type (16 bits), reserved,
 *   SnapLen, options; if_tsresol (code 9, one byte): most significant bit 0
 *   for 10^-n s, 1 for 2^-n s, 10^-6 s when absent. Each packet has its own
 *   interface's link type; the capture's link type is its first
 *   interface's, its SnapLen the largest.
 * - Section 4.3, Enhanced Packet Block: interface ID, timestamp (upper and
 *   lower 32 bits, in the interface's units), captured length, original
 *   length, data padded to 32 bits. Section 4.4, Simple Packet Block:
 *   original length, then data padded to 32 bits, on interface 0, no
 *   timestamp; its captured length is the smaller of the original length
 *   and the block's data.
 */

/** Integers in one byte order, as a capture's writer lays them out. */
class Sink {
  readonly bytes: number[] = [];
  constructor(readonly le: boolean) {}
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
  pad(): this {
    while (this.bytes.length % 4 !== 0) this.bytes.push(0);
    return this;
  }
  done(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const SHB = 0x0a0d0d0a;

/** A block: type, total length, body, total length again (`trailer` to break it). */
function block(le: boolean, type: number, body: number[], trailer?: number): number[] {
  const total = 12 + body.length;
  return new Sink(le)
    .u32(type)
    .u32(total)
    .raw(body)
    .u32(trailer ?? total).bytes;
}

function shb(le: boolean, major = 1, bom = 0x1a2b3c4d): number[] {
  const body = new Sink(le)
    .u32(bom)
    .u16(major)
    .u16(0)
    .raw([255, 255, 255, 255, 255, 255, 255, 255]);
  return block(le, SHB, body.bytes);
}

/** An option: code, length, value padded to 32 bits. */
function option(le: boolean, code: number, value: number[], length = value.length): number[] {
  return new Sink(le).u16(code).u16(length).raw(value).pad().bytes;
}

const END_OF_OPTIONS = [0, 0, 0, 0];

function idb(le: boolean, linkType: number, snaplen: number, options: number[] = []): number[] {
  const body = new Sink(le).u16(linkType).u16(0).u32(snaplen).raw(options);
  return block(le, 1, body.bytes);
}

function tsresol(le: boolean, r: number): number[] {
  return [...option(le, 9, [r]), ...END_OF_OPTIONS];
}

function epb(
  le: boolean,
  interfaceId: number,
  ticks: bigint,
  data: number[],
  original = data.length,
  captured = data.length,
): number[] {
  const body = new Sink(le)
    .u32(interfaceId)
    .u32(Number(ticks >> 32n))
    .u32(Number(ticks & 0xffffffffn))
    .u32(captured)
    .u32(original)
    .raw(data)
    .pad();
  return block(le, 6, body.bytes);
}

function spb(le: boolean, original: number, data: number[]): number[] {
  return block(le, 3, new Sink(le).u32(original).raw(data).pad().bytes);
}

function file(...blocks: number[][]): Uint8Array {
  return Uint8Array.from(blocks.flat());
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

const T = 1_700_000_000_123_456_789n; // nanoseconds since 1970

/** One of each packet block, and a block of an unknown type at the end. */
function mixed(le: boolean): Uint8Array {
  return file(
    shb(le),
    // if_tsresol 10^-9, then if_name "eth0" ending the block without opt_endofopt.
    idb(le, 1, 0xffff, [...option(le, 9, [9]), ...option(le, 2, [0x65, 0x74, 0x68, 0x30])]),
    epb(le, 0, T, [1, 2, 3, 4, 5], 60),
    spb(le, 3, [0x61, 0x62, 0x63]), // padded: 4 bytes of data after the length
    spb(le, 100, [1, 2, 3, 4, 5, 6, 7, 8]), // snapped to what the block holds
    spb(le, 0, []),
    epb(le, 0, 0n, []),
    block(le, 0x80000bad, []), // local-use type, 12 bytes, ends the file
  );
}

function expectedMixed() {
  const packet = { linkType: 1, interfaceId: 0, seconds: 0, nanoseconds: 0 };
  return {
    format: "pcapng",
    linkType: 1,
    snaplen: 0xffff,
    truncated: null,
    packets: [
      {
        ...packet,
        data: [1, 2, 3, 4, 5],
        originalLength: 60,
        seconds: 1_700_000_000,
        nanoseconds: 123_456_789,
      },
      { ...packet, data: [0x61, 0x62, 0x63], originalLength: 3 },
      { ...packet, data: [1, 2, 3, 4, 5, 6, 7, 8], originalLength: 100 },
      { ...packet, data: [], originalLength: 0 },
      { ...packet, data: [], originalLength: 0 },
    ],
  };
}

describe("pcapng reading: blocks and byte orders (sections 3.1, 4.1, 4.3, 4.4)", () => {
  it("reads a little-endian section of enhanced and simple packets", () => {
    expect(plain(readCapture(mixed(true)))).toEqual(expectedMixed());
  });

  it("reads a big-endian section the same", () => {
    const bytes = mixed(false);
    expect(Array.from(bytes.subarray(8, 12))).toEqual([0x1a, 0x2b, 0x3c, 0x4d]);
    expect(plain(readCapture(bytes))).toEqual(expectedMixed());
  });

  it("reads a section header alone as no packets of the default link type", () => {
    expect(plain(readCapture(file(shb(true))))).toEqual({
      format: "pcapng",
      linkType: 1,
      snaplen: 0,
      truncated: null,
      packets: [],
    });
  });

  it("refuses a file whose first section header is cut", () => {
    const whole = file(shb(true));
    for (const n of [4, 8, 12, 20, 27]) {
      expectRefusal(whole.subarray(0, n), "bad-block", 0, "no section header block");
    }
  });

  it("refuses a byte-order magic that is neither order, at its section", () => {
    const first = file(shb(true), idb(true, 1, 0));
    const bytes = file([...first], shb(true, 1, 0x12345678), idb(true, 1, 0));
    expectRefusal(
      bytes,
      "bad-magic",
      first.length,
      "section header's byte-order magic 0x12345678 is not 0x1A2B3C4D",
    );
  });

  it("refuses a section of a major version other than 1, at its section", () => {
    expectRefusal(
      file(shb(false, 2)),
      "bad-version",
      0,
      "section header gives pcapng version 2 (expected 1.0)",
    );
    const first = file(shb(true), idb(true, 1, 0));
    expectRefusal(
      file([...first], shb(true, 0)),
      "bad-version",
      first.length,
      "section header gives pcapng version 0 (expected 1.0)",
    );
  });

  it("refuses a block length under 12 or not a multiple of 4", () => {
    const head = file(shb(true), idb(true, 1, 0));
    const short = new Sink(true).u32(0x80000bad).u32(8).u32(8).done();
    expectRefusal(
      file([...head], [...short]),
      "bad-length",
      head.length,
      "block length 8 is not a multiple of 4 of at least 12",
    );
    const odd = new Sink(true).u32(6).u32(30).raw(new Uint8Array(22)).done();
    expectRefusal(
      file([...head], [...odd]),
      "bad-length",
      head.length,
      "block length 30 is not a multiple of 4 of at least 12",
    );
  });

  it("refuses a block whose trailing length differs", () => {
    const head = file(shb(true), idb(true, 1, 0));
    const bad = block(true, 6, new Sink(true).u32(0).u32(0).u32(0).u32(0).u32(0).bytes, 36);
    expectRefusal(
      file([...head], bad),
      "bad-length",
      head.length,
      "block's trailing length does not repeat its leading length",
    );
  });

  it("reports the block cut by the end of the file, keeping the packets before it", () => {
    const head = file(shb(true), idb(true, 1, 0), epb(true, 0, 1_000_000n, [7]));
    const next = epb(true, 0, 0n, [1, 2, 3, 4, 5, 6, 7, 8]); // 40 bytes
    const cases: [cut: number, detail: string][] = [
      [8, "block header runs past the end of the file"],
      [11, "block header runs past the end of the file"],
      [30, "block of 40 bytes runs past the end of the file (30 bytes left)"],
      [39, "block of 40 bytes runs past the end of the file (39 bytes left)"],
    ];
    for (const [cut, detail] of cases) {
      const c = readCapture(file([...head], next.slice(0, cut)));
      expect(c.packets.map((p) => [Array.from(p.data), p.seconds])).toEqual([[[7], 1]]);
      expect(c.truncated).toEqual({ offset: head.length, detail });
    }
    const again = shb(true);
    const c = readCapture(file([...head], again.slice(0, 20)));
    expect(c.packets.length).toBe(1);
    expect(c.truncated).toEqual({
      offset: head.length,
      detail: "section header block runs past the end of the file",
    });
  });
});

describe("pcapng reading: interfaces and their options (sections 3.5, 4.2)", () => {
  it("gives each packet its interface's link type, the first interface's to the file", () => {
    const bytes = file(
      shb(true),
      idb(true, 113, 100),
      idb(true, 1, 2000),
      idb(true, 276, 50),
      epb(true, 1, 0n, [1]),
      epb(true, 0, 0n, [2]),
      epb(true, 2, 0n, [3]),
    );
    const c = readCapture(bytes);
    expect([c.linkType, c.snaplen]).toEqual([113, 2000]);
    expect(c.packets.map((p) => [p.interfaceId, p.linkType, p.data[0]])).toEqual([
      [1, 1, 1],
      [0, 113, 2],
      [2, 276, 3],
    ]);
  });

  it("counts ticks in 10^-6 s when if_tsresol is absent or empty", () => {
    const ticks = 1_700_000_000_123_456n;
    const expected = [1_700_000_000, 123_456_000];
    for (const options of [[], END_OF_OPTIONS, [...option(true, 9, [], 0), ...END_OF_OPTIONS]]) {
      const c = readCapture(file(shb(true), idb(true, 1, 0, options), epb(true, 0, ticks, [])));
      const p = c.packets[0];
      expect([p?.seconds, p?.nanoseconds]).toEqual(expected);
    }
  });

  it("reads if_tsresol as a power of 10 or, with its top bit, of 2", () => {
    const cases: [r: number, ticks: bigint, seconds: number, nanoseconds: number][] = [
      [9, T, 1_700_000_000, 123_456_789],
      [3, 1_700_000_000_123n, 1_700_000_000, 123_000_000],
      [0, 42n, 42, 0],
      [0x94, 3n << 19n, 1, 500_000_000], // 1.5 s in 2^-20 s ticks
      [0x80, 5n, 5, 0],
    ];
    for (const [r, ticks, seconds, nanoseconds] of cases) {
      for (const le of [true, false]) {
        const c = readCapture(
          file(shb(le), idb(le, 1, 0xffff, tsresol(le, r)), epb(le, 0, ticks, [])),
        );
        const p = c.packets[0];
        expect([r, le, p?.seconds, p?.nanoseconds]).toEqual([r, le, seconds, nanoseconds]);
      }
    }
  });

  it("reads no options after opt_endofopt", () => {
    const options = [...option(true, 9, [3]), ...END_OF_OPTIONS, 0xff, 0xff, 0xff, 0xff];
    const c = readCapture(file(shb(true), idb(true, 1, 0, options), epb(true, 0, 2_500n, [])));
    expect([c.packets[0]?.seconds, c.packets[0]?.nanoseconds]).toEqual([2, 500_000_000]);
  });

  it("refuses an option running past its block, naming its byte", () => {
    const head = file(shb(true));
    // The option's header is the body's last 4 bytes; its 1-byte value is missing.
    const cut = idb(true, 1, 0, new Sink(true).u16(9).u16(1).bytes);
    expectRefusal(
      file([...head], cut),
      "bad-block",
      head.length,
      `interface option 9 at byte ${head.length + 16} runs past its block`,
    );
    const long = idb(
      true,
      1,
      0,
      new Sink(true).u16(2).u16(100).raw([0x65, 0x74, 0x68, 0x30]).bytes,
    );
    expectRefusal(
      file([...head], long),
      "bad-block",
      head.length,
      `interface option 2 at byte ${head.length + 16} runs past its block`,
    );
  });

  it("refuses an interface description shorter than its fixed fields", () => {
    const head = file(shb(true));
    const short = block(true, 1, new Sink(true).u16(1).u16(0).bytes);
    expectRefusal(
      file([...head], short),
      "bad-block",
      head.length,
      "interface description block is too short",
    );
  });

  it("numbers interfaces afresh in each section", () => {
    const first = file(shb(true), idb(true, 1, 0), idb(true, 1, 0), epb(true, 1, 0n, [1]));
    const bytes = file([...first], shb(true), idb(true, 113, 0), epb(true, 1, 0n, [2]));
    expectRefusal(
      bytes,
      "bad-block",
      first.length + 28 + 20,
      "packet block names interface 1, which was not described",
    );
  });
});

describe("pcapng reading: packet block bounds (sections 4.3, 4.4)", () => {
  it("refuses a packet block too short for its fixed fields", () => {
    const head = file(shb(true), idb(true, 1, 0));
    const shortEpb = block(true, 6, new Sink(true).u32(0).u32(0).u32(0).u32(0).bytes);
    expectRefusal(file([...head], shortEpb), "bad-block", head.length, "packet block is too short");
    const shortSpb = block(true, 3, []);
    expectRefusal(file([...head], shortSpb), "bad-block", head.length, "packet block is too short");
  });

  it("refuses a packet on an interface not described", () => {
    const head = file(shb(true), idb(true, 1, 0));
    expectRefusal(
      file([...head], epb(true, 2, 0n, [1])),
      "bad-block",
      head.length,
      "packet block names interface 2, which was not described",
    );
    expectRefusal(
      file(shb(false), spb(false, 1, [1])),
      "bad-block",
      28,
      "packet block names interface 0, which was not described",
    );
  });

  it("refuses captured bytes that run past their block", () => {
    const head = file(shb(true), idb(true, 1, 0));
    // 8 bytes of (padded) data, 9 claimed; then 5 claimed over 4.
    const over = epb(true, 0, 0n, [1, 2, 3, 4, 5, 6, 7, 8], 9, 9);
    expectRefusal(
      file([...head], over),
      "bad-length",
      head.length,
      "packet block's 9 captured bytes run past its block",
    );
    const padded = epb(true, 0, 0n, [1, 2, 3, 4], 5, 5);
    expectRefusal(
      file([...head], padded),
      "bad-length",
      head.length,
      "packet block's 5 captured bytes run past its block",
    );
  });

  it("refuses a captured length over 262,144 and takes one of it", () => {
    const head = file(shb(true), idb(true, 1, 0));
    expectRefusal(
      file([...head], epb(true, 0, 0n, [], 262_145, 262_145)),
      "too-large",
      head.length,
      "packet block's captured length 262145 is over 262144",
    );
    const data = new Array<number>(262_144).fill(0x11);
    data[262_143] = 0x22;
    const c = readCapture(file([...head], epb(true, 0, 0n, data)));
    expect(c.packets[0]?.data.length).toBe(262_144);
    expect(c.packets[0]?.data[262_143]).toBe(0x22);
  });
});

describe("pcapng writing (sections 4.1 to 4.3)", () => {
  it("writes one Ethernet interface in nanoseconds by default", () => {
    const bytes = writeCapture(
      [
        {
          data: Uint8Array.from([1, 2, 3, 4, 5]),
          seconds: 1_700_000_000,
          nanoseconds: 123_456_789,
          originalLength: 1514,
        },
        { data: Uint8Array.from([9, 9, 9, 9]), seconds: 1 },
      ],
      { format: "pcapng" },
    );
    const expected = file(
      shb(true),
      idb(true, 1, 262_144, tsresol(true, 9)),
      epb(true, 0, T, [1, 2, 3, 4, 5], 1514),
      epb(true, 0, 1_000_000_000n, [9, 9, 9, 9]),
    );
    expectSameBytes(bytes, expected, "pcapng file");
  });

  it("writes each interface's link type and clock, each packet in its own clock's ticks", () => {
    const bytes = writeCapture(
      [
        { data: Uint8Array.from([1]), seconds: 2, nanoseconds: 500_000_999, interfaceId: 0 },
        { data: Uint8Array.from([2, 2]), seconds: 1, nanoseconds: 500_000_000, interfaceId: 1 },
        { data: Uint8Array.from([3]), seconds: 4_000_000_000, interfaceId: 2 },
      ],
      {
        format: "pcapng",
        snaplen: 2000,
        interfaces: [
          { linkType: 1, tsresol: 6 },
          { linkType: 113, tsresol: 0x94 },
          { linkType: 276 },
        ],
      },
    );
    const expected = file(
      shb(true),
      idb(true, 1, 2000, tsresol(true, 6)),
      idb(true, 113, 2000, tsresol(true, 0x94)),
      idb(true, 276, 2000, tsresol(true, 9)),
      epb(true, 0, 2_500_000n, [1]),
      epb(true, 1, 3n << 19n, [2, 2]),
      epb(true, 2, 4_000_000_000n * 1_000_000_000n, [3], 1),
    );
    expectSameBytes(bytes, expected, "pcapng file");
  });

  it("refuses a packet on an interface it does not describe", () => {
    const one = [{ linkType: 1 }];
    for (const interfaces of [undefined, one]) {
      let message = "";
      try {
        writeCapture(
          [
            { data: new Uint8Array(1), interfaceId: 0 },
            { data: new Uint8Array(1), interfaceId: 1 },
          ],
          {
            format: "pcapng",
            interfaces,
          },
        );
      } catch (error) {
        expect(error).toBeInstanceOf(RangeError);
        message = error instanceof Error ? error.message : "";
      }
      expect(message).toBe("packet 1 names interface 1, not one of the 1 described");
    }
    const ok = writeCapture([{ data: new Uint8Array(1), interfaceId: 1 }], {
      format: "pcapng",
      interfaces: [{ linkType: 1 }, { linkType: 105 }],
    });
    expect(readCapture(ok).packets.map((p) => [p.interfaceId, p.linkType])).toEqual([[1, 105]]);
  });
});
