import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { buildFrame } from "../../src/net/build.js";
import { writeCapture } from "../../src/net/capture.js";
import { TCP_FLAGS } from "../../src/net/frame.js";
import { TcpStreams } from "../../src/net/tcp-streams.js";

/*
 * One TCP connection, side a (10.0.0.1:40000) and side b (10.0.0.2:80),
 * followed by hvlab and by `tshark -z follow,tcp,raw,0`, for the tests that
 * hold hvlab's stream reassembly equal to Wireshark's.
 */

/** UTF-8 bytes of a string. */
export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Bytes as lower-case hex, as tshark's raw follow prints them. */
export const hex = (b: Uint8Array | undefined): string =>
  Buffer.from(b ?? new Uint8Array(0)).toString("hex");

/** A TCP segment from side a or side b, with optional TCP options. */
export function tcp(
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
export function follow(frames: readonly Uint8Array[]): { aToB: string; bToA: string } {
  const s = new TcpStreams();
  for (const f of frames) s.add(f);
  const st = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
  return { aToB: hex(st?.aToB), bToA: hex(st?.bToA) };
}

/**
 * tshark's two streams of the same frames, written to `file` as a pcap:
 * `tshark -z follow,tcp,raw,0` names the first frame's source node 0, so
 * its two directions are mapped back to a to b and b to a.
 */
export function tsharkFollow(
  frames: readonly Uint8Array[],
  file: string,
): { aToB: string; bToA: string } {
  writeFileSync(
    file,
    writeCapture(
      frames.map((data, n) => ({ data, seconds: 1_700_000_000, nanoseconds: n * 1000 })),
      { format: "pcap" },
    ),
  );
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
  // The last byte of the IPv4 source address (frame offset 29) says which side sent first.
  const firstFromA = (frames[0]?.[29] ?? 0) === 1;
  return firstFromA ? { aToB: zeroToOne, bToA: oneToZero } : { aToB: oneToZero, bToA: zeroToOne };
}
