import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import {
  VolumeFileError,
  VolumeFormatError,
  VolumeFullError,
  VolumeRangeError,
} from "../src/csv/errors.js";
import {
  encodeFrame,
  FrameReader,
  frameParts,
  HEADER_BYTES,
  joinPieces,
  MAX_IO_BYTES,
  MAX_PAYLOAD,
  Op,
  ProtocolError,
  piecesFrom,
  piecesLength,
  piecesUpTo,
  REPLY,
  ReceivedFrame,
  Status,
  sendFrame,
} from "../src/csv/protocol.js";
import { FieldFormatError } from "../src/util/field-error.js";
import { expectSameBytes } from "./support/bytes.js";

// The rules of the csv block protocol's frames (docs/csv.md, "The target and
// its protocol"): the 24-byte little-endian header, its CRC-32C over bytes
// 0..16, the payload's CRC-32C, the checks a reader makes in order (magic,
// header CRC, version, flags, length, payload CRC) and the error naming the
// field and the frame's byte offset in the stream.

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Little-endian u32 at `at`. */
const u32 = (bytes: Uint8Array, at: number): number =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);

/**
 * An encoded frame with `edit` applied to its header and the header CRC
 * computed again, so that the reader's later checks are the ones that see it.
 */
function resealed(frame: Uint8Array, edit: (view: DataView) => void): Uint8Array {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  edit(view);
  view.setUint32(16, crc32c(frame.subarray(0, 16)), true);
  return frame;
}

/** The message of the error `push` throws for `stream`. */
function refusal(stream: Uint8Array, reader = new FrameReader()): string {
  try {
    reader.push(stream);
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return (error as Error).message;
  }
  return expect.fail("the frame was accepted");
}

describe("CRC-32C (Castagnoli; RFC 7143 section 13.1, the check values of RFC 3720 B.4)", () => {
  // The checksum every sector of metadata and every frame carries: known answers, not the code's own.
  it("has the check value 0xE3069283 for '123456789' and 0 for no bytes", () => {
    expect(crc32c(ascii("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
  });

  it("gives RFC 3720's four 32-byte test vectors, as unsigned numbers", () => {
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(ascending)).toBe(0x46dd794e);
    expect(crc32c(ascending.slice().reverse())).toBe(0x113fdb5c);
  });

  it("continues from a seed, so a payload's CRC can run over its pieces in turn", () => {
    expect(crc32c(ascii("56789"), crc32c(ascii("1234")))).toBe(0xe3069283);
  });

  it("covers only the bytes a view shows, not the rest of its buffer", () => {
    const around = ascii("xyz123456789abc");
    expect(crc32c(around.subarray(3, 12))).toBe(0xe3069283);
  });
});

describe("frame header on the wire (docs/csv.md: magic, version, type, status, flags, tag, length, CRCs)", () => {
  // Every field at its offset, little-endian, against the layout table.
  it("lays out a frame field by field", () => {
    const payload = Uint8Array.of(0xa1, 0xb2, 0xc3);
    const frame = encodeFrame(Op.write, 0x0a0b0c0d, payload, Status.reservationConflict);
    expect(frame).toHaveLength(HEADER_BYTES + 3);
    expect(Buffer.from(frame.subarray(0, 4)).toString("latin1")).toBe("HVCS");
    expect([...frame.subarray(4, 16)]).toEqual([
      1, // version
      3, // type: WRITE
      0x18, // status: RESERVATION CONFLICT
      0, // flags
      0x0d,
      0x0c,
      0x0b,
      0x0a, // tag
      3,
      0,
      0,
      0, // payload length
    ]);
    expect(u32(frame, 16)).toBe(crc32c(frame.subarray(0, 16)));
    expect(u32(frame, 20)).toBe(crc32c(payload));
    expect([...frame.subarray(24)]).toEqual([0xa1, 0xb2, 0xc3]);
  });

  it("a frame with no payload is its 24-byte header, length 0, payload CRC 0", () => {
    const frame = encodeFrame(Op.flush, 9);
    expect(frame).toHaveLength(24);
    expect(u32(frame, 12)).toBe(0);
    expect(u32(frame, 20)).toBe(0);
    expect(frame[6]).toBe(Status.good);
  });

  it("a reply sets bit 0x80 of its request's type", () => {
    expect(REPLY).toBe(0x80);
    expect(encodeFrame(Op.read | REPLY, 1)[5]).toBe(0x82);
  });
});

describe("frameParts: the header, then the caller's parts uncopied (docs/csv.md, zero-copy path)", () => {
  it("sends the parts themselves after the header, leaving out empty ones", () => {
    const a = Uint8Array.of(1, 2);
    const b = Uint8Array.of(3);
    const parts = frameParts(Op.write, 5, [a, new Uint8Array(0), b]);
    expect(parts).toHaveLength(3);
    expect(parts[1]).toBe(a);
    expect(parts[2]).toBe(b);
    expectSameBytes(
      parts[0] ?? new Uint8Array(0),
      encodeFrame(Op.write, 5, Uint8Array.of(1, 2, 3)).subarray(0, 24),
    );
  });

  it("a frame without payload is one piece, the header", () => {
    expect(frameParts(Op.flush, 1, [])).toHaveLength(1);
    expect(frameParts(Op.flush, 1, [new Uint8Array(0)])).toHaveLength(1);
  });

  // The payload bound: a 1 MiB WRITE and its 12-byte address fit, with 64 bytes of room; a byte more does not.
  it("carries at most 1 MiB + 64 bytes of payload, refusing a byte more by name", () => {
    const io = new Uint8Array(MAX_IO_BYTES);
    const whole = frameParts(Op.write, 1, [io, new Uint8Array(64)]);
    expect(u32(whole[0] ?? new Uint8Array(0), 12)).toBe(MAX_PAYLOAD);
    expect(() => frameParts(Op.write, 1, [io, new Uint8Array(65)])).toThrow(
      new RangeError("a frame carries at most 1048640 bytes, not 1048641"),
    );
    expect(() => encodeFrame(Op.write, 1, new Uint8Array(MAX_PAYLOAD + 1))).toThrow(RangeError);
  });
});

describe("sendFrame: one corked burst (one writev)", () => {
  it("corks, writes every piece in order, then uncorks", () => {
    const calls: string[] = [];
    const socket = {
      cork: () => void calls.push("cork"),
      uncork: () => void calls.push("uncork"),
      write: (chunk: Uint8Array) => calls.push(`write ${chunk.length}`) > 0,
    };
    sendFrame(socket, frameParts(Op.write, 1, [Uint8Array.of(1, 2), Uint8Array.of(3)]));
    expect(calls).toEqual(["cork", "write 24", "write 2", "write 1", "uncork"]);
  });
});

describe("FrameReader: whole frames out of a byte stream", () => {
  // Type, status, tag and payload read back as sent, including a tag with the top bit set.
  it("reads back every field of a frame", () => {
    const frames = new FrameReader().push(
      encodeFrame(Op.reserveOut | REPLY, 0xfffffffe, Uint8Array.of(7, 8), Status.busy),
    );
    expect(frames).toHaveLength(1);
    const [f] = frames;
    expect(f?.type).toBe(0x85);
    expect(f?.status).toBe(0x08);
    expect(f?.tag).toBe(0xfffffffe);
    expect([...(f?.payload ?? [])]).toEqual([7, 8]);
  });

  it("a 24-byte frame is whole as soon as its header is", () => {
    const frames = new FrameReader().push(encodeFrame(Op.flush, 3));
    expect(frames.map((f) => [f.type, f.tag, f.payload.length])).toEqual([[Op.flush, 3, 0]]);
  });

  // Bytes that do not yet make a frame are held and counted; a header split across reads is joined.
  it("holds a partial frame, counting its bytes, until the rest arrives", () => {
    const frame = encodeFrame(Op.read, 4, Uint8Array.of(1, 2, 3, 4, 5));
    const reader = new FrameReader();
    expect(reader.push(frame.subarray(0, 5))).toEqual([]);
    expect(reader.pending).toBe(5);
    expect(reader.push(frame.subarray(5, 26))).toEqual([]);
    expect(reader.pending).toBe(26);
    const frames = reader.push(frame.subarray(26));
    expect(reader.pending).toBe(0);
    expect(frames.map((f) => [...f.payload])).toEqual([[1, 2, 3, 4, 5]]);
  });

  it("cuts several frames from one read, in order", () => {
    const stream = Buffer.concat([
      encodeFrame(Op.read, 1, Uint8Array.of(1)),
      encodeFrame(Op.flush, 2),
      encodeFrame(Op.write, 3, Uint8Array.of(2, 3)),
    ]);
    const reader = new FrameReader();
    const frames = reader.push(stream.subarray(0, stream.length - 1));
    expect(frames.map((f) => f.tag)).toEqual([1, 2]);
    expect(reader.pending).toBe(25);
    expect(reader.push(stream.subarray(stream.length - 1)).map((f) => f.tag)).toEqual([3]);
  });
});

describe("FrameReader refusals: the field, the frame's stream byte offset, what was wrong (docs/csv.md)", () => {
  it("magic: not HVCS", () => {
    const frame = encodeFrame(Op.flush, 1);
    frame[0] = 0x58;
    expect(refusal(frame)).toBe("frame at stream byte 0: magic: not HVCS");
  });

  it("header CRC: any header byte changed after sealing", () => {
    const frame = encodeFrame(Op.flush, 1);
    frame[8] = 2; // the tag
    expect(refusal(frame)).toBe("frame at stream byte 0: header CRC: does not match");
  });

  it("version: 1 only, under a good header CRC", () => {
    const v2 = resealed(encodeFrame(Op.flush, 1), (v) => v.setUint8(4, 2));
    expect(refusal(v2)).toBe("frame at stream byte 0: version: 2 is not 1");
    const v0 = resealed(encodeFrame(Op.flush, 1), (v) => v.setUint8(4, 0));
    expect(refusal(v0)).toBe("frame at stream byte 0: version: 0 is not 1");
  });

  it("flags: must be zero, under a good header CRC", () => {
    const flagged = resealed(encodeFrame(Op.flush, 1), (v) => v.setUint8(7, 1));
    expect(refusal(flagged)).toBe("frame at stream byte 0: flags: must be zero");
  });

  it("payload CRC: a payload byte changed", () => {
    const frame = encodeFrame(Op.write, 1, Uint8Array.of(1, 2, 3));
    frame[25] = 9;
    expect(refusal(frame)).toBe("frame at stream byte 0: payload CRC: does not match");
  });

  // The length is refused from the header alone: no payload byte is awaited or buffered.
  it("payload length: refused above the reader's bound before a payload byte arrives, the bound itself awaited", () => {
    const header = (length: number) =>
      resealed(encodeFrame(Op.write, 1), (v) => v.setUint32(12, length, true));
    expect(refusal(header(17), new FrameReader(16))).toBe(
      "frame at stream byte 0: payload length: 17 is more than 16",
    );
    const reader = new FrameReader(16);
    expect(reader.push(header(16))).toEqual([]);
    expect(reader.pending).toBe(24);
    expect(refusal(header(MAX_PAYLOAD + 1))).toBe(
      `frame at stream byte 0: payload length: ${MAX_PAYLOAD + 1} is more than ${MAX_PAYLOAD}`,
    );
  });

  it("accepts a frame of exactly the largest payload", () => {
    const payload = new Uint8Array(MAX_PAYLOAD).fill(0x5a);
    const frames = new FrameReader().push(encodeFrame(Op.write, 1, payload));
    expect(frames).toHaveLength(1);
    expectSameBytes(frames[0]?.payload ?? new Uint8Array(0), payload);
  });

  // The offset is the bad frame's first byte: the good frames before it, headers and payloads, counted.
  it("names the bad frame's byte offset in the stream, counting earlier reads", () => {
    const reader = new FrameReader();
    expect(reader.push(encodeFrame(Op.read, 1, Uint8Array.of(1, 2, 3)))).toHaveLength(1);
    expect(reader.push(encodeFrame(Op.write, 2, Uint8Array.of(4, 5, 6, 7, 8)))).toHaveLength(1);
    const bad = encodeFrame(Op.flush, 3);
    bad[3] = 0;
    expect(refusal(bad, reader)).toBe("frame at stream byte 56: magic: not HVCS");
  });

  // After the first bad frame the stream cannot be trusted: every later push throws that same
  // error and the reader buffers nothing more from it.
  it("stays failed after a refusal, taking no more bytes", () => {
    const reader = new FrameReader();
    const bad = encodeFrame(Op.flush, 1);
    bad[7] = 1;
    const first = refusal(bad, reader);
    expect(first).toBe("frame at stream byte 0: header CRC: does not match");
    expect(refusal(encodeFrame(Op.flush, 2), reader)).toBe(first);
    expect(refusal(new Uint8Array(0), reader)).toBe(first);
    expect(reader.pending).toBe(24);
    const errors = [0, 1].map(() => {
      try {
        reader.push(new Uint8Array(1));
      } catch (error) {
        return error;
      }
      return undefined;
    });
    expect(errors[0]).toBeInstanceOf(ProtocolError);
    expect(errors[1]).toBe(errors[0]);
  });

  it("is a ProtocolError by name", () => {
    expect(new ProtocolError("x").name).toBe("ProtocolError");
    expect(new ProtocolError("x")).toBeInstanceOf(Error);
  });
});

describe("received payload pieces (docs/csv.md: up to 64 pieces kept, more joined)", () => {
  /** One frame whose payload of `n` bytes arrives one byte per read, after its header. */
  function dribbled(n: number) {
    const payload = Uint8Array.from({ length: n }, (_, i) => i);
    const frame = encodeFrame(Op.write, 1, payload);
    const reader = new FrameReader();
    reader.push(frame.subarray(0, HEADER_BYTES));
    for (let i = HEADER_BYTES; i < frame.length - 1; i++) {
      expect(reader.push(frame.subarray(i, i + 1))).toEqual([]);
    }
    const frames = reader.push(frame.subarray(frame.length - 1));
    expect(frames).toHaveLength(1);
    return { payload, frame: frames[0] };
  }

  it("keeps a payload that came in 64 reads as its 64 pieces", () => {
    const { payload, frame } = dribbled(64);
    expect(frame?.pieces).toHaveLength(64);
    expectSameBytes(frame?.payload ?? new Uint8Array(0), payload);
  });

  it("joins a payload that came in 65 reads into one piece", () => {
    const { payload, frame } = dribbled(65);
    expect(frame?.pieces).toHaveLength(1);
    expectSameBytes(frame?.pieces?.[0] ?? new Uint8Array(0), payload);
  });

  it("a received frame joins its pieces once, when its payload is read", () => {
    const frame = new ReceivedFrame(Op.write, 0, 1, [Uint8Array.of(1), Uint8Array.of(2, 3)]);
    const payload = frame.payload;
    expect([...payload]).toEqual([1, 2, 3]);
    expect(frame.payload).toBe(payload);
  });
});

describe("piece lists: byte ranges over a list of arrays, without copying", () => {
  const a = Uint8Array.of(1, 2, 3);
  const b = Uint8Array.of(4, 5);
  const c = Uint8Array.of(6, 7, 8, 9);
  const bytesOf = (pieces: readonly Uint8Array[]) => pieces.map((p) => [...p]);

  it("joinPieces: the concatenation; one piece is returned itself; none is empty", () => {
    expect([...joinPieces([a, b, c])]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(joinPieces([b])).toBe(b);
    expect(joinPieces([])).toHaveLength(0);
  });

  it("piecesLength: the bytes of all pieces", () => {
    expect(piecesLength([a, new Uint8Array(0), c])).toBe(7);
    expect(piecesLength([])).toBe(0);
  });

  it("piecesUpTo: the first n bytes, whole pieces uncut, no empty piece after a boundary", () => {
    expect(piecesUpTo([a, b, c], 0)).toEqual([]);
    const upToB = piecesUpTo([a, b, c], 5);
    expect(upToB).toHaveLength(2);
    expect(upToB[0]).toBe(a);
    expect(upToB[1]).toBe(b);
    expect(bytesOf(piecesUpTo([a, b, c], 6))).toEqual([[1, 2, 3], [4, 5], [6]]);
    expect(bytesOf(piecesUpTo([a, b, c], 2))).toEqual([[1, 2]]);
    expect(bytesOf(piecesUpTo([a, b], 50))).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it("piecesFrom: the bytes from `from` on, no empty piece before a boundary", () => {
    const all = piecesFrom([a, b, c], 0);
    expect(all).toHaveLength(3);
    expect(all[0]).toBe(a);
    const fromC = piecesFrom([a, b, c], 5);
    expect(fromC).toHaveLength(1);
    expect(fromC[0]).toBe(c);
    expect(bytesOf(piecesFrom([a, b, c], 4))).toEqual([[5], [6, 7, 8, 9]]);
    expect(bytesOf(piecesFrom([a, b, c], 1))).toEqual([
      [2, 3],
      [4, 5],
      [6, 7, 8, 9],
    ]);
    expect(piecesFrom([a, b, c], 9)).toEqual([]);
    expect(piecesFrom([a, b], 50)).toEqual([]);
  });
});

describe("volume error classes (src/csv/errors.ts)", () => {
  // A format error names the field and its byte offset on the LUN, decimal and hex.
  it("VolumeFormatError names the field and its offset", () => {
    const error = new VolumeFormatError("superblock magic", 512, "not HVCSVOL1");
    expect(error).toBeInstanceOf(FieldFormatError);
    expect(error.name).toBe("VolumeFormatError");
    expect(error.message).toBe("superblock magic at offset 512 (0x200): not HVCSVOL1");
    expect([error.field, error.offset]).toEqual(["superblock magic", 512]);
  });

  it("each error class says which it is by name, and a range error is a RangeError", () => {
    expect(new VolumeFullError("no free slot").name).toBe("VolumeFullError");
    expect(new VolumeFileError("no such file").name).toBe("VolumeFileError");
    const range = new VolumeRangeError("past the end");
    expect(range.name).toBe("VolumeRangeError");
    expect(range).toBeInstanceOf(RangeError);
  });
});
