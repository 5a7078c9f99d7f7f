import { describe, expect, it } from "vitest";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { TcpStreams } from "../src/net/tcp-streams.js";

/*
 * TCP byte streams rebuilt from received frames, as `tshark -z
 * follow,tcp,raw` shows them: each direction's payload in sequence order
 * from the SYN's sequence number plus one (RFC 793 section 3.3: the SYN
 * takes one sequence number), a byte sent twice taken once, and the stream
 * cut at the first hole. Sequence numbers wrap modulo 2^32 (RFC 793 section
 * 3.3, RFC 1982).
 */

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array | undefined) => new TextDecoder().decode(b);

function tcp(
  from: "a" | "b",
  seq: number,
  payload: string,
  flags: number = TCP_FLAGS.ACK,
  ip: 4 | 6 = 4,
): Uint8Array {
  const [src, dst] =
    ip === 4
      ? from === "a"
        ? ["10.0.0.1", "10.0.0.2"]
        : ["10.0.0.2", "10.0.0.1"]
      : from === "a"
        ? ["fd00::1", "fd00::2"]
        : ["fd00::2", "fd00::1"];
  const spec: FrameSpec = {
    ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
    ip:
      ip === 4
        ? { version: 4, src: src ?? "", dst: dst ?? "" }
        : { version: 6, src: src ?? "", dst: dst ?? "" },
    l4: {
      kind: "tcp",
      srcPort: from === "a" ? 40000 : 80,
      dstPort: from === "a" ? 80 : 40000,
      seq,
      flags,
    },
  };
  return buildFrame(spec, text(payload));
}

describe("TCP streams as tshark's follow,tcp rebuilds them", () => {
  it("gives each direction's payload from the SYN's sequence number plus one", () => {
    for (const ip of [4, 6] as const) {
      const s = new TcpStreams();
      s.add(tcp("a", 1000, "", TCP_FLAGS.SYN, ip));
      s.add(tcp("b", 5000, "", TCP_FLAGS.SYN | TCP_FLAGS.ACK, ip));
      s.add(tcp("a", 1001, "GET / ", TCP_FLAGS.ACK | TCP_FLAGS.PSH, ip));
      s.add(tcp("a", 1007, "HTTP/1.1", TCP_FLAGS.ACK, ip));
      s.add(tcp("b", 5001, "200 OK", TCP_FLAGS.ACK, ip));
      const [a, b] =
        ip === 4 ? ["10.0.0.1", "10.0.0.2"] : ["fd00:0:0:0:0:0:0:1", "fd00:0:0:0:0:0:0:2"];
      const ab = s.stream(a ?? "", 40000, b ?? "", 80);
      expect(str(ab?.aToB), `IPv${ip}`).toBe("GET / HTTP/1.1");
      expect(str(ab?.bToA), `IPv${ip}`).toBe("200 OK");
      // Asked from the other side, the directions swap.
      const ba = s.stream(b ?? "", 80, a ?? "", 40000);
      expect(str(ba?.aToB)).toBe("200 OK");
      expect(str(ba?.bToA)).toBe("GET / HTTP/1.1");
      expect(ba?.key).toBe(ab?.key);
    }
  });

  it("puts segments in sequence order and takes a retransmitted or overlapping byte once", () => {
    const s = new TcpStreams();
    s.add(tcp("a", 99, "", TCP_FLAGS.SYN));
    s.add(tcp("a", 106, "world"));
    s.add(tcp("a", 100, "hello "));
    s.add(tcp("a", 100, "hello "));
    s.add(tcp("a", 103, "lo wo"));
    s.add(tcp("a", 111, "!"));
    s.add(tcp("a", 106, "wor"));
    expect(str(s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB)).toBe("hello world!");
  });

  it("stops at the first hole, and leaves out bytes before the stream's start", () => {
    const s = new TcpStreams();
    s.add(tcp("a", 99, "", TCP_FLAGS.SYN));
    s.add(tcp("a", 90, "0123456789"));
    s.add(tcp("a", 100, "abc"));
    s.add(tcp("a", 104, "efg"));
    expect(str(s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB)).toBe("abc");
  });

  it("follows a stream across 2^32", () => {
    const s = new TcpStreams();
    s.add(tcp("a", 0xfffffffd, "", TCP_FLAGS.SYN));
    s.add(tcp("a", 0x00000000, "cd"));
    s.add(tcp("a", 0xfffffffe, "a"));
    s.add(tcp("a", 0xffffffff, "b"));
    s.add(tcp("a", 0x00000002, "e"));
    expect(str(s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB)).toBe("abcde");
  });

  it("starts at the first segment seen when the SYN was not captured", () => {
    const s = new TcpStreams();
    s.add(tcp("b", 7000, "abc"));
    s.add(tcp("b", 7003, "def"));
    const st = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
    expect(str(st?.bToA)).toBe("abcdef");
    expect(st?.aToB).toEqual(new Uint8Array(0));
  });

  it("ignores what is not TCP or does not parse, and knows no connection it did not see", () => {
    const s = new TcpStreams();
    const udp = buildFrame(
      {
        ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
        ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
        l4: { kind: "udp", srcPort: 40000, dstPort: 80 },
      },
      text("nope"),
    );
    s.add(udp);
    s.add(tcp("a", 1, "cut").subarray(0, 30));
    s.add(new Uint8Array(60));
    expect(s.stream("10.0.0.1", 40000, "10.0.0.2", 80)).toBeNull();
    s.add(tcp("a", 1, "x"));
    expect(s.stream("10.0.0.1", 40000, "10.0.0.2", 81)).toBeNull();
    expect(str(s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB)).toBe("x");
  });
});
