import { describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { countConversations, type WireFrame } from "../src/net/conversations.js";

/*
 * The rules of IPv4 reassembly behind the conversation count, without
 * tshark. RFC 791 section 3.2: fragments of one datagram share source,
 * destination, protocol and identification; the fragment offset counts
 * 8-byte units; the last fragment has MF clear, and its offset plus its
 * length is the datagram's payload length; the datagram is whole once
 * every byte from 0 to that length has arrived (RFC 815's hole
 * descriptors: a hole is filled only by bytes inside it). A fragmented
 * datagram counts once, at the frame that completes it, with that frame's
 * wire length (as `tshark -z conv,udp` counts it).
 */

const eth = { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" };

/** IP payload bytes of the datagram: an 8-byte UDP header and 3,000 bytes of data. */
const TOTAL = 3008;

/** The whole datagram, UDP 5000 -> 6000 from 10.0.0.1 to 10.0.0.2. */
const whole = buildFrame(
  {
    ethernet: eth,
    ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 0x4242 },
    l4: { kind: "udp", srcPort: 5000, dstPort: 6000 },
  },
  new Uint8Array(TOTAL - 8).map((_, i) => i),
);

/** The fragment holding IP payload bytes [at, at + length), MF set when `more`. */
function fragment(at: number, length: number, more: boolean): Uint8Array {
  const piece = whole.subarray(34 + at, 34 + at + length);
  const g = new Uint8Array(34 + piece.length);
  g.set(whole.subarray(0, 34));
  g.set(piece, 34);
  const v = new DataView(g.buffer);
  v.setUint16(16, 20 + piece.length);
  v.setUint16(20, (more ? 0x2000 : 0) | (at / 8));
  return g;
}

/** Each frame with a wire length of its own (its index + 100), to tell which one was counted. */
const wire = (frames: readonly Uint8Array[]): WireFrame[] =>
  frames.map((frame, n) => ({ frame, wireLength: 100 + n }));

/** The one UDP conversation's counts, or null when no datagram completed. */
function counted(frames: readonly Uint8Array[]): { frames: number; bytes: number } | null {
  const out = countConversations(wire(frames));
  if (out.length === 0) return null;
  expect(out).toHaveLength(1);
  const c = out[0];
  expect(c).toMatchObject({ protocol: "udp", a: "10.0.0.1", aPort: 5000, b: "10.0.0.2" });
  expect(c?.bPort).toBe(6000);
  return { frames: (c?.framesAtoB ?? 0) + (c?.framesBtoA ?? 0), bytes: c?.bytesAtoB ?? 0 };
}

const first = fragment(0, 1480, true);
const second = fragment(1480, 1480, true);
const last = fragment(2960, TOTAL - 2960, false);

describe("IPv4 reassembly for the conversation count (RFC 791 section 3.2, RFC 815)", () => {
  it("completes a datagram whose fragments come in any order, at the frame that completes it", () => {
    const orders = [
      [first, second, last],
      [first, last, second],
      [second, first, last],
      [second, last, first],
      [last, first, second],
      [last, second, first],
    ];
    for (const order of orders) {
      // The third frame (wire length 102) fills the last hole.
      expect(counted(order)).toEqual({ frames: 1, bytes: 102 });
    }
  });

  it("never completes a datagram missing a piece, however often the others come", () => {
    expect(counted([first, last])).toBeNull();
    expect(counted([first, first, last, last])).toBeNull();
    expect(counted([second, last, second])).toBeNull();
    expect(counted([first, second])).toBeNull();
  });

  it("fills no hole with a duplicated or overlapping fragment", () => {
    // [1000, 2480) overlaps the first fragment and leaves [2480, 2960) open.
    expect(counted([first, fragment(1000, 1480, true), last])).toBeNull();
    // Completed once the hole's bytes arrive, by a fragment that also overlaps both sides.
    expect(counted([first, fragment(1000, 1480, true), last, fragment(2400, 600, true)])).toEqual({
      frames: 1,
      bytes: 103,
    });
  });

  it("counts a datagram once, however many fragments arrive after it completed", () => {
    // The datagram completes at frame 2; the repeated fragments start a new
    // reassembly that never completes (no last fragment follows them).
    expect(counted([first, second, last, first, second])).toEqual({ frames: 1, bytes: 102 });
  });

  it("holds a datagram at its bounds: one 8-byte hole left open, then filled", () => {
    const upTo2952 = fragment(1480, 1472, true);
    expect(counted([first, upTo2952, last])).toBeNull();
    expect(counted([first, upTo2952, last, fragment(2952, 8, true)])).toEqual({
      frames: 1,
      bytes: 103,
    });
  });

  it("takes the ports from a first fragment of 8 bytes, the least a first fragment holds", () => {
    // RFC 791 section 3.2: every fragment but the last holds a multiple of 8 bytes.
    expect(counted([fragment(0, 8, true), fragment(8, TOTAL - 8, false)])).toEqual({
      frames: 1,
      bytes: 101,
    });
  });

  it("completes at an empty last fragment that only says where the datagram ends", () => {
    // MF clear at offset 3008 with no data: the total is 3008, all of it held already.
    const end = fragment(TOTAL, 0, false);
    const allMore = [first, second, fragment(2960, TOTAL - 2960, true)];
    expect(counted([...allMore, end])).toEqual({ frames: 1, bytes: 103 });
    expect(counted([end, ...allMore])).toEqual({ frames: 1, bytes: 103 });
  });

  it("does not complete, nor fail, on an empty last fragment seen alone", () => {
    // No byte held at all: the ranges are empty, the total known.
    expect(counted([fragment(TOTAL, 0, false)])).toBeNull();
    expect(counted([fragment(TOTAL, 0, false), fragment(8, 0, true)])).toBeNull();
  });
});
