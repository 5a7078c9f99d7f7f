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
 * Data carried by a SYN or a SYN-ACK: TCP Fast Open (RFC 7413 section 4)
 * sends the request in the SYN with a cookie option (kind 34), and RFC 9293
 * section 3.4 lets any SYN carry data, which begins one past the SYN's own
 * sequence number. Wireshark's follow_tcp_tap_listener
 * (epan/dissectors/packet-tcp.c) adds one to a SYN's sequence number and
 * keeps its data; hvlab does the same, and this file holds it equal to
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
  options?: Uint8Array,
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
        ...(options ? { options } : {}),
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
  dir = mkdtempSync(join(tmpdir(), "hvlab-tcp-syn-data-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasTshark)("a SYN's data against tshark -z follow,tcp,raw", () => {
  for (const [i, c] of CASES.entries()) {
    it(c.name, () => {
      const file = join(dir, `syn-data-${i}.pcap`);
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
