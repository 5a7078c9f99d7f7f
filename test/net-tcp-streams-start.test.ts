import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TCP_FLAGS } from "../src/net/frame.js";
import { requireTool } from "./support/cli.js";
import { follow, hex, tcp, text, tsharkFollow } from "./support/tcp-follow.js";

/*
 * Where a direction's byte stream starts when the capture did not see the
 * handshake first. Wireshark's follow_tcp_tap_listener
 * (epan/dissectors/packet-tcp.c) takes the first segment seen in a
 * direction, with or without data, as the stream's start (its sequence
 * number, plus one for a SYN: RFC 9293 section 3.4) and never moves it: a
 * segment that arrives later from before the start gives only its bytes
 * past the start. hvlab does the same, and this file holds it equal to
 * `tshark -z follow,tcp,raw,0` on captures it writes.
 */

const hasTshark = requireTool("tshark");

/*
 * Captures whose first segment in a direction is not where the stream's
 * data begins: each with the stream tshark 4.0 shows for it, worked out by
 * hand from the rule above.
 */
const CASES: { name: string; frames: Uint8Array[]; aToB: string; bToA: string }[] = [
  {
    name: "a segment out of order before the first one seen is left out",
    frames: [tcp("a", 7003, "def"), tcp("a", 7000, "abc"), tcp("a", 7006, "ghi")],
    aToB: "defghi",
    bToA: "",
  },
  {
    name: "a retransmission straddling the start gives its bytes past the start",
    frames: [tcp("a", 7003, "def"), tcp("a", 7000, "abcdefghi"), tcp("a", 7009, "jk")],
    aToB: "defghijk",
    bToA: "",
  },
  {
    name: "a pure ACK seen first starts the stream at its sequence number",
    frames: [tcp("a", 7000, ""), tcp("a", 7003, "def"), tcp("a", 7000, "abc")],
    aToB: "abcdef",
    bToA: "",
  },
  {
    name: "a SYN captured after a data segment does not move the start",
    frames: [tcp("a", 1004, "lo"), tcp("a", 1000, "", TCP_FLAGS.SYN), tcp("a", 1001, "hel")],
    aToB: "lo",
    bToA: "",
  },
  {
    name: "each direction has its own start, segments buffered past a hole fill in",
    frames: [
      tcp("b", 500, "xy"),
      tcp("a", 7003, "def"),
      tcp("a", 7009, "jkl"),
      tcp("b", 498, "vw"),
      tcp("a", 7006, "ghi"),
    ],
    aToB: "defghijkl",
    bToA: "xy",
  },
  {
    name: "the start near 2^32, a segment before it across the wrap left out",
    frames: [tcp("a", 1, "cd"), tcp("a", 0xffffffff, "ab"), tcp("a", 3, "e")],
    aToB: "cde",
    bToA: "",
  },
];

describe("a TCP stream starts at the first segment seen, as tshark's follow,tcp", () => {
  for (const c of CASES) {
    it(`known answer: ${c.name}`, () => {
      expect(follow(c.frames)).toEqual({ aToB: hex(text(c.aToB)), bToA: hex(text(c.bToA)) });
    });
  }
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-tcp-start-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasTshark)("the stream's start against tshark -z follow,tcp,raw", () => {
  for (const [i, c] of CASES.entries()) {
    it(c.name, () => {
      const file = join(dir, `start-${i}.pcap`);
      const fromTshark = tsharkFollow(c.frames, file);
      const ours = follow(c.frames);
      expect(fromTshark.aToB.length + fromTshark.bToA.length).toBeGreaterThan(0);
      expect(ours).toEqual(fromTshark);
    });
  }
});
