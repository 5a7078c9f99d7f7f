import { describe, expect, it } from "vitest";
import { ProtocolError } from "../src/csv/protocol.js";
import {
  encodeRedirected,
  MAX_REDIRECTED_BYTES,
  MAX_REDIRECTED_NAME_BYTES,
  parseRedirected,
} from "../src/csv/redirected-io.js";

// The redirected READ/WRITE request (node-protocol type 17) as docs/csv.md
// "Redirected access" lays it out: kind u8 (0 READ, 1 WRITE), a reserved
// zero byte, the name's length n (u16), the file offset (u64), the length
// (u32), the UTF-8 name, then a WRITE's bytes; little-endian, like every
// other node-protocol field. A name is 1 to 128 bytes, a request at most
// 512 KiB. The parser refuses a bad payload with a ProtocolError naming the
// byte where the bad field starts.

const utf8 = new TextEncoder();

interface Fields {
  kind?: number;
  reserved?: number;
  name?: Uint8Array;
  /** The name-length field, when it should not be the name's length. */
  nameBytes?: number;
  offset?: bigint;
  length?: number;
  data?: Uint8Array;
}

/** A request built field by field from the documented layout. */
function request(f: Fields): Uint8Array {
  const name = f.name ?? utf8.encode("vm.vhdx");
  const data = f.data ?? new Uint8Array(0);
  const out = new Uint8Array(16 + name.length + data.length);
  const view = new DataView(out.buffer);
  out[0] = f.kind ?? 0;
  out[1] = f.reserved ?? 0;
  view.setUint16(2, f.nameBytes ?? name.length, true);
  view.setBigUint64(4, f.offset ?? 0n, true);
  view.setUint32(12, f.length ?? data.length, true);
  out.set(name, 16);
  out.set(data, 16 + name.length);
  return out;
}

/** Where and why the parser refused `payload`; fails when it takes it. */
function refusal(payload: Uint8Array): { at: number; what: string } {
  try {
    parseRedirected(payload);
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    const m = /^redirected I\/O: byte (\d+): (.*)$/.exec((error as Error).message);
    expect(m, (error as Error).message).not.toBeNull();
    return { at: Number(m?.[1]), what: m?.[2] ?? "" };
  }
  return expect.fail("the parser took a payload it should refuse");
}

const KIB = 1024;

describe("the documented limits", () => {
  // docs/csv.md: "a name is 1 to 128 bytes, a request at most 512 KiB".
  it("are 128 name bytes and 512 KiB", () => {
    expect(MAX_REDIRECTED_NAME_BYTES).toBe(128);
    expect(MAX_REDIRECTED_BYTES).toBe(512 * KIB);
  });
});

describe("encoding a redirected request", () => {
  // The sender's bytes are the documented layout, field by field.
  it("lays a WRITE and a READ out as docs/csv.md draws them", () => {
    const data = Uint8Array.of(9, 8, 7);
    const write = request({ kind: 1, name: utf8.encode("a.vhdx"), offset: 4096n, data });
    expect(encodeRedirected("a.vhdx", 4096, 3, data)).toEqual(write);
    const read = request({ kind: 0, name: utf8.encode("a.vhdx"), offset: 4096n, length: 3 });
    expect(encodeRedirected("a.vhdx", 4096, 3)).toEqual(read);
  });

  // A name is 1 to 128 bytes of UTF-8 (the file table's limit), counted in
  // bytes, not characters: 64 "é" are 128 bytes, 65 are 130.
  it("takes names of 1 to 128 UTF-8 bytes and refuses others", () => {
    expect(encodeRedirected("a", 0, 0)[2]).toBe(1);
    expect(encodeRedirected("é".repeat(64), 0, 0)[2]).toBe(128);
    for (const name of ["", "x".repeat(129), "é".repeat(65)]) {
      expect(() => encodeRedirected(name, 0, 0), JSON.stringify(name)).toThrow(
        new RangeError("a redirected request names a file of 1 to 128 bytes"),
      );
    }
  });

  // The offset is a whole, non-negative number of bytes that a u64 holds
  // exactly as a JavaScript number: up to 2^53 - 1.
  it("refuses an offset that is negative, fractional or past 2^53 - 1", () => {
    expect(parseRedirected(encodeRedirected("f", 2 ** 53 - 1, 0)).offset).toBe(2 ** 53 - 1);
    for (const offset of [-1, -4096, 1.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => encodeRedirected("f", offset, 0), String(offset)).toThrow(
        new RangeError(
          `a redirected request's offset must be a whole number of bytes, not ${offset}`,
        ),
      );
    }
  });

  // A request carries 0 to 512 KiB; larger I/O is split by the sender.
  it("refuses a length that is negative, fractional or over 512 KiB", () => {
    expect(parseRedirected(encodeRedirected("f", 0, 0)).length).toBe(0);
    expect(parseRedirected(encodeRedirected("f", 0, 512 * KIB)).length).toBe(512 * KIB);
    for (const length of [-1, 1.5, 512 * KIB + 1, 2 ** 32, Number.NaN]) {
      expect(() => encodeRedirected("f", 0, length), String(length)).toThrow(
        new RangeError(`a redirected request carries 0 to ${512 * KIB} bytes, not ${length}`),
      );
    }
  });

  // A WRITE's length field says how many data bytes follow: it must be the
  // number of bytes given, or the receiver would read past them or stop short.
  it("refuses a WRITE whose bytes are not its length", () => {
    expect(() => encodeRedirected("f", 0, 4, new Uint8Array(3))).toThrow(
      new RangeError("a redirected WRITE of 4 bytes was given 3"),
    );
    expect(() => encodeRedirected("f", 0, 2, new Uint8Array(3))).toThrow(
      new RangeError("a redirected WRITE of 2 bytes was given 3"),
    );
  });
});

describe("parsing a redirected request", () => {
  // Known answers built from the layout: kind 1 is a WRITE whose data is the
  // bytes after the name, kind 0 a READ that carries none.
  it("reads a WRITE's and a READ's fields", () => {
    const data = Uint8Array.of(1, 2, 3, 4);
    const name = utf8.encode("disk é.vhdx");
    const write = parseRedirected(request({ kind: 1, name, offset: 1n << 40n, data }));
    expect(write).toEqual({ kind: "write", name: "disk é.vhdx", offset: 2 ** 40, length: 4, data });
    const read = parseRedirected(request({ kind: 0, name, offset: 512n, length: 4096 }));
    expect(read).toEqual({ kind: "read", name: "disk é.vhdx", offset: 512, length: 4096 });
    expect("data" in read).toBe(false);
  });

  // Shorter than the 16-byte fixed part: refused at byte 0. Exactly 16 bytes
  // is a whole header, so a 16-byte payload is refused for what its header
  // says (a one-byte name that is missing), not for being short.
  it("refuses a payload shorter than the header at byte 0", () => {
    expect(refusal(request({}).subarray(0, 15))).toEqual({
      at: 0,
      what: "payload of 15 bytes is shorter than the 16-byte header",
    });
    expect(refusal(new Uint8Array(0)).at).toBe(0);
    const header = request({ name: Uint8Array.of(0x61) }).subarray(0, 16);
    expect(refusal(header)).toEqual({
      at: 16,
      what: "payload of 16 bytes, expected 17 for a READ of 0 bytes",
    });
  });

  // kind is 0 (READ) or 1 (WRITE); anything else is refused at byte 0.
  it("refuses a kind other than READ or WRITE", () => {
    for (const kind of [2, 3, 0x80, 0xff]) {
      const r = refusal(request({ kind }));
      expect(r.at).toBe(0);
      expect(r.what).toMatch(new RegExp(`^kind ${kind} is not 0 \\(READ\\) or 1 \\(WRITE\\)$`));
    }
  });

  // Byte 1 is reserved and must be zero.
  it("refuses a non-zero reserved byte at byte 1", () => {
    for (const reserved of [1, 0xff]) {
      expect(refusal(request({ reserved }))).toEqual({ at: 1, what: "reserved byte must be zero" });
    }
  });

  // The name-length field (byte 2) is 1 to 128; the bounds themselves are good.
  it("takes a name of 1 to 128 bytes and refuses 0 or 129 at byte 2", () => {
    expect(parseRedirected(request({ name: utf8.encode("a") })).name).toBe("a");
    const longest = "n".repeat(128);
    expect(parseRedirected(request({ name: utf8.encode(longest) })).name).toBe(longest);
    expect(refusal(request({ name: new Uint8Array(0) }))).toEqual({
      at: 2,
      what: "name of 0 bytes, expected 1 to 128",
    });
    expect(refusal(request({ name: utf8.encode("n".repeat(129)) }))).toEqual({
      at: 2,
      what: "name of 129 bytes, expected 1 to 128",
    });
  });

  // The u64 offset (byte 4) must fit a JavaScript number exactly: 2^53 - 1
  // is taken, 2^53 and beyond are refused rather than rounded.
  it("takes an offset up to 2^53 - 1 and refuses one past it at byte 4", () => {
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    expect(parseRedirected(request({ offset: max })).offset).toBe(Number.MAX_SAFE_INTEGER);
    for (const offset of [max + 1n, (1n << 64n) - 1n]) {
      expect(refusal(request({ offset }))).toEqual({
        at: 4,
        what: `offset ${offset} is past 2^53`,
      });
    }
  });

  // The u32 length (byte 12) is at most 512 KiB, for a READ as for a WRITE.
  it("takes a length of 512 KiB and refuses one over it at byte 12", () => {
    expect(parseRedirected(request({ length: 512 * KIB })).length).toBe(512 * KIB);
    for (const length of [512 * KIB + 1, 0xffff_ffff]) {
      expect(refusal(request({ length }))).toEqual({
        at: 12,
        what: `length ${length} is more than ${512 * KIB}`,
      });
    }
  });

  // A READ ends with its name, a WRITE with its length's bytes. A payload
  // that stops short is refused where it ends; one that runs on, where the
  // request should have ended.
  it("refuses a payload whose size is not what its header says", () => {
    const name = utf8.encode("f");
    const write = request({ kind: 1, name, data: new Uint8Array(10) });
    expect(refusal(write.subarray(0, 22))).toEqual({
      at: 22,
      what: "payload of 22 bytes, expected 27 for a WRITE of 10 bytes",
    });
    const longer = new Uint8Array(29);
    longer.set(write);
    expect(refusal(longer)).toEqual({
      at: 27,
      what: "payload of 29 bytes, expected 27 for a WRITE of 10 bytes",
    });
    // A READ of 10 bytes carries none of them: the data would be extra.
    const read = request({ kind: 0, name, data: new Uint8Array(10) });
    expect(refusal(read)).toEqual({
      at: 17,
      what: "payload of 27 bytes, expected 17 for a READ of 10 bytes",
    });
  });

  // The name is UTF-8 (as the file table holds it); bytes that are not
  // valid UTF-8 are refused at byte 16 rather than decoded to something else.
  it("refuses a name that is not UTF-8 at byte 16", () => {
    for (const name of [
      Uint8Array.of(0xff),
      Uint8Array.of(0x61, 0xc3),
      Uint8Array.of(0xed, 0xa0, 0x80),
    ]) {
      expect(refusal(request({ name }))).toEqual({ at: 16, what: "the file name is not UTF-8" });
    }
  });
});
