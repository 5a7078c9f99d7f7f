/*
 * The live-migration frame header field by field (src/migration/live/frame.ts
 * gives the layout): each field at its offset, little-endian, and each
 * refusal naming what is wrong, the frame's number and the value read, on
 * both sides of its bound.
 */
import { describe, expect, it } from "vitest";
import {
  excerpt,
  FRAME_DIGEST_BYTES,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameError,
  FrameHeader,
  FrameType,
  type FrameTypeCode,
  frameTypeName,
  MAX_FRAME_BYTES,
  MAX_FRAME_PAYLOAD,
  PROTOCOL_VERSION,
  parseHeader,
  writeHeader,
} from "../src/migration/live/frame.js";

/** A header written by {@link writeHeader}, as bytes. */
function header(type: FrameTypeCode, sequence: number, length: number): Uint8Array {
  const bytes = new Uint8Array(FRAME_HEADER_BYTES).fill(0xee);
  writeHeader(new DataView(bytes.buffer), type, sequence, length);
  return bytes;
}

/** The FrameError `parse` throws, or a failure. */
function refusal(parse: () => unknown): FrameError {
  try {
    parse();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("not refused");
}

describe("the frame header's layout", () => {
  it("is 24 bytes, an 8-byte digest after at most 8 MiB of payload", () => {
    expect(FRAME_HEADER_BYTES).toBe(24);
    expect(FRAME_DIGEST_BYTES).toBe(8);
    expect(MAX_FRAME_PAYLOAD).toBe(8 * 1024 * 1024);
    expect(MAX_FRAME_BYTES).toBe(24 + 8 * 1024 * 1024 + 8);
    expect([...FRAME_MAGIC]).toEqual([..."HVLM"].map((c) => c.charCodeAt(0)));
    expect(PROTOCOL_VERSION).toBe(1);
  });

  it("writes each field at its offset, little-endian, and zeroes the flags, check and reserved word", () => {
    const bytes = header(FrameType.records, 0x01020304, 0x00a0b0c0);
    expect([...bytes]).toEqual([
      ...[0x48, 0x56, 0x4c, 0x4d], // magic
      1, // version
      11, // type
      ...[0, 0], // flags
      ...[0x04, 0x03, 0x02, 0x01], // sequence
      ...[0xc0, 0xb0, 0xa0, 0x00], // payload length
      ...[0, 0, 0, 0], // check (set by the codec)
      ...[0, 0, 0, 0], // reserved
    ]);
    expect(FrameHeader).toEqual({
      magic: 0,
      version: 4,
      type: 5,
      flags: 6,
      sequence: 8,
      length: 12,
      check: 16,
      reserved: 20,
    });
  });

  it("writes the sequence as a u32: 2^32 is frame 0 again", () => {
    const bytes = header(FrameType.pages, 2 ** 32 + 5, 0);
    expect(new DataView(bytes.buffer).getUint32(FrameHeader.sequence, true)).toBe(5);
  });

  it("reads back what was written", () => {
    expect(parseHeader(header(FrameType.postcopyDone, 7, 1234), false, 7)).toEqual({
      version: 1,
      type: 19,
      sequence: 7,
      length: 1234,
    });
  });
});

describe("the frame header's refusals", () => {
  it("a header of 23 bytes is refused, saying how many came", () => {
    const e = refusal(() => parseHeader(header(FrameType.hello, 0, 0).subarray(0, 23), true, 0));
    expect(e.kind).toBe("header");
    expect(e.message).toBe("frame header of 23 bytes, need 24");
    expect(e.name).toBe("FrameError");
  });

  it("a wrong magic in the first frame is a foreign peer, shown as it sent it", () => {
    for (let i = 0; i < 4; i++) {
      const bytes = header(FrameType.hello, 0, 0);
      bytes[i] = 0x58; // "X"
      const e = refusal(() => parseHeader(bytes, true, 0));
      expect(e.kind).toBe("foreign");
      expect(e.message).toMatch(/^the peer does not speak hvlab's migration protocol \(it sent "/);
      expect(e.message).toContain(`"${"HVLM".slice(0, i)}X${"HVLM".slice(i + 1)}\\x01\\x01`);
    }
  });

  it("a wrong magic later is a corrupted stream, naming the frame due", () => {
    const bytes = header(FrameType.pages, 9, 0);
    bytes[3] = 0;
    const e = refusal(() => parseHeader(bytes, false, 9));
    expect(e.kind).toBe("header");
    expect(e.message).toBe("frame 9: bad magic, the stream is corrupted");
  });

  it("another version is refused in one line naming both", () => {
    const bytes = header(FrameType.hello, 0, 32);
    bytes[FrameHeader.version] = 0;
    const e = refusal(() => parseHeader(bytes, true, 0));
    expect(e.kind).toBe("version");
    expect(e.message).toBe(
      "the peer speaks hvlab migration protocol version 0; this hvlab speaks version 1",
    );
  });

  it("types 1 to 23 are known; 0 and 24 are refused, naming the frame", () => {
    for (let type = 1; type <= 23; type++) {
      expect(parseHeader(header(type as FrameTypeCode, 3, 0), false, 3).type).toBe(type);
    }
    for (const type of [0, 24, 255]) {
      const e = refusal(() => parseHeader(header(type as FrameTypeCode, 3, 0), false, 3));
      expect(e.kind).toBe("type");
      expect(e.message).toBe(`frame 3: unknown frame type ${type}`);
    }
  });

  it("any bit of the flags or the reserved word is refused", () => {
    for (const at of [FrameHeader.flags, FrameHeader.flags + 1, FrameHeader.reserved, 23]) {
      const bytes = header(FrameType.pages, 4, 0);
      bytes[at] = 0x80;
      const e = refusal(() => parseHeader(bytes, false, 4));
      expect(e.kind).toBe("header");
      expect(e.message).toBe("frame 4: reserved header fields are not zero");
    }
  });

  it("the sequence must be the one due, read as a little-endian u32", () => {
    const e = refusal(() => parseHeader(header(FrameType.pages, 0x0100, 0), false, 1));
    expect(e.kind).toBe("sequence");
    expect(e.message).toBe("frame 256 arrived where frame 1 was due");
    expect(parseHeader(header(FrameType.pages, 0x01020304, 0), false, 0x01020304).sequence).toBe(
      0x01020304,
    );
  });

  it("a payload of exactly 8 MiB is taken, one byte more refused before it is read", () => {
    expect(parseHeader(header(FrameType.pages, 2, MAX_FRAME_PAYLOAD), false, 2).length).toBe(
      MAX_FRAME_PAYLOAD,
    );
    const e = refusal(() =>
      parseHeader(header(FrameType.pages, 2, MAX_FRAME_PAYLOAD + 1), false, 2),
    );
    expect(e.kind).toBe("length");
    expect(e.message).toBe("frame 2: payload of 8388609 bytes is over the 8388608-byte limit");
  });

  it("reads a header that does not start its buffer", () => {
    const buffer = new Uint8Array(FRAME_HEADER_BYTES + 5).fill(0xff);
    buffer.set(header(FrameType.verify, 6, 40), 5);
    expect(parseHeader(buffer.subarray(5), false, 6)).toMatchObject({ type: 7, length: 40 });
  });
});

describe("names and excerpts for messages", () => {
  it("names every frame type by its key, and an unknown one by its number", () => {
    for (const [name, code] of Object.entries(FrameType)) expect(frameTypeName(code)).toBe(name);
    expect(frameTypeName(0)).toBe("unknown type 0");
    expect(frameTypeName(24)).toBe("unknown type 24");
  });

  it("shows printable ASCII from space to tilde as it is, every other byte as \\xNN", () => {
    expect(excerpt(Uint8Array.of(0x20, 0x41, 0x7e))).toBe(" A~");
    expect(excerpt(Uint8Array.of(0x1f, 0x7f, 0x00, 0x0a, 0xff))).toBe("\\x1f\\x7f\\x00\\x0a\\xff");
  });

  it("shows the first 24 bytes only", () => {
    const text = new TextEncoder().encode("abcdefghijklmnopqrstuvwxyz");
    expect(excerpt(text)).toBe("abcdefghijklmnopqrstuvwx");
  });
});
