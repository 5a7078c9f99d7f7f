import { describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { MAX_STREAM_BYTES, TcpStreams } from "../src/net/tcp-streams.js";
import { follow, hex, tcp } from "./support/tcp-follow.js";

/*
 * The edges of TCP stream reassembly, without tshark. A direction's stream
 * starts at the first segment seen in it, one past its sequence number if
 * it is a SYN (RFC 9293 section 3.4: the SYN occupies one sequence number;
 * RFC 7413 section 4: a Fast Open SYN's data begins right after it); bytes
 * before that start are left out and a segment straddling it gives its
 * bytes from the start on, as Wireshark's follow_tcp_tap_listener
 * (epan/dissectors/packet-tcp.c) does. Each direction keeps at most
 * MAX_STREAM_BYTES (a bound against hostile captures).
 */

const ascii = (s: string): string => Buffer.from(s).toString("hex");

describe("TCP streams: where a stream starts", () => {
  it("puts a SYN's data one past the SYN's sequence number", () => {
    // SYN at 1000 carries "GET" at 1001..1003; the next segment starts at 1004.
    const s = follow([tcp("a", 1000, "GET", TCP_FLAGS.SYN), tcp("a", 1004, " /")]);
    expect(s.aToB).toBe(ascii("GET /"));
    // Had the SYN's data started at its own number, " /" would overlap "T".
    const late = follow([tcp("a", 1000, "GET", TCP_FLAGS.SYN), tcp("a", 1003, "T /")]);
    expect(late.aToB).toBe(ascii("GET /"));
  });

  it("leaves out a segment ending exactly at the stream's start", () => {
    // The first segment seen (a pure ACK at 5000) fixes the start.
    const s = follow([tcp("a", 5000, ""), tcp("a", 4990, "0123456789"), tcp("a", 5000, "abc")]);
    expect(s.aToB).toBe(ascii("abc"));
  });

  it("keeps a straddling segment's bytes from the start on", () => {
    // 4995..5004: its last five bytes are at 5000..5004.
    const s = follow([tcp("a", 5000, ""), tcp("a", 4995, "0123456789"), tcp("a", 5005, "abc")]);
    expect(s.aToB).toBe(ascii("56789abc"));
    // One byte past the start is the least a straddling segment gives.
    const one = follow([tcp("a", 5000, ""), tcp("a", 4991, "0123456789")]);
    expect(one.aToB).toBe(ascii("9"));
  });

  it("starts after a SYN that was seen first, leaving out bytes sent before it", () => {
    const s = follow([tcp("a", 7000, "", TCP_FLAGS.SYN), tcp("a", 6990, "0123456789ab")]);
    // 6990..7001: only 7001 is past the SYN (7000), the "b".
    expect(s.aToB).toBe(ascii("b"));
  });

  it("gives an empty stream to a direction that carried no data", () => {
    const s = new TcpStreams();
    s.add(tcp("a", 1, "", TCP_FLAGS.SYN));
    s.add(tcp("b", 9, "", TCP_FLAGS.SYN | TCP_FLAGS.ACK));
    const st = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
    expect(hex(st?.aToB)).toBe("");
    expect(hex(st?.bToA)).toBe("");
  });
});

describe("TCP streams: the byte limit per direction", () => {
  /** Bytes per segment: 2,048 of them make MAX_STREAM_BYTES. */
  const PIECE = 32 * 1024;
  const frame = buildFrame(
    {
      ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "tcp", srcPort: 40000, dstPort: 80, seq: 0, flags: TCP_FLAGS.ACK },
    },
    new Uint8Array(PIECE),
  );
  /** Offset of the TCP header's sequence number, and of the payload. */
  const SEQ = 14 + 20 + 4;
  const PAYLOAD = 14 + 20 + 20;

  /**
   * Adds `bytes` of stream from sequence number 1 on: a first segment of
   * `lead` bytes, then segments of PIECE bytes or less. Every byte holds
   * the index of its segment, so the order of the kept bytes shows.
   */
  function send(bytes: number, lead = PIECE): Uint8Array {
    const s = new TcpStreams();
    for (let at = 0, n = 0; at < bytes; n++) {
      const length = Math.min(n === 0 ? lead : PIECE, bytes - at);
      const f = frame.slice(0, PAYLOAD + length);
      const v = new DataView(f.buffer);
      v.setUint16(16, 40 + length);
      v.setUint32(SEQ, 1 + at);
      f.fill(n & 0xff, PAYLOAD);
      s.add(f);
      at += length;
    }
    return s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB ?? new Uint8Array(0);
  }

  it("keeps a stream of exactly MAX_STREAM_BYTES whole", () => {
    expect(MAX_STREAM_BYTES % PIECE).toBe(0);
    const out = send(MAX_STREAM_BYTES);
    expect(out.length).toBe(MAX_STREAM_BYTES);
    expect(out[0]).toBe(0);
    expect(out[MAX_STREAM_BYTES - 1]).toBe((MAX_STREAM_BYTES / PIECE - 1) & 0xff);
  });

  it("stops at MAX_STREAM_BYTES, leaving out the segment that would pass it", () => {
    const out = send(MAX_STREAM_BYTES + 1);
    expect(out.length).toBe(MAX_STREAM_BYTES);
    expect(out[MAX_STREAM_BYTES - 1]).toBe((MAX_STREAM_BYTES / PIECE - 1) & 0xff);
    // A last segment straddling the limit is left out whole, not cut.
    // Its segments end at PIECE / 2 + k * PIECE: the last one kept ends
    // PIECE / 2 short of the limit, the next one would cross it.
    const straddling = send(MAX_STREAM_BYTES + PIECE / 2, PIECE / 2);
    expect(straddling.length).toBe(MAX_STREAM_BYTES - PIECE / 2);
    expect(straddling[MAX_STREAM_BYTES - PIECE / 2 - 1]).toBe(
      (MAX_STREAM_BYTES / PIECE - 1) & 0xff,
    );
  });
});
