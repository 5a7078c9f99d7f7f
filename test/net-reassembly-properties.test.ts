import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { countConversations } from "../src/net/conversations.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { TcpStreams } from "../src/net/tcp-streams.js";

/*
 * Properties of the two reassemblies the capture analysis does, on random
 * input. TCP streams (as tshark's follow,tcp): a payload cut into random
 * pieces, sent in any order with any duplicates and overlaps after a SYN
 * (with or without data of its own, RFC 7413 section 4), comes back whole;
 * damaged frames never throw. IPv4 fragments (RFC 791 section 3.2, RFC
 * 815): a datagram counts once exactly when its fragments' byte ranges
 * cover it, however many duplicates or overlaps arrive.
 */

const eth = { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" };

function segment(seq: number, data: Uint8Array, flags: number): Uint8Array {
  return buildFrame(
    {
      ethernet: eth,
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "tcp", srcPort: 40000, dstPort: 80, seq, flags },
    },
    data,
  );
}

/** Cuts [0, length) at sorted points into pieces [start, end). */
function cut(length: number, points: number[]): [number, number][] {
  const edges = [...new Set([0, ...points.map((p) => p % (length + 1)), length])].sort(
    (a, b) => a - b,
  );
  return edges.slice(1).map((end, i) => [edges[i] ?? 0, end]);
}

describe("TCP stream reassembly on random input", () => {
  it("gives back a payload sent in random pieces, order, duplicates and overlaps", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 600 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.nat({ max: 40 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 6 }),
        fc.array(fc.nat(), { minLength: 32, maxLength: 32 }),
        (payload, isn, inSyn, points, extras, order) => {
          const synData = payload.subarray(0, Math.min(inSyn, payload.length));
          const rest = payload.length - synData.length;
          const base = (isn + 1 + synData.length) >>> 0;
          const pieces = cut(rest, points).filter(([s, e]) => e > s);
          // Retransmissions and overlaps: any range of the data after the SYN.
          for (const [x, y] of extras) {
            if (rest === 0) break;
            const s = x % rest;
            pieces.push([s, s + 1 + (y % (rest - s))]);
          }
          const frames = pieces.map(([s, e]) =>
            segment(
              (base + s) >>> 0,
              payload.subarray(synData.length + s, synData.length + e),
              TCP_FLAGS.ACK,
            ),
          );
          // Shuffle the segments after the SYN, seeded by `order`.
          for (let i = frames.length - 1; i > 0; i--) {
            const j = (order[i % order.length] ?? 0) % (i + 1);
            [frames[i], frames[j]] = [frames[j] as Uint8Array, frames[i] as Uint8Array];
          }
          const s = new TcpStreams();
          s.add(segment(isn, synData, TCP_FLAGS.SYN));
          for (const f of frames) s.add(f);
          const got = s.stream("10.0.0.1", 40000, "10.0.0.2", 80)?.aToB;
          expect(Buffer.from(got ?? []).equals(Buffer.from(payload))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("never throws on damaged or cut frames, and keeps no more than it was given", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.integer({ min: 0, max: 0xffffffff }),
            fc.uint8Array({ maxLength: 64 }),
            fc.constantFrom(TCP_FLAGS.ACK, TCP_FLAGS.SYN, TCP_FLAGS.SYN | TCP_FLAGS.ACK),
            fc.nat(),
            fc.nat(),
            fc.nat({ max: 255 }),
          ),
          { maxLength: 20 },
        ),
        (list) => {
          const s = new TcpStreams();
          let given = 0;
          for (const [seq, data, flags, at, keep, value] of list) {
            const f = segment(seq, data, flags);
            f[at % f.length] = value;
            const frame = f.subarray(0, keep % (f.length + 1));
            given += data.length;
            s.add(frame);
          }
          const st = s.stream("10.0.0.1", 40000, "10.0.0.2", 80);
          expect((st?.aToB.length ?? 0) + (st?.bToA.length ?? 0)).toBeLessThanOrEqual(given);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("IPv4 fragment reassembly on random input", () => {
  it("counts a datagram exactly when its fragments cover it, duplicates and overlaps or not", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 8, max: 3000 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { minLength: 1, maxLength: 12 }),
        fc.boolean(),
        (udpPayload, ranges, withLast) => {
          const whole = buildFrame(
            {
              ethernet: eth,
              ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 7 },
              l4: { kind: "udp", srcPort: 5000, dstPort: 6000 },
            },
            new Uint8Array(udpPayload).fill(3),
          );
          const total = whole.length - 34;
          const units = Math.ceil(total / 8);
          // Fragments on 8-byte units (RFC 791), possibly overlapping or repeated.
          const pieces: [number, number][] = ranges.map(([x, y]) => {
            const s = x % units;
            const e = Math.min(units, s + 1 + (y % (units - s)));
            // A piece holding the whole datagram would be no fragment at all.
            return [s * 8, s === 0 && e === units ? (units - 1) * 8 : Math.min(total, e * 8)];
          });
          if (withLast) pieces.push([Math.max(0, total - 8) & ~7, total]);
          const frames = pieces.map(([s, e]) => {
            const g = new Uint8Array(34 + e - s);
            g.set(whole.subarray(0, 34));
            g.set(whole.subarray(34 + s, 34 + e), 34);
            const v = new DataView(g.buffer);
            v.setUint16(16, 20 + e - s);
            v.setUint16(20, (e < total ? 0x2000 : 0) | (s / 8));
            return g;
          });
          // The model, fragment by fragment: a byte map of what arrived and
          // whether the last fragment came; a full cover counts the datagram
          // and starts afresh (a later copy begins a datagram of its own).
          let expected = 0;
          const seen = new Uint8Array(total);
          let last = false;
          for (const [s, e] of pieces) {
            seen.fill(1, s, e);
            last ||= e === total;
            if (last && seen.every((b) => b === 1)) {
              expected++;
              seen.fill(0);
              last = false;
            }
          }
          const got = countConversations(
            frames.map((frame) => ({ frame, wireLength: frame.length })),
          );
          const counted = got.reduce((a, c) => a + c.framesAtoB + c.framesBtoA, 0);
          expect(counted).toBe(expected);
        },
      ),
      { numRuns: 400 },
    );
  });
});
