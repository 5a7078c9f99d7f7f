import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { writeCapture } from "../src/net/capture.js";
import { countConversations } from "../src/net/conversations.js";
import { requireTool } from "./support/cli.js";

/*
 * IPv4 reassembly by byte ranges for the conversation count: a datagram
 * completes when its fragments cover every byte from 0 to the last
 * fragment's end (RFC 791 section 3.2; RFC 815's hole descriptors), so a
 * duplicated or overlapping fragment never fills a hole. Wireshark's
 * reassembly (epan/reassemble.c) does the same: a datagram still missing a
 * piece stays "Fragmented IP protocol" and no UDP or TCP conversation
 * counts it. This file holds hvlab's count equal to `tshark -z conv,udp`
 * and `conv,tcp` on captures it writes.
 */

const hasTshark = requireTool("tshark");

const eth = { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" };

/** A whole datagram: 3,000 bytes of UDP or TCP payload from 10.0.0.1 to 10.0.0.2. */
function datagram(l4: "udp" | "tcp"): Uint8Array {
  return buildFrame(
    {
      ethernet: eth,
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 0x4242 },
      l4:
        l4 === "udp"
          ? { kind: "udp", srcPort: 5000, dstPort: 6000 }
          : { kind: "tcp", srcPort: 5000, dstPort: 6000, seq: 1 },
    },
    new Uint8Array(3000).map((_, i) => i),
  );
}

/**
 * The fragment of a datagram holding IP payload bytes [at, at + length),
 * with MF set when `more`, and its IPv4 header checksum filled in.
 */
function fragment(whole: Uint8Array, at: number, length: number, more: boolean): Uint8Array {
  const piece = whole.subarray(34 + at, 34 + at + length);
  const g = new Uint8Array(34 + piece.length);
  g.set(whole.subarray(0, 34));
  g.set(piece, 34);
  const v = new DataView(g.buffer);
  v.setUint16(16, 20 + piece.length);
  v.setUint16(20, (more ? 0x2000 : 0) | (at / 8));
  v.setUint16(24, 0);
  let sum = 0;
  for (let i = 14; i < 34; i += 2) sum += v.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  v.setUint16(24, ~sum & 0xffff);
  return g;
}

/** Pieces of a datagram's IP payload: first, second, last, and one overlapping first and second. */
function pieces(l4: "udp" | "tcp") {
  const whole = datagram(l4);
  const end = whole.length - 34;
  return {
    first: fragment(whole, 0, 1480, true),
    second: fragment(whole, 1480, 1480, true),
    last: fragment(whole, 2960, end - 2960, false),
    overlap: fragment(whole, 1000, 1480, true),
  };
}

/*
 * Captures of one fragmented datagram, each with the frame that completes
 * it (its index), or null when it never completes.
 */
function cases(l4: "udp" | "tcp") {
  const { first, second, last, overlap } = pieces(l4);
  return [
    { name: "a duplicated first fragment and no second", frames: [first, first, last], at: null },
    { name: "an overlapping fragment leaving a hole", frames: [first, overlap, last], at: null },
    {
      name: "a duplicated last fragment and no second",
      frames: [first, last, last, last],
      at: null,
    },
    { name: "the missing piece after a duplicate", frames: [first, first, last, second], at: 3 },
    { name: "the missing piece after an overlap", frames: [first, overlap, last, second], at: 3 },
    { name: "every piece in reverse order", frames: [last, second, first], at: 2 },
    { name: "a duplicate after completion", frames: [first, second, last, last], at: 2 },
  ] as { name: string; frames: Uint8Array[]; at: number | null }[];
}

const wire = (frames: readonly Uint8Array[]) =>
  frames.map((f) => ({ frame: f, wireLength: f.length }));

describe("a duplicated or overlapping IPv4 fragment never fills a hole", () => {
  for (const l4 of ["udp", "tcp"] as const) {
    for (const c of cases(l4)) {
      it(`known answer (${l4}): ${c.name}`, () => {
        const got = countConversations(wire(c.frames));
        if (c.at === null) {
          expect(got).toEqual([]);
        } else {
          expect(got).toEqual([
            {
              protocol: l4,
              a: "10.0.0.1",
              aPort: 5000,
              b: "10.0.0.2",
              bPort: 6000,
              framesAtoB: 1,
              bytesAtoB: c.frames[c.at]?.length,
              framesBtoA: 0,
              bytesBtoA: 0,
            },
          ]);
        }
      });
    }
  }
});

/** The rows of `tshark -q -z conv,<l4>`: endpoints, then frames and bytes B to A, A to B. */
function tsharkConversations(file: string, l4: "udp" | "tcp") {
  const out = execFileSync("tshark", ["-r", file, "-q", "-z", `conv,${l4}`], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "ignore"],
  });
  const rows: {
    a: string;
    b: string;
    framesBtoA: number;
    bytesBtoA: number;
    framesAtoB: number;
    bytesAtoB: number;
  }[] = [];
  for (const line of out.split("\n")) {
    const m = /^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+) bytes\s+(\d+)\s+(\d+) bytes/.exec(line);
    if (m)
      rows.push({
        a: m[1] ?? "",
        b: m[2] ?? "",
        framesBtoA: Number(m[3]),
        bytesBtoA: Number(m[4]),
        framesAtoB: Number(m[5]),
        bytesAtoB: Number(m[6]),
      });
  }
  return { rows, out };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-fragment-ranges-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasTshark)("fragment reassembly against tshark -z conv,udp and conv,tcp", () => {
  for (const l4 of ["udp", "tcp"] as const) {
    for (const [i, c] of cases(l4).entries()) {
      it(`${l4}: ${c.name}`, () => {
        const file = join(dir, `${l4}-${i}.pcap`);
        writeFileSync(
          file,
          writeCapture(
            c.frames.map((data, n) => ({ data, seconds: 1_700_000_000, nanoseconds: n * 1000 })),
            { format: "pcap" },
          ),
        );
        const { rows, out } = tsharkConversations(file, l4);
        // tshark printed its table, whatever it holds.
        expect(out).toContain(`${l4.toUpperCase()} Conversations`);
        const ours = countConversations(wire(c.frames)).map((v) => ({
          a: `${v.a}:${v.aPort}`,
          b: `${v.b}:${v.bPort}`,
          framesBtoA: v.framesBtoA,
          bytesBtoA: v.bytesBtoA,
          framesAtoB: v.framesAtoB,
          bytesAtoB: v.bytesAtoB,
        }));
        expect(ours).toEqual(rows);
      });
    }
  }
});
