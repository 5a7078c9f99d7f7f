import { describe, expect, it } from "vitest";
import { MAX_CAPTURED_PACKET, readCapture, writeCapture } from "../src/net/capture.js";
import { CaptureError } from "../src/net/errors.js";

/*
 * The capture writer stores each value in a field of fixed width (pcap:
 * draft-ietf-opsawg-pcap section 5, 32-bit seconds; pcapng:
 * draft-ietf-opsawg-pcapng section 4, a 16-bit LinkType, a one-byte
 * if_tsresol, a 64-bit tick count). A value that does not fit is refused
 * rather than cut to the field's width, so that what is written is what is
 * read back; nanoseconds of a second or more carry into the seconds in
 * both formats.
 */

const DATA = new Uint8Array(60).fill(0xab);

describe("capture writer: fields that must fit their width", () => {
  it("carries nanoseconds of a second or more into pcap's seconds, as pcapng does", () => {
    for (const format of ["pcap", "pcapng"] as const) {
      const file = writeCapture([{ data: DATA, seconds: 1, nanoseconds: 1_500_000_000 }], {
        format,
      });
      const [p] = readCapture(file).packets;
      expect({ seconds: p?.seconds, nanoseconds: p?.nanoseconds }, format).toEqual({
        seconds: 2,
        nanoseconds: 500_000_000,
      });
    }
    // Microsecond pcap keeps the carried second and the microseconds left.
    const us = writeCapture([{ data: DATA, seconds: 7, nanoseconds: 3_000_004_999 }], {
      format: "pcap",
      nanoseconds: false,
    });
    const [p] = readCapture(us).packets;
    expect({ seconds: p?.seconds, nanoseconds: p?.nanoseconds }).toEqual({
      seconds: 10,
      nanoseconds: 4_000,
    });
  });

  it("writes pcap's last second, 2^32 - 1, and refuses the next instead of wrapping it", () => {
    const last = writeCapture([{ data: DATA, seconds: 0xffff_ffff, nanoseconds: 999_999_999 }], {
      format: "pcap",
    });
    expect(readCapture(last).packets[0]?.seconds).toBe(0xffff_ffff);
    expect(() => writeCapture([{ data: DATA, seconds: 2 ** 32 + 5 }], { format: "pcap" })).toThrow(
      /packet 0: a pcap record holds seconds up to 2\^32 - 1 \(the year 2106\), not 4294967301/,
    );
    // The same second reached by carrying nanoseconds.
    expect(() =>
      writeCapture([{ data: DATA, seconds: 0xffff_ffff, nanoseconds: 1e9 }], { format: "pcap" }),
    ).toThrow(/not 4294967296/);
    // pcapng's 64-bit tick count takes it.
    const ng = writeCapture([{ data: DATA, seconds: 2 ** 32 + 5 }], { format: "pcapng" });
    expect(readCapture(ng).packets[0]?.seconds).toBe(2 ** 32 + 5);
  });

  it("refuses negative or fractional times, naming the packet", () => {
    const second =
      (seconds: number, nanoseconds = 0) =>
      () =>
        writeCapture(
          [
            { data: DATA, seconds: 1 },
            { data: DATA, seconds, nanoseconds },
          ],
          { format: "pcapng" },
        );
    expect(second(-1)).toThrow(/packet 1: seconds must be a whole number from 0, not -1/);
    expect(second(1.5)).toThrow(/packet 1: seconds .* not 1\.5/);
    expect(second(0, -1)).toThrow(/packet 1: nanoseconds must be a whole number from 0, not -1/);
    expect(second(0, 0.5)).toThrow(/packet 1: nanoseconds .* not 0\.5/);
  });

  it("refuses an interface id that is negative, fractional or not described", () => {
    const two = { format: "pcapng" as const, interfaces: [{ linkType: 1 }, { linkType: 101 }] };
    expect(() => writeCapture([{ data: DATA, interfaceId: -1 }], two)).toThrow(
      /packet 0 names interface -1, not one of the 2 described/,
    );
    expect(() => writeCapture([{ data: DATA, interfaceId: 0.5 }], two)).toThrow(/interface 0\.5/);
    expect(() => writeCapture([{ data: DATA, interfaceId: 2 }], two)).toThrow(/interface 2,/);
    const ok = readCapture(writeCapture([{ data: DATA, interfaceId: 1 }], two));
    expect(ok.packets[0]?.linkType).toBe(101);
  });

  it("refuses a link type, if_tsresol, snapshot or original length wider than its field", () => {
    const one = (iface: { linkType: number; tsresol?: number }) => () =>
      writeCapture([{ data: DATA }], { format: "pcapng", interfaces: [iface] });
    expect(one({ linkType: 0x1_0000 })).toThrow(
      /interface 0: a link type is 0 to 65535, not 65536/,
    );
    expect(one({ linkType: -1 })).toThrow(/not -1/);
    expect(one({ linkType: 1, tsresol: 256 })).toThrow(
      /interface 0: if_tsresol is one byte, not 256/,
    );
    expect(one({ linkType: 0xffff, tsresol: 0xff })).not.toThrow(/link type|if_tsresol/);
    expect(() => writeCapture([{ data: DATA }], { format: "pcap", linkType: 2 ** 32 })).toThrow(
      /a pcap link type is 0 to 2\^32 - 1, not 4294967296/,
    );
    expect(() => writeCapture([], { format: "pcap", snaplen: -1 })).toThrow(
      /the snapshot length must be 0 to 2\^32 - 1 bytes, not -1/,
    );
    expect(() =>
      writeCapture([{ data: DATA, originalLength: 2 ** 32 }], { format: "pcap" }),
    ).toThrow(/packet 0: the original length must be 0 to 2\^32 - 1 bytes, not 4294967296/);
  });

  it("refuses a time past an interface's 64-bit tick count (if_tsresol 10^-127 s)", () => {
    const fine = { format: "pcapng" as const, interfaces: [{ linkType: 1, tsresol: 127 }] };
    expect(() => writeCapture([{ data: DATA, seconds: 0, nanoseconds: 0 }], fine)).not.toThrow();
    expect(() => writeCapture([{ data: DATA, seconds: 1 }], fine)).toThrow(
      /over the 64-bit tick count of interface 0 \(if_tsresol 127\)/,
    );
    // 2^-63 s ticks: 1 s is 2^63 ticks, which fits; 2 s is 2^64, which does not.
    const binary = { format: "pcapng" as const, interfaces: [{ linkType: 1, tsresol: 0x80 | 63 }] };
    expect(
      readCapture(writeCapture([{ data: DATA, seconds: 1 }], binary)).packets[0]?.seconds,
    ).toBe(1);
    expect(() => writeCapture([{ data: DATA, seconds: 2 }], binary)).toThrow(/64-bit tick count/);
  });
});

describe("pcap reader: the limit a too-long record is held to", () => {
  /** A little-endian microsecond pcap header with `snaplen`, then one record header claiming `incl` bytes. */
  function pcapClaiming(snaplen: number, incl: number): Uint8Array {
    const out = new Uint8Array(24 + 16);
    const v = new DataView(out.buffer);
    v.setUint32(0, 0xa1b2c3d4, true);
    v.setUint16(4, 2, true);
    v.setUint16(6, 4, true);
    v.setUint32(16, snaplen, true);
    v.setUint32(20, 1, true);
    v.setUint32(24 + 8, incl, true);
    v.setUint32(24 + 12, incl, true);
    return out;
  }

  function refusal(bytes: Uint8Array): CaptureError {
    try {
      readCapture(bytes);
    } catch (error) {
      if (error instanceof CaptureError) return error;
      throw error;
    }
    throw new Error("the capture was read");
  }

  it("names hvlab's bound when the file's SnapLen is 0 (no limit of its own)", () => {
    const e = refusal(pcapClaiming(0, MAX_CAPTURED_PACKET + 1));
    expect(e.code).toBe("too-large");
    expect(e.offset).toBe(24 + 8);
    expect(e.message).toContain(
      `captured length ${MAX_CAPTURED_PACKET + 1} is over the limit (${MAX_CAPTURED_PACKET})`,
    );
  });

  it("names the file's SnapLen, or 65,535 below it, when one is given", () => {
    expect(refusal(pcapClaiming(100_000, 100_001)).message).toContain("over the limit (100000)");
    expect(refusal(pcapClaiming(1_500, 65_536)).message).toContain("over the limit (65535)");
  });
});
