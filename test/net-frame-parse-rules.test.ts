import { describe, expect, it } from "vitest";
import { parseFrame } from "../src/net/frame.js";
import { ETH, frame, refusal, refused, set16, TCP, UDP, V4, V6 } from "./support/net-frames.js";

/*
 * The frame parser's checks one by one, each at its boundary: the frame's
 * window in its buffer, Ethernet and 802.1Q (IEEE 802.1Q 9.6: the VLAN ID
 * is the TCI's low 12 bits), IPv4 (RFC 791 3.1: version, IHL, total
 * length, MF and fragment offset), IPv6 (RFC 8200 4: extension headers,
 * the fragment header's offset and M flag, the routing header's final
 * destination), TCP's data offset (RFC 9293 3.1) and UDP's length
 * (RFC 768). Each refusal is checked for its code, the offset of the field
 * and its words.
 */
describe("the frame's window in its buffer", () => {
  const f = frame({});
  const n = f.length;
  it("refuses a window that starts before or ends past the buffer", () => {
    expect(refusal(() => parseFrame(f, -1))).toEqual(
      refused("truncated", 0, `frame [-1, ${n}) is outside its buffer of ${n} bytes`),
    );
    expect(refusal(() => parseFrame(f, 0, -1))).toEqual(
      refused("truncated", 0, `frame [0, -1) is outside its buffer of ${n} bytes`),
    );
    expect(refusal(() => parseFrame(f, 2, n - 1))).toEqual(
      refused("truncated", 0, `frame [2, ${n + 1}) is outside its buffer of ${n} bytes`),
    );
  });

  it("reads a window ending at the buffer's end, with offsets from the window's start", () => {
    const padded = new Uint8Array(n + 3);
    padded.set(f, 3);
    const p = parseFrame(padded, 3, n);
    expect(p).toEqual(parseFrame(f));
    expect(p.l3).toBe(14);
    expect(parseFrame(padded, 3).l4).toBe(34);
  });

  it("takes a whole count of bytes beyond the buffer, and refuses anything else", () => {
    for (const beyond of [-1, 1.5, Number.NaN]) {
      expect(refusal(() => parseFrame(f, 0, n, { payloadBeyond: beyond }))).toEqual(
        refused("too-large", 0, `payload beyond the buffer must be a byte count, not ${beyond}`),
      );
    }
    expect(parseFrame(f, 0, n, { payloadBeyond: 0 }).payloadLength).toBe(10);
    // A large send's template: its length fields count the payload that is not here.
    const template = set16(frame({}, 0), 16, 20 + 20 + 1000);
    const p = parseFrame(template, 0, template.length, { payloadBeyond: 1000 });
    expect([p.ipEnd, p.payload, p.payloadLength]).toEqual([template.length + 1000, 54, 1000]);
    expect(refusal(() => parseFrame(template, 0, template.length, { payloadBeyond: 999 }))).toEqual(
      refused(
        "bad-total-length",
        16,
        "total length 1040 disagrees with header 20 and buffer 1039 bytes",
      ),
    );
    // With payload beyond, the datagram must end exactly where the send does.
    expect(
      refusal(() => parseFrame(template, 0, template.length, { payloadBeyond: 1001 })).code,
    ).toBe("bad-total-length");
  });
});

describe("Ethernet and 802.1Q", () => {
  it("needs 14 bytes, and takes a frame of just its header as not IP", () => {
    const arp = set16(new Uint8Array(14), 12, 0x0806);
    expect(refusal(() => parseFrame(arp.subarray(0, 13)))).toEqual(
      refused("truncated", 0, "13 bytes is shorter than an Ethernet header (14)"),
    );
    expect(parseFrame(arp)).toEqual({
      length: 14,
      vlan: null,
      etherType: 0x0806,
      l3: -1,
      ipVersion: 0,
      ipEnd: 14,
      protocol: -1,
      fragment: false,
      srcAddress: -1,
      dstAddress: -1,
      l4: -1,
      l4HeaderLength: 0,
      payload: 14,
      payloadLength: 0,
    });
  });

  it("reads the tag's VLAN ID from the TCI's low 12 bits and the EtherType after it", () => {
    const tagged = new Uint8Array(30);
    set16(tagged, 12, 0x8100);
    set16(tagged, 14, (7 << 13) | (1 << 12) | 0x123);
    set16(tagged, 16, 0x88cc);
    expect(refusal(() => parseFrame(tagged.subarray(0, 17)))).toEqual(
      refused("truncated", 12, "17 bytes is too short for an 802.1Q tag"),
    );
    const p = parseFrame(tagged);
    expect([p.vlan, p.etherType, p.payload, p.payloadLength]).toEqual([0x123, 0x88cc, 18, 12]);
    expect(parseFrame(tagged.subarray(0, 18)).payloadLength).toBe(0);
    const v4 = parseFrame(frame({ ethernet: { ...ETH, vlan: 4095, pcp: 7 } }));
    expect([v4.vlan, v4.l3, v4.srcAddress, v4.dstAddress, v4.l4]).toEqual([4095, 18, 30, 34, 38]);
  });
});

describe("IPv4", () => {
  it("needs 20 bytes of header and version 4", () => {
    const f = frame({});
    expect(refusal(() => parseFrame(f.subarray(0, 33)))).toEqual(
      refused("truncated", 14, "IPv4 header needs 20 bytes, 19 left"),
    );
    f[14] = 0x65;
    expect(refusal(() => parseFrame(f))).toEqual(
      refused("bad-version", 14, "EtherType IPv4 but IP version 6"),
    );
  });

  it("takes an IHL of 5 up to the frame's end, and refuses one under 5 or past it", () => {
    const f = frame({}, 0);
    f[14] = 0x44;
    expect(refusal(() => parseFrame(f))).toEqual(
      refused("bad-ihl", 14, "IHL 4 is under the minimum of 5"),
    );
    const options = frame({ ip: { ...V4, options: new Uint8Array(40) }, l4: UDP }, 0);
    expect(options.length).toBe(14 + 60 + 8);
    expect(parseFrame(options).l4).toBe(74);
    expect(refusal(() => parseFrame(options.subarray(0, 73)))).toEqual(
      refused("bad-ihl", 14, "IHL 15 (60 bytes) runs past the frame's end (59 bytes left)"),
    );
    // 74 bytes: the header ends at the frame's end; the total length then refuses it.
    expect(refusal(() => parseFrame(options.subarray(0, 74))).code).toBe("bad-total-length");
  });

  it("takes a total length from the header's to the buffer's, and refuses either side", () => {
    const f = frame({}, 10);
    expect(refusal(() => parseFrame(set16(f.slice(), 16, 19)))).toEqual(
      refused(
        "bad-total-length",
        16,
        `total length 19 disagrees with header 20 and buffer ${f.length - 14} bytes`,
      ),
    );
    expect(refusal(() => parseFrame(set16(f.slice(), 16, f.length - 13))).code).toBe(
      "bad-total-length",
    );
    // A total length short of the buffer leaves Ethernet padding after the datagram.
    const padded = parseFrame(set16(f.slice(), 16, 40));
    expect([padded.ipEnd, padded.payloadLength, padded.length]).toEqual([54, 0, f.length]);
    // A header alone: no room is left in the datagram for TCP's, whatever the buffer holds.
    expect(refusal(() => parseFrame(set16(f.slice(), 16, 20)))).toEqual(
      refused("truncated", 34, "TCP header needs 20 bytes, 0 left in the datagram"),
    );
  });

  it("reads a total length of 0 as the buffer's end only in a super-frame over 64 KiB", () => {
    const big = frame({}, 70_000);
    expect(big[16]).toBe(0);
    expect(parseFrame(big, 0, big.length, { superFrame: true }).ipEnd).toBe(big.length);
    expect(refusal(() => parseFrame(big)).code).toBe("bad-total-length");
    // Exactly 65,535 bytes of datagram fit the field: 0 there is no super-frame.
    const edge = set16(frame({}, 0xffff - 40), 16, 0);
    expect(edge.length - 14).toBe(0xffff);
    expect(refusal(() => parseFrame(edge, 0, edge.length, { superFrame: true })).code).toBe(
      "bad-total-length",
    );
  });

  it("counts MF or a fragment offset as a fragment, DF alone not, and parses no transport header then", () => {
    for (const [field, fragment] of [
      [0x2000, true],
      [0x0001, true],
      [0x1fff, true],
      [0x4000, false],
      [0x8000, false],
    ] as const) {
      const p = parseFrame(set16(frame({}, 10), 20, field));
      expect(p.fragment, field.toString(16)).toBe(fragment);
      if (fragment)
        expect([p.l4, p.l4HeaderLength, p.payload, p.payloadLength]).toEqual([-1, 0, 34, 30]);
      else expect([p.l4, p.payload]).toEqual([34, 54]);
    }
  });

  it("gives a protocol other than TCP and UDP no transport header", () => {
    const f = frame({}, 10);
    f[23] = 1;
    expect(parseFrame(f)).toMatchObject({
      protocol: 1,
      fragment: false,
      l4: -1,
      l4HeaderLength: 0,
      payload: 34,
      payloadLength: 30,
      srcAddress: 26,
      dstAddress: 30,
    });
  });
});

describe("IPv6", () => {
  const hop = (n: number) => ({ type: 0 as const, options: new Uint8Array(n) });

  it("needs 40 bytes of header and version 6", () => {
    const f = frame({ ip: V6 });
    expect(refusal(() => parseFrame(f.subarray(0, 53)))).toEqual(
      refused("truncated", 14, "IPv6 header needs 40 bytes, 39 left"),
    );
    f[14] = 0x45;
    expect(refusal(() => parseFrame(f))).toEqual(
      refused("bad-version", 14, "EtherType IPv6 but IP version 4"),
    );
  });

  it("takes a payload length up to the buffer's end, and 0 as the end only in a super-frame over 64 KiB", () => {
    const f = frame({ ip: V6 }, 10);
    const after = f.length - 54;
    expect(refusal(() => parseFrame(set16(f.slice(), 18, after + 1)))).toEqual(
      refused(
        "bad-total-length",
        18,
        `payload length ${after + 1} disagrees with the ${after} bytes after the header`,
      ),
    );
    expect(parseFrame(set16(f.slice(), 18, 20)).ipEnd).toBe(74);
    const template = set16(frame({ ip: V6 }, 0), 18, 20 + 500);
    expect(parseFrame(template, 0, template.length, { payloadBeyond: 500 }).payloadLength).toBe(
      500,
    );
    expect(
      refusal(() => parseFrame(template, 0, template.length, { payloadBeyond: 501 })).code,
    ).toBe("bad-total-length");
    // Outside a super-frame a payload length of 0 is an empty datagram, with no room for TCP.
    const big = frame({ ip: V6 }, 70_000);
    const empty = refused("truncated", 54, "TCP header needs 20 bytes, 0 left in the datagram");
    expect(parseFrame(big, 0, big.length, { superFrame: true }).ipEnd).toBe(big.length);
    expect(refusal(() => parseFrame(big))).toEqual(empty);
    // Exactly 65,535 bytes after the header fit the field: 0 there is no super-frame.
    const edge = set16(frame({ ip: V6 }, 0xffff - 20), 18, 0);
    expect(edge.length - 54).toBe(0xffff);
    expect(refusal(() => parseFrame(edge, 0, edge.length, { superFrame: true }))).toEqual(empty);
  });

  it("walks up to 8 extension headers and refuses a ninth", () => {
    const eight = parseFrame(
      frame({ ip: { ...V6, extensions: Array.from({ length: 8 }, () => hop(6)) } }),
    );
    expect([eight.protocol, eight.l4]).toEqual([6, 54 + 64]);
    const nine = frame({ ip: { ...V6, extensions: Array.from({ length: 9 }, () => hop(6)) } });
    expect(refusal(() => parseFrame(nine))).toEqual(
      refused("bad-extension-header", 54 + 64, "more than 8 extension headers"),
    );
  });

  it("refuses an extension header that runs past the datagram", () => {
    const f = frame({ ip: { ...V6, extensions: [hop(14)] } }, 0);
    f[55] = 4; // 40 bytes claimed, 16 + 20 in the datagram
    expect(f.length).toBe(54 + 36);
    expect(refusal(() => parseFrame(f))).toEqual(
      refused(
        "bad-extension-header",
        54,
        "extension header of 40 bytes runs past the datagram's end",
      ),
    );
    f[55] = 3; // 32 bytes: it fits, and leaves TCP 4 bytes
    expect(refusal(() => parseFrame(f))).toEqual(
      refused("truncated", 86, "TCP header needs 20 bytes, 4 left in the datagram"),
    );
    const bare = set16(
      frame({ ip: V6 }, 0)
        .subarray(0, 54 + 7)
        .slice(),
      18,
      7,
    );
    bare[20] = 0;
    expect(refusal(() => parseFrame(bare))).toEqual(
      refused("bad-extension-header", 54, "extension header runs past the datagram's end"),
    );
    // Eight bytes exactly: a hop-by-hop header and nothing after it.
    const exact = set16(frame({ ip: V6 }, 0).subarray(0, 62).slice(), 18, 8);
    exact[20] = 0;
    exact[54] = 59;
    exact[55] = 0;
    expect(parseFrame(exact)).toMatchObject({
      protocol: 59,
      l4: -1,
      payload: 62,
      payloadLength: 0,
    });
  });

  it("counts a fragment header with an offset or M as a fragment, an atomic one not", () => {
    const withFragment = (field: number, lengthByte: number) => {
      const f = frame({ ip: { ...V6, extensions: [hop(6)] } }, 10);
      f[20] = 44; // the first header becomes a fragment header: always 8 bytes
      f[55] = lengthByte;
      set16(f, 56, field);
      return parseFrame(f);
    };
    expect(withFragment(0x0008, 0).fragment).toBe(true);
    expect(withFragment(0x0001, 0).fragment).toBe(true);
    expect(withFragment(0xfff8, 0).fragment).toBe(true);
    const atomic = withFragment(0x0006, 5);
    expect([atomic.fragment, atomic.l4, atomic.protocol]).toEqual([false, 62, 6]);
  });

  it("takes the final destination from a routing header with segments left", () => {
    const routed = (type: number, segmentsLeft: number, addresses: number) => {
      const f = frame({ ip: { ...V6, extensions: [hop(6 + addresses * 16)] } }, 0);
      f[20] = 43;
      f[56] = type;
      f[57] = segmentsLeft;
      return parseFrame(f).dstAddress;
    };
    expect(routed(0, 1, 2), "type 0: the last address").toBe(54 + 8 + 16);
    expect(routed(2, 1, 1), "type 2").toBe(54 + 8);
    expect(routed(4, 2, 3), "type 4 (SRH): the first").toBe(54 + 8);
    expect(routed(0, 0, 2), "no segments left").toBe(38);
    expect(routed(3, 1, 2), "another type").toBe(38);
    expect(routed(0, 1, 0), "no address").toBe(38);
  });
});

describe("TCP and UDP headers", () => {
  it("needs 20 bytes of TCP header inside the datagram, and a data offset from 5 to its end", () => {
    const f = frame({}, 0);
    expect(refusal(() => parseFrame(set16(f.slice(0, 53), 16, 39)))).toEqual(
      refused("truncated", 34, "TCP header needs 20 bytes, 19 left in the datagram"),
    );
    f[46] = 0x40;
    expect(refusal(() => parseFrame(f))).toEqual(
      refused("bad-data-offset", 46, "TCP data offset 4 is under the minimum of 5"),
    );
    const options = frame({ l4: { ...TCP, options: new Uint8Array(12) } }, 0);
    expect(parseFrame(options)).toMatchObject({
      l4HeaderLength: 32,
      payload: 66,
      payloadLength: 0,
    });
    options[46] = 0x90;
    expect(refusal(() => parseFrame(options))).toEqual(
      refused(
        "bad-data-offset",
        46,
        "TCP data offset 9 (36 bytes) runs past the datagram's end (32 bytes left)",
      ),
    );
    // A datagram shorter than its buffer bounds the header, not the buffer.
    const padded = new Uint8Array(f.length + 20);
    padded.set(frame({}, 0));
    padded[46] = 0x60;
    expect(refusal(() => parseFrame(padded)).code).toBe("bad-data-offset");
  });

  it("needs 8 bytes of UDP header and a UDP length equal to the datagram's", () => {
    const f = frame({ l4: UDP }, 4);
    expect(parseFrame(f)).toMatchObject({
      l4: 34,
      l4HeaderLength: 8,
      payload: 42,
      payloadLength: 4,
    });
    expect(refusal(() => parseFrame(set16(f.slice(0, 41), 16, 27)))).toEqual(
      refused("truncated", 34, "UDP header needs 8 bytes, 7 left in the datagram"),
    );
    expect(refusal(() => parseFrame(set16(f.slice(), 38, 11)))).toEqual(
      refused("bad-udp-length", 38, "UDP length 11 disagrees with the datagram (12 bytes)"),
    );
    const big = frame({ l4: UDP }, 70_000);
    expect(parseFrame(big, 0, big.length, { superFrame: true }).payloadLength).toBe(70_000);
    expect(
      refusal(() => parseFrame(set16(big.slice(), 38, 0), 0, big.length, { superFrame: false }))
        .code,
    ).toBe("bad-total-length");
    const small = set16(frame({ l4: UDP }, 4), 38, 0);
    expect(refusal(() => parseFrame(small, 0, small.length, { superFrame: true }))).toEqual(
      refused("bad-udp-length", 38, "UDP length 0 disagrees with the datagram (12 bytes)"),
    );
  });
});
