import { describe, expect, it } from "vitest";
import {
  formatIp,
  formatMac,
  parseIp,
  parseIpv4,
  parseIpv6,
  parseMac,
} from "../src/net/address.js";

/*
 * The address forms a user types on the command line and reads in reports:
 * MAC addresses as six hex bytes separated by ':' or '-' (IEEE 802's
 * canonical form uses '-', Linux ':'), IPv4 as a dotted quad of 0 to 255,
 * IPv6 in RFC 4291 section 2.2's text forms (x:x:x:x:x:x:x:x, with one '::'
 * standing for one or more groups of zeros; each group 1 to 4 hex digits).
 */

const bytes = (b: Uint8Array) => Array.from(b);

describe("MAC addresses", () => {
  it("parses six hex bytes separated by ':' or '-', in either case, with or without a leading zero", () => {
    expect(bytes(parseMac("02:00:5e:00:00:01"))).toEqual([2, 0, 0x5e, 0, 0, 1]);
    expect(bytes(parseMac("00-15-5D-0A-FF-c7"))).toEqual([0, 0x15, 0x5d, 0x0a, 0xff, 0xc7]);
    expect(bytes(parseMac("2:0:5e:0:a:1"))).toEqual([2, 0, 0x5e, 0, 0x0a, 1]);
  });

  it("refuses five or seven bytes, a byte of three digits or none, and anything not hex, naming the text", () => {
    for (const text of [
      "02:00:5e:00:00",
      "02:00:5e:00:00:01:02",
      "02:00:5e:00:00:001",
      "02:00:5e:00::01",
      "02:00:5e:00:00:0g",
      "02 00 5e 00 00 01",
      "x02:00:5e:00:00:01",
      "02:00:5e:00:00:01x",
      "",
    ]) {
      expect(() => parseMac(text), text).toThrow(
        new RangeError(`'${text}' is not a MAC address (six hex bytes separated by ':')`),
      );
    }
  });

  it("formats six bytes from any offset as two lower-case hex digits each, ':' between", () => {
    const b = Uint8Array.from([0xaa, 0x02, 0x00, 0x5e, 0x0a, 0xff, 0x01, 0xbb]);
    expect(formatMac(b)).toBe("aa:02:00:5e:0a:ff");
    expect(formatMac(b, 1)).toBe("02:00:5e:0a:ff:01");
    expect(formatMac(b, 2)).toBe("00:5e:0a:ff:01:bb");
    // Past the end reads as zero rather than "undefined".
    expect(formatMac(b, 4)).toBe("0a:ff:01:bb:00:00");
  });
});

describe("IPv4 addresses", () => {
  it("parses a dotted quad of 0 to 255", () => {
    expect(bytes(parseIpv4("10.0.0.1"))).toEqual([10, 0, 0, 1]);
    expect(bytes(parseIpv4("255.255.255.255"))).toEqual([255, 255, 255, 255]);
    expect(bytes(parseIpv4("0.0.0.0"))).toEqual([0, 0, 0, 0]);
    expect(bytes(parseIpv4("192.168.000.199"))).toEqual([192, 168, 0, 199]);
  });

  it("refuses 256, four digits, three or five parts, an empty part and anything not a digit", () => {
    for (const text of [
      "256.0.0.1",
      "10.0.0.256",
      "10.0.0.0001",
      "10.0.0",
      "10.0.0.1.2",
      "10..0.1",
      "10.0.0.-1",
      "10.0.0.1a",
      "a10.0.0.1",
      "10.0.0.0x1",
      "",
    ]) {
      expect(() => parseIpv4(text), text).toThrow(
        new RangeError(`'${text}' is not an IPv4 address`),
      );
    }
  });
});

describe("IPv6 addresses (RFC 4291 section 2.2)", () => {
  const full = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 8, 0x08, 0, 0x20, 0x0c, 0x41, 0x7a];

  it("parses the RFC's examples, with and without '::'", () => {
    expect(bytes(parseIpv6("2001:DB8:0:0:8:800:200C:417A"))).toEqual(full);
    expect(bytes(parseIpv6("2001:db8::8:800:200c:417a"))).toEqual(full);
    expect(bytes(parseIpv6("2001:0db8:0000:0000:0008:0800:200c:417a"))).toEqual(full);
    expect(bytes(parseIpv6("FF01::101"))).toEqual([
      0xff, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01,
    ]);
    expect(bytes(parseIpv6("::1"))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    expect(bytes(parseIpv6("::"))).toEqual(new Array(16).fill(0));
    expect(bytes(parseIpv6("fd00::"))).toEqual([0xfd, 0, ...new Array(14).fill(0)]);
    // '::' standing for a single group of zeros.
    expect(bytes(parseIpv6("1:2:3::5:6:7:8"))).toEqual([
      0, 1, 0, 2, 0, 3, 0, 0, 0, 5, 0, 6, 0, 7, 0, 8,
    ]);
  });

  it("refuses two '::', a '::' with eight groups, seven or nine groups, five digits and non-hex", () => {
    for (const text of [
      "1::2::3",
      "1:2:3:4::5:6:7:8",
      "::1:2:3:4:5:6:7:8",
      "1:2:3:4:5:6:7",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7:10000",
      "1:2:3:4:5:6:7:g",
      "1:2:3:4:5:6:7:",
      ":1:2:3:4:5:6:7",
      ":::",
      "",
    ]) {
      expect(() => parseIpv6(text), text).toThrow(
        new RangeError(`'${text}' is not an IPv6 address`),
      );
    }
  });

  it("parses by its form: a ':' means IPv6", () => {
    expect(bytes(parseIp("10.1.2.3"))).toEqual([10, 1, 2, 3]);
    expect(bytes(parseIp("::1"))).toHaveLength(16);
    expect(() => parseIp("10.1.2")).toThrow("is not an IPv4 address");
    expect(() => parseIp("10:1")).toThrow("is not an IPv6 address");
  });

  it("formats 4 bytes as a dotted quad and 16 as eight groups without leading zeros, uncompressed", () => {
    expect(formatIp(Uint8Array.from([192, 168, 0, 199]))).toBe("192.168.0.199");
    expect(formatIp(Uint8Array.from(full))).toBe("2001:db8:0:0:8:800:200c:417a");
    expect(formatIp(parseIpv6("::1"))).toBe("0:0:0:0:0:0:0:1");
    expect(formatIp(parseIpv6("ffff:8000::00ff"))).toBe("ffff:8000:0:0:0:0:0:ff");
  });
});
