import { describe, expect, it } from "vitest";
import { parseFrame } from "../src/net/frame.js";
import { frame, refusal, set16, UDP, V6 } from "./support/net-frames.js";

/*
 * The parser's edges that a frame's fields alone do not reach: an empty
 * window, a super-frame whose length fields are not 0, an IPv6 header with
 * nothing after it, extension headers that end in Ethernet padding, options
 * that look like a routing header, and UDP lengths around 65,535 bytes.
 */
/** The words of the parser's refusal. */
const message = (parse: () => unknown) => refusal(parse).message;

describe("parser edges", () => {
  it("calls an empty window too short for Ethernet, not outside its buffer", () => {
    const f = frame({});
    expect(message(() => parseFrame(f, 0, 0))).toBe(
      "frame: 0 bytes is shorter than an Ethernet header (14) (truncated at byte 0)",
    );
    expect(message(() => parseFrame(f, f.length, 0))).toContain("0 bytes is shorter");
  });

  it("keeps a super-frame's non-zero length fields: they still end the datagram", () => {
    const v4 = set16(frame({}, 70_000), 16, 20 + 20 + 100);
    const p4 = parseFrame(v4, 0, v4.length, { superFrame: true });
    expect([p4.ipEnd, p4.payloadLength]).toEqual([14 + 140, 100]);
    const v6 = set16(frame({ ip: V6 }, 70_000), 18, 20 + 100);
    const p6 = parseFrame(v6, 0, v6.length, { superFrame: true });
    expect([p6.ipEnd, p6.payloadLength]).toEqual([54 + 120, 100]);
  });

  it("takes an IPv6 header with nothing after it, 54 bytes in all", () => {
    const bare = set16(frame({ ip: V6 }, 0).subarray(0, 54).slice(), 18, 0);
    bare[20] = 59; // no next header
    expect(parseFrame(bare)).toMatchObject({ ipEnd: 54, protocol: 59, l4: -1, payloadLength: 0 });
  });

  it("ends extension headers at the datagram's end, not at the padding after it", () => {
    const hop = (n: number) =>
      frame({ ip: { ...V6, extensions: [{ type: 0, options: new Uint8Array(n) }] } }, 0);
    // An 8-byte header in a datagram that claims 4 bytes, padded to 80.
    const short = new Uint8Array(80);
    short.set(hop(6).subarray(0, 62));
    set16(short, 18, 4);
    expect(message(() => parseFrame(short))).toBe(
      "frame: extension header runs past the datagram's end (bad-extension-header at byte 54)",
    );
    // A 16-byte header in a datagram that claims 12 bytes, padded to 80.
    const long = new Uint8Array(80);
    long.set(hop(14).subarray(0, 70));
    set16(long, 18, 12);
    expect(message(() => parseFrame(long))).toBe(
      "frame: extension header of 16 bytes runs past the datagram's end (bad-extension-header at byte 54)",
    );
  });

  it("reads no final destination from a hop-by-hop header that looks like a routing header", () => {
    const options = new Uint8Array(22);
    options[0] = 0; // where a routing header has its type: 0
    options[1] = 1; // and its segments left: 1
    const f = frame({ ip: { ...V6, extensions: [{ type: 0, options }] } });
    expect(f[55]).toBe(2);
    expect(parseFrame(f).dstAddress).toBe(38);
  });

  it("takes a UDP length of 0 only past 65,535 bytes of datagram in a super-frame", () => {
    const udp = (payload: number) => frame({ l4: UDP }, payload);
    // 65,500 bytes of UDP: the IPv4 total length fits 16 bits; a UDP length of 0 is wrong there.
    const fits = set16(udp(65_500 - 8), 38, 0);
    expect(message(() => parseFrame(fits, 0, fits.length, { superFrame: true }))).toBe(
      "frame: UDP length 0 disagrees with the datagram (65500 bytes) (bad-udp-length at byte 38)",
    );
    // Exactly 65,535 bytes of UDP: the IPv4 total does not fit (0), the UDP length does.
    const edge = set16(udp(0xffff - 8), 38, 0);
    expect(edge[16]).toBe(0);
    expect(message(() => parseFrame(edge, 0, edge.length, { superFrame: true }))).toBe(
      "frame: UDP length 0 disagrees with the datagram (65535 bytes) (bad-udp-length at byte 38)",
    );
    // Past it, 0 is the only length a super-frame can carry; any other must be the true one.
    const big = udp(70_000);
    expect(parseFrame(big, 0, big.length, { superFrame: true }).payloadLength).toBe(70_000);
    set16(big, 38, 1000);
    expect(message(() => parseFrame(big, 0, big.length, { superFrame: true }))).toBe(
      "frame: UDP length 1000 disagrees with the datagram (70008 bytes) (bad-udp-length at byte 38)",
    );
  });
});
