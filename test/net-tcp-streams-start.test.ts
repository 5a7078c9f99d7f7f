import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { writeCapture } from "../src/net/capture.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { TcpStreams } from "../src/net/tcp-streams.js";
import { requireTool } from "./support/cli.js";

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

const text = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array | undefined) => Buffer.from(b ?? new Uint8Array(0)).toString("hex");

/** A TCP segment from side a (10.0.0.1:40000) or b (10.0.0.2:80). */
function tcp(
  from: "a" | "b",
  seq: number,
  payload: string,
  flags: number = TCP_FLAGS.ACK,
): Uint8Array {
  const [src, dst] = from === "a" ? ["10.0.0.1", "10.0.0.2"] : ["10.0.0.2", "10.0.0.1"];
  return buildFrame(
    {
      ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
      ip: { version: 4, src: src ?? "", dst: dst ?? "" },
      l4: {
        kind: "tcp",
        srcPort: from === "a" ? 40000 : 80,
        dstPort: from === "a" ? 80 : 40000,
        seq,
        flags,
      },
    },
    text(payload),
  );
}

/** hvlab's two streams, a to b and b to a, as hex. */
function follow(frames: readonly Uint8Array[]): { aToB: string; bToA: string } {
  const s = new TcpStreams();
  for (const f of frames) s.add(f);
  const st = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
  return { aToB: hex(st?.aToB), bToA: hex(st?.bToA) };
}

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

/** `tshark -z follow,tcp,raw,0`: node 0 (the first frame's source) to node 1, and back. */
function tsharkFollow(file: string): { zeroToOne: string; oneToZero: string } {
  const out = execFileSync("tshark", ["-r", file, "-q", "-z", "follow,tcp,raw,0"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  let zeroToOne = "";
  let oneToZero = "";
  let inData = false;
  for (const line of out.split("\n")) {
    if (line.startsWith("Node 1:")) {
      inData = true;
      continue;
    }
    if (!inData || line.startsWith("=") || line.trim() === "") continue;
    if (line.startsWith("\t")) oneToZero += line.trim();
    else zeroToOne += line.trim();
  }
  return { zeroToOne, oneToZero };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-tcp-start-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasTshark)("the stream's start against tshark -z follow,tcp,raw", () => {
  for (const [i, c] of CASES.entries()) {
    it(c.name, () => {
      const file = join(dir, `start-${i}.pcap`);
      writeFileSync(
        file,
        writeCapture(
          c.frames.map((data, n) => ({ data, seconds: 1_700_000_000, nanoseconds: n * 1000 })),
          { format: "pcap" },
        ),
      );
      const t = tsharkFollow(file);
      const ours = follow(c.frames);
      // Node 0 is the first frame's source.
      const firstFromA = (c.frames[0]?.[29] ?? 0) === 1;
      const fromTshark = firstFromA
        ? { aToB: t.zeroToOne, bToA: t.oneToZero }
        : { aToB: t.oneToZero, bToA: t.zeroToOne };
      expect(fromTshark.aToB.length + fromTshark.bToA.length).toBeGreaterThan(0);
      expect(ours).toEqual(fromTshark);
    });
  }
});
