import { describe, expect, it } from "vitest";
import { buildFrame, buildHeaders, type FrameSpec } from "../src/net/build.js";
import { onesSumOracle } from "../src/oracle/checksum.js";
import { ETH, frameSpec, TCP, UDP, V4, V6 } from "./support/net-frames.js";

/*
 * The frame builder's fields and refusals one by one: what each option
 * writes where (RFC 791 3.1, RFC 8200 3, RFC 9293 3.1, IEEE 802.1Q 9.6),
 * each default, and each spec it refuses with its words. Checksums are
 * checked against the byte-at-a-time oracle over a pseudo-header written
 * out by hand (RFC 768, RFC 8200 8.1).
 */
const headers = (s: Partial<FrameSpec>, payload = 0) => buildHeaders(frameSpec(s), payload).bytes;
const u16 = (b: Uint8Array, at: number) => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);

describe("the frame builder's fields", () => {
  it("writes the 802.1Q tag's priority above the VLAN ID, and 0 without one", () => {
    expect(u16(headers({ ethernet: { ...ETH, vlan: 4095, pcp: 5 } }), 14)).toBe((5 << 13) | 4095);
    expect(u16(headers({ ethernet: { ...ETH, vlan: 0, pcp: 7 } }), 14)).toBe(7 << 13);
    expect(u16(headers({ ethernet: { ...ETH, vlan: 100 } }), 14)).toBe(100);
    expect(u16(headers({ ethernet: { ...ETH, vlan: 100, pcp: 9 } }), 14), "3 bits").toBe(
      (1 << 13) | 100,
    );
  });

  it("writes IPv4's TOS, TTL, DF and options where RFC 791 puts them, with their defaults", () => {
    const plain = headers({});
    expect([plain[15], plain[22], u16(plain, 20)]).toEqual([0, 64, 0x4000]);
    const set = headers({ ip: { ...V4, tos: 0xb8, ttl: 3, dontFragment: false } });
    expect([set[15], set[22], u16(set, 20)]).toEqual([0xb8, 3, 0]);
    expect(u16(headers({ ip: { ...V4, dontFragment: true } }), 20)).toBe(0x4000);
    const options = Uint8Array.of(0x94, 0x04, 0, 0, 1, 1, 1, 0);
    const withOptions = headers({ ip: { ...V4, options } });
    expect(withOptions[14]).toBe(0x47);
    expect([...withOptions.subarray(34, 42)]).toEqual([...options]);
    expect(onesSumOracle(withOptions, 14, 28), "the header checksum covers the options").toBe(
      0xffff,
    );
  });

  it("writes IPv6's traffic class, flow label and hop limit, with their defaults", () => {
    const plain = headers({ ip: V6 });
    expect([...plain.subarray(14, 18)]).toEqual([0x60, 0, 0, 0]);
    expect(plain[21]).toBe(64);
    const set = headers({ ip: { ...V6, trafficClass: 0xab, flowLabel: 0xcdef1, hopLimit: 7 } });
    expect([...set.subarray(14, 18)]).toEqual([0x6a, 0xbc, 0xde, 0xf1]);
    expect([set[20], set[21]]).toEqual([6, 7]);
    const masked = headers({ ip: { ...V6, trafficClass: 0x1ff, flowLabel: 0x1fffff } });
    expect([...masked.subarray(14, 18)]).toEqual([0x6f, 0xff, 0xff, 0xff]);
  });

  it("writes TCP's window and options, with the window's default", () => {
    expect(u16(headers({}), 34 + 14)).toBe(0xffff);
    expect(u16(headers({ l4: { ...TCP, window: 0 } }), 34 + 14)).toBe(0);
    const options = Uint8Array.of(2, 4, 0x05, 0xb4);
    const b = headers({ l4: { ...TCP, options } });
    expect(b[34 + 12]).toBe(6 << 4);
    expect([...b.subarray(54, 58)]).toEqual([...options]);
  });

  it("fills a UDP checksum over IPv6 past 64 KiB with the 32-bit length of RFC 8200 8.1", () => {
    const payload = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) & 0xff);
    const frame = buildFrame(frameSpec({ ip: V6, l4: UDP }), payload);
    const l4Length = 8 + payload.length;
    expect(u16(frame, 54 + 4), "the UDP length field says 'too large'").toBe(0);
    const pseudo = new Uint8Array(40);
    pseudo.set(frame.subarray(22, 54));
    new DataView(pseudo.buffer).setUint32(32, l4Length);
    pseudo[39] = 17;
    const sum = onesSumOracle(frame, 54, l4Length, onesSumOracle(pseudo));
    expect(sum).toBe(0xffff);
    expect(u16(frame, 54 + 6)).not.toBe(0);
  });
});

describe("the frame builder's refusals", () => {
  it("takes IPv4 and TCP options of whole words up to 40 bytes", () => {
    for (const n of [0, 4, 40]) {
      expect(() => headers({ ip: { ...V4, options: new Uint8Array(n) } })).not.toThrow();
      expect(() => headers({ l4: { ...TCP, options: new Uint8Array(n) } })).not.toThrow();
    }
    for (const n of [2, 41, 44]) {
      expect(() => headers({ ip: { ...V4, options: new Uint8Array(n) } })).toThrow(
        `IPv4 options must be a multiple of 4 bytes, at most 40 (got ${n})`,
      );
      expect(() => headers({ l4: { ...TCP, options: new Uint8Array(n) } })).toThrow(
        `TCP options must be a multiple of 4 bytes, at most 40 (got ${n})`,
      );
    }
  });

  it("takes IPv6 extension options of 6, 14, 22 ... bytes only", () => {
    for (const n of [6, 14, 22]) {
      expect(() =>
        headers({ ip: { ...V6, extensions: [{ type: 60, options: new Uint8Array(n) }] } }),
      ).not.toThrow();
    }
    for (const n of [0, 8, 15]) {
      expect(() =>
        headers({ ip: { ...V6, extensions: [{ type: 0, options: new Uint8Array(n) }] } }),
      ).toThrow(`IPv6 extension options must be 6, 14, 22 ... bytes (got ${n})`);
    }
  });

  it("takes VLAN IDs 0 to 4095, whole", () => {
    for (const vlan of [0, 1, 4095]) {
      expect(() => headers({ ethernet: { ...ETH, vlan } })).not.toThrow();
    }
    for (const vlan of [-1, 4096, 1.5, Number.NaN]) {
      expect(() => headers({ ethernet: { ...ETH, vlan } })).toThrow(
        `VLAN ID must be 0 to 4095, not ${vlan}`,
      );
    }
  });

  it("refuses addresses of the other IP version, on either side", () => {
    for (const ip of [
      { ...V4, src: "fd00::1" },
      { ...V4, dst: "fd00::2" },
    ] as const) {
      expect(() => headers({ ip: ip as never })).toThrow("IPv4 header with non-IPv4 addresses");
    }
    for (const ip of [
      { ...V6, src: "10.0.0.1" },
      { ...V6, dst: "10.0.0.2" },
    ] as const) {
      expect(() => headers({ ip: ip as never })).toThrow("IPv6 header with non-IPv6 addresses");
    }
  });

  it("reads IPv4 options only for IPv4 and extensions only for IPv6", () => {
    const stray = {
      options: new Uint8Array(3),
      extensions: [{ type: 0, options: new Uint8Array(1) }],
    };
    expect(() => headers({ ip: { ...V6, ...stray } as never })).toThrow("extension options");
    expect(() => headers({ ip: { ...V4, ...stray } as never })).toThrow("IPv4 options");
    expect(headers({ ip: { ...V4, extensions: stray.extensions } as never }).length).toBe(54);
    expect(headers({ ip: { ...V6, options: new Uint8Array(3) } as never }).length).toBe(74);
  });
});
