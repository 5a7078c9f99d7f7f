import { describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { TcpStreams } from "../src/net/tcp-streams.js";

/*
 * What the VMs receive with receive segment coalescing includes super-frames
 * larger than an IPv4 datagram can say: their total length field is 0 and
 * the datagram runs to the end of the buffer (Linux BIG TCP, RFC 2675's
 * jumbograms by analogy). A stream rebuilt from them holds all their bytes.
 */

describe("TCP streams from coalesced super-frames", () => {
  it("takes a 70,000-byte super-frame whose IPv4 total length is 0", () => {
    const payload = new Uint8Array(70_000).map((_, i) => (i * 7) & 0xff);
    const spec = {
      ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
      ip: { version: 4 as const, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "tcp" as const, srcPort: 40000, dstPort: 80, seq: 100, flags: TCP_FLAGS.ACK },
    };
    const big = buildFrame(spec, payload);
    expect([big[16], big[17]]).toEqual([0, 0]);
    const s = new TcpStreams();
    s.add(
      buildFrame({ ...spec, l4: { ...spec.l4, seq: 99, flags: TCP_FLAGS.SYN } }, new Uint8Array(0)),
    );
    s.add(big);
    const stream = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
    expect(stream?.aToB.length).toBe(70_000);
    expect(Buffer.compare(Buffer.from(stream?.aToB ?? []), Buffer.from(payload))).toBe(0);
  });
});
