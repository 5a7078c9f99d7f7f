import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TCP_FLAGS } from "../src/net/frame.js";
import { requireTool } from "./support/cli.js";
import { follow, hex, tcp, text, tsharkFollow } from "./support/tcp-follow.js";

/*
 * Data carried by a SYN or a SYN-ACK: TCP Fast Open (RFC 7413 section 4)
 * sends the request in the SYN with a cookie option (kind 34), and RFC 9293
 * section 3.4 lets any SYN carry data, which begins one past the SYN's own
 * sequence number. Wireshark's follow_tcp_tap_listener
 * (epan/dissectors/packet-tcp.c) adds one to a SYN's sequence number and
 * keeps its data; hvlab does the same, and this file holds it equal to
 * `tshark -z follow,tcp,raw,0` on captures it writes.
 */

const hasTshark = requireTool("tshark");

/** A TCP Fast Open cookie option (RFC 7413 section 4.1.1): kind 34, 8 bytes, two NOPs. */
const COOKIE = new Uint8Array([34, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1]);
const SYN = TCP_FLAGS.SYN;
const SYN_ACK = TCP_FLAGS.SYN | TCP_FLAGS.ACK;

/* Handshakes whose SYN or SYN-ACK carries data, each with the streams worked out by hand. */
const CASES: { name: string; frames: Uint8Array[]; aToB: string; bToA: string }[] = [
  {
    name: "a Fast Open SYN's request starts the stream",
    frames: [
      tcp("a", 1000, "GET /", SYN, COOKIE),
      tcp("b", 5000, "", SYN_ACK),
      tcp("a", 1006, " HTTP/1.1"),
      tcp("b", 5001, "200 OK"),
    ],
    aToB: "GET / HTTP/1.1",
    bToA: "200 OK",
  },
  {
    name: "a SYN-ACK's data starts the other direction",
    frames: [
      tcp("a", 1000, "", SYN),
      tcp("b", 5000, "srv", SYN_ACK),
      tcp("a", 1001, "x"),
      tcp("b", 5004, "!"),
    ],
    aToB: "x",
    bToA: "srv!",
  },
  {
    name: "a retransmitted SYN's data is taken once",
    frames: [
      tcp("a", 1000, "hello", SYN, COOKIE),
      tcp("a", 1000, "hello", SYN, COOKIE),
      tcp("a", 1006, "!"),
    ],
    aToB: "hello!",
    bToA: "",
  },
  {
    name: "a SYN's data after a SYN at 2^32 - 1 begins at 0",
    frames: [tcp("a", 0xffffffff, "ab", SYN, COOKIE), tcp("a", 2, "c"), tcp("a", 1, "b")],
    aToB: "abc",
    bToA: "",
  },
];

describe("a SYN's own data belongs to the stream, as tshark's follow,tcp shows it", () => {
  for (const c of CASES) {
    it(`known answer: ${c.name}`, () => {
      expect(follow(c.frames)).toEqual({ aToB: hex(text(c.aToB)), bToA: hex(text(c.bToA)) });
    });
  }
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-tcp-syn-data-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasTshark)("a SYN's data against tshark -z follow,tcp,raw", () => {
  for (const [i, c] of CASES.entries()) {
    it(c.name, () => {
      const file = join(dir, `syn-data-${i}.pcap`);
      const fromTshark = tsharkFollow(c.frames, file);
      const ours = follow(c.frames);
      expect(fromTshark.aToB.length + fromTshark.bToA.length).toBeGreaterThan(0);
      expect(ours).toEqual(fromTshark);
    });
  }
});
